# SPDX-License-Identifier: GPL-3.0-or-later
"""talos_reset against a fake talosctl that plays a small cluster (3 control planes, 1 worker).

The fake answers in the shapes talosctl v1.14.1 prints against lab/talos_sim: the etcd members and
status tables and the version text as recorded in tests/unit/plugins/module_utils (test_talos_day2),
machinestatus JSON and the per-node error lines as in tests/unit/plugins/modules/talos/fixtures.
The per-node etcd error line ("error from node ...") is hand-written in the form talos_day2's tests
use. The integration test (tests/integration/talos/test_talos_reset.py) runs the real talosctl.
"""
from __future__ import annotations

import json

import pytest
from ansible_collections.homecluster.platform.plugins.module_utils import _talosctl
from ansible_collections.homecluster.platform.plugins.modules import talos_reset

CP1 = "10.5.0.11"
CP2 = "10.5.0.12"
CP3 = "10.5.0.13"
W1 = "10.5.0.21"
CPS = [CP1, CP2, CP3]
CONNECTION = ("--insecure", "--talosconfig", "--context", "--endpoints", "--nodes")
REFUSED = ('rpc error: code = Unavailable desc = connection error: desc = "transport: Error while dialing: '
           'dial tcp {0}:50000: connect: connection refused"')
TLS_REQUIRED = ('rpc error: code = Unavailable desc = connection error: desc = "transport: authentication '
                'handshake failed: remote error: tls: certificate required"')
UNKNOWN_CA = ('rpc error: code = Unavailable desc = connection error: desc = "transport: authentication handshake '
              'failed: tls: failed to verify certificate: x509: certificate signed by unknown authority"')


