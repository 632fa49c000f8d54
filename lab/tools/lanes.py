#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Run the slow test steps of `make test` (molecule scenarios, the e2e) side by side.

Every scenario has its own loopback block and ports, so most of them can run at the same time;
they spend much of their wall time waiting on the lab (controllers, kwok stages, Flux), not on
the CPU. The scenarios that share an address or a port are listed in molecule/lanes.yml under
`exclusive`: two of one group never run at once.

    lanes.py --lanes 2 --times FILE --logs DIR job...     a job is a scenario name, `e2e`, or a name
                                                           molecule/lanes.yml's `commands` defines

Jobs start longest first (the durations of the last passing run, kept in DIR/durations.json;
molecule/lanes.yml's `expected` seconds before that). Each job's output goes to DIR/<job>.log;
a line is printed as each job starts and ends, and a failed job's log tail is printed whole.
After the first failure no new job starts, the running ones finish (so their labs are torn
down), and the exit status is 1. Each job's time is appended to FILE (timed.sh's table format,
marked `parallel` so the table's total counts the wall time of the whole step instead).
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


# Jobs that are not molecule scenarios: molecule/lanes.yml `commands` adds to these (argv lists;
# "{python}" is this Python).
COMMANDS: dict[str, list[str]] = {
    "e2e": ["{python}", "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/e2e"],
}


def command(job: str) -> list[str]:
    if job in COMMANDS:
        return [sys.executable if a == "{python}" else a for a in COMMANDS[job]]
    return ["molecule", "test", "-s", job]


def label(job: str) -> str:
    return job if job in COMMANDS else f"molecule {job}"


class Pool:
    def __init__(self, jobs: list[str], lanes: int, groups: list[set[str]], logs: Path, times: Path | None):
        self.pending = list(jobs)
        self.lanes = lanes
        self.groups = groups
        self.logs = logs
        self.times = times
        self.running: dict[str, float] = {}
        self.done: dict[str, tuple[float, int]] = {}
        self.failed = False
        self.cond = threading.Condition()

    def blocked(self, job: str) -> bool:
        return any(job in g and (g & set(self.running)) for g in self.groups)

    def next_job(self) -> str | None:
        """The first pending job that no running job excludes (None: wait; '' : nothing left)."""
        if self.failed or not self.pending:
            return ""
        for job in self.pending:
            if not self.blocked(job):
                self.pending.remove(job)
                return job
        return None

    def excerpt(self, job, lines):
        """Keep why `job` failed in failures.txt beside the time table: CI shows the end of the
        output, and a log's last lines are molecule's destroy, not the failed task."""
        target = (self.times.parent if self.times is not None else self.logs) / "failures.txt"
        with target.open("a") as out:
            out.write(f"---- why {label(job)} failed (from {self.logs / (job + '.log')})\n")
            out.write("\n".join(excerpt_of(lines)) + "\n")

    def worker(self) -> None:
        while True:
            with self.cond:
                job = self.next_job()
                while job is None:
                    self.cond.wait()
                    job = self.next_job()
                if job == "":
                    return
                self.running[job] = time.monotonic()
                print(f"== {label(job)}: started (running: {', '.join(sorted(self.running))})", flush=True)
            log = self.logs / f"{job}.log"
            with log.open("w") as out:
                rc = subprocess.run(command(job), cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, check=False).returncode
            with self.cond:
                seconds = time.monotonic() - self.running.pop(job)
                self.done[job] = (seconds, rc)
                result = "passed" if rc == 0 else f"FAILED (rc {rc})"
                if self.times is not None:
                    with self.times.open("a") as t:
                        t.write(f"{label(job)}\t{seconds:.1f}\t{result}\tparallel\n")
                print(f"== {label(job)}: {result} in {seconds:.1f} s (log {log})", flush=True)
                if rc != 0:
                    self.failed = True
                    lines = log.read_text(errors="replace").splitlines()
                    print(f"---- last {min(len(lines), 250)} lines of {log}", flush=True)
                    print("\n".join(lines[-250:]), flush=True)
                    print(f"---- end of {log}", flush=True)
                    self.excerpt(job, lines)
                self.cond.notify_all()


# The lines that say why a job failed, wherever they are in its log: an Ansible task that failed
# (with the task's name, a few lines above), a molecule step, a pytest failure.
CAUSE = re.compile(r"fatal: \[|FAILED! =>|\bfailed: \[|^TASK \[|^ERROR|ERROR +Ansible|^E   |^FAILED |AssertionError"
                   r"|Traceback|Error:|\berror:")


def excerpt_of(lines, limit=80, follow=12):
    """The cause lines of a failed job's log: each failed task with the TASK line before it and
    up to `follow` indented lines after it (molecule wraps a task's message over several lines)."""
    keep = []
    last_task = None
    after = 0
    for line in lines:
        # no colours, and no frame molecule draws around a playbook's output ("  │ ")
        plain = re.sub(r"^\s*│ ?", "", re.sub(r"\x1b\[[0-9;]*m", "", line))
        if plain.startswith("TASK ["):
            last_task = plain
            after = 0
            continue
        if CAUSE.search(plain):
            if last_task and ("fatal: [" in plain or "failed: [" in plain):
                keep.append(last_task)
                last_task = None
            keep.append(plain[:1500])
            after = follow if ("FAILED!" in plain or "failed: [" in plain) else 0
        elif after and plain.strip() and plain.startswith((" ", "\t", "}")):
            keep.append(plain[:1500])
            after -= 1
        else:
            after = 0
    return keep[-limit:]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lanes", type=int, default=2)
    ap.add_argument("--times", type=Path)
    ap.add_argument("--logs", type=Path, required=True)
    ap.add_argument("--config", type=Path, default=REPO / "molecule" / "lanes.yml")
    ap.add_argument("jobs", nargs="+")
    args = ap.parse_args()
    if args.lanes < 1:
        ap.error("--lanes must be 1 or more")
    config = yaml.safe_load(args.config.read_text()) or {}
    groups = [set(g) for g in config.get("exclusive", [])]
    COMMANDS.update({k: [str(a) for a in v] for k, v in (config.get("commands") or {}).items()})
    known = set(args.jobs)
    for g in groups:
        unknown = g - known - set(config.get("optional", []))
        if unknown:
            print(f"lanes.py: {args.config}: exclusive names {sorted(unknown)}, which are not jobs of this run",
                  file=sys.stderr)
    args.logs.mkdir(parents=True, exist_ok=True)
    history_file = args.logs / "durations.json"
    expected = dict(config.get("expected", {}))
    if history_file.exists():
        expected.update(json.loads(history_file.read_text()))
    jobs = sorted(args.jobs, key=lambda j: -float(expected.get(j, 120)))
    print(f"== {len(jobs)} jobs in {args.lanes} lanes, longest first: {' '.join(jobs)}", flush=True)
    pool = Pool(jobs, args.lanes, groups, args.logs, args.times)
    ((args.times.parent if args.times is not None else args.logs) / "failures.txt").unlink(missing_ok=True)
    start = time.monotonic()
    threads = [threading.Thread(target=pool.worker, daemon=True) for _ in range(args.lanes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - start
    busy = sum(s for s, _ in pool.done.values())
    print(f"== {len(pool.done)} of {len(jobs)} jobs ran in {wall:.1f} s of wall time "
          f"({busy:.1f} s of job time, {busy / wall if wall else 0:.2f} jobs at once on average)", flush=True)
    if pool.failed:
        skipped = [j for j in jobs if j not in pool.done]
        if skipped:
            print(f"== not started after the failure: {' '.join(skipped)}", flush=True)
        return 1
    history = json.loads(history_file.read_text()) if history_file.exists() else {}
    history.update({j: round(s, 1) for j, (s, _) in pool.done.items()})
    history_file.write_text(json.dumps(history, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
