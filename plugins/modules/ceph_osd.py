#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: HomeCluster developers
from __future__ import annotations

DOCUMENTATION = r"""
module: ceph_osd
short_description: Take a node's OSDs out of Ceph and remove them safely, or wait for a new node's OSDs
version_added: 0.3.0
description:
  - Day-2 removal of a storage node (or of single OSDs). The OSDs are those under the CRUSH host
    bucket O(host) (read from C(ceph osd tree)) or those listed in O(ids).
  - Before any change, a safety check runs for every replicated and erasure-coded pool whose CRUSH
    rule takes from the root holding these OSDs. From the rule's C(chooseleaf)/C(choose) step it
    reads the failure domain (C(host), C(rack), C(osd), ...) and counts the failure-domain buckets
    that would still hold an up and in OSD once these OSDs are gone. When fewer would remain than
    the pool keeps copies (its size; k+m for an erasure-coded pool), the task fails naming the pool
    and changes nothing - add a node first, or lower the pool's size to accept fewer copies.
  - O(state=out) marks the OSDs out (C(ceph osd out)) and waits until C(ceph osd safe-to-destroy)
    says their data lives elsewhere.
  - O(state=absent) does the same, then waits until every OSD is down (its daemon stopped - on Rook,
    the Deployment C(rook-ceph-osd-<id>) scaled to 0; on a node being removed, the node reset or
    powered off), purges each (C(ceph osd purge)) and, with O(host), removes the then empty host
    bucket (C(ceph osd crush rm)).
  - O(state=in) is the other way round (day-2 node add, or undoing an O(state=out)). With
    O(min_osds) it first waits until the host holds that many OSDs - on Rook the operator creates
    them once the node runs and the CephCluster lists it; this module creates none. Then it marks
    every OSD that is out in (C(ceph osd in)) and waits until each one is up and in. No safety check
    runs, since nothing leaves.
  - Every step reads the state first, so a run stopped half-way resumes where it stopped, and a
    run after the removal (the bucket gone) changes nothing.
options:
  host:
    description:
      - CRUSH host bucket whose OSDs are removed (the node's name as Ceph knows it).
      - A bucket that does not exist means the node is removed already - no change.
      - Exactly one of O(host) and O(ids) is required.
    type: str
  ids:
    description:
      - Numeric ids of the OSDs to remove (C(2) for C(osd.2)). Ids Ceph does not know are removed already.
      - No bucket is removed with O(ids).
      - Exactly one of O(host) and O(ids) is required.
    type: list
    elements: int
  state:
    description:
      - C(out) marks the OSDs out and waits until they are safe to destroy (data moved away).
      - C(absent) also waits until they are down, purges them and removes the empty host bucket.
      - C(in) waits for O(min_osds) OSDs under O(host), marks those that are out in and waits until
        every one is up and in.
    type: str
    choices: [out, absent, in]
    default: absent
  min_osds:
    description:
      - With O(state=in) and O(host), how many OSDs the host must hold (one per data device Rook was
        given for the node). The task waits up to O(wait_timeout) for them to appear.
      - C(0) acts on the OSDs the host holds now (none when the bucket does not exist).
    type: int
    default: 0
  wait_timeout:
    description:
      - Seconds to wait, for each of the waits (safe to destroy, down; with O(state=in) the OSDs to
        appear, then up and in), before failing with what is still missing.
    type: int
    default: 600
  poll_interval:
    description: Seconds between two reads while waiting.
    type: float
    default: 5
extends_documentation_fragment:
  - homecluster.platform.ceph
attributes:
  check_mode:
    support: full
    description:
      - Reads the OSD tree, the pools and the CRUSH rules, runs the safety check (which can fail)
        and returns the plan, changing nothing and waiting for nothing. With O(state=in) the
        prediction covers the OSDs that exist now; OSDs still to be created by Rook come up in.
  diff_mode:
    support: full
    description: The OSDs (id, up, in) and, with O(host), whether the host bucket exists, before and after.
  idempotent:
    support: full
    description:
      - OSDs already out are not marked out again, purged OSDs are not looked for, an absent bucket
        is not removed; a rerun after the removal runs no changing command.
notes:
  - The safety check counts only OSDs that are up and in now; a node that is down already does not
    count as a copy holder.
  - The safety check reads the first C(choose)/C(chooseleaf) step of a pool's rule; rules that spread
    copies over several levels are judged by that first level.
author:
  - HomeCluster developers (@homecluster)
"""

