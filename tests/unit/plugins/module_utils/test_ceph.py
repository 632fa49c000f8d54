# SPDX-License-Identifier: GPL-3.0-or-later
"""The ceph runner and its parsers, on output recorded from a real cluster (lab/ceph/record_fixtures.py)."""
from __future__ import annotations

import json
import os
import subprocess
import types

import pytest
from ansible_collections.homecluster.platform.plugins.module_utils import _ceph

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "ceph")


def recorded(name):
    with open(os.path.join(FIXTURES, f"{name}.json")) as handle:
        return json.load(handle)


def params(**overrides):
    base = {k: v.get("default") for k, v in _ceph.ceph_argument_spec().items()}
    base.update(overrides)
    return base


class Recorder:
    def __init__(self, rc=0, stdout="", stderr="", exc=None):
        self.rc, self.stdout, self.stderr, self.exc = rc, stdout, stderr, exc
        self.calls = []

    def __call__(self, cmd, **kwargs):
        self.calls.append((cmd, kwargs))
        if self.exc:
            raise self.exc
        return types.SimpleNamespace(returncode=self.rc, stdout=self.stdout, stderr=self.stderr)


@pytest.fixture(autouse=True)
def found_binaries(monkeypatch):
    monkeypatch.setattr(_ceph.CephRunner, "_locate", lambda self, name, what: f"/usr/bin/{name}")


def test_local_argv_carries_conf_keyring_name_timeout_and_json():
    runner = _ceph.CephRunner(params(ceph_conf="/lab/ceph.conf", keyring="/lab/admin.keyring",
                                     client_name="client.admin", connect_timeout=5))
    assert runner.argv(["osd", "dump"]) == [
        "/usr/bin/ceph", "--conf", "/lab/ceph.conf", "--keyring", "/lab/admin.keyring", "--name", "client.admin",
        "--connect-timeout", "5", "osd", "dump", "--format", "json",
    ]


def test_toolbox_argv_execs_into_the_rook_toolbox():
    runner = _ceph.CephRunner(params(transport="toolbox", kubeconfig="/k/admin.kubeconfig", kube_context="lab"))
    assert runner.argv(["status"]) == [
        "/usr/bin/kubectl", "--kubeconfig", "/k/admin.kubeconfig", "--context", "lab", "--namespace", "rook-ceph",
        "exec", "deployment/rook-ceph-tools", "--", "ceph", "--connect-timeout", "10", "status", "--format", "json",
    ]


def test_run_parses_json_with_a_clean_environment_and_timeout(monkeypatch):
    monkeypatch.setenv("SECRET_TOKEN", "x")
    fake = Recorder(stdout=json.dumps(recorded("status_ok")))
    rc, data, _out, _err = _ceph.CephRunner(params(command_timeout=7), runner=fake).run(["status"])
    assert rc == 0 and data["health"]["status"] == "HEALTH_OK"
    kwargs = fake.calls[0][1]
    assert kwargs["timeout"] == 7
    assert kwargs["env"]["LANG"] == "C" and "SECRET_TOKEN" not in kwargs["env"]


def test_subprocess_timeout_is_a_clear_error():
    fake = Recorder(exc=subprocess.TimeoutExpired(["ceph"], 3))
    with pytest.raises(_ceph.CephError) as info:
        _ceph.CephRunner(params(command_timeout=3), runner=fake).run(["pg", "dump"])
    assert "did not answer within command_timeout=3s" in info.value.msg
    assert "no quorum" in info.value.msg
    assert info.value.cmd[0] == "/usr/bin/ceph"


def test_connect_timeout_names_the_quorum():
    # what the real CLI prints when no monitor answers within --connect-timeout
    fake = Recorder(rc=1, stderr="timed out\n")
    with pytest.raises(_ceph.CephError) as info:
        _ceph.CephRunner(params(connect_timeout=3), runner=fake).run(["status"])
    err = info.value.as_dict()
    assert "connect_timeout=3s" in err["msg"] and "quorum" in err["msg"]
    assert err["rc"] == 1 and err["stderr"] == "timed out\n"


