# SPDX-License-Identifier: GPL-3.0-or-later
"""ceph_osd in-process against a fake ceph CLI that keeps a small cluster's state.

The fake answers in the shapes `ceph osd tree`, `osd dump`, `osd pool ls detail`, `osd crush rule dump`
and `osd safe-to-destroy` print with `--format json` on the lab cluster (lab/ceph/cluster up --hosts
w1,w2,w3, Ceph 16.2); the documents are hand-written, trimmed to the fields the module reads.
"""
from __future__ import annotations

import json
import types

import pytest
from ansible_collections.homecluster.platform.plugins.module_utils import _ceph
from ansible_collections.homecluster.platform.plugins.modules import ceph_osd

READS = {("osd", "tree"), ("osd", "dump"), ("osd", "pool", "ls"), ("osd", "crush", "rule", "dump"),
         ("osd", "safe-to-destroy"), ("osd", "erasure-code-profile", "get")}


def rule(rule_id, name, domain, root="default"):
    return {"rule_id": rule_id, "rule_name": name, "type": 1, "steps": [
        {"op": "take", "item": -1, "item_name": root},
        {"op": "chooseleaf_firstn", "num": 0, "type": domain},
        {"op": "emit"}]}


class FakeCluster:
    """Keeps hosts, OSDs (up/in) and pools; answers `ceph ARGS --format json` and applies changes."""

    def __init__(self, hosts=("w1", "w2", "w3")):
        self.hosts = {h: [i] for i, h in enumerate(hosts)}
        self.osds = {i: {"up": True, "in": True, "class": "hdd"} for i in range(len(hosts))}
        self.pools = []
        self.rules = [rule(0, "replicated_rule", "osd"), rule(1, "byhost", "host")]
        self.profiles = {}
        self.busy = 0          # safe-to-destroy answers EBUSY this many times
        self.stops_after = 0   # an up OSD being removed goes down after this many `osd dump` reads (-1: never)
        self.calls = []

    def pool(self, name, size, rule_id, pool_type=1, profile=""):
        self.pools.append({"pool_name": name, "pool_id": len(self.pools) + 1, "type": pool_type, "size": size,
                           "min_size": 1, "crush_rule": rule_id, "erasure_code_profile": profile})
        return self

    def tree(self):
        nodes = [{"id": -1, "name": "default", "type": "root", "type_id": 11,
                  "children": [-2 - n for n in range(len(self.hosts))]}]
        for n, (host, ids) in enumerate(self.hosts.items()):
            nodes.append({"id": -2 - n, "name": host, "type": "host", "type_id": 1, "pool_weights": {},
                          "children": list(reversed(ids))})
            for i in ids:
                osd = self.osds[i]
                nodes.append({"id": i, "device_class": osd["class"], "name": f"osd.{i}", "type": "osd",
                              "type_id": 0, "crush_weight": 0.0004, "depth": 2, "exists": 1,
                              "status": "up" if osd["up"] else "down", "reweight": 1.0 if osd["in"] else 0.0})
        return {"nodes": nodes, "stray": []}

    def dump(self):
        if self.stops_after >= 0:
            if self.stops_after == 0:
                for osd in self.osds.values():
                    if not osd["in"]:
                        osd["up"] = False
            else:
                self.stops_after -= 1
        return {"epoch": 42, "flags_set": ["sortbitwise"],
                "osds": [{"osd": i, "up": int(o["up"]), "in": int(o["in"]), "weight": 1.0 if o["in"] else 0.0}
                         for i, o in sorted(self.osds.items())]}

    def safe_to_destroy(self, args):
        ids = [int(i) for i in args[2:]]
        if self.busy:  # as Ceph 16 answers with --format json: rc 0, the document says what is not safe
            self.busy -= 1
            return 0, json.dumps({"safe_to_destroy": [], "active": ids, "missing_stats": [], "stored_pgs": []}), ""
        return 0, json.dumps({"safe_to_destroy": ids, "active": [], "missing_stats": [], "stored_pgs": []}), ""

    def out(self, args):
        for i in args[2:]:
            self.osds[int(i)]["in"] = False
        return 0, "", f"marked out osd.{','.join(args[2:])}. \n"

    def purge(self, args):
        osd = int(args[2])
        assert not self.osds[osd]["up"], "purge of an up OSD"
        del self.osds[osd]
        for ids in self.hosts.values():
            if osd in ids:
                ids.remove(osd)
        return 0, "", f"purged osd.{osd}\n"

    def crush_rm(self, args):
        assert self.hosts[args[3]] == [], "crush rm of a bucket that is not empty"
        del self.hosts[args[3]]
        return 0, "", f"removed item id -4 name '{args[3]}' from crush map\n"

    def answer(self, args):
        handlers = {
            ("osd", "tree"): lambda a: (0, json.dumps(self.tree()), ""),
            ("osd", "dump"): lambda a: (0, json.dumps(self.dump()), ""),
            ("osd", "pool", "ls"): lambda a: (0, json.dumps(self.pools), ""),
            ("osd", "crush", "rule", "dump"): lambda a: (0, json.dumps(self.rules), ""),
            ("osd", "erasure-code-profile", "get"): lambda a: (0, json.dumps(self.profiles[a[3]]), ""),
            ("osd", "safe-to-destroy"): self.safe_to_destroy,
            ("osd", "out"): self.out,
            ("osd", "purge"): self.purge,
            ("osd", "crush", "rm"): self.crush_rm,
        }
        for prefix, handler in handlers.items():
            if tuple(args[:len(prefix)]) == prefix:
                return handler(args)
        raise AssertionError(f"unexpected ceph command {args}")

    def __call__(self, cmd, **_kwargs):
        args = cmd[cmd.index("--connect-timeout") + 2:]
        if args[-2:] == ["--format", "json"]:
            args = args[:-2]
        self.calls.append(args)
        rc, out, err = self.answer(args)
        return types.SimpleNamespace(returncode=rc, stdout=out, stderr=err)

    def changes(self):
        return [c for c in self.calls if not any(tuple(c[:len(r)]) == r for r in READS)]