def table(header, rows):
    """A table as talosctl's tabwriter prints it: columns padded to the widest cell plus three spaces."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) + 3 for i in range(len(header))]
    return "".join("".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n"
                   for r in [header, *rows])


class FakeCluster:
    """A cluster's nodes as talosctl sees them; records every call. A reset takes effect a few calls later."""

    def __init__(self):
        self.nodes = {}
        for i, addr in enumerate(CPS, start=1):
            self.nodes[addr] = {"name": f"cp{i}", "type": "controlplane", "state": "running", "member": True,
                                "id": f"{i:x}" * 16}
        self.nodes[W1] = {"name": "w1", "type": "worker", "state": "running", "member": False, "id": None}
        self.alarms = []
        self.lists = {}  # addr -> member names it lists instead of the truth (inconsistent views)
        self.calls = []
        self.pending = []  # [calls left, addr, state after]

    # -- helpers ---------------------------------------------------------------------------
    def commands(self, *words):
        return [c for c in self.calls if all(w in c for w in words)]

    def members(self):
        return [(a, n) for a, n in self.nodes.items() if n["member"]]

    def quorum(self):
        up = [a for a, n in self.members() if n["state"] == "running"]
        return len(up) > len(self.members()) // 2

    def tick(self):
        for item in list(self.pending):
            item[0] -= 1
            if item[0] <= 0:
                self.pending.remove(item)
                node = self.nodes[item[1]]
                node.update(state=item[2], member=False if item[3] else node["member"])

    # -- talosctl --------------------------------------------------------------------------
    def __call__(self, cmd, data, timeout):
        self.calls.append(cmd)
        self.tick()
        cut = next((i for i, a in enumerate(cmd) if a in CONNECTION), len(cmd))
        args, conn = cmd[1:cut], cmd[cut:]
        nodes = conn[conn.index("--nodes") + 1].split(",") if "--nodes" in conn else []
        insecure = "--insecure" in conn
        answers = {
            "version": lambda: self.version(nodes),
            "get": lambda: self.get(args[1], nodes, insecure),
            "etcd members": lambda: self.etcd(nodes, self.member_rows),
            "etcd status": lambda: self.etcd(nodes, self.status_rows),
            "etcd alarm": lambda: self.etcd(nodes, self.alarm_rows),
            "etcd remove-member": lambda: self.remove_member(nodes[0], args[2]),
            "reset": lambda: self.reset(nodes[0], args),
        }
        key = " ".join(args[:2]) if args[0] == "etcd" else args[0]
        if key not in answers:
            raise AssertionError(f"unexpected talosctl call: {cmd}")
        return answers[key]()

    def down_error(self, addr, insecure=False):
        node = self.nodes[addr]
        if node["state"] == "off":
            return REFUSED.format(addr)
        if node["state"] == "maintenance":
            return None if insecure else UNKNOWN_CA
        return TLS_REQUIRED if insecure else None

    def version(self, nodes):
        out, err = ["Client:", "\tTag:         v1.14.1", "Server:"], []
        for addr in nodes:
            problem = self.down_error(addr)
            if problem:
                err.append(f"{addr}: error getting server version: {problem}")
            else:
                out += [f"\tNODE:        {addr}", "\tTag:         v1.14.1"]
        return (1 if err else 0), "\n".join(out) + "\n", "\n".join(err)

    def get(self, resource, nodes, insecure):
        items, err = [], []
        for addr in nodes:
            node = self.nodes[addr]
            problem = self.down_error(addr, insecure)
            if problem:
                err.append(f"{addr}: error getting server version: {problem}")
                continue
            if resource == "machinestatus":
                stage = "maintenance" if insecure else node.get("stage", "running")
                items.append({"node": addr, "metadata": {"id": "machine", "namespace": "runtime"},
                              "spec": {"stage": stage, "status": {"ready": True, "unmetConditions": []}}})
            elif resource == "machinetype":
                items.append({"node": addr, "metadata": {"id": "machine-type", "namespace": "config"},
                              "spec": node["type"]})
            elif resource == "nodename":
                items.append({"node": addr, "metadata": {"id": "nodename", "namespace": "k8s"},
                              "spec": {"nodename": node["name"], "hostnameVersion": "1"}})
            else:
                raise AssertionError(f"unexpected resource {resource}")
        return (1 if err else 0), "\n".join(json.dumps(i) for i in items), "\n".join(err)

    def member_rows(self, addr):
        names = self.lists.get(addr)
        return [[addr, n["id"], n["name"], f"https://{a}:2380", f"https://{a}:2379", "false"]
                for a, n in self.members() if names is None or n["name"] in names]

    def status_rows(self, addr):
        leader = self.members()[0][1]["id"]
        return [[addr, self.nodes[addr]["id"], "4.2 MB", "2.1 MB (50.00%)", leader, "1000", "2", "false"]]

    def alarm_rows(self, addr):
        return [[addr, member, alarm] for member, alarm in self.alarms]

    def etcd(self, nodes, rows_of):
        header = {self.member_rows: ["NODE", "ID", "HOSTNAME", "PEER URLS", "CLIENT URLS", "LEARNER"],
                  self.status_rows: ["NODE", "MEMBER", "DB SIZE", "IN USE", "LEADER", "RAFT INDEX", "RAFT TERM",
                                     "LEARNER"],
                  self.alarm_rows: ["NODE", "MEMBER", "ALARM"]}[rows_of]
        rows, err = [], []
        for addr in nodes:
            node = self.nodes[addr]
            if node["state"] != "running":
                err.append(f"error from node {addr}: {REFUSED.format(addr)}")
            elif not node["member"]:
                err.append(f"error from node {addr}: rpc error: code = FailedPrecondition desc = not an etcd member")
            elif not self.quorum():
                err.append(f"error from node {addr}: rpc error: code = Unavailable desc = etcdserver: no leader")
            else:
                rows += rows_of(addr)
        return (1 if err else 0), table(header, rows), "\n".join(err)

    def remove_member(self, via, member_id):
        for node in self.nodes.values():
            if node["member"] and node["id"] == member_id:
                node["member"] = False
                return 0, "", ""
        return 1, "", f"error from node {via}: rpc error: code = NotFound desc = etcdserver: member not found"

    def reset(self, addr, args):
        node = self.nodes[addr]
        if "--graceful=true" in args and node["member"] and len(self.members()) == 1:
            return 1, "", ("error executing reset: rpc error: code = FailedPrecondition desc = failed to leave etcd: "
                           "etcd member is the last one in the cluster")
        node["stage"] = "resetting"
        after = "maintenance" if "--reboot=true" in args else "off"
        self.pending.append([3, addr, after, "--graceful=true" in args])
        return 0, "", ""


