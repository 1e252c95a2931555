"""The worker's seccomp-bpf allowlist: a filter program built by hand and installed with prctl.

Why by hand, not libseccomp: the policy is small and static (one architecture, one
argument rule per call at most), and a hand-built program needs no package, no apt step
in CI and no ABI match between Debian's bindings and the interpreter (python3-seccomp
loads into one CPython minor version only; pyseccomp is unmaintained). What libseccomp
would add for us are exactly the checks below (the arch and x32 traps), and they are
tested here (docs/research/worker-jail-2026-12-01.md).

The program, evaluated for every system call the worker makes after `install`:

    arch != x86_64                -> kill the process   (i386 `int 0x80`: socketcall is 102 there,
                                                          getuid here, so a number-only filter leaks)
    nr >= 0x40000000 (x32 ABI)    -> kill the process
    prlimit64(pid 0, ...)         -> allow (its own limits); another pid -> EPERM
    sendto/recvfrom with MSG_OOB  -> kill the process   (AF_UNIX out-of-band data: kernel attack
                                                          surface no honest worker uses)
    an ALLOW call                 -> allow
    a KILL call                   -> kill the process   (exec, ptrace, mount, namespaces, bpf...)
    socket(AF_UNIX, ...)          -> EPERM; socket(any other family) -> kill the process
    anything else                 -> EPERM              (open, fork/clone, kill, socketpair, ioctl...)

ALLOW is what a trace of real workers needs (see docs/research/worker-jail-trace.md): the
Python runtime after the zygote's warm-up, the IPC socket (fd 3), the per-run limits and
exit. A call that is killed ends the run as "crashed" with the reason; an EPERM is an
OSError the code in the worker sees.

Mode "log" (`LOGIC_WORKER_SECCOMP=log`) allows what would be EPERM and has the kernel log
it (audit type 1326 in `dmesg`): how the list is maintained; the KILL rules stay.
"""

from __future__ import annotations

import ctypes
import errno
import platform
import socket

# Numbers of x86_64 (asm/unistd_64.h); the filter refuses every other architecture.
NUMBERS = {
    "read": 0,
    "write": 1,
    "open": 2,
    "close": 3,
    "fstat": 5,
    "poll": 7,
    "lseek": 8,
    "mmap": 9,
    "mprotect": 10,
    "munmap": 11,
    "brk": 12,
    "rt_sigaction": 13,
    "rt_sigprocmask": 14,
    "rt_sigreturn": 15,
    "ioctl": 16,
    "sched_yield": 24,
    "mremap": 25,
    "madvise": 28,
    "nanosleep": 35,
    "getpid": 39,
    "socket": 41,
    "connect": 42,
    "sendto": 44,
    "recvfrom": 45,
    "shutdown": 48,
    "getsockname": 51,
    "getpeername": 52,
    "socketpair": 53,
    "getsockopt": 55,
    "clone": 56,
    "fork": 57,
    "vfork": 58,
    "execve": 59,
    "exit": 60,
    "kill": 62,
    "uname": 63,
    "fcntl": 72,
    "gettimeofday": 96,
    "getrlimit": 97,
    "getrusage": 98,
    "ptrace": 101,
    "syslog": 103,
    "getuid": 102,
    "getgid": 104,
    "geteuid": 107,
    "getegid": 108,
    "getppid": 110,
    "getgroups": 115,
    "getresuid": 118,
    "getresgid": 120,
    "sigaltstack": 131,
    "personality": 135,
    "vhangup": 153,
    "pivot_root": 155,
    "setrlimit": 160,
    "chroot": 161,
    "acct": 163,
    "mount": 165,
    "umount2": 166,
    "swapon": 167,
    "swapoff": 168,
    "reboot": 169,
    "iopl": 172,
    "ioperm": 173,
    "init_module": 175,
    "delete_module": 176,
    "quotactl": 179,
    "gettid": 186,
    "tkill": 200,
    "time": 201,
    "futex": 202,
    "lookup_dcookie": 212,
    "clock_gettime": 228,
    "clock_getres": 229,
    "clock_nanosleep": 230,
    "exit_group": 231,
    "tgkill": 234,
    "kexec_load": 246,
    "add_key": 248,
    "request_key": 249,
    "keyctl": 250,
    "openat": 257,
    "newfstatat": 262,
    "ppoll": 271,
    "unshare": 272,
    "perf_event_open": 298,
    "prlimit64": 302,
    "name_to_handle_at": 303,
    "open_by_handle_at": 304,
    "setns": 308,
    "process_vm_readv": 310,
    "process_vm_writev": 311,
    "finit_module": 313,
    "getrandom": 318,
    "kexec_file_load": 320,
    "bpf": 321,
    "execveat": 322,
    "userfaultfd": 323,
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
    "clone3": 435,
    "mount_setattr": 442,
    "quotactl_fd": 443,
}

