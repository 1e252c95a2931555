import ctypes, os, time
libc = ctypes.CDLL(None, use_errno=True)
PR_CAPBSET_READ, PR_CAPBSET_DROP = 23, 24
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
last = int(open("/proc/sys/kernel/cap_last_cap").read())
def caps():
    return {k: v.strip() for k, v in (l.split(":", 1) for l in open("/proc/self/status")) if k.startswith("Cap")}
pid = os.fork()
if pid == 0:
    print("before:", caps())
    t = time.perf_counter()
    for cap in range(last + 1):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            print("drop", cap, "failed:", os.strerror(ctypes.get_errno()))
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    dt = time.perf_counter() - t
    print(f"after dropping 0..{last} ({1e6*dt:.1f} us):", caps(), "CAPBSET_READ(CAP_SYS_ADMIN=21) ->", libc.prctl(PR_CAPBSET_READ, 21, 0, 0, 0))
    # still root with full effective caps: the bounding set only limits what exec can grant
    print("as root, drop again (needs CAP_SETPCAP, still effective):", libc.prctl(PR_CAPBSET_DROP, 0, 0, 0, 0))
    os.setgroups([]); os.setresgid(1900000077, 1900000077, 1900000077); os.setresuid(1900000077, 1900000077, 1900000077)
    print("after setresuid(1900000077):", caps())
    os._exit(0)
os.waitpid(pid, 0)
print("parent unchanged:", caps()["CapBnd"])
