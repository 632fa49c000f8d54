# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import json

from ansible_collections.homecluster.platform.plugins.modules import talos_health

NODES = ["127.0.10.11", "127.0.10.12", "127.0.10.21"]
ARGS = {"nodes": NODES, "talosconfig": "/tmp/talosconfig", "interval": 0, "timeout": 30}


def status(node, stage="running", ready=True, unmet=None):
    return json.dumps({"node": node, "metadata": {"id": "machine"},
                       "spec": {"stage": stage, "status": {"ready": ready, "unmetConditions": unmet or []}}}, indent=4)


def test_all_nodes_in_one_call_per_round(talosctl, run_module):
    first = "\n".join([status(NODES[0]), status(NODES[1], "booting", False, [{"name": "etcd", "reason": "starting"}])])
    err = f"error listing resources on node {NODES[2]}: rpc error: code = Unavailable desc = connection refused\n"
    done = "\n".join(status(n) for n in NODES)
    talosctl.on("get", "machinestatus", answers=[(1, first, err), (0, done, "")])
    res = run_module(talos_health.main, ARGS)
    assert not res.failed
    assert res.result["rounds"] == 2
    calls = talosctl.called("machinestatus")
    assert len(calls) == 2
    assert calls[0][calls[0].index("--nodes") + 1] == ",".join(NODES)


def test_timeout_names_the_nodes_not_ready(talosctl, run_module):
    talosctl.on("get", "machinestatus", stdout=status(NODES[0]) + status(NODES[1], "booting", False,
                                                                         [{"name": "etcd", "reason": "joining"}]),
                rc=1, stderr=f"error listing resources on node {NODES[2]}: connection refused\n")
    res = run_module(talos_health.main, dict(ARGS, timeout=0))
    assert res.failed
    assert "2 of 3" in res.result["msg"]
    assert "etcd: joining" in res.result["msg"]
    assert NODES[2] in res.result["msg"]
