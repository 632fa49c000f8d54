# SPDX-License-Identifier: GPL-3.0-or-later
"""How long lab/ceph/cluster takes to reach HEALTH_OK (one mon, one mgr, three memstore OSDs).

    python3 bench/ceph_cluster_start.py [--runs 3]

Writes bench/results/ceph_cluster_start.json; no assertion, just numbers.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--address", default="127.0.62.1")
    args = parser.parse_args()
    runs = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="ceph-bench-") as tmp:
            started = time.monotonic()
            subprocess.run([str(ROOT / "lab/ceph/cluster"), "up", "--dir", tmp, "--address", args.address],
                           check=True, capture_output=True, timeout=300)
            up = time.monotonic() - started
            started = time.monotonic()
            subprocess.run([str(ROOT / "lab/ceph/cluster"), "down", "--dir", tmp], check=True, capture_output=True,
                           timeout=120)
            runs.append({"up_seconds": round(up, 2), "down_seconds": round(time.monotonic() - started, 2)})
    out = ROOT / "bench/results/ceph_cluster_start.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "host": platform.node(),
              "load_average": list(Path("/proc/loadavg").read_text().split()[:3]), "runs": runs}
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
