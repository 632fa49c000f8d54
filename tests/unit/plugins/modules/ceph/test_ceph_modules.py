# SPDX-License-Identifier: GPL-3.0-or-later
"""ceph_* modules in-process against ceph output recorded from the lab cluster."""
from __future__ import annotations

import json
import os
import types

import pytest
from ansible_collections.homecluster.platform.plugins.module_utils import _ceph
from ansible_collections.homecluster.platform.plugins.modules import (
    ceph_config,
    ceph_config_info,
    ceph_osd_flag,
    ceph_pool,
    ceph_status,
)

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "module_utils", "fixtures", "ceph")


def recorded(name):
    with open(os.path.join(FIXTURES, f"{name}.json")) as handle:
        return handle.read()


class FakeCeph:
    """Answers `ceph ARGS --format json` from (args prefix -> (rc, stdout, stderr)); records every call."""

    def __init__(self):
        self.answers = {}
        self.calls = []

    def on(self, *args, rc=0, stdout="", stderr=""):
        self.answers[args] = (rc, stdout, stderr)
        return self

    def __call__(self, cmd, **_kwargs):
        args = cmd[cmd.index("--connect-timeout") + 2:]
        if args[-2:] == ["--format", "json"]:
            args = args[:-2]
        self.calls.append(args)
        for prefix, (rc, out, err) in sorted(self.answers.items(), key=lambda kv: -len(kv[0])):
            if tuple(args[:len(prefix)]) == prefix:
                return types.SimpleNamespace(returncode=rc, stdout=out, stderr=err)
        return types.SimpleNamespace(returncode=0, stdout="", stderr="")

    def changes(self):
        reads = {("osd", "dump"), ("status",), ("health", "detail"), ("config", "dump"), ("config", "help"),
                 ("config", "get"), ("osd", "crush"), ("osd", "pool", "ls")}
        return [c for c in self.calls if not any(tuple(c[:len(r)]) == r for r in reads)]


@pytest.fixture
def ceph(monkeypatch):
    fake = FakeCeph()
    monkeypatch.setattr(_ceph, "_subprocess_run", fake)
    monkeypatch.setattr(_ceph.CephRunner, "_locate", lambda self, name, what: f"/usr/bin/{name}")
    return fake


def pools_with_fixture(**changes):
    pools = json.loads(recorded("pool_ls_detail"))
    for pool in pools:
        if pool["pool_name"] == "fixture":
            pool.update(changes)
    return json.dumps(pools)


@pytest.fixture
def pool_cluster(ceph):
    return ceph.on("osd", "crush", "rule", "dump", stdout=recorded("crush_rule_dump")).on(
        "osd", "pool", "ls", "detail", stdout=recorded("pool_ls_detail"))


def test_status_reports_every_check(ceph, run_module):
    ceph.on("status", stdout=recorded("status_warn")).on("health", "detail", stdout=recorded("health_detail_warn"))
    ceph.on("osd", "dump", stdout=recorded("osd_dump_noout"))
    res = run_module(ceph_status.main, {})
    assert not res.failed and res.result["changed"] is False
    assert res.result["health"] == "HEALTH_WARN" and res.result["healthy"] is False
    assert "OSDMAP_FLAGS" in [c["name"] for c in res.result["checks"]]
    assert "noout" in res.result["osd_flags"]
    failed = run_module(ceph_status.main, {"fail_on_unhealthy": True})
    assert failed.failed and "noout flag(s) set" in failed.result["msg"]


def test_pool_unchanged_runs_no_command(pool_cluster, run_module):
    res = run_module(ceph_pool.main, {"name": "fixture", "size": 2, "pg_autoscale_mode": "warn"}, diff=True)
    assert res.result["changed"] is False and pool_cluster.changes() == []


def test_pool_size_change_in_check_mode_predicts_and_does_nothing(pool_cluster, run_module):
    res = run_module(ceph_pool.main, {"name": "fixture", "size": 3}, check_mode=True, diff=True)
    assert res.result["changed"] is True
    assert res.result["commands"] == ["ceph osd pool set fixture size 3"]
    assert res.result["diff"]["before"]["size"] == 2 and res.result["diff"]["after"]["size"] == 3
    assert pool_cluster.changes() == []


def test_pool_shrink_lowers_min_size_first(pool_cluster, run_module):
    pool_cluster.on("osd", "pool", "ls", "detail", stdout=pools_with_fixture(size=3, min_size=2))
    res = run_module(ceph_pool.main, {"name": "fixture", "size": 1, "min_size": 1}, check_mode=True)
    assert res.result["commands"] == ["ceph osd pool set fixture min_size 1", "ceph osd pool set fixture size 1"]


