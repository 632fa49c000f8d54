#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Print, as JSON, the OSD map epochs at which Ceph's noout flag was set and cleared, read from
the monitor's stored osdmaps (`ceph osd dump EPOCH`), so a test sees every noout window of a run.

  noout_history.py CEPH_CONF KEYRING [FIRST_EPOCH]
"""
import json
import subprocess
import sys


def dump(conf, keyring, epoch=None):
    cmd = ["ceph", "--conf", conf, "--keyring", keyring, "osd", "dump", "--format", "json"]
    if epoch is not None:
        cmd.insert(cmd.index("dump") + 1, str(epoch))
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def main():
    conf, keyring = sys.argv[1], sys.argv[2]
    first = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    current = dump(conf, keyring)["epoch"]
    windows, prev, opened = [], False, None
    for epoch in range(first, current + 1):
        noout = "noout" in dump(conf, keyring, epoch).get("flags", "").split(",")
        if noout and not prev:
            opened = epoch
        if prev and not noout:
            windows.append([opened, epoch])
            opened = None
        prev = noout
    print(json.dumps({"epoch": current, "windows": windows, "open": opened}))


if __name__ == "__main__":
    main()
