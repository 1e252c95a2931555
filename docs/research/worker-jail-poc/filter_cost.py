"""Per-syscall cost of a ~100-rule linear allowlist (the kernel's seccomp action cache
makes constant-ALLOW syscalls skip the BPF program; an arg-checked one runs it)."""
import os, socket, sys, time
sys.path.insert(0, "/tmp/jail-research")
import bpf_poc as b
def allowlist(n_rules, argcheck_getppid=False):
    prog = [b.stmt(b.BPF_LD | b.BPF_W | b.BPF_ABS, b.OFF_ARCH), b.jump(b.BPF_JMP | b.BPF_JEQ | b.BPF_K, b.AUDIT_ARCH_X86_64, 1, 0),
            b.stmt(b.BPF_RET | b.BPF_K, b.RET_KILL_PROCESS), b.stmt(b.BPF_LD | b.BPF_W | b.BPF_ABS, b.OFF_NR)]
    if argcheck_getppid:  # getppid(110): look at arg0 (meaningless, but defeats the cache)
        prog += [b.jump(b.BPF_JMP | b.BPF_JEQ | b.BPF_K, 110, 0, 3), b.stmt(b.BPF_LD | b.BPF_W | b.BPF_ABS, 16),
                 b.jump(b.BPF_JMP | b.BPF_JEQ | b.BPF_K, 12345, 0, 200), b.stmt(b.BPF_LD | b.BPF_W | b.BPF_ABS, b.OFF_NR)]
    # n_rules dummy syscall numbers (1000+) that never match, then allow all: worst case walks them all
    for i in range(n_rules):
        prog.append(b.jump(b.BPF_JMP | b.BPF_JEQ | b.BPF_K, 1000 + i, 0, 0))
    prog.append(b.stmt(b.BPF_RET | b.BPF_K, b.RET_ALLOW))
    if argcheck_getppid:
        prog[6] = b.jump(b.BPF_JMP | b.BPF_JEQ | b.BPF_K, 12345, len(prog) - 7 - 1, len(prog) - 7 - 1)
    return prog
def bench(label, prog):
    r, w = os.pipe()
    if os.fork() == 0:
        if prog: b.install(prog)
        getppid = os.getppid; n = 300000
        t = time.perf_counter()
        for _ in range(n): getppid()
        dt = (time.perf_counter() - t) / n * 1e9
        os.write(w, f"{label:45s} {dt:6.0f} ns per getppid()\n".encode()); os._exit(0)
    os.wait(); print(os.read(r, 200).decode(), end="")
bench("no filter", None)
bench("100-rule filter (cacheable allow)", allowlist(100))
bench("100-rule filter, getppid arg-checked", allowlist(100, True))
