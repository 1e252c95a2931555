"""The hand-built seccomp program: its decisions, the traps it closes, and the kernel's view.

Where Debian's python3-seccomp is installed (libseccomp's own bindings), the same policy
built by libseccomp is the oracle: the syscall numbers and every decision must agree."""

from __future__ import annotations

import errno
import importlib.util
import os
import signal
import socket
import struct
import tempfile
from pathlib import Path

import pytest

from runtime.workers import seccomp
from runtime.workers.seccomp import (
    ALLOW,
    AUDIT_ARCH_X86_64,
    KILL,
    NUMBERS,
    RET_ALLOW,
    RET_EPERM,
    RET_KILL_PROCESS,
    RET_LOG,
    X32_SYSCALL_BIT,
    evaluate,
    program,
)

AUDIT_ARCH_I386 = 0x40000003
PROGRAM = program()
_LIBSECCOMP = Path("/usr/lib/python3/dist-packages/seccomp.cpython-311-x86_64-linux-gnu.so")


def test_what_a_worker_needs_is_allowed():
    for name in ALLOW:
        assert evaluate(PROGRAM, NUMBERS[name]) == RET_ALLOW, name


def test_the_ways_out_kill_the_process():
    for name in KILL:
        assert evaluate(PROGRAM, NUMBERS[name]) == RET_KILL_PROCESS, name
    for name in ("execve", "execveat", "ptrace", "mount", "unshare", "setns", "bpf", "perf_event_open"):
        assert name in KILL
    for name in ("keyctl", "io_uring_setup", "io_uring_enter", "io_uring_register", "userfaultfd"):
        assert name in KILL


def test_everything_else_is_eperm():
    for name in ("openat", "open", "clone", "clone3", "fork", "vfork", "socketpair", "kill", "tgkill", "ioctl"):
        assert evaluate(PROGRAM, NUMBERS[name]) == RET_EPERM, name
    known = set(NUMBERS.values())
    for nr in range(0, 460):
        if nr not in known:
            assert evaluate(PROGRAM, nr) == RET_EPERM, nr


def test_sockets_other_than_unix_kill_and_unix_is_eperm():
    nr = NUMBERS["socket"]
    assert evaluate(PROGRAM, nr, args=(socket.AF_UNIX, socket.SOCK_STREAM)) == RET_EPERM
    for family in (socket.AF_INET, socket.AF_INET6, socket.AF_NETLINK, socket.AF_PACKET, 0, 2**31):
        assert evaluate(PROGRAM, nr, args=(family, socket.SOCK_STREAM)) == RET_KILL_PROCESS, family


def test_prlimit_only_on_itself():
    nr = NUMBERS["prlimit64"]
    assert evaluate(PROGRAM, nr, args=(0, 7)) == RET_ALLOW
    assert evaluate(PROGRAM, nr, args=(1234, 7)) == RET_EPERM
    assert evaluate(PROGRAM, nr, args=(1, 7)) == RET_EPERM


def test_other_architectures_and_x32_are_killed_whatever_the_number():
    # i386's socketcall is 102, which is getuid on x86_64 (allowed): only the arch check stops it.
    assert evaluate(PROGRAM, 102) == RET_ALLOW
    assert evaluate(PROGRAM, 102, arch=AUDIT_ARCH_I386) == RET_KILL_PROCESS
    for nr in (0, 1, 41, 59):
        assert evaluate(PROGRAM, nr, arch=AUDIT_ARCH_I386) == RET_KILL_PROCESS
        assert evaluate(PROGRAM, X32_SYSCALL_BIT | nr) == RET_KILL_PROCESS


def test_log_mode_logs_what_on_refuses_and_still_kills():
    logged = program("log")
    assert evaluate(logged, NUMBERS["openat"]) == RET_LOG
    assert evaluate(logged, NUMBERS["socket"], args=(socket.AF_UNIX,)) == RET_LOG
    assert evaluate(logged, NUMBERS["execve"]) == RET_KILL_PROCESS
    assert evaluate(logged, NUMBERS["socket"], args=(socket.AF_INET,)) == RET_KILL_PROCESS
    assert evaluate(logged, 0, arch=AUDIT_ARCH_I386) == RET_KILL_PROCESS


