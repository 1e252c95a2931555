"""Finding our own cgroups (v1, v2, hybrid, inside a container) and the fallback when none is writable.

The limits themselves are enforced by the kernel: tests/security/test_worker_jail.py
shows a worker killed by its memory cgroup and its cgroups removed with the pool."""

from __future__ import annotations

import pytest

from runtime.workers.cgroups import CgroupLimits, CgroupSlots, CgroupUnavailable, Hierarchy, find_hierarchies

HYBRID_MOUNTS = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
HYBRID_SELF = """\
9:name=systemd:/
8:pids:/
4:memory:/process_api/63714695
1:cpu:/
2:cpuacct:/
0::/
"""


def test_hybrid_v1_hierarchies_under_our_own_cgroups():
    found = find_hierarchies(HYBRID_MOUNTS, HYBRID_SELF)
    assert found == [
        Hierarchy(1, ("cpu",), "/sys/fs/cgroup/cpu"),
        Hierarchy(1, ("memory",), "/sys/fs/cgroup/memory/process_api/63714695"),
        Hierarchy(1, ("pids",), "/sys/fs/cgroup/pids"),
    ]


def test_combined_cpu_controllers_and_a_container_mount_root():
    mounts = (
        "32 31 0:29 /docker/abc /sys/fs/cgroup/cpu,cpuacct ro,nosuid - cgroup cgroup rw,cpu,cpuacct\n"
        "35 31 0:32 /docker/abc /sys/fs/cgroup/memory ro,nosuid - cgroup cgroup rw,memory\n"
    )
    self_cgroup = "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc/sub\n"
    assert find_hierarchies(mounts, self_cgroup) == [
        Hierarchy(1, ("cpu",), "/sys/fs/cgroup/cpu,cpuacct/sub"),
        Hierarchy(1, ("memory",), "/sys/fs/cgroup/memory"),
    ]


def test_pure_v2_uses_the_controllers_it_offers(tmp_path):
    own = tmp_path / "sys/fs/cgroup/system.slice/logic.service"
    own.mkdir(parents=True)
    (own / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    mounts = "25 22 0:23 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
    found = find_hierarchies(mounts, "0::/system.slice/logic.service\n", sys_root=str(tmp_path))
    assert found == [Hierarchy(2, ("memory", "pids", "cpu"), str(own))]


def test_v2_without_our_controllers_is_no_hierarchy(tmp_path):
    (tmp_path / "sys/fs/cgroup/unified").mkdir(parents=True)
    (tmp_path / "sys/fs/cgroup/unified/cgroup.controllers").write_text("hugetlb\n")
    mounts = "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
    assert find_hierarchies(mounts, "0::/\n", sys_root=str(tmp_path)) == []


def test_no_cgroup_mounted_at_all():
    assert find_hierarchies("22 1 0:21 / /proc rw - proc proc rw\n", "0::/\n") == []


def test_a_hierarchy_that_is_not_writable_is_a_clear_reason(tmp_path):
    missing = tmp_path / "no-such-cgroup"
    limits = CgroupLimits(memory_mb=64, pids_max=4, cpu_percent=100)
    with pytest.raises(CgroupUnavailable, match=r"^not writable \(.*no-such-cgroup: No such file or directory\)$"):
        CgroupSlots.open(limits, [Hierarchy(1, ("memory",), str(missing))])
    with pytest.raises(CgroupUnavailable, match="no cgroup hierarchy with a memory, pids or cpu controller"):
        CgroupSlots.open(limits, [])