@pytest.fixture
def cluster(monkeypatch):
    fake = FakeCluster()
    monkeypatch.setattr(_talosctl.Talosctl, "_subprocess_run",
                        lambda self, cmd, data, timeout: fake(cmd, data, timeout))
    monkeypatch.setattr(_talosctl, "find_binary", lambda module, path=None: "/usr/bin/talosctl")
    monkeypatch.setattr(talos_reset.time, "sleep", lambda seconds: None)
    return fake


@pytest.fixture
def reset(run_module, tmp_path):
    talosconfig = tmp_path / "talosconfig"
    talosconfig.write_text("context: lab\n")

    def run(node, check_mode=False, **args):
        params = {"node": node, "talosconfig": str(talosconfig), "endpoints": [CP1], "timeout": 5, **args}
        return run_module(talos_reset.main, params, check_mode=check_mode, diff=True)

    return run


def test_worker_reset_then_the_rerun_is_a_no_op(cluster, reset):
    first = reset(W1, control_planes=CPS)
    assert not first.failed, first.result
    r = first.result
    assert r["changed"] and r["control_plane"] is False and r["etcd_member"] is False
    assert r["node_state"] == "running" and r["hostname"] == "w1"
    calls = cluster.commands("reset")
    assert len(calls) == 1
    assert calls[0][1:6] == ["reset", "--graceful=true", "--reboot=false", "--wait=false", "--wipe-mode=all"]
    # the reset goes to the node itself, not through the talosconfig endpoint
    assert calls[0][calls[0].index("--endpoints") + 1] == W1 and calls[0][-1] == W1
    assert r["etcd_members_before"] == r["etcd_members_after"] == ["cp1", "cp2", "cp3"]
    assert cluster.nodes[W1]["state"] == "off"

    again = reset(W1, control_planes=CPS)
    assert not again.failed, again.result
    assert again.result["changed"] is False and again.result["plan"] == []
    assert again.result["node_state"] == "unreachable"
    assert len(cluster.commands("reset")) == 1


def test_control_plane_leaves_etcd_and_the_others_stay(cluster, reset):
    res = reset(CP3, control_planes=CPS, reboot=True, wipe_mode="system-disk", user_disks_to_wipe=["/dev/sdb"])
    assert not res.failed, res.result
    r = res.result
    assert r["changed"] and r["control_plane"] and r["etcd_member"]
    assert r["etcd_members_before"] == ["cp1", "cp2", "cp3"] and r["etcd_members_after"] == ["cp1", "cp2"]
    assert r["diff"]["after"] == {"node_state": "maintenance", "etcd_members": ["cp1", "cp2"]}
    call = cluster.commands("reset")[0]
    assert "--reboot=true" in call and "--wipe-mode=system-disk" in call
    assert call[call.index("--user-disks-to-wipe") + 1] == "/dev/sdb"
    # etcd is read from the other control planes only, through them (CP3 was the endpoint it must not use)
    for c in cluster.commands("etcd"):
        assert CP3 not in c[c.index("--nodes") + 1].split(",")
        assert CP3 not in c[c.index("--endpoints") + 1].split(",")
    assert "wait for cp3 to leave etcd" in r["plan"]
    assert cluster.nodes[CP3]["state"] == "maintenance" and not cluster.nodes[CP3]["member"]

    again = reset(CP3, control_planes=CPS)
    assert not again.failed and again.result["changed"] is False, again.result


def test_check_mode_reads_only_and_predicts(cluster, reset):
    res = reset(CP2, control_planes=CPS, check_mode=True)
    assert not res.failed, res.result
    r = res.result
    assert r["changed"] and r["plan"][0].startswith("talosctl reset --graceful=true")
    assert r["diff"]["before"] == {"node_state": "running", "etcd_members": ["cp1", "cp2", "cp3"]}
    assert r["diff"]["after"] == {"node_state": "unreachable", "etcd_members": ["cp1", "cp3"]}
    assert cluster.commands("reset") == [] and cluster.commands("remove-member") == []
    assert cluster.nodes[CP2]["member"] and cluster.nodes[CP2]["state"] == "running"


