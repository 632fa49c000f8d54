# SPDX-License-Identifier: GPL-3.0-or-later
"""Run the collection's modules in-process: exit_json and fail_json raise an exception that carries
the result, so a test reads what the module would have returned to Ansible."""
from __future__ import annotations

import json

import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args


class ModuleExit(Exception):
    def __init__(self, result, failed):
        super().__init__(result.get("msg", ""))
        self.result = result
        self.failed = failed


@pytest.fixture
def module_exit(monkeypatch):
    """exit_json/fail_json raise ModuleExit (returned, for conftests that wrap main() themselves)."""
    def exit_json(self, **kwargs):
        raise ModuleExit(kwargs, False)

    def fail_json(self, **kwargs):
        raise ModuleExit(kwargs, True)

    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)
    return ModuleExit


@pytest.fixture
def run_module(module_exit):
    def run(main, args, check_mode=False, diff=False):
        args = dict(args, _ansible_check_mode=check_mode, _ansible_diff=diff)
        with patch_module_args(json.loads(json.dumps(args))), pytest.raises(module_exit) as info:
            main()
        return info.value

    return run
