# SPDX-License-Identifier: GPL-3.0-or-later
"""The real talosctl v1.14.1 against the Talos node simulator, with the lab's control plane.

gen config -> get disks/version --insecure -> apply-config --insecure -> mutual TLS -> dry-run
-> bootstrap (once) -> etcd members / services -> kubeconfig -> kubectl get nodes.
A random 127.X.Y.0/24 and a free admin port keep it apart from lab simulators and other runs.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
BIN = Path(os.environ.get("HOMECLUSTER_CACHE", Path.home() / ".cache" / "homecluster")).expanduser() / "bin"
TALOSCTL = BIN / "talosctl"
KUBECTL = BIN / "kubectl"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


NET = f"127.{random.randint(100, 199)}.{random.randint(0, 249)}."  # noqa: S311 - an address, not a secret
ADMIN = f"127.0.0.1:{_free_port()}"
CP, W1 = NET + "11", NET + "12"
ENDPOINT = f"https://{NET}10:6443"

pytestmark = [
    pytest.mark.skipif(not TALOSCTL.exists(), reason="talosctl not built yet (lab/tools/build.py)"),
    pytest.mark.skipif(shutil.which("go") is None, reason="go is needed to build the simulator"),
]


def run(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} -> rc {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def admin(path: str, body: dict | None = None, method: str | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://{ADMIN}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 - loopback admin API
        return json.load(r)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    state = tmp_path_factory.mktemp("talos-sim")
    work = tmp_path_factory.mktemp("talos-cfg")
    run(str(HERE / "run"), "up", "--dir", str(state), "--admin", ADMIN,
        "--node", f"cp1={CP}", "--node", f"w1={W1},disks=sda:20", "--install-delay", "300ms", timeout=900)
    try:
        run(str(TALOSCTL), "gen", "config", "lab", ENDPOINT, "--output-dir", str(work))
        yield {"state": state, "work": work}
    finally:
        run(str(HERE / "run"), "down", "--dir", str(state), check=False, timeout=300)


def talos(lab, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(str(TALOSCTL), "--talosconfig", str(lab["work"] / "talosconfig"), "-e", CP, *args, check=check)


def wait_for(fn, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}: {last!r}")


def test_maintenance_mode(lab):
    out = run(str(TALOSCTL), "get", "disks", "--insecure", "-n", W1, "-e", W1, "-o", "json").stdout
    disks = [json.loads(doc) for doc in out.replace("}\n{", "}\n\x00{").split("\x00")]
    assert [d["metadata"]["id"] for d in disks] == ["sda"]
    assert disks[0]["spec"]["dev_path"] == "/dev/sda"
    ver = run(str(TALOSCTL), "version", "--insecure", "-n", CP).stdout
    assert "Tag:         v1.14.1" in ver
    denied = run(str(TALOSCTL), "get", "machineconfig", "--insecure", "-n", CP, check=False)
    assert denied.returncode != 0 and "PermissionDenied" in denied.stderr


def test_apply_bootstrap_kubeconfig(lab):
    work = lab["work"]
    dry = run(str(TALOSCTL), "apply-config", "--insecure", "-n", CP, "-f", str(work / "controlplane.yaml"), "--dry-run")
    assert dry.stderr.startswith("Dry run summary:\nApplied configuration without a reboot (skipped in dry-run).\n"
                                 "Config diff:\n\n")
    run(str(TALOSCTL), "apply-config", "--insecure", "-n", CP, "-f", str(work / "controlplane.yaml"))
    run(str(TALOSCTL), "apply-config", "--insecure", "-n", W1, "-f", str(work / "worker.yaml"))

    # the nodes come back with mutual TLS; insecure access is refused in the handshake
    wait_for(lambda: talos(lab, "-n", f"{CP},{W1}", "version", "--short", check=False).returncode == 0, 30,
             "mutual TLS on both nodes")
    refused = run(str(TALOSCTL), "version", "--insecure", "-n", CP, check=False)
    assert "certificate required" in refused.stderr

    same = talos(lab, "-n", CP, "apply-config", "-f", str(work / "controlplane.yaml"),
                 "--dry-run", "--mode", "no-reboot")
    assert same.stderr.rstrip().endswith("Config diff:\n\nNo changes.")

    talos(lab, "-n", CP, "bootstrap")
    again = talos(lab, "-n", CP, "bootstrap", check=False)
    assert again.returncode != 0
    assert "AlreadyExists" in again.stderr and "etcd data directory is not empty" in again.stderr

    members = talos(lab, "-n", CP, "etcd", "members").stdout
    assert "cp1" in members and f"https://{CP}:2380" in members
    services = talos(lab, "-n", f"{CP},{W1}", "services").stdout
    assert any(line.split()[:3] == [CP, "etcd", "Running"] for line in services.splitlines())

    kubeconfig = work / "kubeconfig"
    talos(lab, "-n", CP, "kubeconfig", str(kubeconfig), "--merge=false")
    assert f"server: {ENDPOINT}" in kubeconfig.read_text()

    def listed() -> str | None:
        p = run(str(KUBECTL), "--kubeconfig", str(kubeconfig), "get", "nodes", "--no-headers", check=False)
        lines = p.stdout.splitlines() if p.returncode == 0 else []
        ready = [line.split()[0] for line in lines if line.split()[1:2] == ["Ready"]]
        return p.stdout if {"cp1", "w1"} <= set(ready) else None

    # a node is listed as soon as it is created and turns Ready when kwok's stage runs
    nodes = wait_for(listed, 240, "kubectl get nodes listing cp1 and w1 Ready")
    assert " Ready " in nodes

    calls = {n["name"]: n["calls"] for n in admin("/nodes")["nodes"]}
    assert calls["cp1"]["ApplyConfiguration"] == 1 and calls["cp1"]["Bootstrap"] == 2


def test_faults(lab):
    admin("/faults", {"type": "unreachable", "address": W1})
    try:
        out = talos(lab, "-n", W1, "version", check=False)
        assert out.returncode != 0 and "connection refused" in out.stderr
    finally:
        admin("/faults", method="DELETE")
    talos(lab, "-n", W1, "version")
    admin("/faults", {"type": "rpc_error", "address": CP, "method": "EtcdMemberList", "code": "Internal", "count": 1})
    out = talos(lab, "-n", CP, "etcd", "members", check=False)
    assert out.returncode != 0 and "code = Internal" in out.stderr
    talos(lab, "-n", CP, "etcd", "members")
