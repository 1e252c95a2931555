"""Hand-built seccomp-bpf filter through ctypes + prctl(PR_SET_SECCOMP), no library.

Filter (x86_64):
  A = seccomp_data.arch;  if A != AUDIT_ARCH_X86_64 -> KILL_PROCESS   (i386 int 0x80 trap)
  A = seccomp_data.nr;    if A >= 0x40000000       -> KILL_PROCESS   (x32 ABI trap)
  execve, execveat                                 -> KILL_PROCESS
  socket(AF_UNIX, ...)                             -> ALLOW   (arg check demo)
  socket(anything else)                            -> ERRNO(EPERM)
  everything else                                  -> ALLOW
Scenarios run each in a fresh forked child; the parent reports how it ended.
Run with an optional --no-arch to install the same filter WITHOUT the arch check
and see the i386 bypass.
"""

import ctypes
import errno
import os
import signal
import socket
import struct
import sys

libc = ctypes.CDLL(None, use_errno=True)

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000

# BPF opcodes
BPF_LD, BPF_W, BPF_ABS = 0x00, 0x00, 0x20
BPF_JMP, BPF_JEQ, BPF_JGE, BPF_K = 0x05, 0x10, 0x30, 0x00
BPF_RET = 0x06

RET_KILL_PROCESS = 0x80000000
RET_ERRNO = 0x00050000
RET_ALLOW = 0x7FFF0000

NR = {"socket": 41, "execve": 59, "execveat": 322, "getpid": 39}

# offsets in struct seccomp_data
OFF_NR, OFF_ARCH, OFF_ARG0_LO = 0, 4, 16


class SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]


def stmt(code, k):
    return (code, 0, 0, k)


def jump(code, k, jt, jf):
    return (code, jt, jf, k)


def build(arch_check=True):
    prog = []
    if arch_check:
        prog += [
            stmt(BPF_LD | BPF_W | BPF_ABS, OFF_ARCH),
            jump(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
            stmt(BPF_RET | BPF_K, RET_KILL_PROCESS),
        ]
    prog += [
        stmt(BPF_LD | BPF_W | BPF_ABS, OFF_NR),
        jump(BPF_JMP | BPF_JGE | BPF_K, X32_SYSCALL_BIT, 0, 1),
        stmt(BPF_RET | BPF_K, RET_KILL_PROCESS),
        jump(BPF_JMP | BPF_JEQ | BPF_K, NR["execve"], 0, 1),
        stmt(BPF_RET | BPF_K, RET_KILL_PROCESS),
        jump(BPF_JMP | BPF_JEQ | BPF_K, NR["execveat"], 0, 1),
        stmt(BPF_RET | BPF_K, RET_KILL_PROCESS),
        jump(BPF_JMP | BPF_JEQ | BPF_K, NR["socket"], 0, 3),
        # socket: look at args[0] (low 32 bits; the domain is an int)
        stmt(BPF_LD | BPF_W | BPF_ABS, OFF_ARG0_LO),
        jump(BPF_JMP | BPF_JEQ | BPF_K, socket.AF_UNIX, 1, 0),
        stmt(BPF_RET | BPF_K, RET_ERRNO | errno.EPERM),
        stmt(BPF_RET | BPF_K, RET_ALLOW),
    ]
    return prog


def install(prog):
    arr = (SockFilter * len(prog))(*[SockFilter(*i) for i in prog])
    fprog = SockFprog(len(prog), arr)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_SECCOMP")


# --- i386 syscall from a 64-bit process via int 0x80 (machine code in a MAP_32BIT page) ---
PROT_RWX, MAP_PRIVATE, MAP_ANON, MAP_32BIT = 7, 0x02, 0x20, 0x40
CODE = bytes.fromhex(
    "53"  # push rbx
    "89f8"  # mov eax, edi   (nr)
    "89f3"  # mov ebx, esi   (a1)
    "4189c8"  # mov r8d, ecx (a3)
    "89d1"  # mov ecx, edx   (a2)
    "4489c2"  # mov edx, r8d (a3)
    "cd80"  # int 0x80
    "5b"  # pop rbx
    "c3"  # ret
)


def int80():
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    page = libc.mmap(None, 4096, PROT_RWX, MAP_PRIVATE | MAP_ANON | MAP_32BIT, -1, 0)
    ctypes.memmove(page, CODE, len(CODE))
    fn = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_uint, ctypes.c_uint, ctypes.c_uint, ctypes.c_uint)(page)
    return fn, page


def scenario(name, arch_check):
    install(build(arch_check))
    if name == "execve":
        os.execv("/bin/true", ["/bin/true"])
    elif name == "socket_inet":
        try:
            socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            print("  socket(AF_INET) succeeded ?!")
        except OSError as e:
            print(f"  socket(AF_INET) -> {errno.errorcode[e.errno]}")
    elif name == "socket_unix":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        print(f"  socket(AF_UNIX) -> fd {s.fileno()} (allowed by arg check)")
    elif name == "x32_execve":
        # x32 execve is 520 | X32_SYSCALL_BIT; a filter without the x32 check would see nr 0x40000208
        libc.syscall.restype = ctypes.c_long
        r = libc.syscall(ctypes.c_long(X32_SYSCALL_BIT | 520), b"/bin/true", None, None)
        print(f"  x32 execve returned {r} errno {errno.errorcode.get(ctypes.get_errno())}")
    elif name == "i386_socketcall":
        # i386 socketcall = 102 (= getuid on x86_64!), SYS_SOCKET = 1, args in 32-bit memory
        fn, page = int80()
        ctypes.memmove(page + 256, struct.pack("<III", socket.AF_INET, socket.SOCK_STREAM, 0), 12)
        r = fn(102, 1, page + 256, 0)
        print(f"  i386 socketcall(SYS_SOCKET, AF_INET) via int 0x80 -> {r} ({'an AF_INET socket fd: BYPASS' if r >= 0 else os.strerror(-r)})")
    elif name == "normal":
        import hashlib
        import json

        a, b = socket.socketpair()
        a.send(b"hi")
        print(f"  normal work ok: {json.dumps({'h': hashlib.sha256(b.recv(2)).hexdigest()[:8]})}")
    sys.stdout.flush()


def run(name, arch_check=True):
    pid = os.fork()
    if pid == 0:
        try:
            scenario(name, arch_check)
        finally:
            sys.stdout.flush()
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        how = f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    else:
        how = f"exit {os.WEXITSTATUS(status)}"
    print(f"{name:18s} arch_check={arch_check!s:5s}: child {how}")


if __name__ == "__main__":
    for name in ("normal", "execve", "socket_inet", "socket_unix", "x32_execve", "i386_socketcall"):
        run(name)
    print("--- same filter without the arch check:")
    run("i386_socketcall", arch_check=False)
