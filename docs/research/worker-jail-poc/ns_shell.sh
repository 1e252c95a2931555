set -e
R=/tmp/jail-research/newroot
mount --make-rprivate /
mount -t tmpfs -o size=1m,mode=0755 tmpfs $R
for d in /usr /root/.pyenv/versions/3.11.7 /work/main/.venv/lib/python3.11/site-packages /work/main/runtime /work/main/store; do
  mkdir -p $R$d; mount --bind -o ro $d $R$d
done
ln -s usr/lib $R/lib; ln -s usr/lib64 $R/lib64; ln -s usr/bin $R/bin
mkdir -p $R/tmp $R/proc $R/work/main/.venv/bin $R/.old
cp -P /work/main/.venv/bin/python* $R/work/main/.venv/bin/; cp /work/main/.venv/pyvenv.cfg $R/work/main/.venv/
mount -t tmpfs -o size=64k,mode=1777,nosuid,nodev,noexec tmpfs $R/tmp
mount -t proc proc $R/proc
cd $R; pivot_root . .old; umount -l /.old; rmdir /.old
mount -o remount,ro,bind /
findmnt -o TARGET,FSTYPE,OPTIONS
/work/main/.venv/bin/python -c 'import os,sys; print("python", sys.version.split()[0], "pid", os.getpid(), "procs", [p for p in os.listdir("/proc") if p.isdigit()], "root", sorted(os.listdir("/")))'
