# SPDX-License-Identifier: GPL-3.0-or-later
"""talos_reset with the real talosctl against the Talos simulator: 3 control planes and a worker,
bootstrapped without Kubernetes (--no-kube).

In order, on one cluster: check mode changes nothing; the worker is reset (powered off) and the
rerun is a no-op; cp3 is refused while cp2 is powered off, naming cp2; with cp2 back cp3 leaves
etcd (2 members, both healthy); cp3, reinstalled and then dead (powered off), is refused without
remove_member and removed from etcd with it; cp2 leaves; cp1, the last member, is refused.

The simulator runs on 127.0.76.11-14 with its admin API on 127.0.0.1:50140.
"""
from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from modrun import REPO_ROOT, run_module, tool

CP1, CP2, CP3, W1 = "127.0.76.11", "127.0.76.12", "127.0.76.13", "127.0.76.14"
CPS = [CP1, CP2, CP3]
ADMIN = "127.0.0.1:50140"
RUN = REPO_ROOT / "lab" / "talos_sim" / "run"


def admin(path, body=None):
    req = urllib.request.Request(f"http://{ADMIN}{path}", data=json.dumps(body).encode() if body else None,
                                 headers={"Content-Type": "application/json"}, method="POST" if body else "GET")
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback admin API
        return json.loads(resp.read() or b"null")


def nodes():
    return {n["address"]: n for n in admin("/nodes")["nodes"]}


def talosctl(cfg: Path, *args, check=True):
    return subprocess.run([tool("talosctl"), "--talosconfig", str(cfg / "talosconfig"), "-e", CP1, *args],
                          capture_output=True, text=True, check=check, timeout=60)


def wait_for(what, probe, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}: {admin('/nodes')}")
        time.sleep(0.2)


def etcd_up(cfg, *cps):
    return talosctl(cfg, "-n", ",".join(cps), "etcd", "status", check=False).returncode == 0


def install(cfg, node, kind):
    subprocess.run([tool("talosctl"), "apply-config", "--insecure", "-n", node, "-e", node, "-f",
                    str(cfg / f"{kind}.yaml")], check=True, capture_output=True, timeout=60)
    wait_for(f"{node} to answer with its config",
             lambda: talosctl(cfg, "-n", node, "version", "--short", check=False).returncode == 0)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    talos = tool("talosctl")
    state = tmp_path_factory.mktemp("talos-reset")
    sim = state / "sim"
    node_args = []
    for name, addr in (("cp1", CP1), ("cp2", CP2), ("cp3", CP3), ("w1", W1)):
        node_args += ["--node", f"{name}={addr}"]
    subprocess.run([str(RUN), "up", "--dir", str(sim), "--admin", ADMIN, *node_args, "--no-kube",
                    "--boot-delay", "300ms", "--install-delay", "300ms"], check=True, capture_output=True, timeout=600)
    cfg = state / "cfg"
    try:
        subprocess.run([talos, "gen", "config", "reset", "https://127.0.76.10:6443", "--output-dir", str(cfg)],
                       check=True, capture_output=True)
        for node, kind in ((CP1, "controlplane"), (CP2, "controlplane"), (CP3, "controlplane"), (W1, "worker")):
            install(cfg, node, kind)
        talosctl(cfg, "-n", CP1, "bootstrap")
        wait_for("three healthy etcd members", lambda: etcd_up(cfg, *CPS))
        yield cfg
    finally:
        subprocess.run([str(RUN), "down", "--dir", str(sim)], check=False, capture_output=True, timeout=60)


def reset(cfg, node, check=False, **args):
    params = {"node": node, "control_planes": CPS, "talosconfig": str(cfg / "talosconfig"), "endpoints": CPS,
              "timeout": 30, **args}
    return run_module("talos_reset", params, check=check, diff=True, expect_fail=None)


def members(cfg):
    out = talosctl(cfg, "-n", CP1, "etcd", "members").stdout
    return sorted(line.split()[2] for line in out.splitlines()[1:] if line.strip())