@pytest.fixture
def cluster(monkeypatch):
    fake = FakeCluster().pool(".mgr", 2, 0).pool("rbd", 2, 1)
    monkeypatch.setattr(_ceph, "_subprocess_run", fake)
    monkeypatch.setattr(_ceph.CephRunner, "_locate", lambda self, name, what: f"/usr/bin/{name}")
    return fake


FAST = {"poll_interval": 0, "wait_timeout": 5}


def test_absent_outs_waits_purges_and_removes_the_bucket(cluster, run_module):
    cluster.busy = 2
    cluster.stops_after = 2
    res = run_module(ceph_osd.main, {"host": "w3", **FAST}, diff=True)
    assert not res.failed, res.result
    assert res.result["changed"] is True and res.result["osds"] == [2]
    assert res.result["commands"] == [["ceph", "osd", "out", "2"],
                                      ["ceph", "osd", "purge", "2", "--yes-i-really-mean-it"],
                                      ["ceph", "osd", "crush", "rm", "w3"]]
    assert cluster.changes() == [c[1:] for c in res.result["commands"]]
    assert res.result["plan"] == ["mark osd.2 out", "wait until osd.2 safe to destroy", "wait until osd.2 down",
                                  "purge osd.2", "remove CRUSH host bucket w3"]
    assert {"name": "rbd", "size": 2, "failure_domain": "host", "remaining": 2} in res.result["pools"]
    assert res.result["diff"]["before"] == {"osds": [{"id": 2, "up": True, "in": True}], "bucket_present": True}
    assert res.result["diff"]["after"] == {"osds": [], "bucket_present": False}
    assert "w3" not in cluster.hosts and 2 not in cluster.osds

    again = run_module(ceph_osd.main, {"host": "w3", **FAST})
    assert again.result["changed"] is False and again.result["commands"] == [] and again.result["osds"] == []
    assert len(cluster.changes()) == 3


def test_host_failure_domain_refuses_before_any_change(cluster, run_module):
    del cluster.hosts["w3"]
    del cluster.osds[2]
    res = run_module(ceph_osd.main, {"host": "w2", **FAST})
    assert res.failed
    msg = res.result["msg"]
    assert "pool rbd (size 2, failure domain host) would keep 1 host(s)" in msg, msg
    assert "Add a host with OSDs or another OSD first" in msg or "Add another OSD or a host with OSDs first" in msg
    assert "ceph osd pool set rbd size 1" in msg and "Nothing was changed" in msg
    assert cluster.changes() == []
    assert {"name": "rbd", "size": 2, "failure_domain": "host", "remaining": 1} in res.result["pools"]


def test_osd_failure_domain_counts_osds(cluster, run_module):
    cluster.pools[0]["size"] = 3  # .mgr keeps 3 copies on the osd-level replicated_rule
    res = run_module(ceph_osd.main, {"ids": [2], **FAST})
    assert res.failed and "pool .mgr (size 3, failure domain osd) would keep 2 up and in OSD(s)" in res.result["msg"]
    assert "pool rbd" not in res.result["msg"] and "Add another OSD first" in res.result["msg"]
    assert cluster.changes() == []


def test_a_node_down_already_does_not_count(cluster, run_module):
    cluster.osds[1]["up"] = False
    res = run_module(ceph_osd.main, {"host": "w3", **FAST}, check_mode=True)
    assert res.failed and "pool rbd (size 2, failure domain host) would keep 1 host(s)" in res.result["msg"]


