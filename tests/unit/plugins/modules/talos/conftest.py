# SPDX-License-Identifier: GPL-3.0-or-later
"""Helpers to run talos_* modules in-process against recorded talosctl output."""
from __future__ import annotations

import os

import pytest
from ansible_collections.homecluster.platform.plugins.module_utils import _talosctl

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "talosctl")


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read()


class FakeTalosctl:
    """Answers talosctl calls from a list of (predicate, rc, stdout, stderr) rules; records every call."""

    def __init__(self):
        self.rules = []
        self.calls = []

    def on(self, *words, rc=0, stdout="", stderr="", insecure=None, answers=None):
        """Answer calls containing *words*; *answers* is a list of (rc, stdout, stderr) used in turn."""
        self.rules.append((words, insecure, list(answers) if answers else [(rc, stdout, stderr)]))
        return self

    def __call__(self, cmd, data, timeout):
        self.calls.append(cmd)
        for words, insecure, answers in self.rules:
            if all(w in cmd for w in words) and (insecure is None or ("--insecure" in cmd) == insecure):
                return answers.pop(0) if len(answers) > 1 else answers[0]
        raise AssertionError(f"unexpected talosctl call: {cmd}")

    def called(self, *words):
        return [c for c in self.calls if all(w in c for w in words)]


@pytest.fixture
def recorded():
    """Read a talosctl output recorded from the real talosctl (fixtures/talosctl/recorded_*)."""
    def read(name):
        assert name.startswith("recorded_"), f"{name}: a recorded fixture's file name starts with recorded_"
        return fixture(name)
    return read


@pytest.fixture
def handwritten():
    """Read a talosctl output written by hand (fixtures/talosctl/handwritten_*): a shape no lab run has
    produced yet (the lab's Talos 1.14 never answers a dry run with a reboot)."""
    def read(name):
        assert name.startswith("handwritten_"), f"{name}: a hand-written fixture's file name starts with handwritten_"
        return fixture(name)
    return read


@pytest.fixture
def talosctl(monkeypatch):
    fake = FakeTalosctl()
    monkeypatch.setattr(_talosctl.Talosctl, "_subprocess_run",
                        lambda self, cmd, data, timeout: fake(cmd, data, timeout))
    monkeypatch.setattr(_talosctl, "find_binary", lambda module, path=None: "/usr/bin/talosctl")
    return fake