# What a worker needs after confinement, most frequent first (the kernel caches constant
# ALLOW answers per call, so the order only matters for the first call of each). The
# traces (docs/research/worker-jail-trace/) show recvfrom, sendto, poll, getrusage,
# prlimit64, getsockopt, getsockname, brk, mmap, munmap, mremap, getpid, getuid, getgid,
# getrandom, write, close and exit_group from honest runs, plus geteuid, getgroups and
# clock_nanosleep from the tests' diagnostics; the rest is what CPython and glibc may
# call on a path the traces did not take (signals, futexes, clocks without the vDSO,
# madvise when malloc trims). Left out on purpose: newfstatat (a stat of any host path,
# where no mount namespace hides them), uname (the kernel's version), lseek.
ALLOW = (
    "recvfrom",  # these two: any flags but MSG_OOB (their own rule in program())
    "sendto",
    "poll",
    "ppoll",
    "getrusage",
    "read",
    "write",
    "close",
    "brk",
    "mmap",
    "munmap",
    "mremap",
    "madvise",
    "mprotect",
    "futex",
    "getsockopt",
    "getsockname",
    "fstat",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "sigaltstack",
    "getpid",
    "gettid",
    "getppid",
    "getuid",
    "geteuid",
    "getgid",
    "getegid",
    "getgroups",
    "getresuid",
    "getresgid",
    "getrlimit",
    "setrlimit",
    "clock_gettime",
    "clock_getres",
    "gettimeofday",
    "time",
    "clock_nanosleep",
    "nanosleep",
    "sched_yield",
    "getrandom",
    "exit",
    "exit_group",
)

# Killed on sight: no honest worker makes these, and each is a way out (a new program,
# another process's memory, the mount table, namespaces, kernel attack surface).
KILL = (
    "execve",
    "execveat",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "mount_setattr",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "unshare",
    "setns",
    "bpf",
    "perf_event_open",
    "keyctl",
    "add_key",
    "request_key",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "userfaultfd",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "open_by_handle_at",
    "name_to_handle_at",
    "swapon",
    "swapoff",
    "reboot",
    "acct",
    "quotactl",
    "quotactl_fd",
    "iopl",
    "ioperm",
    "lookup_dcookie",
    "vhangup",
    "syslog",
    "personality",
)

AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000

RET_KILL_PROCESS = 0x80000000
RET_ERRNO = 0x00050000
RET_LOG = 0x7FFC0000
RET_ALLOW = 0x7FFF0000
RET_EPERM = RET_ERRNO | errno.EPERM

# struct seccomp_data: int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6]
OFFSET_NR, OFFSET_ARCH, OFFSET_ARG0 = 0, 4, 16  # arg0's low word (little-endian)
OFFSET_ARG3 = OFFSET_ARG0 + 3 * 8  # the flags of sendto/recvfrom (an int: the low word is all of it)
MSG_OOB = 0x1
_FLAG_CHECKED = ("sendto", "recvfrom")  # allowed by their flags (program()), not by number alone

_LD_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGE = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_JSET = 0x45  # BPF_JMP | BPF_JSET | BPF_K
_RET = 0x06  # BPF_RET | BPF_K

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2

Instruction = tuple[int, int, int, int]  # (code, jt, jf, k), as struct sock_filter


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def unsupported() -> str | None:
    """Why the filter cannot apply on this machine, or None."""
    machine = platform.machine()
    if machine != "x86_64":
        return f"no allowlist for the {machine} architecture"
    return None


