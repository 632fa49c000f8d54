# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import json

import pytest
from ansible_collections.homecluster.platform.plugins.modules import talos_apply

NODE = "127.0.10.21"
TLS_ERR = (f"error listing resources on node {NODE}: rpc error: code = Unavailable desc = connection error: desc = "
           '"error reading server preface: remote error: tls: certificate required"\n')
DOWN_ERR = (f"error listing resources on node {NODE}: rpc error: code = Unavailable desc = connection error: desc = "
            f'"transport: Error while dialing: dial tcp {NODE}:50000: connect: connection refused"\n')
MAINT = json.dumps({"node": NODE, "metadata": {"id": "machine"}, "spec": {"stage": "maintenance"}})


@pytest.fixture
def args(tmp_path):
    cfg = tmp_path / "w1.yaml"
    cfg.write_text("version: v1alpha1\nmachine:\n  type: worker\n  token: secret-token\n")
    return {"node": NODE, "config_file": str(cfg), "talosconfig": str(tmp_path / "talosconfig"),
            "endpoints": ["127.0.10.11"]}


def test_maintenance_node_gets_insecure_apply(talosctl, run_module, args):
    talosctl.on("get", "machinestatus", insecure=True, stdout=MAINT)
    talosctl.on("apply-config", insecure=True, stderr="Applied configuration without a reboot\n")
    res = run_module(talos_apply.main, args, diff=True)
    assert not res.failed
    assert res.result["changed"] is True
    assert res.result["node_state"] == "maintenance"
    assert "secret-token" not in res.result["diff"]["after"]
    apply = talosctl.called("apply-config")
    assert len(apply) == 1 and "--insecure" in apply[0] and "--dry-run" not in apply[0]


def test_maintenance_check_mode_applies_nothing(talosctl, run_module, args):
    talosctl.on("get", "machinestatus", insecure=True, stdout=MAINT)
    res = run_module(talos_apply.main, args, check_mode=True)
    assert res.result["changed"] is True
    assert talosctl.called("apply-config") == []


def test_configured_without_changes_makes_no_apply_call(talosctl, run_module, args, recorded):
    talosctl.on("get", "machinestatus", insecure=True, rc=1, stderr=TLS_ERR)
    talosctl.on("apply-config", "--dry-run", insecure=False, stderr=recorded("recorded_dry_run_no_changes.stderr"))
    res = run_module(talos_apply.main, args)
    assert res.result["changed"] is False
    calls = talosctl.called("apply-config")
    assert len(calls) == 1 and "--dry-run" in calls[0]
    assert "--talosconfig" in calls[0]


def test_configured_change_is_diffed_then_applied(talosctl, run_module, args, recorded):
    talosctl.on("get", "machinestatus", insecure=True, rc=1, stderr=TLS_ERR)
    talosctl.on("apply-config", "--dry-run", stderr=recorded("recorded_dry_run_label.stderr"))
    talosctl.on("apply-config", stderr="Applied configuration without a reboot\n")
    res = run_module(talos_apply.main, args, diff=True)
    assert res.result["changed"] is True
    assert res.result["applied_mode"] == "auto"
    assert "topology.kubernetes.io/zone: b" in res.result["diff"]["prepared"]
    real = [c for c in talosctl.called("apply-config") if "--dry-run" not in c]
    assert len(real) == 1 and real[0][real[0].index("--mode") + 1] == "auto"


def test_change_needing_reboot_is_staged_not_rebooted(talosctl, run_module, args, handwritten):
    talosctl.on("get", "machinestatus", insecure=True, rc=1, stderr=TLS_ERR)
    talosctl.on("apply-config", "--dry-run", stderr=handwritten("handwritten_dry_run_reboot.stderr"))
    talosctl.on("apply-config", stderr="Staged configuration to be applied after the next reboot\n")
    res = run_module(talos_apply.main, args, diff=True)
    assert res.result["applied_mode"] == "staged"
    assert res.result["reboot_required"] is True
    assert "abcdef.0123456789abcdef" not in res.result["diff"]["prepared"]
    real = [c for c in talosctl.called("apply-config") if "--dry-run" not in c]
    assert real[0][real[0].index("--mode") + 1] == "staged"


def test_reboot_opt_in_keeps_auto(talosctl, run_module, args, handwritten):
    talosctl.on("get", "machinestatus", insecure=True, rc=1, stderr=TLS_ERR)
    talosctl.on("apply-config", "--dry-run", stderr=handwritten("handwritten_dry_run_reboot.stderr"))
    talosctl.on("apply-config", stderr="Applied configuration with a reboot\n")
    res = run_module(talos_apply.main, dict(args, allow_reboot=True))
    assert res.result["applied_mode"] == "auto"


def test_no_reboot_mode_fails_before_applying(talosctl, run_module, args, handwritten):
    talosctl.on("get", "machinestatus", insecure=True, rc=1, stderr=TLS_ERR)
    talosctl.on("apply-config", "--dry-run", stderr=handwritten("handwritten_dry_run_reboot.stderr"))
    res = run_module(talos_apply.main, dict(args, mode="no-reboot"))
    assert res.failed
    assert "needs a reboot" in res.result["msg"]
    assert len(talosctl.called("apply-config")) == 1


def test_unreachable_node_fails_clearly(talosctl, run_module, args):
    talosctl.on("get", "machinestatus", insecure=True, rc=1, stderr=DOWN_ERR)
    res = run_module(talos_apply.main, args)
    assert res.failed
    assert "unreachable" in res.result["msg"] and NODE in res.result["msg"]
    assert talosctl.called("apply-config") == []
