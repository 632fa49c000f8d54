# SPDX-License-Identifier: GPL-3.0-or-later
"""Run the GitOps modules for real (git, age-keygen, sops) against a bare repository on disk."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
COLLECTIONS = REPO_ROOT / ".collections"
TOOL_BIN = Path(os.environ.get("HOMECLUSTER_CACHE", Path.home() / ".cache/homecluster")) / "bin"


def tool(name):
    found = shutil.which(name) or (str(TOOL_BIN / name) if (TOOL_BIN / name).exists() else None)
    if not found:
        pytest.skip(f"{name} is not built yet (make tools)")
    return found


def run_module(name, args, check=False, diff=True, expect_fail=False):
    """Run a module of this collection as Ansible would, return its JSON result."""
    payload = {"ANSIBLE_MODULE_ARGS": {**args, "_ansible_check_mode": check, "_ansible_diff": diff}}
    env = {**os.environ, "PYTHONPATH": str(COLLECTIONS), "PATH": f"{TOOL_BIN}:{os.environ['PATH']}"}
    proc = subprocess.run(
        [sys.executable, "-m", f"ansible_collections.homecluster.platform.plugins.modules.{name}"],
        input=json.dumps(payload), capture_output=True, text=True, env=env, check=False)
    try:
        result = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"{name} printed no JSON: rc={proc.returncode} stdout={proc.stdout!r} stderr={proc.stderr!r}")
    if expect_fail:
        assert result.get("failed"), result
    else:
        assert not result.get("failed"), result
    return result


def git(*args, cwd=None):
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True, env=env).stdout


@pytest.fixture
def remote(tmp_path):
    """An empty bare repository reached through a file:// URL."""
    bare = tmp_path / "remote.git"
    git("init", "--quiet", "--bare", str(bare))
    return f"file://{bare}"


@pytest.fixture
def age_key(tmp_path):
    tool("age-keygen")
    key = tmp_path / "keys" / "age.key"
    result = run_module("age_keypair", {"path": str(key)})
    return str(key), result["public_key"]