def test_check_mode_changes_nothing(cluster):
    r = reset(cluster, CP3, check=True)
    assert not r.get("failed"), r
    assert r["changed"] and r["control_plane"] and r["etcd_member"]
    assert r["etcd_members_before"] == ["cp1", "cp2", "cp3"] and r["etcd_members_after"] == ["cp1", "cp2"]
    assert r["diff"]["after"]["node_state"] == "unreachable"
    now = nodes()
    assert all("Reset" not in n["calls"] for n in now.values()), now
    assert now[CP3]["phase"] == "running" and now[CP3]["etcd_member"]


def test_worker_reset_then_the_rerun_changes_nothing(cluster):
    r = reset(cluster, W1)
    assert not r.get("failed"), r
    assert r["changed"] and r["control_plane"] is False and r["hostname"]
    w1 = nodes()[W1]
    assert w1["calls"].get("Reset") == 1 and w1["power"] == "off" and not w1["installed"], w1
    again = reset(cluster, W1)
    assert not again.get("failed"), again
    assert again["changed"] is False and again["plan"] == [] and again["node_state"] == "unreachable"
    assert nodes()[W1]["calls"].get("Reset") == 1


def test_control_plane_refused_while_another_member_is_off(cluster):
    admin("/power", {"address": CP2, "state": "off"})
    try:
        r = reset(cluster, CP3)
        assert r.get("failed"), r
        assert f"refusing to reset control plane {CP3} (cp3)" in r["msg"], r["msg"]
        assert f"cp2 ({CP2}:" in r["msg"] and "is down; bring it back" in r["msg"], r["msg"]
        cp3 = nodes()[CP3]
        assert "Reset" not in cp3["calls"] and cp3["etcd_member"] and cp3["phase"] == "running"
    finally:
        admin("/power", {"address": CP2, "state": "on"})
    wait_for("cp2's etcd to be back", lambda: etcd_up(cluster, *CPS))


def test_control_plane_leaves_etcd_and_the_rest_stays_healthy(cluster):
    r = reset(cluster, CP3)
    assert not r.get("failed"), r
    assert r["changed"] and r["etcd_members_before"] == ["cp1", "cp2", "cp3"]
    assert r["etcd_members_after"] == ["cp1", "cp2"] and r["etcd_errors"] == {}
    assert members(cluster) == ["cp1", "cp2"]
    assert etcd_up(cluster, CP1, CP2)
    report = admin("/etcd")
    assert report["members"] == 2 and report["up"] == 2 and report["has_quorum"], report
    assert nodes()[CP3]["power"] == "off"
    again = reset(cluster, CP3)
    assert not again.get("failed") and again["changed"] is False, again


def test_dead_member_needs_remove_member(cluster):
    # cp3 comes back from its wipe, is installed again (joins etcd), then dies
    admin("/power", {"address": CP3, "state": "on"})
    wait_for("cp3 in maintenance", lambda: nodes()[CP3]["phase"] == "maintenance")
    install(cluster, CP3, "controlplane")
    wait_for("three healthy etcd members", lambda: etcd_up(cluster, *CPS) and len(members(cluster)) == 3)
    admin("/power", {"address": CP3, "state": "off"})

    r = reset(cluster, CP3)
    assert r.get("failed") and "still an etcd member" in r["msg"] and "remove_member=true" in r["msg"], r
    assert len(members(cluster)) == 3

    r = reset(cluster, CP3, remove_member=True)
    assert not r.get("failed"), r
    assert r["changed"] and r["node_state"] == "unreachable" and r["etcd_members_after"] == ["cp1", "cp2"]
    assert members(cluster) == ["cp1", "cp2"] and etcd_up(cluster, CP1, CP2)
    again = reset(cluster, CP3, remove_member=True)
    assert not again.get("failed") and again["changed"] is False, again


def test_down_to_one_member_then_the_last_is_refused(cluster):
    r = reset(cluster, CP2, reboot=True)
    assert not r.get("failed"), r
    assert r["etcd_members_after"] == ["cp1"]
    wait_for("cp2 in maintenance", lambda: nodes()[CP2]["phase"] == "maintenance")
    assert members(cluster) == ["cp1"] and etcd_up(cluster, CP1)

    r = reset(cluster, CP1)
    assert r.get("failed"), r
    assert "cp1 is the last etcd member" in r["msg"], r["msg"]
    cp1 = nodes()[CP1]
    assert "Reset" not in cp1["calls"] and cp1["etcd_member"] and cp1["phase"] == "running"
