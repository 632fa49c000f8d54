# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: HomeCluster developers
"""Tests of lab/cloudflare_sim/externaldns.py with stand-in kubectl and external-dns programs
(shell scripts written here, so no cluster is needed): the command line taken from the
Deployment, the Secret-resolved environment, the loopback metrics listener, and the supervisor
starting, restarting on a changed Deployment, and stopping its process.

    python -m pytest -q lab/cloudflare_sim/test_externaldns.py
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "externaldns.py"


def deployment(args):
    return {"items": [{"metadata": {"name": "external-dns-cloudflare", "namespace": "external-dns"},
                       "spec": {"template": {"spec": {"containers": [{
                           "args": args,
                           "env": [{"name": "CF_API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "tok",
                                                                                           "key": "api-token"}}},
                                   {"name": "PLAIN", "value": "x"}]}]}}}}]}


def setup(tmp_path, args):
    cache = tmp_path / "cache"
    (cache / "bin").mkdir(parents=True)
    fakebin = tmp_path / "fakebin"
    fakebin.mkdir()
    (tmp_path / "deploy.json").write_text(json.dumps(deployment(args)))
    secret = {"data": {"api-token": base64.b64encode(b"secret-token").decode()}}
    (tmp_path / "secret.json").write_text(json.dumps(secret))
    kubectl = fakebin / "kubectl"
    kubectl.write_text(f"""#!/bin/sh
case "$*" in
  *" get deployments "*) cat {tmp_path}/deploy.json ;;
  *" get secret tok "*) cat {tmp_path}/secret.json ;;
  *) echo "unexpected: $*" >&2; exit 1 ;;
esac
""")
    extdns = cache / "bin" / "external-dns"
    extdns.write_text(f"""#!/bin/sh
echo "$@" > {tmp_path}/argv.$$
env | grep -E '^(CF_API_TOKEN|PLAIN|CLOUDFLARE_BASE_URL|SSL_CERT_FILE)=' | sort > {tmp_path}/env.$$
echo 'level=info msg="All records are already up to date"'
case "$*" in *--once*) exit 0 ;; esac
trap 'exit 0' TERM
while :; do sleep 0.1; done
""")
    for f in (kubectl, extdns):
        f.chmod(0o755)
    sim = tmp_path / "sim"
    sim.mkdir()
    (sim / "endpoint.json").write_text(json.dumps({"api": "https://127.0.40.9:1/client/v4", "host": "127.0.40.9",
                                                   "ca": str(sim / "ca.pem")}))
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("{}")
    env = {**os.environ, "HOMECLUSTER_CACHE": str(cache), "PATH": f"{fakebin}:{os.environ['PATH']}"}
    return env, sim, kubeconfig


def runs(tmp_path, prefix):
    return sorted(tmp_path.glob(prefix + ".*"), key=lambda p: p.stat().st_mtime)


def wait_for(predicate, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_once_runs_the_deployment_command_line(tmp_path):
    env, sim, kubeconfig = setup(tmp_path, ["--source=gateway-httproute", "--provider=cloudflare"])
    proc = subprocess.run([sys.executable, str(SCRIPT), "once", "--kubeconfig", str(kubeconfig), "--sim-dir", str(sim)],
                          env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    argv = runs(tmp_path, "argv")[0].read_text().split()
    assert argv == ["--source=gateway-httproute", "--provider=cloudflare", "--metrics-address=127.0.40.9:0",
                    "--kubeconfig", str(kubeconfig), "--once"]
    envs = runs(tmp_path, "env")[0].read_text().splitlines()
    assert envs == ["CF_API_TOKEN=secret-token", "CLOUDFLARE_BASE_URL=https://127.0.40.9:1/client/v4/", "PLAIN=x",
                    f"SSL_CERT_FILE={sim / 'ca.pem'}"]


def test_once_runs_an_rfc2136_instance_without_the_cloudflare_environment(tmp_path):
    args = ["--provider=rfc2136", "--rfc2136-host=127.0.0.1", "--rfc2136-port=5394"]
    env, sim, kubeconfig = setup(tmp_path, args)
    proc = subprocess.run([sys.executable, str(SCRIPT), "once", "--kubeconfig", str(kubeconfig), "--sim-dir", str(sim)],
                          env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    argv = runs(tmp_path, "argv")[0].read_text().split()
    assert argv == [*args, "--metrics-address=127.0.40.9:0", "--kubeconfig", str(kubeconfig), "--once"]
    envs = runs(tmp_path, "env")[0].read_text().splitlines()
    assert envs == ["CF_API_TOKEN=secret-token", "PLAIN=x"]


def test_once_ignores_other_providers(tmp_path):
    env, sim, kubeconfig = setup(tmp_path, ["--provider=pihole"])
    proc = subprocess.run([sys.executable, str(SCRIPT), "once", "--kubeconfig", str(kubeconfig), "--sim-dir", str(sim)],
                          env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 3 and "no external-dns Deployment" in proc.stderr
    assert not runs(tmp_path, "argv")


def test_supervisor_starts_restarts_and_stops(tmp_path):
    env, sim, kubeconfig = setup(tmp_path, ["--interval=1m", "--provider=cloudflare"])
    state = tmp_path / "state"
    cmd = [sys.executable, str(SCRIPT)]
    up = subprocess.run([*cmd, "up", "--kubeconfig", str(kubeconfig), "--sim-dir", str(sim), "--dir", str(state),
                         "--poll", "0.2"], env=env, capture_output=True, text=True, check=False)
    assert up.returncode == 0, up.stderr
    try:
        supervised(tmp_path, state)
    finally:
        down = subprocess.run([*cmd, "down", "--dir", str(state)], env=env, capture_output=True, text=True,
                              check=False)
    assert down.returncode == 0
    assert not (state / "supervisor.pid").exists()
    left = subprocess.run(["pgrep", "-f", str(env["HOMECLUSTER_CACHE"])], capture_output=True, text=True, check=False)
    assert left.stdout.strip() == "", "an external-dns process outlived the supervisor"


def supervised(tmp_path, state):
    log = state / "external-dns_external-dns-cloudflare.log"
    assert wait_for(lambda: log.exists() and "already up to date" in log.read_text())
    assert "--once" not in runs(tmp_path, "argv")[0].read_text()
    # A changed Deployment restarts the process with the new arguments.
    (tmp_path / "deploy.json").write_text(json.dumps(deployment(["--interval=2m", "--provider=cloudflare"])))
    assert wait_for(lambda: len(runs(tmp_path, "argv")) == 2)
    assert "--interval=2m" in runs(tmp_path, "argv")[1].read_text()
