# SPDX-License-Identifier: GPL-3.0-or-later
"""lab/ceph/cluster itself: the cluster answers, status works, and daemons are tracked."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]


def test_status_reports_daemons_and_health(ceph_cluster):
    proc = subprocess.run([str(REPO_ROOT / "lab/ceph/cluster"), "status", "--dir", str(ceph_cluster.dir)],
                          capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "daemons running: 5" in proc.stdout
    assert "health: HEALTH_" in proc.stdout
    assert len(ceph_cluster.own_pids()) == 5


def test_rados_round_trip(ceph_cluster, tmp_path):
    ceph_cluster.ceph("osd", "pool", "create", "radostest", "8")
    src = tmp_path / "obj"
    src.write_bytes(b"homecluster")
    base = ["rados", "--conf", str(ceph_cluster.conf), "--pool", "radostest"]
    subprocess.run([*base, "put", "o1", str(src)], check=True, timeout=60)
    out = subprocess.run([*base, "get", "o1", "-"], check=True, capture_output=True, timeout=60).stdout
    assert out == b"homecluster"
    ceph_cluster.ceph("osd", "pool", "rm", "radostest", "radostest", "--yes-i-really-really-mean-it")