def test_pool_create_in_check_mode(pool_cluster, run_module):
    res = run_module(ceph_pool.main, {"name": "new", "pg_num": 8, "application": "rbd"}, check_mode=True, diff=True)
    assert res.result["commands"][0] == "ceph osd pool create new 8"
    assert res.result["diff"]["before"] == {} and res.result["pool"]["applications"] == ["rbd"]
    assert pool_cluster.changes() == []


def test_pool_bad_input_fails_before_any_change(pool_cluster, run_module):
    res = run_module(ceph_pool.main, {"name": "fixture", "min_size": 3})
    assert res.failed and "must not exceed size (2)" in res.result["msg"]
    res = run_module(ceph_pool.main, {"name": "fixture", "crush_rule": "fast"})
    assert res.failed and "replicated_rule" in res.result["msg"]
    assert pool_cluster.changes() == []


def test_pool_delete_needs_opt_in(pool_cluster, run_module):
    res = run_module(ceph_pool.main, {"name": "fixture", "state": "absent"})
    assert res.failed and "allow_delete" in res.result["msg"] and pool_cluster.changes() == []
    res = run_module(ceph_pool.main, {"name": "fixture", "state": "absent", "allow_delete": True})
    assert res.result["changed"] is True
    assert pool_cluster.changes() == [["osd", "pool", "rm", "fixture", "fixture", "--yes-i-really-really-mean-it"]]


def test_osd_flag_set_only_what_is_missing(ceph, run_module):
    ceph.on("osd", "dump", stdout=recorded("osd_dump_noout"))
    res = run_module(ceph_osd_flag.main, {"flags": ["noout", "norebalance"]}, check_mode=True, diff=True)
    assert res.result["commands"] == ["ceph osd set norebalance"]
    assert "norebalance" in res.result["diff"]["after"]["flags"]
    res = run_module(ceph_osd_flag.main, {"flags": ["noout"]})
    assert res.result["changed"] is False
    res = run_module(ceph_osd_flag.main, {"flags": ["noout", "norebalance"], "state": "absent"})
    assert ceph.changes() == [["osd", "unset", "noout"]]


@pytest.fixture
def config_cluster(ceph):
    ceph.on("config", "dump", stdout=recorded("config_dump"))
    for opt in ("osd_max_backfills", "osd_memory_target", "debug_osd"):
        ceph.on("config", "help", opt, stdout=recorded(f"config_help_{opt}"))
    ceph.on("config", "help", "bogus", rc=2, stderr="Error ENOENT: \n")
    return ceph


@pytest.mark.parametrize(("who", "name", "value"), [
    ("osd", "osd_max_backfills", 2),
    ("osd/class:ssd", "osd_memory_target", "2G"),
    ("osd.1", "debug_osd", "5"),
])
def test_config_stored_value_in_another_spelling_is_no_change(config_cluster, run_module, who, name, value):
    res = run_module(ceph_config.main, {"who": who, "name": name, "value": value})
    assert res.result["changed"] is False and config_cluster.changes() == []


def test_config_change_predicted_with_diff(config_cluster, run_module):
    res = run_module(ceph_config.main, {"who": "osd", "name": "osd_max_backfills", "value": 4},
                     check_mode=True, diff=True)
    assert res.result["changed"] is True and res.result["commands"] == ["ceph config set osd osd_max_backfills 4"]
    assert res.result["diff"] == {"before": {"osd": {"osd_max_backfills": "2"}},
                                  "after": {"osd": {"osd_max_backfills": "4"}}}
    assert config_cluster.changes() == []


def test_config_unknown_option_fails_first(config_cluster, run_module):
    res = run_module(ceph_config.main, {"who": "osd", "name": "bogus", "value": 1})
    assert res.failed and "not a Ceph configuration option" in res.result["msg"]
    assert config_cluster.changes() == []


def test_config_absent_removes_only_when_stored(config_cluster, run_module):
    res = run_module(ceph_config.main, {"who": "mon", "name": "osd_max_backfills", "state": "absent"})
    assert res.result["changed"] is False
    res = run_module(ceph_config.main, {"who": "osd", "name": "osd_max_backfills", "state": "absent"})
    assert res.result["changed"] is True
    assert config_cluster.changes()[-1] == ["config", "rm", "osd", "osd_max_backfills"]


def test_config_info_filters_by_section_and_mask(config_cluster, run_module):
    res = run_module(ceph_config_info.main, {"who": "osd/class:ssd"})
    assert res.result["entries"] == [{"section": "osd", "mask": "class:ssd", "name": "osd_memory_target",
                                      "value": "2147483648"}]
    config_cluster.on("config", "get", stdout="2\n")
    res = run_module(ceph_config_info.main, {"who": "osd", "name": "osd_max_backfills"})
    assert res.result["value"] == "2" and res.result["effective"] == 2
    assert res.result["option"]["type"] == "uint" and config_cluster.changes() == []
