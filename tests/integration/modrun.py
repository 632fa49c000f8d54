# SPDX-License-Identifier: GPL-3.0-or-later
"""Run a module of this collection as Ansible would, and find the lab's tools: one copy for every
integration test (conftest.py's collection_module fixture, the gitops, ceph and proxmox helpers)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
COLLECTIONS = REPO_ROOT / ".collections"
TOOL_BIN = Path(os.environ.get("HOMECLUSTER_CACHE", Path.home() / ".cache/homecluster")) / "bin"


def tool(name: str) -> str:
    """The path of a tool on PATH or in the lab's tool cache; skips the test when it is not built."""
    found = shutil.which(name) or (str(TOOL_BIN / name) if (TOOL_BIN / name).exists() else None)
    if not found:
        pytest.skip(f"{name} is not built yet (make tools)")
    return found


def git(*args, cwd=None, check=True) -> str:
    """Run git as a test's other writer (author and committer "t"); return its stdout."""
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "PATH": f"{TOOL_BIN}:{os.environ['PATH']}"}
    return subprocess.run(["git", *map(str, args)], cwd=cwd, capture_output=True, text=True, check=check,
                          env=env).stdout


def run_module(name: str, args: dict, check: bool = False, diff: bool = True, expect_fail: bool | None = False, *,
               timeout: int = 600) -> dict:
    """Run plugins/modules/<name> in its own process with the args on stdin; return its JSON result.

    expect_fail: True (must fail), False (must succeed) or None (either; the caller looks).
    """
    payload = {"ANSIBLE_MODULE_ARGS": {**args, "_ansible_check_mode": check, "_ansible_diff": diff}}
    env = {**os.environ, "PYTHONPATH": str(COLLECTIONS), "PATH": f"{TOOL_BIN}:{os.environ['PATH']}"}
    proc = subprocess.run(
        [sys.executable, "-m", f"ansible_collections.homecluster.platform.plugins.modules.{name}"],
        input=json.dumps(payload), capture_output=True, text=True, env=env, check=False, timeout=timeout)
    try:
        result = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"{name} printed no JSON: rc={proc.returncode} stdout={proc.stdout!r} stderr={proc.stderr!r}")
    if expect_fail:
        assert result.get("failed"), result
    elif expect_fail is not None:
        assert not result.get("failed"), result
    return result