def test_failure_keeps_cmd_rc_stdout_stderr():
    fake = Recorder(rc=22, stderr="Error EINVAL: pool min_size must be between 1 and size, which is set to 3\n")
    with pytest.raises(_ceph.CephError) as info:
        _ceph.CephRunner(params(), runner=fake).run(["osd", "pool", "set", "p", "min_size", "4"])
    assert info.value.rc == 22
    assert info.value.msg == ("ceph osd pool set p min_size 4 failed (rc=22): "
                              "Error EINVAL: pool min_size must be between 1 and size, which is set to 3")


def test_allowed_rc_is_returned_not_raised():
    fake = Recorder(rc=2, stderr="Error ENOENT: \n")
    rc, data, _o, _e = _ceph.CephRunner(params(), runner=fake).run(["config", "help", "bogus"], allowed_rc=(0, 2))
    assert rc == 2 and data is None


def test_missing_binary_says_what_to_install(monkeypatch):
    monkeypatch.undo()
    runner = _ceph.CephRunner(params(ceph_binary="/nonexistent/ceph"))
    with pytest.raises(_ceph.CephError, match="install ceph-common"):
        runner.argv(["status"])


def test_health_checks_keep_the_detail_of_each_check():
    checks = _ceph.health_checks(recorded("health_detail_warn"))
    names = [c["name"] for c in checks]
    assert "OSDMAP_FLAGS" in names
    flags = next(c for c in checks if c["name"] == "OSDMAP_FLAGS")
    assert flags["severity"] == "HEALTH_WARN" and flags["summary"] == "noout flag(s) set"
    assert all(isinstance(c["detail"], list) for c in checks)
    assert any(c["detail"] for c in checks), "recorded warning carries detail messages"
    assert _ceph.health_checks(recorded("health_detail_ok")) == []


def test_pool_state_from_ls_detail():
    state = _ceph.pool_state(recorded("pool_ls_detail"), "fixture")
    assert state["size"] == 2 and state["pg_autoscale_mode"] == "warn"
    assert state["type"] == "replicated" and state["applications"] == []
    assert _ceph.pool_state(recorded("pool_ls_detail"), "missing") is None


def test_osd_flags_from_osd_dump():
    assert "noout" in _ceph.osd_flags(recorded("osd_dump_noout"))
    assert _ceph.osd_flags({"flags": "sortbitwise,noout"}) == ["noout", "sortbitwise"]


def test_config_entry_respects_section_and_mask():
    dump = recorded("config_dump")
    assert _ceph.config_entry(dump, "osd", "osd_max_backfills") == "2"
    assert _ceph.config_entry(dump, "osd/class:ssd", "osd_memory_target") == "2147483648"
    assert _ceph.config_entry(dump, "osd.1", "debug_osd") == "5/5"
    assert _ceph.config_entry(dump, "mon", "osd_max_backfills") is None


@pytest.mark.parametrize(("option", "value", "stored"), [
    ("mon_allow_pool_delete", True, "true"),
    ("mon_allow_pool_delete", "True", "true"),
    ("osd_memory_target", "2G", "2147483648"),
    ("osd_memory_target", 1073741824, "1073741824"),
    ("osd_max_backfills", "01", "1"),
    ("osd_max_backfills", 2, "2"),
    ("osd_recovery_sleep", "0.1", "0.100000"),
    ("debug_osd", 5, "5/5"),
    ("debug_osd", "3/4", "3/4"),
])
def test_normalize_matches_what_ceph_stores(option, value, stored):
    # the stored forms were observed on the real cluster (see config_dump.json for 2G and 5 -> 5/5)
    assert _ceph.normalize_config_value(value, recorded(f"config_help_{option}"), option) == stored


def test_split_who():
    assert _ceph.split_who("osd/host:node1") == ("osd", "host:node1")
    assert _ceph.split_who("global") == ("global", "")
