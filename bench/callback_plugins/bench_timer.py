# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: HomeCluster developers
"""Benchmark callback (bench/ only): time and task count per play, written as JSON.

Enabled by bench/site.py with ANSIBLE_CALLBACKS_ENABLED=bench_timer; BENCH_TIMER_OUT names the file.
"""

from __future__ import annotations

import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: bench_timer
type: aggregate
short_description: time and task count per play, and the slowest tasks, for bench/site.py
description: Writes the plays of a run with their wall time, tasks started and results per status.
requirements: [enabled in callbacks_enabled]
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "bench_timer"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self.plays = []
        self.current = None
        self.task = None
        self.tasks = {}

    def _close_task(self):
        if self.task:
            name, start = self.task
            t = self.tasks.setdefault(name, {"task": name, "seconds": 0.0, "runs": 0})
            t["seconds"] = round(t["seconds"] + time.monotonic() - start, 2)
            t["runs"] += 1
            self.task = None

    def _close(self):
        if self.current:
            self.current["seconds"] = round(time.monotonic() - self.current.pop("_start"), 2)
            self.plays.append(self.current)
            self.current = None

    def v2_playbook_on_play_start(self, play):
        self._close_task()
        self._close()
        self.current = {"play": play.get_name(), "tasks": 0, "ok": 0, "changed": 0, "skipped": 0,
                        "_start": time.monotonic()}

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._close_task()
        self.task = (f"{self.current['play'] if self.current else ''} / {task.get_name()}", time.monotonic())
        if self.current:
            self.current["tasks"] += 1

    def v2_runner_on_ok(self, result):
        if self.current:
            self.current["changed" if result._result.get("changed") else "ok"] += 1

    def v2_runner_on_skipped(self, result):
        if self.current:
            self.current["skipped"] += 1

    def v2_playbook_on_stats(self, stats):
        self._close_task()
        self._close()
        out = os.environ.get("BENCH_TIMER_OUT")
        if out:
            slowest = sorted(self.tasks.values(), key=lambda t: -t["seconds"])[:25]
            with open(out, "w", encoding="utf-8") as f:
                json.dump({"plays": self.plays, "slowest_tasks": slowest}, f, indent=2)
