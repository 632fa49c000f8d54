# SPDX-License-Identifier: GPL-3.0-or-later
"""The drift callback: secrets masked in diffs, the report written, the exit code on drift."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from ansible_collections.homecluster.platform.plugins.callback import drift


@pytest.mark.parametrize(("text", "hidden"), [
    ("+password: hunter2\n", "hunter2"),
    ('+  "api_token_secret": "5f0c8e2a-1b7d"\n', "5f0c8e2a-1b7d"),
    ("+sops.agekey=AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ\n", "AGE-SECRET-KEY-1Q"),
    ("+-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n", "abc"),
    ("+  client-key-data: LS0tLS1CRUdJTi\n", None),
])
def test_mask(text, hidden):
    masked = drift.mask(text)
    if hidden:
        assert hidden not in masked
        assert drift.MASK in masked
    else:
        assert masked == text


def test_mask_keeps_plain_lines():
    assert drift.mask("+replicas: 2\n-replicas: 1\n") == "+replicas: 2\n-replicas: 1\n"


class Stats:
    def __init__(self, failures=0):
        self.processed = {"localhost": 1}
        self.failures = failures

    def summarize(self, host):
        return {"failures": self.failures, "unreachable": 0}


def result(changed=True, no_log=False, diff=None):
    task = SimpleNamespace(get_name=lambda: "Apply the pool", action="kubernetes.core.k8s", no_log=no_log)
    host = SimpleNamespace(get_name=lambda: "localhost")
    res = {"changed": changed, "diff": diff or {"before": "a: 1\n", "after": "a: 2\n"}}
    return SimpleNamespace(_task=task, _host=host, _result=res)


def callback(tmp_path, fail=False):
    cb = drift.CallbackModule()
    # Options as ansible would resolve them (the plugin is not loaded through the loader here).
    cb._plugin_options = {"report_path": str(tmp_path / "drift_report.json"), "fail_on_drift": fail,
                          "drift_exit_code": 3}
    cb.v2_playbook_on_play_start(SimpleNamespace(get_name=lambda: "Install Cilium", tags=["cilium"]))
    return cb


def test_report_names_layer_host_task_and_hides_no_log(tmp_path):
    cb = callback(tmp_path)
    cb.v2_runner_on_ok(result())
    cb.v2_runner_on_ok(result(no_log=True, diff={"before": "password: a\n", "after": "password: b\n"}))
    cb.v2_runner_on_ok(result(changed=False))
    cb.v2_playbook_on_stats(Stats())
    doc = json.loads((tmp_path / "drift_report.json").read_text())
    assert doc["drifted"] is True
    assert doc["changes_by_layer"] == {"cilium": 2}
    first, second = doc["changes"]
    assert (first["layer"], first["host"], first["task"]) == ("cilium", "localhost", "Apply the pool")
    assert "+a: 2" in first["diff"]
    assert second["diff"] == "(hidden: the task has no_log)"


def test_fail_on_drift_exits_only_without_failures(tmp_path):
    cb = callback(tmp_path, fail=True)
    cb.v2_runner_on_ok(result())
    with pytest.raises(SystemExit) as exc:
        cb.v2_playbook_on_stats(Stats())
    assert exc.value.code == 3
    cb.v2_playbook_on_stats(Stats(failures=1))  # a failed run keeps its own exit code


def test_no_drift_no_exit(tmp_path):
    cb = callback(tmp_path, fail=True)
    cb.v2_playbook_on_stats(Stats())
    assert json.loads((tmp_path / "drift_report.json").read_text())["drifted"] is False