def test_refused_while_another_member_is_down(cluster, reset):
    cluster.nodes[CP2]["state"] = "off"
    res = reset(CP3, control_planes=CPS)
    assert res.failed
    msg = res.result["msg"]
    assert msg.startswith(f"refusing to reset control plane {CP3} (cp3)")
    assert "only 1 of the 2 remaining etcd members would be healthy" in msg
    assert f"cp2 ({CP2}:" in msg and "bring it back" in msg, msg
    assert cluster.commands("reset") == []
    # in check mode too
    assert reset(CP3, control_planes=CPS, check_mode=True).failed
    # a worker does not touch etcd: it may go while cp2 is down
    assert not reset(W1, control_planes=CPS).failed


def test_refused_for_the_last_member(cluster, reset):
    res = reset(CP1, control_planes=[CP1])
    assert res.failed and "only control plane" in res.result["msg"]
    for addr in (CP2, CP3):
        cluster.nodes[addr].update(member=False, state="off")
    res = reset(CP1, control_planes=CPS)
    assert res.failed and "cp1 is the last etcd member" in res.result["msg"], res.result["msg"]
    assert cluster.commands("reset") == []


def test_refused_when_member_lists_differ_or_an_alarm_is_set(cluster, reset):
    cluster.lists[CP2] = ["cp1", "cp2"]
    res = reset(CP3, control_planes=CPS)
    assert res.failed and "list different etcd members" in res.result["msg"], res.result["msg"]
    assert f"{CP2}: cp1,cp2" in res.result["msg"]
    cluster.lists.clear()
    cluster.alarms.append((cluster.nodes[CP1]["id"], "NOSPACE"))
    res = reset(CP3, control_planes=CPS)
    assert res.failed and "alarm" in res.result["msg"] and "NOSPACE" in res.result["msg"]
    assert cluster.commands("reset") == []


def test_control_plane_needs_control_planes(cluster, reset):
    res = reset(CP3)
    assert res.failed and "set control_planes" in res.result["msg"]
    assert cluster.commands("reset") == []


def test_dead_member_is_removed_only_with_remove_member(cluster, reset):
    cluster.nodes[CP3]["state"] = "off"
    res = reset(CP3, control_planes=CPS)
    assert res.failed and "remove_member=true" in res.result["msg"] and "still an etcd member" in res.result["msg"]
    assert cluster.commands("remove-member") == []

    res = reset(CP3, control_planes=CPS, remove_member=True, check_mode=True)
    assert not res.failed and res.result["changed"] and cluster.commands("remove-member") == []

    res = reset(CP3, control_planes=CPS, remove_member=True)
    assert not res.failed, res.result
    assert res.result["changed"] and res.result["etcd_members_after"] == ["cp1", "cp2"]
    call = cluster.commands("remove-member")[0]
    assert call[1:4] == ["etcd", "remove-member", cluster.nodes[CP3]["id"]]
    assert call[call.index("--nodes") + 1] == CP1
    assert cluster.commands("reset") == []

    again = reset(CP3, control_planes=CPS, remove_member=True)
    assert not again.failed and again.result["changed"] is False
    assert len(cluster.commands("remove-member")) == 1


def test_non_graceful_control_plane_reset_needs_remove_member(cluster, reset):
    res = reset(CP3, control_planes=CPS, graceful=False)
    assert res.failed and "graceful=false" in res.result["msg"] and cluster.commands("reset") == []
    res = reset(CP3, control_planes=CPS, graceful=False, remove_member=True)
    assert not res.failed, res.result
    assert "--graceful=false" in cluster.commands("reset")[0]
    assert res.result["plan"][-1].startswith(f"talosctl etcd remove-member {cluster.nodes[CP3]['id']} (cp3)")
    assert len(cluster.commands("remove-member")) == 1
    assert res.result["etcd_members_after"] == ["cp1", "cp2"]


def test_node_that_never_goes_away_times_out_with_what_is_pending(cluster, reset, monkeypatch):
    clock = iter(range(0, 10000, 5))
    monkeypatch.setattr(talos_reset.time, "monotonic", lambda: next(clock))
    cluster.reset = lambda addr, args: (0, "", "")  # accepted, never acted on
    res = reset(W1, control_planes=CPS, timeout=30)
    assert res.failed
    assert f"{W1} was reset but after 30s" in res.result["msg"] and "still answers" in res.result["msg"]