def test_erasure_pool_uses_k_plus_m(cluster, run_module):
    cluster.profiles["ec21"] = {"k": "2", "m": "1", "plugin": "jerasure", "crush-failure-domain": "host"}
    cluster.pool("ecpool", 3, 1, pool_type=3, profile="ec21")
    res = run_module(ceph_osd.main, {"host": "w3", **FAST}, check_mode=True)
    assert res.failed and "pool ecpool (size 3, failure domain host) would keep 2 host(s)" in res.result["msg"]


def test_check_mode_reads_plans_and_changes_nothing(cluster, run_module):
    res = run_module(ceph_osd.main, {"host": "w3", **FAST}, check_mode=True, diff=True)
    assert not res.failed and res.result["changed"] is True
    assert res.result["commands"] == [] and cluster.changes() == []
    assert res.result["plan"][0] == "mark osd.2 out" and res.result["plan"][-1] == "remove CRUSH host bucket w3"
    assert res.result["diff"]["after"] == {"osds": [], "bucket_present": False}
    assert not [c for c in cluster.calls if c[:2] == ["osd", "safe-to-destroy"]], "check mode waited"
    assert cluster.osds[2] == {"up": True, "in": True, "class": "hdd"}


def test_out_marks_out_and_waits_until_safe(cluster, run_module):
    cluster.busy = 3
    cluster.stops_after = -1
    res = run_module(ceph_osd.main, {"ids": [2, 7], "state": "out", **FAST}, diff=True)
    assert not res.failed, res.result
    assert res.result["osds"] == [2]
    assert res.result["commands"] == [["ceph", "osd", "out", "2"]]
    assert len([c for c in cluster.calls if c[:2] == ["osd", "safe-to-destroy"]]) == 4
    assert res.result["diff"]["after"] == {"osds": [{"id": 2, "up": True, "in": False}]}
    again = run_module(ceph_osd.main, {"ids": [2], "state": "out", **FAST})
    assert again.result["changed"] is False and cluster.changes() == [["osd", "out", "2"]]


def test_unsafe_timeout_names_the_osds(cluster, run_module):
    cluster.busy = 1000
    res = run_module(ceph_osd.main, {"host": "w3", "state": "out", "poll_interval": 0, "wait_timeout": 0})
    assert res.failed and "osd.2 not safe to destroy (placement groups still mapped to: osd.2)" in res.result["msg"]
    assert res.result["commands"] == [["ceph", "osd", "out", "2"]]


def test_daemon_still_running_times_out_with_what_to_do_then_resumes(cluster, run_module):
    cluster.stops_after = -1
    res = run_module(ceph_osd.main, {"host": "w3", "poll_interval": 0, "wait_timeout": 0})
    assert res.failed
    msg = res.result["msg"]
    assert "osd.2 still up" in msg and "rook-ceph-osd-2 to 0" in msg and "power off the node" in msg
    assert cluster.changes() == [["osd", "out", "2"]]
    cluster.stops_after = 0
    resumed = run_module(ceph_osd.main, {"host": "w3", **FAST})
    assert resumed.result["changed"] is True
    assert resumed.result["plan"][0] == "wait until osd.2 safe to destroy"
    assert [c[1:] for c in resumed.result["commands"]] == [["osd", "purge", "2", "--yes-i-really-mean-it"],
                                                           ["osd", "crush", "rm", "w3"]]


def test_empty_bucket_left_behind_is_removed(cluster, run_module):
    cluster.hosts["w4"] = []
    res = run_module(ceph_osd.main, {"host": "w4", **FAST})
    assert res.result["changed"] is True and cluster.changes() == [["osd", "crush", "rm", "w4"]]


def test_missing_bucket_is_a_no_op(cluster, run_module):
    res = run_module(ceph_osd.main, {"host": "gone", **FAST}, diff=True)
    assert not res.failed and res.result["changed"] is False
    assert res.result["osds"] == [] and res.result["plan"] == [] and cluster.changes() == []
    assert res.result["diff"]["before"] == res.result["diff"]["after"] == {"osds": [], "bucket_present": False}


def test_host_and_ids_are_exclusive(cluster, run_module):
    res = run_module(ceph_osd.main, {"host": "w3", "ids": [2]})
    assert res.failed and "mutually exclusive" in res.result["msg"]
    res = run_module(ceph_osd.main, {})
    assert res.failed and "one of the following is required" in res.result["msg"]


def test_rule_placement_reads_root_class_and_domain():
    dumped = {"rule_id": 2, "rule_name": "fast", "type": 1, "steps": [
        {"op": "take", "item": -12, "item_name": "default~ssd"},
        {"op": "chooseleaf_firstn", "num": 0, "type": "rack"}, {"op": "emit"}]}
    assert ceph_osd.rule_placement(dumped) == ("default", "ssd", "rack")
    assert ceph_osd.ec_profile_size({"k": "4", "m": "2"}) == 6
    assert ceph_osd.ec_profile_size({}) is None
