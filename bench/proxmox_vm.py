#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: HomeCluster developers
"""Converge a 6-VM inventory with the proxmox_vm role against the Proxmox VE simulator.

Runs, on a fresh simulator: --check (before anything exists), apply, apply again, --check again,
and (with --serial) the first apply once more with forks=1 on a second fresh simulator, for
comparison. For each run it records wall time, changed hosts and the simulator's call counts per
endpoint and method, and writes bench/results/proxmox_vm.json and .md.

    bench/proxmox_vm.py [--task-delay 1.0] [--port 18110] [--serial]
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIM = os.path.join(ROOT, "lab", "proxmox_sim", "run")
TOKEN = "5f0c8e2a-1b7d-4c3e-9a61-2d4b8f7e0c11"  # noqa: S105 - the simulator's lab token, not a secret
HOSTS = [  # name, node, vmid, role, address
    ("cp1", "pve1", 611, "controlplane", "127.0.21.11"),
    ("cp2", "pve2", 612, "controlplane", "127.0.21.12"),
    ("cp3", "pve3", 613, "controlplane", "127.0.21.13"),
    ("w1", "pve1", 621, "worker", "127.0.21.21"),
    ("w2", "pve2", 622, "worker", "127.0.21.22"),
    ("w3", "pve3", 623, "worker", "127.0.21.23"),
]


def inventory(path, port, simdir):
    hosts = {}
    for name, node, vmid, role, addr in HOSTS:
        hosts[name] = {"proxmox_vm_node": node, "proxmox_vm_vmid": vmid, "proxmox_vm_talos_role": role,
                       "proxmox_vm_memory": 2048 if role == "controlplane" else 1024,
                       "proxmox_vm_address": f"{addr}/24", "proxmox_vm_mac": f"BC:24:11:21:00:{vmid % 100:02d}",
                       "proxmox_vm_data_disk_size": 0 if role == "controlplane" else 50}
    inv = {"all": {"vars": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
        "proxmox_vm_api_host": "127.0.0.1", "proxmox_vm_api_port": port, "proxmox_vm_api_user": "automation@pve",
        "proxmox_vm_api_token_id": "ansible", "proxmox_vm_api_token_secret": TOKEN,
        "proxmox_vm_ca_path": os.path.join(simdir, "ca.pem"), "proxmox_vm_gateway": "127.0.21.1",
        "proxmox_vm_talos_extensions": ["siderolabs/qemu-guest-agent"], "proxmox_vm_wait_timeout": 30},
        "children": {"talos": {"hosts": hosts}}}}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(inv, f)


def sim_get(port, ca, path, method="GET"):
    ctx = ssl.create_default_context(cafile=ca)
    req = urllib.request.Request(f"https://127.0.0.1:{port}{path}", method=method)
    with urllib.request.urlopen(req, context=ctx, timeout=10) as r:  # noqa: S310 - loopback simulator
        return json.load(r)


def run_play(workdir, inv, port, ca, *, check=False, forks=20):
    play = os.path.join(workdir, "play.yml")
    with open(play, "w", encoding="utf-8") as f:
        f.write("- hosts: talos\n  gather_facts: false\n  roles:\n    - homecluster.platform.proxmox_vm\n")
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_FORKS=str(forks),
               ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_CALLBACKS_ENABLED="ansible.builtin.tree",
               ANSIBLE_CALLBACK_TREE_DIR=os.path.join(workdir, "tree"))
    cmd = ["ansible-playbook", "-i", inv, play] + (["--check"] if check else [])
    sim_get(port, ca, "/_sim/stats/reset", "POST")
    start = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT, check=False)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-5000:] + proc.stderr[-3000:])
        raise SystemExit(f"ansible-playbook failed ({proc.returncode})")
    stats = json.loads(proc.stdout[proc.stdout.index("{"):])["stats"]
    sim = sim_get(port, ca, "/_sim/stats")
    return {"wall_seconds": round(wall, 2), "changed": sum(s["changed"] for s in stats.values()),
            "changed_hosts": sorted(h for h, s in stats.items() if s["changed"]), "forks": forks,
            "api_calls": sim["total"], "write_calls": sim["writes"], "calls": sim["calls"],
            "writes": sim["write_calls"], "max_concurrent_tasks": sim["max_concurrent_tasks"],
            "load_average_1m": round(os.getloadavg()[0], 2)}


def fresh_sim(simdir, port, delay):
    subprocess.run([SIM, "down", "--dir", simdir], capture_output=True, check=False)
    subprocess.run([SIM, "up", "--dir", simdir, "--port", str(port), "--fresh", "--task-delay", str(delay),
                    "--talos-port-stub", "50000"], check=True, capture_output=True)


def markdown(result):
    lines = [f"# proxmox_vm: 6-VM inventory against the Proxmox simulator ({result['date']})", "",
             f"Simulated task duration: {result['task_delay']} s per Proxmox task. Machine: {os.cpu_count()} cores "
             "shared with other work; the 1-minute load average after each run is shown.", "",
             "| run | wall s | changed | API calls | write calls | max concurrent tasks | load |",
             "|---|---|---|---|---|---|---|"]
    for name, r in result["runs"].items():
        lines.append(f"| {name} | {r['wall_seconds']} | {r['changed']} | {r['api_calls']} | {r['write_calls']} | "
                     f"{r['max_concurrent_tasks']} | {r['load_average_1m']} |")
    for name, r in result["runs"].items():
        lines += ["", f"## {name}", "", "| calls | method and path |", "|---|---|"]
        lines += [f"| {n} | `{k}` |" for k, n in r["calls"].items()]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task-delay", type=float, default=1.0)
    ap.add_argument("--port", type=int, default=18110)
    ap.add_argument("--serial", action="store_true", help="also time the first apply with forks=1")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "proxmox_vm"))
    args = ap.parse_args()
    runs = {}
    with tempfile.TemporaryDirectory(prefix="bench-pve-") as work:
        simdir = os.path.join(work, "sim")
        ca = os.path.join(simdir, "ca.pem")
        inv = os.path.join(work, "inventory.json")
        inventory(inv, args.port, simdir)
        try:
            fresh_sim(simdir, args.port, args.task_delay)
            runs["1 check (empty cluster)"] = run_play(work, inv, args.port, ca, check=True)
            runs["2 apply"] = run_play(work, inv, args.port, ca)
            runs["3 apply again"] = run_play(work, inv, args.port, ca)
            runs["4 check again"] = run_play(work, inv, args.port, ca, check=True)
            if args.serial:
                fresh_sim(simdir, args.port, args.task_delay)
                runs["2' apply, forks=1"] = run_play(work, inv, args.port, ca, forks=1)
        finally:
            subprocess.run([SIM, "down", "--dir", simdir], capture_output=True, check=False)
    result = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "task_delay": args.task_delay,
              "vms": len(HOSTS), "runs": runs}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".json", "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    with open(args.out + ".md", "w", encoding="utf-8") as f:
        f.write(markdown(result))
    for name, r in runs.items():
        print(f"{name:28s} wall {r['wall_seconds']:6.2f}s changed {r['changed']} api {r['api_calls']:3d} "
              f"writes {r['write_calls']:2d} concurrent tasks {r['max_concurrent_tasks']}")
    bad = [n for n in ("1 check (empty cluster)", "3 apply again", "4 check again") if runs[n]["write_calls"]]
    if bad or runs["3 apply again"]["changed"] or runs["4 check again"]["changed"]:
        raise SystemExit(f"unexpected writes or changes in: {bad or 'reruns'}")


if __name__ == "__main__":
    main()
