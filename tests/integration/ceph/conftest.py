# SPDX-License-Identifier: GPL-3.0-or-later
"""A real Ceph cluster (lab/ceph/cluster: 1 mon, 1 mgr, 3 memstore OSDs) for the whole session."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO_ROOT / "lab" / "ceph"))
import modrun
from cluster import Cluster

ADDRESS = os.environ.get("HOMECLUSTER_CEPH_TEST_ADDRESS", "127.0.66.1")


@pytest.fixture(scope="session")
def ceph_cluster(tmp_path_factory):
    """Start the cluster once; stop it at the end and check no daemon is left behind."""
    for tool in ("ceph", "ceph-mon", "ceph-osd", "ceph-mgr"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} missing: bash lab/tools/apt-packages.sh installs the Ceph packages")
    directory = tmp_path_factory.mktemp("ceph")
    started = time.monotonic()
    proc = subprocess.run([str(REPO_ROOT / "lab/ceph/cluster"), "up", "--dir", str(directory), "--address", ADDRESS],
                          capture_output=True, text=True, check=False, timeout=180)
    assert proc.returncode == 0, f"cluster up failed: {proc.stderr}"
    print(f"\nceph cluster HEALTH_OK in {time.monotonic() - started:.1f}s ({proc.stderr.strip()})")
    cluster = Cluster(str(directory))
    try:
        yield cluster
    finally:
        subprocess.run([str(REPO_ROOT / "lab/ceph/cluster"), "down", "--dir", str(directory)],
                       capture_output=True, text=True, check=False, timeout=60)
        assert cluster.own_pids() == [], "ceph daemons left running after down"


@pytest.fixture
def ceph_args(ceph_cluster):
    return {"ceph_conf": str(ceph_cluster.conf), "keyring": str(ceph_cluster.keyring), "connect_timeout": 10}


@pytest.fixture
def run_module():
    """Run a module of this collection in its own process, as Ansible does."""
    return modrun.run_module
