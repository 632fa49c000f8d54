# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared fixtures of the integration tests: run a module of this collection as Ansible would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
COLLECTIONS = REPO_ROOT / ".collections"
TOOL_BIN = Path(os.environ.get("HOMECLUSTER_CACHE", Path.home() / ".cache/homecluster")) / "bin"


@pytest.fixture
def collection_module():
    """collection_module(name, args, check=False, diff=True) -> the module's JSON result (failed or not)."""

    def run(name, args, check=False, diff=True):
        payload = {"ANSIBLE_MODULE_ARGS": {**args, "_ansible_check_mode": check, "_ansible_diff": diff}}
        env = {**os.environ, "PYTHONPATH": str(COLLECTIONS), "PATH": f"{TOOL_BIN}:{os.environ['PATH']}"}
        proc = subprocess.run(
            [sys.executable, "-m", f"ansible_collections.homecluster.platform.plugins.modules.{name}"],
            input=json.dumps(payload), capture_output=True, text=True, env=env, check=False)
        try:
            return json.loads(proc.stdout)
        except json.JSONDecodeError:
            pytest.fail(f"{name} printed no JSON: rc={proc.returncode} stdout={proc.stdout!r} stderr={proc.stderr!r}")
        return None

    return run
