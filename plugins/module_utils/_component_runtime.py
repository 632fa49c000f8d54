# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: HomeCluster developers
"""The per-component work of platform_components: charts, objects, releases, readiness, removal.

One Delivery per module run. Each step looks first, decides whether anything changes, and acts
only outside check mode; every change is recorded (with a diff) so the module reports exactly what
it did or would do.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

from ansible.module_utils.common.yaml import yaml_dump, yaml_load_all
from ansible.module_utils.urls import open_url
from ansible_collections.homecluster.platform.plugins.module_utils._cli import CliError
from ansible_collections.homecluster.platform.plugins.module_utils._components import (
    MASK,
    MASK_CHANGED,
    is_secret,
    mask_object,
)
from ansible_collections.homecluster.platform.plugins.module_utils._kube_cli import (
    Kubectl,
    comparable,
    label,
    object_key,
)
from ansible_collections.homecluster.platform.plugins.module_utils._values_check import (
    chart_info_from_archive,
    chart_info_from_dir,
    check_values,
)

ROLLOUT_KINDS = ("Deployment", "DaemonSet", "StatefulSet")


def dump(value: Any) -> str:
    return yaml_dump(value, sort_keys=True, default_flow_style=False, indent=2) if value not in (None, "") else ""


def at_path(obj: Any, path: str) -> Any:
    for k in path.split("."):
        if isinstance(obj, dict) and k in obj:
            obj = obj[k]
        else:
            return None
    return obj


def find(current: dict, obj: dict, default_ns: str) -> dict | None:
    """The stored object for obj; a cluster-scoped object comes back without a namespace."""
    found = current.get(object_key(obj, default_ns))
    if found is None and not (obj.get("metadata") or {}).get("namespace"):
        found = current.get(object_key(obj, ""))
    return found


def same_object(a: tuple, b: tuple) -> bool:
    return a == b or ((a[0], a[1], a[3]) == (b[0], b[1], b[3]) and "" in (a[2], b[2]))


def rolled_out(obj: dict) -> bool:
    """Whether a Deployment, DaemonSet or StatefulSet runs its current spec everywhere."""
    kind, st, meta = obj.get("kind"), obj.get("status") or {}, obj.get("metadata") or {}
    if st.get("observedGeneration", -1) < meta.get("generation", 0):
        return False
    if kind == "DaemonSet":
        want = st.get("desiredNumberScheduled", 0)
        return st.get("numberReady", 0) >= want and st.get("updatedNumberScheduled", 0) >= want \
            and st.get("numberAvailable", 0) >= want
    want = (obj.get("spec") or {}).get("replicas", 1)
    if kind == "StatefulSet":
        return st.get("readyReplicas", 0) >= want and st.get("updatedReplicas", 0) >= want
    # No replica of an older ReplicaSet left: every replica runs the current template.
    return st.get("updatedReplicas", 0) >= want and st.get("availableReplicas", 0) >= want \
        and st.get("replicas", 0) <= st.get("updatedReplicas", 0)


def ready_object(r: dict) -> dict:
    """The object a readiness rule looks at."""
    meta = dict({"name": r["name"]}, **({"namespace": r["namespace"]} if r["namespace"] else {}))
    return {"apiVersion": r["api_version"], "kind": r["kind"], "metadata": meta}


def satisfied(r: dict, obj: dict | None) -> tuple:
    """(ok, what is still missing) for one readiness condition."""
    if obj is None:
        return False, "not found"
    if r["condition"]:
        return condition_met(r["condition"], (obj.get("status") or {}).get("conditions") or [])
    if r["path"]:
        got = at_path(obj, r["path"])
        return str(got) == str(r["value"]), f"{r['path']}={got!r}, want {r['value']!r}"
    if r["kind"] in ROLLOUT_KINDS and r["api_version"] == "apps/v1":
        return rolled_out(obj), "not rolled out"
    return True, ""


def condition_met(want: dict, conditions: list) -> tuple:
    cond = next((x for x in conditions if x.get("type") == want["type"]), None)
    if cond is None:
        return False, f"no condition {want['type']}"
    for k, v in want.items():
        if k != "type" and str(cond.get(k)) != v:
            return False, f"{want['type']} {k}={cond.get(k)} ({cond.get('message', '')})"
    return True, ""


class Delivery:
    def __init__(self, module: Any, p: dict, kubectl: Any, helm: Any, workdir: str, *,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> None:
        self.module = module
        self.p = p
        self.kubectl = kubectl
        self.helm = helm
        self.workdir = workdir
        self.check = module.check_mode
        self.sleep = sleep
        self.clock = clock
        self.changes: list = []
        self.diffs: list = []
        self.charts: dict = {}
        self.crd_docs: dict = {}
        self._kube_version = p.get("kube_version") or ""
        self._releases: dict | None = None
        self._values: dict = {}
        # What prefetch() read of the cluster for every helm component at once; dropped by the first write.
        self._seen: dict | None = None
        self._dry: dict = {}

    # ------------------------------------------------------------------ reporting
    def record(self, c: dict, what: str, action: str, before: Any = None, after: Any = None) -> None:
        self.changes.append({"component": c["name"], "object": what, "action": action})
        if self.module._diff or self.check:
            self.diffs.append({"before_header": f"{c['name']}: {what}", "after_header": f"{c['name']}: {what}",
                               "before": before if isinstance(before, str) else dump(before),
                               "after": after if isinstance(after, str) else dump(after)})

    def kube_version(self) -> str:
        if not self._kube_version:
            self._kube_version = self.kubectl.server_version()
        return self._kube_version

    # ------------------------------------------------------------------ preflight
    def fetch_chart(self, c: dict) -> tuple:
        if c["name"] not in self.charts:
            chart = c["chart"]
            if chart["source"] == "dir":
                path = os.path.join(chart["repo"], chart["name"])
                if not os.path.isdir(path):
                    raise CliError(f"chart directory {path} does not exist")
                info = chart_info_from_dir(path)
            else:
                dest = os.path.join(self.workdir, "charts", c["name"])
                os.makedirs(dest, exist_ok=True)
                path = self.helm.pull(chart, dest)
                with open(path, "rb") as f:
                    info = chart_info_from_archive(f.read())
            self.charts[c["name"]] = (path, info)
        return self.charts[c["name"]]

    def load_crds(self, c: dict, srcs: list | None = None) -> list:
        """The CRDs of c's sources (or of srcs), each source read once per run."""
        docs = []
        for src in c["crds"] if srcs is None else srcs:
            if src["src"] not in self.crd_docs:
                found = [d for d in yaml_load_all(self.read_source(src["src"])) if d]
                for d in found:
                    if d.get("kind") != "CustomResourceDefinition":
                        raise CliError(f"crds of {c['name']}: {label(d)} is not a CustomResourceDefinition")
                self.crd_docs[src["src"]] = found
            docs += self.crd_docs[src["src"]]
        return docs

    def read_source(self, src: str) -> str:
        if src.startswith(("https://", "http://")):
            try:
                return open_url(src, timeout=60, validate_certs=True).read().decode()
            except Exception as e:  # every transport error is reported the same way
                raise CliError(f"cannot fetch {src}: {e}") from None
        try:
            with open(os.path.expanduser(src), encoding="utf-8") as f:
                return f.read()
        except OSError as e:
            raise CliError(f"cannot read {src}: {e.strerror}") from None

    def preflight(self, comps: list) -> list:
        """Every problem of every component, before anything changes."""
        problems = []
        for c in comps:
            if c["state"] == "absent":
                if c["remove"]["namespace"] and not c["remove"]["data"]:
                    problems.append(self._problem(c, "remove.namespace", "removing the namespace deletes every volume "
                                                  "claim in it: set remove.data too, or keep the namespace"))
                problems += self.release_data_problems(c)
                continue
            try:
                if c["crds"]:
                    self.load_crds(c)
                if not c["chart"]:
                    continue
                if self.p.get("action") == "deliver" and self.release_is_current(c):
                    # Installed with exactly this chart and these values, which the chart then accepted and
                    # the whole-inventory preflight has just checked: no download, check or render again.
                    continue
                path, info = self.fetch_chart(c)
            except CliError as e:
                problems.append(self._problem(c, "chart", f"chart {c['chart']['name'] if c['chart'] else ''} "
                                              f"{c['chart']['version'] if c['chart'] else ''}: {e.msg} "
                                              f"{e.stderr.strip()[:300]}".strip()))
                continue
            if self.p["values_check"]:
                for bad in check_values(c["values"], info.values, free_form=c["values_free_form"],
                                        extra_keys=c["values_extra_keys"]):
                    hint = f"; the nearest real key is {bad['nearest']}" if bad["nearest"] else ""
                    var = c["values_variable"] or f"the values of component {c['name']}"
                    problems.append(self._problem(
                        c, bad["key"], f"{var}: key {bad['key']} {bad['problem']} (chart {info.name} {info.version})"
                                       f"{hint}", variable=c["values_variable"]))
            if self.p["render_check"]:
                try:
                    self.helm.template(c["name"], path, c["namespace"], c["values"], self.kube_version(),
                                       secret=c["sensitive"])
                except CliError as e:
                    said = "(helm's message is hidden: the values are sensitive)" if c["sensitive"] \
                        else e.stderr.strip()[:600]
                    problems.append(self._problem(c, "values", f"chart {c['chart']['name']} {c['chart']['version']} "
                                                  f"does not render with its values: {said}",
                                                  variable=c["values_variable"]))
        return problems

    def release_data_problems(self, c: dict) -> list:
        """Uninstalling a release deletes every object it rendered. When those include a kind that holds
        data (the component's data_kinds, or a PersistentVolumeClaim), that needs remove.data: refused
        here, before anything is removed, naming the objects."""
        if not c["chart"] or c["remove"]["data"] or self.release(c) is None:
            return []
        kinds = set(c["data_kinds"]) | {"PersistentVolumeClaim"}
        held = sorted(f"{kind}/{name}" for kind, name in self.helm.manifest_objects(c["name"], c["namespace"])
                      if kind in kinds)
        if not held:
            return []
        return [self._problem(c, "remove.data", f"uninstalling release {c['name']} would delete {', '.join(held)}, "
                                                "which hold data: set remove.data: true to delete them with it, "
                                                "or keep the component (state: present)")]

    @staticmethod
    def _problem(c: dict, key: str, message: str, variable: str = "") -> dict:
        return {"component": c["name"], "key": key, "variable": variable,
                "message": f"component {c['name']}: {message}"}

    # ------------------------------------------------------------------ objects
    def namespace_object(self, c: dict) -> dict:
        ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": c["namespace"]}}
        if c["namespace_labels"]:
            ns["metadata"]["labels"] = dict(c["namespace_labels"])
        return ns

    # ------------------------------------------------------------------ one read for the whole run
    def prefetch(self, comps: list) -> None:
        """Read every object the helm components apply or wait on with one `kubectl get`, and dry-run
        (server-side) every one of them that exists with one `kubectl apply --dry-run=server`, instead
        of both per component. Later steps take their view from here only while this run has written
        nothing and only when every object they ask about was found here (see from_prefetch), so the
        comparison is still against the live cluster, read in this run. A batch the API server refuses
        (a kind not served yet, as on a first run) leaves nothing here: each step reads for itself."""
        applied: list = []
        read: list = []
        for c in comps:
            if c["delivery"] != "helm" or c["state"] != "present":
                continue
            ns = c["namespace"]
            group = ([self.namespace_object(c)] if c["namespace_create"] else []) + list(c["manifests_before"]) \
                + list(c["manifests"])
            applied += [(o, ns) for o in group]
            read += [Kubectl.with_ns(o, ns) for o in group]
            read += [ready_object(r) for r in c["ready"]]
        if not read:
            return
        current = self.kubectl.get_many(read, "", one_by_one=False)
        if current is None:
            return
        unique: dict = {}
        for o, ns in applied:
            stored = find(current, o, ns)
            if stored is not None:
                unique.setdefault(object_key(stored), Kubectl.with_ns(o, ns))
        dry: dict = {}
        if unique:
            batch = list(unique.values())
            try:
                results = self.kubectl.apply(batch, "", dry_run=True, secret=any(is_secret(o) for o in batch))
            except CliError:
                return
            dry = {object_key(after): after for after in results}
        self._seen, self._dry = current, dry

    def from_prefetch(self, objects: list, ns: str) -> dict | None:
        """The prefetched view of objects (keyed as the server stores them), or None when it cannot stand
        for a fresh read: this run has written something since, or one of them was not found there."""
        if self._seen is None:
            return None
        out = {}
        for o in objects:
            stored = find(self._seen, o, ns)
            if stored is None:
                return None
            out[object_key(stored)] = stored
        return out

    def wrote(self) -> None:
        """This run changes the cluster: from here on every step reads the live state again."""
        self._seen, self._dry = None, {}

    def ensure_objects(self, c: dict, objects: list, *, wait_api: bool = False, policy: str = "upgrade") -> None:
        """Create or update objects (server-side apply), only those that differ; predict in check mode."""
        if not objects:
            return
        ns = c["namespace"]
        current = self.from_prefetch(objects, ns)
        dried = None
        if current is not None and policy == "upgrade":
            # Every object exists, so its API is served; the dry run was made for each in prefetch().
            dried = [self._dry[k] for k in current if k in self._dry]
            if len(dried) != len(current):
                current, dried = None, None
        if current is None:
            if wait_api and not self.check:
                self.wait_for_apis(c, objects)
            current = self.kubectl.get_many(objects, ns)
        missing = [o for o in objects if find(current, o, ns) is None]
        existing = [o for o in objects if find(current, o, ns) is not None and policy == "upgrade"]
        todo = list(missing)
        if existing:
            secret = any(is_secret(o) for o in existing)
            if dried is None:
                dried = self.kubectl.apply(existing, ns, dry_run=True, secret=secret)
            for after in dried:
                key = object_key(after)
                src = next(o for o in existing if same_object(object_key(o, ns), key))
                before = find(current, src, ns)
                if comparable(before) != comparable(after):
                    todo.append(src)
                    self.record(c, label(after), "update", mask_object(comparable(before)),
                                mask_object(comparable(after)))
        for o in missing:
            self.record(c, label(Kubectl.with_ns(o, ns)), "create", "", mask_object(o))
        if todo and not self.check:
            self.wrote()
            self.kubectl.apply(todo, ns, secret=any(is_secret(o) for o in todo))

    def wait_for_apis(self, c: dict, objects: list) -> None:
        kinds = sorted({(o["apiVersion"], o["kind"]) for o in objects})
        deadline = self.clock() + c["timeout"]
        for api, kind in kinds:
            while not self.kubectl.api_served(api, kind):
                if self.clock() > deadline:
                    raise CliError(f"component {c['name']}: {api} {kind} is not served after {c['timeout']} s; "
                                   "its CRD comes from the chart or its operator: check that they are installed "
                                   "and running")
                self.sleep(self.p["poll_delay"])

    def delete_objects(self, c: dict, objects: list, what: str) -> None:
        if not objects:
            return
        current = self.kubectl.get_many(objects, c["namespace"])
        gone = [o for o in objects if find(current, o, c["namespace"]) is not None]
        for o in gone:
            stored = find(current, o, c["namespace"])
            self.record(c, label(stored), f"delete ({what})", mask_object(comparable(stored)), "")
        if gone and not self.check:
            self.wrote()
            self.kubectl.delete(gone, c["namespace"], timeout=c["timeout"])

    # ------------------------------------------------------------------ helm delivery
    def release(self, c: dict) -> dict | None:
        """The installed release of c ({chart, status, revision}), from one helm list per run."""
        if self._releases is None:
            self._releases = self.helm.releases()
        return self._releases.get((c["name"], c["namespace"]))

    def release_views(self, c: dict) -> tuple:
        """(installed, desired) views of c's release: {release, chart, status, values}."""
        current = self.release(c)
        where = f"{c['name']} in {c['namespace']}"
        before = {}
        if current:
            key = (c["name"], c["namespace"])
            if key not in self._values:
                self._values[key] = self.helm.user_values(c["name"], c["namespace"])
            before = {"release": where, "chart": current["chart"], "status": current["status"],
                      "values": self._values[key]}
        after = {"release": where, "chart": f"{c['chart']['name']}-{c['chart']['version']}", "status": "deployed",
                 "values": json.loads(json.dumps(c["values"]))}
        return before, after

    def release_is_current(self, c: dict) -> bool:
        """An installed helm release already holds exactly this chart and these values (the chart accepted
        them when they were installed), so the preflight need not render it again."""
        if c["delivery"] != "helm" or not c["chart"]:
            return False
        before, after = self.release_views(c)
        return before == after

    def ensure_release(self, c: dict) -> None:
        before, after = self.release_views(c)
        current = bool(before)
        desired_values = after["values"]
        if before == after:
            return
        status = before.get("status", "") if before else ""
        if status.startswith("pending-"):
            # An earlier helm run was cut off (the API server restarted, the controller was killed):
            # helm refuses every operation on the release until someone settles it. Which way is a
            # decision about what runs in the cluster, so it is named here, not taken.
            fix = (f"helm uninstall {c['name']} -n {c['namespace']}" if status == "pending-install"
                   else f"helm rollback {c['name']} -n {c['namespace']}")
            raise CliError(f"{c['name']}: release {before['release']} is stuck in {status} (an earlier helm run was "
                           f"interrupted) and helm refuses to change it: run `{fix}` (pending-install: nothing was "
                           "deployed yet; otherwise back to the last deployed revision), then rerun")
        if c["sensitive"]:
            shown_before = dict(before, values=MASK) if before else {}
            shown_after = dict(after, values=MASK if before.get("values") == desired_values else MASK_CHANGED)
        else:
            shown_before, shown_after = before, after
        self.record(c, f"release {c['name']}", "upgrade" if current else "install", shown_before, shown_after)
        if not self.check:
            path, _info = self.fetch_chart(c)
            self.wrote()
            self.helm.upgrade(c["name"], path, c["namespace"], c["values"], timeout=c["timeout"],
                              secret=c["sensitive"])
            self._releases = None
            self._values.pop((c["name"], c["namespace"]), None)

    def deliver(self, c: dict) -> None:
        """Install, upgrade or remove one helm component. Every failure names the component it stopped in:
        a kubectl read cut off by an API server restart, for one, says only which object it was reading."""
        try:
            (self.remove_helm if c["state"] == "absent" else self.deliver_helm)(c)
        except CliError as e:
            if c["name"] not in e.msg.split(":", 1)[0]:
                e.msg = f"component {c['name']}: {e.msg}"
            raise

    def deliver_helm(self, c: dict) -> None:
        if c["namespace_create"]:
            self.ensure_objects(c, [self.namespace_object(c)])
        if c["crds"]:
            for policy in ("create", "upgrade"):
                srcs = [s for s in c["crds"] if s["policy"] == policy]
                if srcs:
                    self.ensure_objects(c, self.load_crds(c, srcs), policy=policy)
        self.ensure_objects(c, c["manifests_before"])
        if c["chart"]:
            self.ensure_release(c)
        self.wait_ready(c, "chart")
        self.ensure_objects(c, c["manifests"], wait_api=True)
        self.wait_ready(c, "manifests")

    def remove_helm(self, c: dict) -> None:
        ns = c["namespace"]
        keep_kinds = set(c["data_kinds"]) if not c["remove"]["data"] else set()
        self.delete_objects(c, [m for m in c["manifests"] if m["kind"] not in keep_kinds], "custom resources")
        if c["chart"] and self.release(c) is not None:
            self.record(c, f"release {c['name']}", "uninstall", {"release": f"{c['name']} in {ns}"}, "")
            if not self.check:
                self.wrote()
                self.helm.uninstall(c["name"], ns, c["timeout"])
                self._releases = None
        before = [m for m in c["manifests_before"]
                  if m["kind"] not in ("Namespace", "PersistentVolumeClaim", "CustomResourceDefinition")
                  or (m["kind"] == "CustomResourceDefinition" and c["remove"]["crds"])]
        self.delete_objects(c, before, "objects before the chart")
        if c["remove"]["crds"] and c["crds"]:
            self.delete_objects(c, self.load_crds(c), "CRDs, opted in with remove.crds")
        if c["remove"]["data"]:
            pvcs = self.kubectl.run(["get", "pvc", "-n", ns, "-o", "json", "--ignore-not-found"]).json() or {}
            claims = [{"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                       "metadata": {"name": i["metadata"]["name"], "namespace": ns}} for i in pvcs.get("items", [])]
            self.delete_objects(c, claims, "volume claims, opted in with remove.data")
        if c["remove"]["namespace"] and c["namespace_create"]:
            self.delete_objects(c, [self.namespace_object(c)], "namespace, opted in with remove.namespace")

    # ------------------------------------------------------------------ readiness
    def wait_ready(self, c: dict, phase: str) -> None:
        checks = [r for r in c["ready"] if r["after"] == phase]
        if not checks or self.check:
            return
        deadline = self.clock() + c["timeout"]
        while True:
            objs = [ready_object(r) for r in checks]
            found = self.from_prefetch(objs, "")
            fetched = found is not None
            if not fetched:
                found = self.kubectl.get_many(objs, "")
            waiting = []
            for r, o in zip(checks, objs, strict=True):
                ok, why = satisfied(r, find(found, o, ""))
                if not ok:
                    waiting.append(f"{label(o)}: {why}")
            if not waiting:
                return
            if fetched:
                # Not ready when prefetched: the cluster is moving, every later read is a live one.
                self.wrote()
                continue
            if self.clock() > deadline:
                raise CliError(f"component {c['name']}: not ready after {c['timeout']} s - " + "; ".join(waiting))
            self.sleep(self.p["poll_delay"])