def program(mode: str = "on") -> list[Instruction]:
    """The filter as BPF instructions; `mode` "log" allows and logs what "on" refuses."""
    refuse = RET_LOG if mode == "log" else RET_EPERM
    prog: list[Instruction] = [
        (_LD_ABS, 0, 0, OFFSET_ARCH),
        (_JEQ, 1, 0, AUDIT_ARCH_X86_64),
        (_RET, 0, 0, RET_KILL_PROCESS),
        (_LD_ABS, 0, 0, OFFSET_NR),
        (_JGE, 0, 1, X32_SYSCALL_BIT),
        (_RET, 0, 0, RET_KILL_PROCESS),
    ]
    # prlimit64 on itself only (the per-run limits), first: its answer depends on an
    # argument, so the kernel cannot cache it and runs the program on every call. Each
    # branch below returns, so loading an argument into A never confuses a later rule.
    prog += [
        (_JEQ, 0, 4, NUMBERS["prlimit64"]),
        (_LD_ABS, 0, 0, OFFSET_ARG0),
        (_JEQ, 0, 1, 0),
        (_RET, 0, 0, RET_ALLOW),
        (_RET, 0, 0, refuse),
    ]
    # The IPC calls, the hottest: any flags but MSG_OOB. Out-of-band data on AF_UNIX stream
    # sockets is a rarely used kernel path with a history of use-after-free bugs
    # (CVE-2025-38236 was reached from Chrome's renderer sandbox, which then refused the
    # flag); the IPC never sends it. Both calls share the check: sendto's and recvfrom's
    # flags are their fourth argument.
    prog += [
        (_JEQ, 1, 0, NUMBERS["sendto"]),
        (_JEQ, 0, 4, NUMBERS["recvfrom"]),
        (_LD_ABS, 0, 0, OFFSET_ARG3),
        (_JSET, 0, 1, MSG_OOB),
        (_RET, 0, 0, RET_KILL_PROCESS),
        (_RET, 0, 0, RET_ALLOW),
    ]
    for name in ALLOW:  # constant answers: the kernel caches them per call number
        if name in _FLAG_CHECKED:
            continue
        prog += [(_JEQ, 0, 1, NUMBERS[name]), (_RET, 0, 0, RET_ALLOW)]
    for name in KILL:
        prog += [(_JEQ, 0, 1, NUMBERS[name]), (_RET, 0, 0, RET_KILL_PROCESS)]
    # socket(): nothing is reachable through AF_UNIX in the jail, so EPERM; any other
    # family (TCP, UDP, netlink, packet...) is an attack.
    prog += [
        (_JEQ, 0, 4, NUMBERS["socket"]),
        (_LD_ABS, 0, 0, OFFSET_ARG0),
        (_JEQ, 1, 0, socket.AF_UNIX),
        (_RET, 0, 0, RET_KILL_PROCESS),
        (_RET, 0, 0, refuse),
        (_RET, 0, 0, refuse),
    ]
    return prog


class Filter:
    """A program ready to install: built once in the zygote, installed by each worker."""

    def __init__(self, prog: list[Instruction]):
        self._array = (_SockFilter * len(prog))(*(_SockFilter(*ins) for ins in prog))
        self._fprog = _SockFprog(len(prog), self._array)
        self._libc = ctypes.CDLL(None, use_errno=True)
        self.size = len(prog)

    def install(self) -> None:
        """Confine the calling (single-threaded) process for good; raises OSError."""
        libc = self._libc
        if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:  # required by an unprivileged filter
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
        if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(self._fprog), 0, 0) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"seccomp filter refused: {errno.errorcode.get(err, err)}")


def evaluate(prog: list[Instruction], nr: int, *, arch: int = AUDIT_ARCH_X86_64, args: tuple[int, ...] = ()) -> int:
    """What `prog` answers for one call (a BPF interpreter of the few opcodes used here).

    For tests and for reading the policy; the kernel runs the real thing."""
    words = [nr, arch, 0, 0]
    for value in (tuple(args) + (0,) * 6)[:6]:
        words += [value & 0xFFFFFFFF, (value >> 32) & 0xFFFFFFFF]
    acc = 0
    pc = 0
    while True:
        code, jt, jf, k = prog[pc]
        if code == _LD_ABS:
            acc = words[k // 4]
        elif code == _JEQ:
            pc += jt if acc == k else jf
        elif code == _JGE:
            pc += jt if acc >= k else jf
        elif code == _JSET:
            pc += jt if acc & k else jf
        elif code == _RET:
            return k
        else:
            raise ValueError(f"opcode {code:#x} is not used by this filter")
        pc += 1
