#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Bootstrap wall time on the Talos simulator with the real talosctl, for several cluster sizes.

For each size N (3 control planes + N-3 workers at 127.0.32.11..): start the simulator, gen config,
apply-config --insecure to every node (in parallel), wait for mutual TLS on all nodes (one talosctl
call per round covering every node), bootstrap, fetch the kubeconfig and wait until kubectl lists
N Ready nodes. Also times single talosctl calls covering every node (version, get machinestatus,
etcd members). Writes bench/results/talos_sim_bootstrap.json.

Usage: bench/talos_sim_bootstrap.py [--sizes 5 15]
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(os.environ.get("HOMECLUSTER_CACHE", Path.home() / ".cache" / "homecluster")).expanduser() / "bin"
RUN = REPO / "lab" / "talos_sim" / "run"
ADMIN = "127.0.0.1:50095"


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(args), capture_output=True, text=True, check=False, timeout=900)
    if check and proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)}: rc {proc.returncode}\n{proc.stdout}{proc.stderr}")
    return proc


def timed(fn) -> float:
    start = time.monotonic()
    fn()
    return round(time.monotonic() - start, 2)


def until(fn, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not fn():
        if time.monotonic() > deadline:
            raise SystemExit("timed out")
        time.sleep(0.2)


def bench(size: int) -> dict:
    cps = [f"127.0.32.{11 + i}" for i in range(3)]
    workers = [f"127.0.32.{14 + i}" for i in range(size - 3)]
    everyone = ",".join(cps + workers)
    with tempfile.TemporaryDirectory() as tmp:
        state, work = Path(tmp) / "sim", Path(tmp) / "cfg"
        nodes = [f"cp{i + 1}={a}" for i, a in enumerate(cps)] + [f"w{i + 1}={a}" for i, a in enumerate(workers)]
        args = [str(RUN), "up", "--dir", str(state), "--admin", ADMIN]
        for n in nodes:
            args += ["--node", n]
        res: dict = {"nodes": size, "controlplanes": 3, "workers": size - 3}
        res["sim_up_s"] = timed(lambda: sh(*args))
        try:
            talosctl = str(BIN / "talosctl")
            sh(talosctl, "gen", "config", "bench", "https://127.0.32.10:6443", "--output-dir", str(work))
            tc = [talosctl, "--talosconfig", str(work / "talosconfig"), "-e", cps[0]]
            start = time.monotonic()

            def apply(addr: str) -> None:
                cfg = "controlplane.yaml" if addr in cps else "worker.yaml"
                sh(talosctl, "apply-config", "--insecure", "-n", addr, "-f", str(work / cfg))

            with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(apply, cps + workers))
            res["apply_all_s"] = round(time.monotonic() - start, 2)
            until(lambda: sh(*tc, "-n", everyone, "version", "--short", check=False).returncode == 0)
            res["all_mtls_s"] = round(time.monotonic() - start, 2)
            t_boot = time.monotonic()
            sh(*tc, "-n", cps[0], "bootstrap")
            res["bootstrap_rpc_s"] = round(time.monotonic() - t_boot, 2)
            sh(*tc, "-n", cps[0], "kubeconfig", str(work / "kubeconfig"), "--merge=false")
            kubectl = [str(BIN / "kubectl"), "--kubeconfig", str(work / "kubeconfig")]

            def all_ready() -> bool:
                p = sh(*kubectl, "get", "nodes", "--no-headers", check=False)
                return p.returncode == 0 and sum(" Ready " in line for line in p.stdout.splitlines()) == size

            until(all_ready)
            res["bootstrap_to_all_nodes_ready_s"] = round(time.monotonic() - t_boot, 2)
            res["total_apply_to_ready_s"] = round(time.monotonic() - start, 2)
            res["one_call_version_all_nodes_s"] = timed(lambda: sh(*tc, "-n", everyone, "version", "--short"))
            res["one_call_machinestatus_all_nodes_s"] = timed(
                lambda: sh(*tc, "-n", everyone, "get", "machinestatus", "-o", "json"))
            res["one_call_etcd_members_cps_s"] = timed(lambda: sh(*tc, "-n", ",".join(cps), "etcd", "members"))
        finally:
            sh(str(RUN), "down", "--dir", str(state), check=False)
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 15])
    args = parser.parse_args()
    results = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "runs": [bench(n) for n in args.sizes]}
    out = REPO / "bench" / "results" / "talos_sim_bootstrap.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
