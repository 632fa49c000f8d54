#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Stop, wipe and restore the etcd of a running lab control plane (lab/kube), for the Talos
simulator's EPHEMERAL reset and `talosctl bootstrap --recover-from`.

  lab/kube_etcd.py stop    --dir DIR [--wipe]
  lab/kube_etcd.py restore --dir DIR --snapshot FILE [--skip-hash-check]

`stop` ends only etcd (kube-apiserver, the controllers and kwok keep running and retry), after
saving etcd's own command line (read from /proc) to DIR/etcd.argv.json; `--wipe` then deletes its
data directory, as wiping EPHEMERAL on every control plane deletes the cluster's etcd data.

`restore` refuses while etcd runs or its data directory holds data; otherwise it runs
`etcdutl snapshot restore` (etcd 3.6 removed `etcdctl snapshot restore`) into the data
directory with the member name, peer URL and initial cluster from that command line, and starts
etcd again with exactly that command line, so it listens on the same address and ports and the
running kube-apiserver reconnects. Talos restores the same way (its etcd service calls the
etcdutl snapshot package with the hash check unless --recover-skip-hash-check), but there every
kube-apiserver restarts with its rebooted node; the lab's keeps running across the restore, so
the restore bumps the revision and marks the old ones compacted (`--bump-revision
--mark-compacted`, etcd's advice for a restore under live API servers): watches re-list instead
of waiting for revisions the restored store never reaches.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("lab_kube", HERE / "kube.py")
kube = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(kube)
LabError = kube.LabError
BUMP_REVISION = "1000000000"


def _flag(argv: list[str], name: str) -> str:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    raise LabError(f"etcd's command line has no {name}: {' '.join(argv)}")


def _saved_argv(state: Path) -> list[str]:
    path = state / "etcd.argv.json"
    if not path.exists():
        raise LabError(f"no saved etcd command line in {path}: etcd was not stopped by `kube_etcd.py stop`")
    return json.loads(path.read_text())


def stop(state: Path, wipe: bool) -> None:
    cfg = kube._config(state)
    pid = kube._pids(state).get("etcd")
    if pid and kube._alive(pid):
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
        (state / "etcd.argv.json").write_text(json.dumps(argv, indent=2))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        kube._wait("etcd to stop", lambda: not kube._alive(pid), 30, state, "kube-apiserver")
    argv = _saved_argv(state)
    kube._wait(f"{cfg['address']}:{cfg['etcd_port']} to be free",
               lambda: not kube._port_open(cfg["address"], cfg["etcd_port"]), 30, state, "kube-apiserver")
    if wipe:
        shutil.rmtree(_flag(argv, "--data-dir"), ignore_errors=True)
    print(f"etcd stopped{' and its data directory wiped' if wipe else ''}")


def restore(state: Path, snapshot: Path, skip_hash_check: bool) -> None:
    cfg = kube._config(state)
    pid = kube._pids(state).get("etcd")
    if pid and kube._alive(pid):
        raise LabError("etcd is running: stop it (and wipe its data) before restoring a snapshot")
    argv = _saved_argv(state)
    data = Path(_flag(argv, "--data-dir"))
    if data.exists() and any(data.iterdir()):
        raise LabError("etcd data directory is not empty")
    if data.exists():
        data.rmdir()
    if not snapshot.is_file():
        raise LabError(f"no snapshot at {snapshot}")
    cmd = [kube._binary("etcdutl"), "snapshot", "restore", str(snapshot), "--data-dir", str(data),
           "--name", _flag(argv, "--name"), "--initial-cluster", _flag(argv, "--initial-cluster"),
           "--initial-advertise-peer-urls", _flag(argv, "--initial-advertise-peer-urls"),
           "--bump-revision", BUMP_REVISION, "--mark-compacted"]
    if skip_hash_check:
        cmd.append("--skip-hash-check")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        shutil.rmtree(data, ignore_errors=True)
        raise LabError(f"etcdutl snapshot restore failed: {(proc.stderr or proc.stdout).strip()}")
    kube._spawn(state, "etcd", argv)
    kube._wait("etcd", lambda: kube._port_open(cfg["address"], cfg["etcd_port"]), 30, state, "etcd")
    print(f"etcd restored from {snapshot} and started on {cfg['address']}:{cfg['etcd_port']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lab/kube_etcd.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_stop = sub.add_parser("stop", help="stop etcd (and wipe its data)")
    p_stop.add_argument("--dir", type=Path, required=True)
    p_stop.add_argument("--wipe", action="store_true")
    p_restore = sub.add_parser("restore", help="restore etcd from a snapshot and start it")
    p_restore.add_argument("--dir", type=Path, required=True)
    p_restore.add_argument("--snapshot", type=Path, required=True)
    p_restore.add_argument("--skip-hash-check", action="store_true")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "stop":
            stop(args.dir.resolve(), args.wipe)
        else:
            restore(args.dir.resolve(), args.snapshot.resolve(), args.skip_hash_check)
    except LabError as exc:
        print(f"lab/kube_etcd.py: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
