# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

from ansible_collections.homecluster.platform.plugins.modules import talos_bootstrap

ARGS = {"node": "127.0.10.11", "control_plane_nodes": ["127.0.10.11", "127.0.10.12", "127.0.10.13"],
        "talosconfig": "/tmp/talosconfig", "retry_interval": 0, "wait_timeout": 5}
NOT_RUNNING = "error from node 127.0.10.11: rpc error: code = FailedPrecondition desc = etcd is not running\n"


def test_existing_members_mean_done(talosctl, run_module, recorded):
    talosctl.on("etcd", "members", stdout=recorded("recorded_etcd_members.stdout"))
    res = run_module(talos_bootstrap.main, ARGS)
    assert res.result["changed"] is False
    assert res.result["already_bootstrapped"] is True
    assert talosctl.called("bootstrap") == []


def test_check_mode_predicts_bootstrap(talosctl, run_module):
    talosctl.on("etcd", "members", rc=1, stderr=NOT_RUNNING)
    res = run_module(talos_bootstrap.main, ARGS, check_mode=True)
    assert res.result["changed"] is True
    assert talosctl.called("bootstrap") == []


def test_bootstrap_once(talosctl, run_module):
    talosctl.on("etcd", "members", rc=1, stderr=NOT_RUNNING)
    talosctl.on("bootstrap")
    res = run_module(talos_bootstrap.main, ARGS)
    assert res.result["changed"] is True
    assert len(talosctl.called("bootstrap")) == 1


def test_already_exists_is_done(talosctl, run_module):
    talosctl.on("etcd", "members", rc=1, stderr=NOT_RUNNING)
    talosctl.on("bootstrap", rc=1, stderr="error executing bootstrap: rpc error: code = AlreadyExists "
                                          "desc = etcd data directory is not empty")
    res = run_module(talos_bootstrap.main, ARGS)
    assert not res.failed
    assert res.result["changed"] is False
    assert res.result["already_bootstrapped"] is True


def test_interrupted_bootstrap_resumes(talosctl, run_module):
    """The first call is cut off (Unavailable) after etcd started; the retry sees AlreadyExists."""
    talosctl.on("etcd", "members", rc=1, stderr=NOT_RUNNING)
    talosctl.on("bootstrap", answers=[
        (1, "", "error executing bootstrap: rpc error: code = Unavailable desc = connection reset by peer"),
        (1, "", "error executing bootstrap: rpc error: code = AlreadyExists desc = etcd data directory is not empty"),
    ])
    res = run_module(talos_bootstrap.main, ARGS)
    assert not res.failed
    assert res.result["changed"] is True
    assert res.result["attempts"] == 2
