#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""site.yml on one fresh lab, one run: the cold run, the no-op rerun and `--check --diff`.

Records wall time, tasks run and changed results per layer (play) for each of the three, the
ratios rerun/cold and check/rerun, and the load average, and writes bench/results/site.json (or
--out). The lab runs in a private state directory from a copy of inventories/lab moved to
127.0.13.x and its own ports, so it never meets `make demo` or the e2e test.

    bench/site.py [--out FILE] [--keep]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("HOMECLUSTER_CACHE", Path.home() / ".cache" / "homecluster"))
BLOCK = "127.0.13."


def env(state: Path, timer_out: Path) -> dict:
    e = dict(os.environ)
    e["PATH"] = f"{CACHE / 'bin'}:{CACHE / 'venv' / 'bin'}:{e['PATH']}"
    e.update({
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "HOMECLUSTER_LAB_STATE": str(state),
        "HOMECLUSTER_LAB_INVENTORY": str(state / "inventory"), "HOMECLUSTER_TALOS_ADMIN": "127.0.0.1:53080",
        "HOMECLUSTER_PVE_PORT": "28013", "HOMECLUSTER_CHART_REPO": "http://127.0.0.1:8813",
        "HOMECLUSTER_CHARTREPO_DIR": str(state / "chartrepo"), "HOMECLUSTER_FLUX_ADDRESS": BLOCK + "9",
        "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_CALLBACK_PLUGINS": str(REPO / "bench" / "callback_plugins"),
        "ANSIBLE_CALLBACKS_ENABLED": "bench_timer", "BENCH_TIMER_OUT": str(timer_out),
    })
    return e


def copy_inventory(state: Path) -> None:
    src = REPO / "inventories" / "lab"
    for path in src.rglob("*"):
        dest = state / "inventory" / path.relative_to(src)
        if path.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(path.read_text().replace("127.0.10.", BLOCK).replace("127.0.0.1:8879", "127.0.0.1:8813"))


def run(state: Path, name: str, *extra: str) -> dict:
    timer = state / f"timer-{name}.json"
    started = time.monotonic()
    proc = subprocess.run(["ansible-playbook", "-i", str(state / "inventory"), "playbooks/site.yml", *extra],
                          cwd=REPO, env=env(state, timer), capture_output=True, text=True, check=False)
    seconds = round(time.monotonic() - started, 1)
    (state / f"{name}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        sys.exit(f"site.yml ({name}) failed, see {state / (name + '.log')}:\n{proc.stdout[-3000:]}")
    timed = json.loads(timer.read_text()) if timer.exists() else {}
    plays = timed.get("plays", [])
    return {"seconds": seconds, "tasks": sum(p["tasks"] for p in plays),
            "changed": sum(p["changed"] for p in plays), "layers": plays,
            "slowest_tasks": timed.get("slowest_tasks", [])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "site.json"))
    ap.add_argument("--keep", action="store_true", help="leave the lab running and its state in place")
    args = ap.parse_args()
    state = Path(tempfile.mkdtemp(prefix="homecluster-bench-site-"))
    copy_inventory(state)
    e = env(state, state / "unused.json")
    subprocess.run([str(REPO / "lab" / "up")], cwd=REPO, env=e, check=True, capture_output=True)
    try:
        load_before = os.getloadavg()
        cold = run(state, "cold")
        rerun = run(state, "rerun")
        check = run(state, "check", "--check", "--diff")
        result = {
            "what": "site.yml on the 6-node lab (inventories/lab): cold run, no-op rerun, --check --diff",
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "load_before": [round(x, 2) for x in load_before],
                        "load_after": [round(x, 2) for x in os.getloadavg()]},
            "cold": cold, "rerun": rerun, "check": check,
            "ratios": {"rerun_over_cold": round(rerun["seconds"] / cold["seconds"], 3),
                       "check_over_rerun": round(check["seconds"] / rerun["seconds"], 3)},
        }
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps({k: result[k] for k in ("ratios",)} | {
            "cold_s": cold["seconds"], "rerun_s": rerun["seconds"], "check_s": check["seconds"],
            "rerun_changed": rerun["changed"], "check_changed": check["changed"]}, indent=2))
    finally:
        if not args.keep:
            subprocess.run([str(REPO / "lab" / "down")], cwd=REPO, env=e, check=False, capture_output=True)
            shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
