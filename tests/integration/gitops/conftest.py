# SPDX-License-Identifier: GPL-3.0-or-later
"""Run the GitOps modules for real (git, age-keygen, sops) against a bare repository on disk."""

from __future__ import annotations

from pathlib import Path

import pytest
from modrun import git, run_module, tool

REPO_ROOT = Path(__file__).resolve().parents[3]


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
