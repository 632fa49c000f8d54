# SPDX-License-Identifier: GPL-3.0-or-later
"""talos_info and the state probe on output recorded from talosctl v1.14.1 against lab/talos_sim."""
from __future__ import annotations

from ansible_collections.homecluster.platform.plugins.modules import talos_info


def test_probe_sorts_maintenance_configured_unreachable(talosctl, run_module, recorded, tmp_path):
    talosconfig = tmp_path / "talosconfig"
    talosconfig.write_text("context: x\n")
    maint = recorded("recorded_machinestatus_mtls_running.stdout").replace("127.0.20.14", "127.0.20.13")
    maint = maint.replace('"stage": "running"', '"stage": "maintenance"')
    running = recorded("recorded_machinestatus_mtls_running.stdout")
    off = recorded("recorded_machinestatus_insecure_off.stderr")
    # insecure: the version check fails the whole call on the configured and the powered-off node,
    # then the maintenance node answers alone
    talosctl.on("get", "machinestatus", "127.0.20.13,127.0.20.14,127.0.20.15", insecure=True, rc=1,
                stderr=recorded("recorded_machinestatus_insecure_configured.stderr"))
    talosctl.on("get", "machinestatus", "127.0.20.13", insecure=True, stdout=maint)
    # mTLS for the rest: the configured node answers, the powered-off one is refused
    talosctl.on("get", "machinestatus", "127.0.20.14,127.0.20.15", insecure=False, rc=1, stderr=off)
    talosctl.on("get", "machinestatus", "127.0.20.14", insecure=False, stdout=running)
    res = run_module(talos_info.main, {"nodes": ["127.0.20.13", "127.0.20.14", "127.0.20.15"],
                                       "talosconfig": str(talosconfig), "gather": ["status"]})
    assert not res.failed, res.result
    assert res.result["maintenance_nodes"] == ["127.0.20.13"]
    assert res.result["configured_nodes"] == ["127.0.20.14"]
    assert res.result["unreachable_nodes"] == ["127.0.20.15"]
    assert res.result["nodes"]["127.0.20.14"]["ready"] is True
    assert "connection refused" in res.result["nodes"]["127.0.20.15"]["error"]
    assert res.result["changed"] is False
