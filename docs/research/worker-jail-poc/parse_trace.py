import collections, glob, re, sys
pat = re.compile(r"^\d\d:\d\d:\d\d\.\d+ (?:<\.\.\. )?([a-z0-9_]+)[\( ]")
post = collections.Counter(); pre = collections.Counter(); errs = collections.Counter(); nworkers = 0
examples = collections.defaultdict(list)
for path in glob.glob(sys.argv[1] + "/*"):
    lines = open(path, errors="replace").read().splitlines()
    if not any("PR_SET_DUMPABLE" in l for l in lines):
        continue  # the zygote itself
    nworkers += 1
    confined = False
    for l in lines:
        m = pat.match(l)
        if not m or "resumed>" in l and l.split()[1] == "<...":
            pass
        if not m:
            continue
        name = m.group(1)
        if not confined:
            pre[name] += 1
            if name == "prlimit64" and "RLIMIT_AS" in l:
                confined = True
            continue
        post[name] += 1
        if re.search(r"= -1 E[A-Z]+", l):
            errs[(name, re.search(r"= -1 (E[A-Z]+)", l).group(1))] += 1
        if len(examples[name]) < 2:
            examples[name].append(l[16:150])
print("worker processes:", nworkers)
print("confine (fork..RLIMIT_AS):", " ".join(f"{k}:{v}" for k, v in sorted(pre.items())))
print("post-confine syscalls:")
for k, v in post.most_common():
    print(f"  {v:7d} {k:18s} {examples[k][0]}")
print("errors:", dict(errs))
