# SPDX-License-Identifier: GPL-3.0-or-later
"""ceph_osd against a real Ceph cluster whose OSDs sit on three CRUSH hosts (w1, w2, w3).

The cluster is this module's own (lab/ceph/cluster up --hosts w1,w2,w3 on 127.0.77.1, ports
16789/13300), since removing OSDs would change the session cluster the other tests share. A pool
keeps two copies on distinct hosts; the story: a pool whose rule spreads over OSDs is refused first,
check mode changes nothing, w3 is drained, the purge waits for its daemon (the message says how to
stop it), w3 powered off is purged and its bucket removed, a rerun changes nothing, and removing w2
next is refused before any change (one host would remain for two copies).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from cluster import Cluster  # lab/ceph, put on sys.path by conftest.py

REPO_ROOT = Path(__file__).resolve().parents[3]
CLUSTER = str(REPO_ROOT / "lab/ceph/cluster")
ADDRESS, V1_PORT, V2_PORT = "127.0.77.1", "16789", "13300"
POOL = "itest-osd"


@pytest.fixture(scope="module")
def hosts_cluster(tmp_path_factory):
    for tool in ("ceph", "ceph-mon", "ceph-osd", "ceph-mgr"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} missing: bash lab/tools/apt-packages.sh installs the Ceph packages")
    directory = tmp_path_factory.mktemp("ceph-hosts")
    proc = subprocess.run([CLUSTER, "up", "--dir", str(directory), "--address", ADDRESS, "--v1-port", V1_PORT,
                           "--v2-port", V2_PORT, "--osds", "3", "--hosts", "w1,w2,w3"],
                          capture_output=True, text=True, check=False, timeout=180)
    assert proc.returncode == 0, f"cluster up failed: {proc.stderr}"
    cluster = Cluster(str(directory))
    try:
        yield cluster
    finally:
        subprocess.run([CLUSTER, "down", "--dir", str(directory)], capture_output=True, text=True, check=False,
                       timeout=60)
        assert cluster.own_pids() == [], "ceph daemons left running after down"


@pytest.fixture
def osd_args(hosts_cluster):
    return {"ceph_conf": str(hosts_cluster.conf), "keyring": str(hosts_cluster.keyring), "connect_timeout": 10,
            "poll_interval": 1}


def osd_args_conn(osd_args):
    """The connection options alone (for ceph_pool)."""
    return {k: v for k, v in osd_args.items() if k != "poll_interval"}


def cj(cluster: Cluster, *args):
    return json.loads(cluster.ceph(*args, "--format", "json"))


def tree(cluster):
    """Hosts and their OSDs with up/in, as `ceph osd tree` and `ceph osd dump` say."""
    nodes = cj(cluster, "osd", "tree")["nodes"]
    states = {o["osd"]: (o["up"], o["in"]) for o in cj(cluster, "osd", "dump")["osds"]}
    return {n["name"]: sorted((c, states.get(c)) for c in n.get("children", [])) for n in nodes if n["type"] == "host"}


def power(cluster, host, state):
    started = time.monotonic()
    proc = subprocess.run([CLUSTER, "host-power", "--dir", str(cluster.dir), host, state],
                          capture_output=True, text=True, check=False, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - started < 10, f"host-power {host} {state} took {time.monotonic() - started:.1f}s"
    return proc.stdout


def test_placement_and_host_power(hosts_cluster, tmp_path):
    assert json.loads(hosts_cluster.hosts_file.read_text()) == {"0": "w1", "1": "w2", "2": "w3"}
    assert tree(hosts_cluster) == {"w1": [(0, (1, 1))], "w2": [(1, (1, 1))], "w3": [(2, (1, 1))]}
    assert "osds []" in power(hosts_cluster, "cp1", "off"), "a node without OSDs is a no-op"
    assert "osds []" in power(hosts_cluster, "w1", "on"), "a running OSD is left alone"
    proc = subprocess.run([CLUSTER, "host-power", "--dir", str(tmp_path), "w1", "off"], capture_output=True,
                          text=True, check=False, timeout=30)
    assert proc.returncode == 0, "a cluster dir without hosts.json is a no-op"
    assert len(hosts_cluster.own_pids()) == 5


def test_remove_a_node_then_refuse_the_last_copy(hosts_cluster, osd_args, run_module):
    c = hosts_cluster
    c.ceph("osd", "crush", "rule", "create-replicated", "byhost", "default", "host")
    run_module("ceph_pool", {**osd_args_conn(osd_args), "name": POOL, "size": 2, "min_size": 1, "pg_num": 8,
                             "pg_autoscale_mode": "off", "crush_rule": "byhost", "application": "rbd"})
    before = tree(c)

    # the manager's pool keeps 3 copies on OSDs (the lab's default rule): w3 cannot go
    refused = run_module("ceph_osd", {**osd_args, "host": "w3"}, check=True, expect_fail=True)
    osd_pools = [p for p in refused["pools"] if p["failure_domain"] == "osd" and p["size"] == 3]
    assert osd_pools, refused["pools"]
    assert f"pool {osd_pools[0]['name']} (size 3, failure domain osd) would keep 2 up and in OSD(s)" in refused["msg"]
    assert "Nothing was changed" in refused["msg"] and tree(c) == before
    for pool in osd_pools:
        run_module("ceph_pool", {**osd_args_conn(osd_args), "name": pool["name"], "size": 2})

    checked = run_module("ceph_osd", {**osd_args, "host": "w3"}, check=True)
    assert checked["changed"] is True and checked["commands"] == [] and checked["osds"] == [2]
    assert checked["plan"] == ["mark osd.2 out", "wait until osd.2 safe to destroy", "wait until osd.2 down",
                               "purge osd.2", "remove CRUSH host bucket w3"]
    assert {"name": POOL, "size": 2, "failure_domain": "host", "remaining": 2} in checked["pools"]
    assert checked["diff"]["after"] == {"osds": [], "bucket_present": False}
    assert tree(c) == before, "check mode changed the cluster"

    drained = run_module("ceph_osd", {**osd_args, "host": "w3", "state": "out", "wait_timeout": 120})
    assert drained["commands"] == [["ceph", "osd", "out", "2"]]
    assert tree(c)["w3"] == [(2, (1, 0))]
    assert run_module("ceph_osd", {**osd_args, "host": "w3", "state": "out"})["changed"] is False

    waiting = run_module("ceph_osd", {**osd_args, "host": "w3", "wait_timeout": 3}, expect_fail=True)
    assert "osd.2 still up: stop the daemon" in waiting["msg"] and "rook-ceph-osd-2 to 0" in waiting["msg"]
    assert "power off the node" in waiting["msg"] and waiting["commands"] == []
    assert tree(c)["w3"] == [(2, (1, 0))], "nothing purged while the daemon runs"

    assert "osds [2]" in power(c, "w3", "off")
    removed = run_module("ceph_osd", {**osd_args, "host": "w3", "wait_timeout": 120})
    assert removed["changed"] is True
    assert removed["commands"] == [["ceph", "osd", "purge", "2", "--yes-i-really-mean-it"],
                                   ["ceph", "osd", "crush", "rm", "w3"]]
    assert removed["diff"]["after"] == {"osds": [], "bucket_present": False}
    assert "w3" not in tree(c) and 2 not in cj(c, "osd", "ls")

    again = run_module("ceph_osd", {**osd_args, "host": "w3"})
    assert again["changed"] is False and again["commands"] == [] and again["plan"] == []
    assert "osds []" in power(c, "w3", "on"), "a purged OSD is not started again"

    before = tree(c)
    last = run_module("ceph_osd", {**osd_args, "host": "w2"}, expect_fail=True)
    assert f"pool {POOL} (size 2, failure domain host) would keep 1 host(s) with an up and in OSD" in last["msg"]
    assert "Add a host with OSDs" in last["msg"] and f"ceph osd pool set {POOL} size 1" in last["msg"]
    assert last["commands"] == [] and tree(c) == before == {"w1": [(0, (1, 1))], "w2": [(1, (1, 1))]}


def test_add_a_node_then_wait_for_its_osd_and_mark_in(hosts_cluster, osd_args, run_module):
    """After w3's removal (above): w4 joins. Its OSD comes from lab/ceph/cluster --provision, Rook's stand-in."""
    c = hosts_cluster
    before = tree(c)
    checked = run_module("ceph_osd", {**osd_args, "host": "w4", "state": "in", "min_osds": 1}, check=True)
    assert checked["changed"] is False and checked["commands"] == [] and checked["osds"] == []
    assert checked["plan"] == ["wait until host w4 holds 1 OSD(s) (it holds 0; Rook creates them)",
                               "wait until the OSDs of host w4 are up and in"]
    waiting = run_module("ceph_osd", {**osd_args, "host": "w4", "state": "in", "min_osds": 1, "wait_timeout": 2},
                         expect_fail=True)
    assert "host w4 holds 0 of 1 OSD(s) (none)" in waiting["msg"] and "rook-ceph-osd-prepare" in waiting["msg"]
    assert tree(c) == before

    assert "osds []" in power(c, "w4", "on"), "without --provision a host without OSDs stays empty"
    proc = subprocess.run([CLUSTER, "host-power", "--dir", str(c.dir), "--provision", "w1,w2,w4", "w4", "on"],
                          capture_output=True, text=True, check=False, timeout=90)
    assert proc.returncode == 0, proc.stderr
    new = json.loads(proc.stdout.rsplit("osds ", 1)[1].replace("'", '"'))
    assert len(new) == 1 and new[0] not in (0, 1, 2), proc.stdout
    assert tree(c)["w4"] == [(new[0], (1, 1))]
    again = subprocess.run([CLUSTER, "host-power", "--dir", str(c.dir), "--provision", "w1,w2,w4", "w4", "on"],
                           capture_output=True, text=True, check=False, timeout=30)
    assert "osds []" in again.stdout, "a host that holds its OSD gets no second one"

    present = run_module("ceph_osd", {**osd_args, "host": "w4", "state": "in", "min_osds": 1, "wait_timeout": 60})
    assert present["changed"] is False and present["osds"] == new and present["plan"] == []

    c.ceph("osd", "out", str(new[0]))
    predicted = run_module("ceph_osd", {**osd_args, "host": "w4", "state": "in"}, check=True)
    assert predicted["changed"] is True and predicted["commands"] == []
    assert predicted["diff"]["after"]["osds"] == [{"id": new[0], "up": True, "in": True}]
    assert tree(c)["w4"] == [(new[0], (1, 0))], "check mode marked the OSD in"
    marked = run_module("ceph_osd", {**osd_args, "host": "w4", "state": "in", "min_osds": 1, "wait_timeout": 60})
    assert marked["changed"] is True and marked["commands"] == [["ceph", "osd", "in", str(new[0])]]
    assert tree(c)["w4"] == [(new[0], (1, 1))]
    assert run_module("ceph_osd", {**osd_args, "host": "w4", "state": "in", "min_osds": 1})["changed"] is False

    refused = run_module("ceph_osd", {**osd_args, "ids": [new[0]], "state": "in", "min_osds": 1}, expect_fail=True)
    assert "min_osds needs host" in refused["msg"]
