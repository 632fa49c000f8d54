# SPDX-License-Identifier: GPL-3.0-or-later
"""Record real `ceph ... -f json` output from a lab cluster for the unit tests' fixtures.

    python3 lab/ceph/record_fixtures.py --dir DIR [--out tests/unit/plugins/module_utils/fixtures/ceph]

DIR is a running `lab/ceph/cluster up --dir DIR` cluster; the script creates and removes a pool
named `fixture` and sets/unsets `noout`, leaving the cluster as it found it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

OUT = Path(__file__).resolve().parents[2] / "tests/unit/plugins/module_utils/fixtures/ceph"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    conf = str(Path(args.dir).resolve() / "ceph.conf")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def ceph(*cmd: str) -> str:
        return subprocess.run(["ceph", "--conf", conf, "--connect-timeout", "10", *cmd], check=True,
                              capture_output=True, text=True, timeout=60).stdout

    def record(name: str, *cmd: str) -> None:
        text = ceph(*cmd, "--format", "json")
        (out / f"{name}.json").write_text(json.dumps(json.loads(text), indent=1, sort_keys=True) + "\n")

    record("status_ok", "status")
    record("health_detail_ok", "health", "detail")
    record("crush_rule_dump", "osd", "crush", "rule", "dump")
    ceph("osd", "pool", "create", "fixture", "8")
    ceph("osd", "pool", "set", "fixture", "size", "2")
    ceph("osd", "pool", "set", "fixture", "pg_autoscale_mode", "warn")
    ceph("osd", "set", "noout")
    time.sleep(6)  # the manager reports the pool without an application after its next tick
    record("pool_ls_detail", "osd", "pool", "ls", "detail")
    record("osd_dump_noout", "osd", "dump")
    record("health_detail_warn", "health", "detail")
    record("status_warn", "status")
    ceph("osd", "unset", "noout")
    ceph("osd", "pool", "rm", "fixture", "fixture", "--yes-i-really-really-mean-it")
    ceph("config", "set", "osd", "osd_max_backfills", "2")
    ceph("config", "set", "osd/class:ssd", "osd_memory_target", "2G")
    ceph("config", "set", "osd.1", "debug_osd", "5")
    record("config_dump", "config", "dump")
    for opt in ("osd_max_backfills", "osd_memory_target", "mon_allow_pool_delete", "osd_recovery_sleep",
                "debug_osd"):
        record(f"config_help_{opt}", "config", "help", opt)
    ceph("config", "rm", "osd", "osd_max_backfills")
    ceph("config", "rm", "osd/class:ssd", "osd_memory_target")
    ceph("config", "rm", "osd.1", "debug_osd")
    print(f"recorded into {out}")


if __name__ == "__main__":
    main()