EXAMPLES = r"""
- name: Remove the OSDs of node w3 (stop its daemons first, or the task waits for them)
  homecluster.platform.ceph_osd:
    host: w3
    state: absent
    transport: toolbox

- name: Drain two OSDs and keep them in the cluster for now
  homecluster.platform.ceph_osd:
    ids: [4, 5]
    state: out
    wait_timeout: 1800
    ceph_conf: /etc/ceph/ceph.conf

- name: After adding node w4 (one data disk), wait until Rook has its OSD up and in
  homecluster.platform.ceph_osd:
    host: w4
    state: in
    min_osds: 1
    wait_timeout: 900
    transport: toolbox
"""

RETURN = r"""
osds:
  description: Ids of the OSDs the task acts on (those under O(host), or those of O(ids) that exist).
  returned: always
  type: list
  elements: int
  sample: [2]
plan:
  description: What the task does (or, in check mode, would do), in order.
  returned: always
  type: list
  elements: str
  sample: ["mark osd.2 out", "wait until osd.2 is safe to destroy", "wait until osd.2 is down",
           "purge osd.2", "remove CRUSH host bucket w3"]
commands:
  description:
    - The changing ceph commands run, each as an argument vector (without the connection options).
    - Empty in check mode.
  returned: always
  type: list
  elements: list
  sample: [["ceph", "osd", "out", "2"], ["ceph", "osd", "purge", "2", "--yes-i-really-mean-it"],
           ["ceph", "osd", "crush", "rm", "w3"]]
pools:
  description:
    - The safety check for each replicated and erasure-coded pool - its size, its failure domain
      and how many failure-domain buckets would still hold an up and in OSD after the removal.
    - Empty with O(state=in).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Pool name.
      type: str
    size:
      description: Copies the pool keeps (k+m for an erasure-coded pool).
      type: int
    failure_domain:
      description: CRUSH type the pool's rule spreads copies over.
      type: str
    remaining:
      description: Failure-domain buckets left with an up and in OSD.
      type: int
  sample: [{name: rbd, size: 2, failure_domain: host, remaining: 2}]
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.homecluster.platform.plugins.module_utils._ceph import (
    CephError,
    CephRunner,
    ceph_argument_spec,
    fail_module,
)

CHOOSE_OPS = ("chooseleaf_firstn", "chooseleaf_indep", "choose_firstn", "choose_indep")


# -- parsers (pure; unit-tested on documents shaped as the CLI prints them) -----------------------
def osd_states(osd_dump: dict) -> dict[int, dict]:
    """{id: {"up": bool, "in": bool}} for every OSD in ``ceph osd dump -f json``."""
    return {o["osd"]: {"up": bool(o.get("up")), "in": bool(o.get("in"))} for o in (osd_dump or {}).get("osds", [])}


def tree_nodes(tree: dict) -> dict[int, dict]:
    return {n["id"]: n for n in (tree or {}).get("nodes", [])}


def find_bucket(nodes: dict[int, dict], name: str, kind: str | None = None) -> dict | None:
    return next((n for n in nodes.values() if n["id"] < 0 and n.get("name") == name
                 and (kind is None or n.get("type") == kind)), None)


def host_osds(tree: dict, host: str) -> list[int] | None:
    """OSD ids under host bucket HOST in ``ceph osd tree -f json``; None when the bucket does not exist."""
    bucket = find_bucket(tree_nodes(tree), host, "host")
    if bucket is None:
        return None
    return sorted(c for c in bucket.get("children", []) if c >= 0)


def osd_hosts(tree: dict) -> dict[int, str]:
    """{osd id: name of the bucket directly above it}."""
    return {c: n["name"] for n in tree_nodes(tree).values() if n["id"] < 0 for c in n.get("children", []) if c >= 0}


def rule_placement(rule: dict) -> tuple[str | None, str | None, str]:
    """(root name, device class, failure domain) of a rule from ``ceph osd crush rule dump -f json``."""
    root = dclass = None
    domain = "osd"
    for step in rule.get("steps", []):
        if step.get("op") == "take" and root is None:
            root, _sep, cls = str(step.get("item_name", "")).partition("~")
            dclass = cls or None
        elif step.get("op") in CHOOSE_OPS:
            domain = step.get("type", "osd")
            break
    return root, dclass, domain


def _osds_below(nodes: dict[int, dict], node_id: int) -> list[int]:
    if node_id >= 0:
        return [node_id]
    found: list[int] = []
    for child in nodes.get(node_id, {}).get("children", []):
        found += _osds_below(nodes, child)
    return found


def _buckets_below(nodes: dict[int, dict], node_id: int, kind: str) -> list[int]:
    node = nodes.get(node_id, {})
    if node_id >= 0:
        return []
    if node.get("type") == kind:
        return [node_id]
    found: list[int] = []
    for child in node.get("children", []):
        found += _buckets_below(nodes, child, kind)
    return found


def remaining_domains(tree: dict, states: dict[int, dict], rule: dict, removing: set[int]) -> tuple[str, int, bool]:
    """(failure domain, its buckets still holding an up+in OSD once REMOVING is gone, whether REMOVING is below
    the rule's root)."""
    nodes = tree_nodes(tree)
    root_name, dclass, domain = rule_placement(rule)
    root = find_bucket(nodes, root_name) if root_name else None
    tops = [root["id"]] if root else [n["id"] for n in nodes.values() if n.get("type") == "root"]

    def holds(osd: int) -> bool:
        state = states.get(osd, {})
        return (osd not in removing and state.get("up", False) and state.get("in", False)
                and (dclass is None or nodes.get(osd, {}).get("device_class") == dclass))

    below = {o for top in tops for o in _osds_below(nodes, top)}
    affected = bool(below & removing)
    if domain == "osd":
        return domain, sum(1 for o in below if holds(o)), affected
    buckets = {b for top in tops for b in _buckets_below(nodes, top, domain)}
    return domain, sum(1 for b in buckets if any(holds(o) for o in _osds_below(nodes, b))), affected


def pool_checks(pools: list[dict], rules: list[dict], tree: dict, states: dict[int, dict], *, removing: set[int],
                ec_sizes: dict[str, int]) -> list[dict]:
    """One entry per replicated or erasure-coded pool: name, size, failure_domain, remaining (and affected)."""
    by_id = {r["rule_id"]: r for r in rules or []}
    checks = []
    for pool in pools or []:
        erasure = pool.get("type") == 3
        if pool.get("type") not in (1, 3):
            continue
        size = ec_sizes.get(pool.get("erasure_code_profile", ""), pool.get("size")) if erasure else pool.get("size")
        domain, remaining, affected = remaining_domains(tree, states, by_id.get(pool.get("crush_rule"), {}), removing)
        checks.append({"name": pool["pool_name"], "size": size, "failure_domain": domain, "remaining": remaining,
                       "affected": affected})
    return checks


def ec_profile_size(profile: dict) -> int | None:
    """k+m of ``ceph osd erasure-code-profile get NAME -f json`` (values are strings)."""
    try:
        return int(profile["k"]) + int(profile["m"])
    except (KeyError, TypeError, ValueError):
        return None


def names(ids) -> str:
    return ", ".join(f"osd.{i}" for i in sorted(ids))


def refusal(checks: list[dict], targets: list[int], where: str) -> str | None:
    """The message refusing the removal, or None when every pool keeps its copies."""
    short = [c for c in checks if c["affected"] and c["remaining"] < c["size"]]
    if not short:
        return None
    parts = "; ".join(f"pool {c['name']} (size {c['size']}, failure domain {c['failure_domain']}) would keep "
                      + (f"{c['remaining']} up and in OSD(s)" if c["failure_domain"] == "osd" else
                         f"{c['remaining']} {c['failure_domain']}(s) with an up and in OSD") for c in short)
    add = " or ".join("another OSD" if d == "osd" else f"a {d} with OSDs"
                      for d in sorted({c["failure_domain"] for c in short}))
    lower = ", ".join(f"ceph osd pool set {c['name']} size {max(c['remaining'], 1)}" for c in short)
    return (f"refusing to remove {names(targets)}{where}: {parts}. Add {add} first, or lower the pool size to "
            f"accept fewer copies ({lower}). Nothing was changed.")


# -- the module ----------------------------------------------------------------------------------
class Removal:
    """One run: the OSDs acted on, the plan, the changing commands run and the safety check."""

    def __init__(self, module: AnsibleModule, runner: CephRunner) -> None:
        self.module = module
        self.runner = runner
        self.p = module.params
        self.commands: list[list[str]] = []
        self.plan: list[str] = []
        self.pools: list[dict] = []
        self.targets: list[int] = []

    def read(self) -> tuple[dict, dict[int, dict]]:
        return self.runner.json(["osd", "tree"]) or {}, osd_states(self.runner.json(["osd", "dump"]) or {})

    def resolve(self, tree: dict, states: dict[int, dict]) -> tuple[list[int], bool]:
        """(OSD ids to act on, whether the host bucket exists)."""
        if self.p["host"] is not None:
            found = host_osds(tree, self.p["host"])
            return [i for i in found or [] if i in states], found is not None
        return sorted({i for i in self.p["ids"] or [] if i in states}), False

    def snapshot(self, states: dict[int, dict], ids: list[int], bucket: bool) -> dict:
        shown = {"osds": [{"id": i, "up": states[i]["up"], "in": states[i]["in"]} for i in ids if i in states]}
        if self.p["host"] is not None:
            shown["bucket_present"] = bucket
        return shown

    def safety(self, tree: dict, states: dict[int, dict]) -> None:
        pools = self.runner.json(["osd", "pool", "ls", "detail"]) or []
        rules = self.runner.json(["osd", "crush", "rule", "dump"]) or []
        ec_sizes = {}
        for profile in {p.get("erasure_code_profile") for p in pools if p.get("type") == 3} - {None, ""}:
            size = ec_profile_size(self.runner.json(["osd", "erasure-code-profile", "get", profile]) or {})
            if size is not None:
                ec_sizes[profile] = size
        checks = pool_checks(pools, rules, tree, states, removing=set(self.targets), ec_sizes=ec_sizes)
        self.pools = [{k: c[k] for k in ("name", "size", "failure_domain", "remaining")} for c in checks]
        where = f" (host {self.p['host']})" if self.p["host"] else ""
        msg = refusal(checks, self.targets, where) if self.targets else None
        if msg:
            self.fail(msg)

    def make_plan(self, states: dict[int, dict], bucket: bool) -> None:
        absent = self.p["state"] == "absent"
        to_out = [i for i in self.targets if states[i]["in"]]
        if to_out:
            self.plan.append(f"mark {names(to_out)} out")
        if self.targets:
            self.plan.append(f"wait until {names(self.targets)} safe to destroy")
        running = [i for i in self.targets if states[i]["up"]]
        if absent and running:
            self.plan.append(f"wait until {names(running)} down")
        if absent:
            self.plan += [f"purge osd.{i}" for i in self.targets]
        if absent and bucket:
            self.plan.append(f"remove CRUSH host bucket {self.p['host']}")

    def change(self, args: list[str]) -> None:
        self.runner.run(args)
        self.commands.append(["ceph", *args])

    def fail(self, msg: str) -> None:
        self.module.fail_json(msg=msg, **self.result(bool(self.commands)))

    def result(self, changed: bool) -> dict:
        return {"changed": changed, "osds": self.targets, "plan": self.plan, "commands": self.commands,
                "pools": self.pools}

    def wait(self, ready, what: str) -> None:
        """Call READY() (returns None when done, else what is missing) until done or wait_timeout."""
        deadline = time.monotonic() + self.p["wait_timeout"]
        while True:
            missing = ready()
            if missing is None:
                return
            if time.monotonic() >= deadline:
                self.fail(f"{what} after wait_timeout={self.p['wait_timeout']}s: {missing}")
            time.sleep(self.p["poll_interval"])

    def unsafe(self) -> str | None:
        # with --format json the CLI exits 0 and says in the document which OSDs are not safe;
        # without a document it exits EBUSY (16) or EAGAIN (11)
        rc, data, _out, err = self.runner.run(["osd", "safe-to-destroy", *map(str, self.targets)],
                                              allowed_rc=(0, 11, 16))
        data = data or {}
        if set(self.targets) <= set(data.get("safe_to_destroy", [])):
            return None
        reasons = [f"{label}: {names(data[key])}" for key, label in (
            ("active", "placement groups still mapped to"), ("missing_stats", "no reported stats from"),
            ("stored_pgs", "placement groups still stored on")) if data.get(key)]
        if err.strip():
            reasons.append(err.strip().splitlines()[-1])
        unsafe = set(self.targets) - set(data.get("safe_to_destroy", []))
        return (f"{names(unsafe)} not safe to destroy (" + ("; ".join(reasons) or f"rc={rc}")
                + "): their data has not moved to other OSDs yet - see ceph status")

    def still_up(self) -> str | None:
        states = osd_states(self.runner.json(["osd", "dump"]) or {})
        up = [i for i in self.targets if states.get(i, {}).get("up")]
        if not up:
            return None
        deployments = " ".join(f"rook-ceph-osd-{i}" for i in up)
        return (f"{names(up)} still up: stop the daemon - on Rook scale Deployment {deployments} to 0 "
                f"(kubectl -n {self.p['toolbox_namespace']} scale deployment {deployments} --replicas=0), "
                "or reset or power off the node - then run the task again")

    def apply(self, states: dict[int, dict], bucket: bool) -> None:
        to_out = [i for i in self.targets if states[i]["in"]]
        if to_out:
            self.change(["osd", "out", *map(str, to_out)])
        if self.targets:
            self.wait(self.unsafe, "the OSDs are not safe to destroy")
        if self.p["state"] != "absent":
            return
        if self.targets:
            self.wait(self.still_up, "the OSDs are not down")
            for osd in self.targets:
                self.change(["osd", "purge", str(osd), "--yes-i-really-mean-it"])
        if bucket:
            left = (find_bucket(tree_nodes(self.runner.json(["osd", "tree"]) or {}), self.p["host"], "host")
                    or {}).get("children")
            if left == []:
                self.change(["osd", "crush", "rm", self.p["host"]])


class Addition(Removal):
    """state=in: wait for the host's OSDs (min_osds), mark those that are out in, wait until all are up and in."""

    def host_count(self) -> tuple[list[int], dict[int, dict], bool]:
        tree, states = self.read()
        targets, present = self.resolve(tree, states)
        return targets, states, present

    def make_plan(self, states: dict[int, dict], bucket: bool) -> None:
        need = self.p["min_osds"]
        if self.p["host"] is not None and len(self.targets) < need:
            self.plan.append(f"wait until host {self.p['host']} holds {need} OSD(s) (it holds {len(self.targets)}; "
                             "Rook creates them)")
        to_in = [i for i in self.targets if not states[i]["in"]]
        if to_in:
            self.plan.append(f"mark {names(to_in)} in")
        down = [i for i in self.targets if not states[i]["up"]]
        if down or (self.p["host"] is not None and len(self.targets) < need):
            self.plan.append(f"wait until the OSDs of {self.where()} are up and in")

    def where(self) -> str:
        return f"host {self.p['host']}" if self.p["host"] is not None else names(self.p["ids"] or [])

    def enough(self) -> str | None:
        self.targets, _states, _present = self.host_count()
        need = self.p["min_osds"]
        if self.p["host"] is None or len(self.targets) >= need:
            return None
        return (f"host {self.p['host']} holds {len(self.targets)} of {need} OSD(s) ({names(self.targets) or 'none'}): "
                "is the node up, listed in the CephCluster's storage nodes, and does the rook-ceph-osd-prepare job "
                "of the node succeed? (kubectl -n rook-ceph get pods -l app=rook-ceph-osd-prepare)")

    def up_and_in(self) -> str | None:
        self.targets, states, _present = self.host_count()
        down = [i for i in self.targets if not states[i]["up"]]
        out = [i for i in self.targets if not states[i]["in"]]
        if not down and not out:
            return None
        deployments = " ".join(f"rook-ceph-osd-{i}" for i in down)
        parts = []
        if down:
            parts.append(f"{names(down)} down: start the daemon (on Rook, Deployment {deployments})"
                         " or power the node on")
        if out:
            parts.append(f"{names(out)} out (marked out again by someone else?)")
        return "; ".join(parts)

    def apply(self, states: dict[int, dict], bucket: bool) -> None:
        self.wait(self.enough, "the host does not hold its OSDs")
        _targets, states, _present = self.host_count()
        to_in = [i for i in self.targets if not states[i]["in"]]
        if to_in:
            self.change(["osd", "in", *map(str, to_in)])
        self.wait(self.up_and_in, "the OSDs are not up and in")


def bring_in(module: AnsibleModule, runner: CephRunner) -> None:
    work = Addition(module, runner)
    try:
        if module.params["min_osds"] and module.params["host"] is None:
            module.fail_json(msg="min_osds needs host: it counts the OSDs under that CRUSH host", **work.result(False))
        tree, states = work.read()
        work.targets, present = work.resolve(tree, states)
        before = work.snapshot(states, work.targets, present)
        work.make_plan(states, present)
        changed = any(not states[i]["in"] for i in work.targets)
        if module.check_mode:
            after = {**before, "osds": [{**o, "in": True} for o in before["osds"]]} if changed else before
        else:
            work.apply(states, present)
            tree, states = work.read()
            work.targets, present = work.resolve(tree, states)
            after = work.snapshot(states, work.targets, present)
            changed = bool(work.commands)
    except CephError as exc:
        fail_module(module, exc, **work.result(bool(work.commands)))
        return
    exit_with(module, work.result(changed), before, after)


def main() -> None:
    spec = ceph_argument_spec()
    spec.update(
        host={"type": "str"},
        ids={"type": "list", "elements": "int"},
        state={"type": "str", "default": "absent", "choices": ["out", "absent", "in"]},
        min_osds={"type": "int", "default": 0},
        wait_timeout={"type": "int", "default": 600},
        poll_interval={"type": "float", "default": 5},
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True, required_one_of=[("host", "ids")],
                           mutually_exclusive=[("host", "ids")])
    runner = CephRunner(module.params)
    if module.params["state"] == "in":
        bring_in(module, runner)
        return
    work = Removal(module, runner)
    absent = module.params["state"] == "absent"
    try:
        tree, states = work.read()
        work.targets, present = work.resolve(tree, states)
        # the bucket goes once its OSDs are purged; one holding other buckets stays
        removable = present and all(c >= 0 for c in
                                    find_bucket(tree_nodes(tree), module.params["host"], "host").get("children", []))
        before = work.snapshot(states, work.targets, present)
        work.make_plan(states, removable)
        work.safety(tree, states)
        changed = any(states[i]["in"] for i in work.targets) or (absent and bool(work.targets or removable))
        if module.check_mode or not (changed or work.targets):
            after = predict(before, absent) if changed else before
        else:
            work.apply(states, removable)
            tree, states = work.read()
            resolved, present = work.resolve(tree, states)
            after = work.snapshot(states, resolved if module.params["host"] is not None else work.targets, present)
            changed = bool(work.commands)
    except CephError as exc:
        fail_module(module, exc, **work.result(bool(work.commands)))
        return
    exit_with(module, work.result(changed), before, after)


def exit_with(module: AnsibleModule, result: dict, before: dict, after: dict) -> None:
    """Exit with the work's result, and the OSDs before and after as the diff under --diff."""
    if module._diff:
        result["diff"] = {"before": before, "after": after}
    module.exit_json(**result)


def predict(before: dict, absent: bool) -> dict:
    """The diff's after in check mode."""
    if absent:
        return {**before, "osds": [], **({"bucket_present": False} if "bucket_present" in before else {})}
    return {**before, "osds": [{**o, "in": False} for o in before["osds"]]}


if __name__ == "__main__":
    main()
