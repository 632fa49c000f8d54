# SPDX-License-Identifier: GPL-3.0-or-later
"""Fault matrix, storage case: Ceph loses its monitor quorum in the middle of the storage layer.

The only monitor of the real cluster is frozen (SIGSTOP: it holds its sockets but answers nothing,
as a monitor without quorum does). ceph_pool then fails within connect_timeout with a message
that says the monitors have no quorum (or are unreachable) and changes nothing; once the monitor
is back (SIGCONT) the same task creates the pool once, and a rerun changes nothing.
"""
from __future__ import annotations

import os
import signal
from pathlib import Path


def mon_pid(cluster) -> int:
    pid_file = next(p for p in cluster.pid_files() if "mon" in p.name)
    return int(Path(pid_file).read_text().strip())


def test_lost_quorum_is_named_then_the_rerun_converges(ceph_cluster, ceph_args, run_module):
    pool = {**ceph_args, "name": "faults-quorum", "size": 3, "min_size": 2, "application": "rbd",
            "connect_timeout": 4, "command_timeout": 20}
    pid = mon_pid(ceph_cluster)
    os.kill(pid, signal.SIGSTOP)
    try:
        res = run_module("ceph_pool", pool, expect_fail=True)
    finally:
        os.kill(pid, signal.SIGCONT)
    msg = res["msg"]
    assert "quorum" in msg and ("connect_timeout=4" in msg or "command_timeout=20" in msg), msg
    assert "faults-quorum" not in ceph_cluster.ceph("osd", "pool", "ls", timeout=30)
    created = run_module("ceph_pool", {**pool, "connect_timeout": 30})
    assert created["changed"]
    assert ceph_cluster.ceph("osd", "pool", "ls", timeout=30).split().count("faults-quorum") == 1
    again = run_module("ceph_pool", {**pool, "connect_timeout": 30})
    assert not again["changed"], again
    run_module("ceph_pool", {**pool, "connect_timeout": 30, "state": "absent", "allow_delete": True})
