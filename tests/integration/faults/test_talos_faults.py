# SPDX-License-Identifier: GPL-3.0-or-later
"""Fault matrix, Talos cases on the Talos simulator with the real talosctl: a node rebooting during
the health wait (the wait rides it out), and a node that does not come back within the wait (the
error names the node, why, and what to do; the rerun, once it is back, converges).

The simulator runs on 127.0.64.31-32 with its admin API on 127.0.0.1:50130 (the fault block), a
control plane bootstrapped without Kubernetes (--no-kube) and a 3 s boot delay, so a reboot is seen.
"""
from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from modrun import REPO_ROOT, TOOL_BIN, run_module, tool

CP, W1 = "127.0.64.31", "127.0.64.32"
ADMIN = "127.0.0.1:50130"
RUN = REPO_ROOT / "lab" / "talos_sim" / "run"


def talosctl(cfg: Path, *args, check=True):
    return subprocess.run([tool("talosctl"), "--talosconfig", str(cfg / "talosconfig"), "-e", CP, *args],
                          capture_output=True, text=True, check=check, timeout=120)


def admin(path, body=None):
    req = urllib.request.Request(f"http://{ADMIN}{path}", data=json.dumps(body).encode() if body else None,
                                 headers={"Content-Type": "application/json"}, method="POST" if body else "GET")
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback admin API
        return json.loads(resp.read() or b"null")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    talos = tool("talosctl")
    if not (TOOL_BIN / "talos-sim").exists() and not (REPO_ROOT / "lab" / "talos_sim" / "go.mod").exists():
        pytest.skip("talos-sim is not built yet (make tools)")
    state = tmp_path_factory.mktemp("talos-faults")
    sim = state / "sim"
    subprocess.run([str(RUN), "up", "--dir", str(sim), "--admin", ADMIN, "--node", f"cp1={CP}", "--node",
                    f"w1={W1}", "--no-kube", "--boot-delay", "3s"], check=True, capture_output=True, timeout=300)
    cfg = state / "cfg"
    try:
        subprocess.run([talos, "gen", "config", "faults", "https://127.0.64.30:6443", "--output-dir", str(cfg)],
                       check=True, capture_output=True)
        for node, kind in ((CP, "controlplane"), (W1, "worker")):
            subprocess.run([talos, "apply-config", "--insecure", "-n", node, "-e", node, "-f",
                            str(cfg / f"{kind}.yaml")], check=True, capture_output=True, timeout=60)
        subprocess.run([talos, "--talosconfig", str(cfg / "talosconfig"), "config", "endpoint", CP], check=True,
                       capture_output=True)
        for _attempt in range(120):
            if talosctl(cfg, "-n", f"{CP},{W1}", "version", "--short", check=False).returncode == 0:
                break
            time.sleep(0.5)
        talosctl(cfg, "-n", CP, "bootstrap")
        ready = health(cfg, timeout=120)
        assert not ready.get("failed"), ready
        yield cfg
    finally:
        subprocess.run([str(RUN), "down", "--dir", str(sim)], check=False, capture_output=True, timeout=60)


def health(cfg, timeout):
    return run_module("talos_health", {"nodes": [CP, W1], "talosconfig": str(cfg / "talosconfig"),
                                       "timeout": timeout, "interval": 1}, expect_fail=None)


def stage(cfg, node):
    out = talosctl(cfg, "-n", node, "get", "machinestatus", "-o", "json", check=False)
    return json.loads(out.stdout)["spec"]["stage"] if out.returncode == 0 else None


def test_a_node_rebooting_during_the_health_wait_is_waited_for(cluster):
    talosctl(cluster, "-n", W1, "reboot", "--wait=false")
    assert stage(cluster, W1) in (None, "rebooting", "booting"), "the reboot was not under way"
    res = health(cluster, timeout=90)
    assert not res.get("failed"), res
    assert res["rounds"] > 1, "the wait never saw the rebooting node"
    assert res["nodes"][W1]["stage"] == "running" and res["nodes"][W1]["ready"]


def test_a_node_that_does_not_come_back_is_named_then_the_rerun_converges(cluster):
    before = admin("/nodes")
    admin("/power", {"address": W1, "state": "off"})
    try:
        res = health(cluster, timeout=6)
        assert res.get("failed"), res
        assert W1 in res["msg"] and CP not in res["msg"].split(":", 1)[1], res["msg"]
        assert "1 of 2 node(s) not ready" in res["msg"]
        assert "powered on" in res["msg"] and "then run again" in res["msg"], res["msg"]
    finally:
        admin("/power", {"address": W1, "state": "on"})
    res = health(cluster, timeout=90)
    assert not res.get("failed"), res
    after = admin("/nodes")
    applies = {n["address"]: {k: v for k, v in n["calls"].items() if "Apply" in k or "Bootstrap" in k}
               for n in before["nodes"]}
    assert applies[W1], "the simulator counted no ApplyConfiguration call: the check below would be vacuous"
    assert {n["address"]: {k: v for k, v in n["calls"].items() if "Apply" in k or "Bootstrap" in k}
            for n in after["nodes"]} == applies, "the wait must not re-apply a config or bootstrap again"
    assert after["cluster"] == before["cluster"], "the cluster's identity changed"