def test_lists_are_disjoint_and_the_program_fits():
    assert not set(ALLOW) & set(KILL)
    assert "socket" not in ALLOW and "socket" not in KILL and "prlimit64" not in ALLOW
    assert len(PROGRAM) < 4096
    assert all(0 <= jt < 256 and 0 <= jf < 256 for _code, jt, jf, _k in PROGRAM)


def _in_child(action) -> tuple[int | None, int | None, bytes]:
    """Install the filter in a forked child, run `action`, report (exit code, signal, output)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(read_end)
            seccomp.Filter(PROGRAM).install()
            os.write(write_end, action())
        except BaseException:
            code = 1
        os._exit(code)
    os.close(write_end)
    output = os.read(read_end, 1000)
    os.close(read_end)
    _pid, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return None, os.WTERMSIG(status), output
    return os.WEXITSTATUS(status), None, output


@pytest.mark.skipif(seccomp.unsupported() is not None, reason="x86_64 only")
def test_the_kernel_applies_it():
    def refused() -> bytes:
        results = []
        for call in (lambda: os.open("/etc/hostname", os.O_RDONLY), os.fork, socket.socketpair):
            try:
                call()
                results.append("allowed")
            except OSError as exc:
                results.append(errno.errorcode[exc.errno])
        results.append(str(os.getpid() > 0))
        return ",".join(results).encode()

    assert _in_child(refused) == (0, None, b"EPERM,EPERM,EPERM,True")
    assert _in_child(lambda: os.execv("/bin/true", ["/bin/true"]) or b"")[1] == signal.SIGSYS
    assert _in_child(lambda: socket.socket(socket.AF_INET).close() or b"")[1] == signal.SIGSYS


def _libseccomp():
    if not _LIBSECCOMP.exists():
        pytest.skip("python3-seccomp (libseccomp's bindings) is not installed")
    spec = importlib.util.spec_from_file_location("seccomp", _LIBSECCOMP)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ImportError as exc:  # another CPython than the bindings were built for
        pytest.skip(f"python3-seccomp does not load here: {exc}")
    return module


def test_numbers_agree_with_libseccomp():
    lib = _libseccomp()
    for name, nr in NUMBERS.items():
        assert lib.resolve_syscall(lib.Arch.X86_64, name) == nr, name


def test_decisions_agree_with_the_same_policy_built_by_libseccomp():
    lib = _libseccomp()
    oracle = lib.SyscallFilter(lib.ERRNO(errno.EPERM))
    oracle.set_attr(lib.Attr.ACT_BADARCH, lib.KILL_PROCESS)
    for name in ALLOW:
        oracle.add_rule(lib.ALLOW, name)
    for name in KILL:
        oracle.add_rule(lib.KILL_PROCESS, name)
    oracle.add_rule(lib.ALLOW, "prlimit64", lib.Arg(0, lib.EQ, 0))
    oracle.add_rule(lib.KILL_PROCESS, "socket", lib.Arg(0, lib.NE, socket.AF_UNIX))
    with tempfile.TemporaryFile() as handle:
        oracle.export_bpf(handle)
        handle.seek(0)
        raw = handle.read()
    theirs = [struct.unpack("<HBBI", raw[i : i + 8]) for i in range(0, len(raw), 8)]
    cases = [(nr, (0, 0)) for nr in range(0, 460)]
    cases += [(NUMBERS["socket"], (family, 1)) for family in (0, 1, 2, 10, 16, 17)]
    cases += [(NUMBERS["prlimit64"], (pid, 7)) for pid in (0, 1, 4242)]
    cases += [(X32_SYSCALL_BIT | nr, (0, 0)) for nr in (0, 41, 59)]
    for nr, args in cases:
        assert evaluate(PROGRAM, nr, args=args) == evaluate(theirs, nr, args=args), (nr, args)
    for arch in (AUDIT_ARCH_I386, 0xC00000B7):  # i386, aarch64
        assert evaluate(PROGRAM, 102, arch=arch) == evaluate(theirs, 102, arch=arch) == RET_KILL_PROCESS
    assert evaluate(theirs, 0, arch=AUDIT_ARCH_X86_64) == RET_ALLOW
