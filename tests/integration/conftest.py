# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared fixtures of the integration tests: run a module of this collection as Ansible would."""

from __future__ import annotations

import pytest
from modrun import run_module


@pytest.fixture
def collection_module():
    """collection_module(name, args, check=False, diff=True) -> the module's JSON result (failed or not)."""

    def run(name, args, check=False, diff=True):
        return run_module(name, args, check=check, diff=diff, expect_fail=None)

    return run
