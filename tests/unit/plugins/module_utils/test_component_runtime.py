# SPDX-License-Identifier: GPL-3.0-or-later
"""The per-component work of platform_components, on an in-memory cluster (no binaries).

The fakes follow what kubectl and helm return (recorded shapes: see test_kube_cli.py): objects
keyed by group/kind/namespace/name, a server-side dry run that defaults like the API server, and
helm status with chart metadata and user values.
"""
from __future__ import annotations

import copy
import json

import pytest
from ansible_collections.homecluster.platform.plugins.module_utils import _component_runtime as rt
from ansible_collections.homecluster.platform.plugins.module_utils import _components as comp
from ansible_collections.homecluster.platform.plugins.module_utils._cli import CliError, Completed
from ansible_collections.homecluster.platform.plugins.module_utils._kube_cli import object_key


class FakeModule:
    def __init__(self, check=False, diff=True):
        self.check_mode = check
        self._diff = diff


class FakeKubectl:
    def __init__(self):
        self.objects = {}
        self.writes = []
        self.served = set()
        self.unserved = set()
        self.calls = 0

    def _stored(self, o, ns):
        s = copy.deepcopy(o)
        meta = s.setdefault("metadata", {})
        if ns and "namespace" not in meta and o["kind"] not in ("Namespace", "CustomResourceDefinition"):
            meta["namespace"] = ns
        meta.setdefault("resourceVersion", "1")
        meta.setdefault("managedFields", [{"manager": "homecluster"}])
        if o["kind"] == "Namespace":
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
        return s

    def get_many(self, objects, ns, one_by_one=True):
        self.calls += 1
        if not one_by_one and any((o["apiVersion"], o["kind"]) in self.unserved for o in objects):
            return None
        out = {}
        for o in objects:
            k = object_key(self._stored(o, ns))
            if k in self.objects:
                out[k] = copy.deepcopy(self.objects[k])  # kubectl prints a copy, never the stored object
        return out

    def apply(self, objects, ns, dry_run=False, secret=False):
        self.calls += 1
        out = []
        for o in objects:
            stored = self._stored(o, ns)
            key = object_key(stored)
            if key in self.objects:
                merged = copy.deepcopy(self.objects[key])
                merged.update({k: v for k, v in stored.items() if k != "metadata"})
                merged["metadata"].update({k: v for k, v in stored["metadata"].items() if k != "resourceVersion"})
                stored = merged
            if not dry_run:
                self.writes.append(("apply", key))
                self.objects[key] = stored
            out.append(copy.deepcopy(stored))
        return out

    def delete(self, objects, ns, wait=True, timeout=300):
        for o in objects:
            k = object_key(self._stored(o, ns))
            self.writes.append(("delete", k))
            self.objects.pop(k, None)

    def api_served(self, api, kind):
        return (api, kind) in self.served

    def run(self, args, **kw):
        # Only `kubectl get pvc -n NS -o json` is asked for through run().
        items = [v for k, v in self.objects.items() if k[1] == "PersistentVolumeClaim" and k[2] == args[3]]
        return Completed(["kubectl", *args], 0, json.dumps({"items": items}), "")


class FakeHelm:
    def __init__(self):
        self.installed = {}
        self.writes = []

    def releases(self):
        # The shape of `helm list -o json` (fixtures/kube_cli/helm-list.json).
        self.lists = getattr(self, "lists", 0) + 1
        return {k: {"chart": f"{r['chart']}-{r['version']}", "status": "deployed", "revision": "1"}
                for k, r in self.installed.items()}

    def user_values(self, name, ns):
        return copy.deepcopy(self.installed[(name, ns)]["values"])

    def upgrade(self, name, path, ns, values, *, timeout, secret=False):
        self.writes.append(("upgrade", name))
        chart, version = path.rsplit("-", 1)
        self.installed[(name, ns)] = {"chart": chart, "version": version, "values": copy.deepcopy(values)}

    def uninstall(self, name, ns, timeout):
        self.writes.append(("uninstall", name))
        self.installed.pop((name, ns))

    def manifest_objects(self, name, ns):
        # What `helm get manifest` rendered, as (kind, name) (parsed from recorded output in test_kube_cli.py).
        return self.installed[(name, ns)].get("rendered", [])


def delivery(check=False):
    kube, helm = FakeKubectl(), FakeHelm()
    d = rt.Delivery(FakeModule(check=check), {"poll_delay": 0, "values_check": True, "render_check": True},
                    kube, helm, "/nonexistent", sleep=lambda s: None)
    d.fetch_chart = lambda c: (f"{c['chart']['name']}-{c['chart']['version']}", None)
    return d, kube, helm


def component(**kw):
    c = {"name": "hello", "namespace": "hello", "pod_security": "baseline",
         "chart": {"name": "lab-hello", "version": "0.1.0", "repo": "https://charts.example.org"},
         "values": {"replicaCount": 1},
         "manifests": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "extra"}, "data": {"a": "b"}}]}
    c.update(kw)
    (n,) = comp.normalise([c])
    return n


def test_check_mode_predicts_everything_and_writes_nothing():
    d, kube, helm = delivery(check=True)
    d.deliver_helm(component())
    assert kube.writes == [] and helm.writes == []
    assert [(c["object"], c["action"]) for c in d.changes] == [
        ("Namespace/hello", "create"), ("release hello", "install"), ("ConfigMap/hello/extra", "create")]
    assert "+chart" not in d.diffs[1]["after"] and "chart: lab-hello-0.1.0" in d.diffs[1]["after"]


def test_apply_then_rerun_writes_nothing_and_reports_no_change():
    d, kube, helm = delivery()
    kube.served.add(("v1", "ConfigMap"))
    c = component()
    d.deliver_helm(c)
    assert helm.writes == [("upgrade", "hello")]
    assert len(kube.writes) == 2
    d2 = rt.Delivery(FakeModule(), d.p, kube, helm, "/nonexistent", sleep=lambda s: None)
    d2.fetch_chart = d.fetch_chart
    kube.writes.clear()
    helm.writes.clear()
    d2.deliver_helm(c)
    assert d2.changes == [] and kube.writes == [] and helm.writes == []


def test_a_changed_value_upgrades_the_release_only():
    d, kube, helm = delivery()
    kube.served.add(("v1", "ConfigMap"))
    d.deliver_helm(component())
    kube.writes.clear()
    helm.writes.clear()
    d.changes.clear()
    d.deliver_helm(component(values={"replicaCount": 2}))
    assert helm.writes == [("upgrade", "hello")] and kube.writes == []
    assert d.changes == [{"component": "hello", "object": "release hello", "action": "upgrade"}]


def test_sensitive_values_and_secret_data_are_masked_in_diffs():
    d, _kube, _helm = delivery(check=True)
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tok"}, "stringData": {"t": "hunter2"}}
    d.deliver_helm(component(sensitive=True, values={"password": "hunter2"}, manifests=[secret]))
    shown = repr(d.diffs)
    assert "hunter2" not in shown
    assert "<secret>" in shown


def test_custom_resources_wait_for_their_api_then_fail_clearly():
    d, _kube, _helm = delivery()
    clock = iter(range(0, 10000, 100))
    d.clock = lambda: next(clock)
    c = component(timeout=300, manifests=[{"apiVersion": "lab.homecluster.dev/v1", "kind": "Widget",
                                           "metadata": {"name": "w"}}])
    with pytest.raises(CliError, match="Widget is not served after 300 s"):
        d.deliver_helm(c)


def test_readiness_by_path_and_condition():
    d, kube, _helm = delivery()
    kube.objects[("lab.homecluster.dev", "Widget", "hello", "w")] = {
        "apiVersion": "lab.homecluster.dev/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "hello"},
        "status": {"phase": "Ready", "conditions": [{"type": "Ready", "status": "True"}]}}
    c = component(manifests=[], ready=[
        {"kind": "Widget", "api_version": "lab.homecluster.dev/v1", "name": "w", "path": "status.phase",
         "value": "Ready"},
        {"kind": "Widget", "api_version": "lab.homecluster.dev/v1", "name": "w", "condition": {"type": "Ready"}}])
    d.wait_ready(c, "chart")
    kube.objects[("lab.homecluster.dev", "Widget", "hello", "w")]["status"]["phase"] = "Pending"
    clock = iter(range(0, 10000, 100))
    d.clock = lambda: next(clock)
    with pytest.raises(CliError, match=r"status\.phase='Pending', want 'Ready'"):
        d.wait_ready(c, "chart")


def test_rolled_out_needs_every_replica_updated_and_no_old_one():
    dep = {"kind": "Deployment", "metadata": {"generation": 2}, "spec": {"replicas": 2},
           "status": {"observedGeneration": 2, "updatedReplicas": 2, "availableReplicas": 2, "replicas": 2}}
    assert rt.rolled_out(dep)
    assert not rt.rolled_out(dict(dep, status=dict(dep["status"], replicas=3)))
    assert not rt.rolled_out(dict(dep, status=dict(dep["status"], observedGeneration=1)))
    ds = {"kind": "DaemonSet", "metadata": {"generation": 1},
          "status": {"observedGeneration": 1, "desiredNumberScheduled": 3, "numberReady": 3,
                     "updatedNumberScheduled": 2, "numberAvailable": 3}}
    assert not rt.rolled_out(ds)


def test_removal_keeps_data_and_namespace_without_opt_ins():
    d, kube, helm = delivery()
    kube.served.add(("v1", "ConfigMap"))
    pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"}}
    c = component(manifests_before=[pvc])
    d.deliver_helm(c)
    d.remove_helm(component(manifests_before=[pvc], state="absent"))
    assert ("hello", "hello") not in helm.installed
    assert ("", "ConfigMap", "hello", "extra") not in kube.objects
    assert ("", "PersistentVolumeClaim", "hello", "data") in kube.objects
    assert ("", "Namespace", "", "hello") in kube.objects
    d.remove_helm(component(manifests_before=[pvc], state="absent", remove={"data": True, "namespace": True}))
    assert ("", "PersistentVolumeClaim", "hello", "data") not in kube.objects
    assert ("", "Namespace", "", "hello") not in kube.objects


def test_removing_the_namespace_without_data_is_refused_in_preflight():
    d, _kube, _helm = delivery()
    (p,) = d.preflight([component(state="absent", remove={"namespace": True})])
    assert "set remove.data too" in p["message"]


def test_uninstalling_a_release_that_holds_data_is_refused_without_remove_data():
    d, _kube, helm = delivery()
    helm.installed[("hello", "hello")] = {
        "chart": "lab-hello", "version": "0.1.0", "values": {},
        "rendered": [("Deployment", "hello"), ("CephCluster", "rook-ceph")]}
    c = component(state="absent", data_kinds=["CephCluster"])
    (p,) = d.preflight([c])
    assert p["key"] == "remove.data" and "CephCluster/rook-ceph" in p["message"]
    assert helm.writes == []
    # with the opt-in, or when the release renders nothing holding data, nothing is refused
    assert d.preflight([component(state="absent", data_kinds=["CephCluster"], remove={"data": True})]) == []
    helm.installed[("hello", "hello")]["rendered"] = [("Deployment", "hello")]
    assert d.preflight([component(state="absent", data_kinds=["CephCluster"])]) == []
    # a claim rendered by the chart counts as data whatever data_kinds says
    helm.installed[("hello", "hello")]["rendered"] = [("PersistentVolumeClaim", "cache")]
    (p,) = d.preflight([component(state="absent")])
    assert "PersistentVolumeClaim/cache" in p["message"]


def test_a_current_release_is_not_downloaded_checked_or_rendered_again_on_delivery():
    d, kube, helm = delivery()
    kube.served.add(("v1", "ConfigMap"))
    fetched = []
    d.fetch_chart = lambda c: fetched.append(c["name"]) or (f"{c['chart']['name']}-{c['chart']['version']}", None)
    d.deliver_helm(component())
    assert fetched == ["hello"]
    fetched.clear()
    rerun, _k, _h = delivery()
    rerun.kubectl, rerun.helm, rerun.p["action"] = kube, helm, "deliver"
    rerun.fetch_chart = d.fetch_chart
    rerun.helm.template = lambda *a, **k: fetched.append("template")
    rerun.p["values_check"] = False
    rerun._kube_version = "1.37.0"
    assert rerun.preflight([component()]) == [] and fetched == []
    # changed values are fetched and rendered; so is everything in the whole-inventory preflight
    rerun.preflight([component(values={"replicaCount": 2})])
    assert fetched == ["hello", "template"]
    rerun.p["action"] = "preflight"
    rerun.preflight([component()])
    assert fetched == ["hello", "template", "hello", "template"]


@pytest.mark.parametrize(("status", "command"), [("pending-install", "helm uninstall hello -n hello"),
                                                 ("pending-upgrade", "helm rollback hello -n hello")])
def test_a_release_left_pending_is_named_with_the_command_that_settles_it(status, command):
    d, kube, helm = delivery()
    kube.served.add(("v1", "ConfigMap"))
    helm.installed[("hello", "hello")] = {"chart": "lab-hello", "version": "0.1.0", "values": {"replicaCount": 1}}
    listed = helm.releases

    def pending():
        out = listed()
        out[("hello", "hello")]["status"] = status
        return out

    helm.releases = pending
    with pytest.raises(CliError) as err:
        d.ensure_release(component(values={"replicaCount": 2}))
    assert f"stuck in {status}" in err.value.msg and f"run `{command}`" in err.value.msg
    assert helm.writes == [], "nothing may be tried on a pending release"


def two_components():
    second = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "other"}, "data": {"c": "d"}}
    return [component(), component(name="world", namespace="world", manifests=[second])]


def rerun(kube, helm, comps, check=False):
    d = rt.Delivery(FakeModule(check=check), {"poll_delay": 0, "values_check": True, "render_check": True},
                    kube, helm, "/nonexistent", sleep=lambda s: None)
    d.fetch_chart = lambda c: (f"{c['chart']['name']}-{c['chart']['version']}", None)
    kube.writes.clear()
    helm.writes.clear()
    kube.calls = 0
    d.prefetch(comps)
    for c in comps:
        d.deliver_helm(c)
    return d


def test_a_no_op_rerun_reads_the_cluster_once_for_every_component():
    d, kube, helm = delivery()
    kube.served.add(("v1", "ConfigMap"))
    comps = two_components()
    for c in comps:
        d.deliver_helm(c)
    d2 = rerun(kube, helm, comps)
    assert d2.changes == [] and kube.writes == [] and helm.writes == []
    # One get and one server-side dry run for both components, not two of each per component.
    assert kube.calls == 2


@pytest.mark.parametrize("check", [False, True])
def test_a_manual_change_in_the_cluster_is_still_found_and_repaired_with_the_prefetch(check):
    d, kube, helm = delivery()
    kube.served.add(("v1", "ConfigMap"))
    comps = two_components()
    for c in comps:
        d.deliver_helm(c)
    # By hand: one ConfigMap edited, the other deleted.
    kube.objects[("", "ConfigMap", "hello", "extra")]["data"] = {"a": "edited by hand"}
    kube.objects.pop(("", "ConfigMap", "world", "other"))
    d2 = rerun(kube, helm, comps, check=check)
    assert [(c["object"], c["action"]) for c in d2.changes] == [
        ("ConfigMap/hello/extra", "update"), ("ConfigMap/world/other", "create")]
    if check:
        assert kube.writes == []
    else:
        assert kube.writes == [("apply", ("", "ConfigMap", "hello", "extra")),
                               ("apply", ("", "ConfigMap", "world", "other"))]
        assert kube.objects[("", "ConfigMap", "hello", "extra")]["data"] == {"a": "b"}
        assert rerun(kube, helm, comps).changes == []


def test_after_a_write_later_components_read_the_live_cluster_again():
    d, kube, helm = delivery()
    kube.served.add(("v1", "ConfigMap"))
    comps = two_components()
    for c in comps:
        d.deliver_helm(c)
    upgrade = helm.upgrade

    def upgrade_that_touches_the_other_component(name, path, ns, values, **kw):
        # A chart upgrade that changes an object of a later component (after the prefetch read it).
        upgrade(name, path, ns, values, **kw)
        kube.objects[("", "ConfigMap", "world", "other")]["data"] = {"c": "changed by the first chart"}

    helm.upgrade = upgrade_that_touches_the_other_component
    comps[0] = component(values={"replicaCount": 2})
    d2 = rerun(kube, helm, comps)
    assert ("ConfigMap/world/other", "update") in [(c["object"], c["action"]) for c in d2.changes]
    assert kube.objects[("", "ConfigMap", "world", "other")]["data"] == {"c": "d"}


def test_a_kind_not_served_yet_leaves_each_step_to_read_for_itself():
    d, kube, _helm = delivery()
    kube.served.add(("v1", "ConfigMap"))
    widget = {"apiVersion": "lab.homecluster.dev/v1", "kind": "Widget", "metadata": {"name": "w"}}
    kube.unserved.add(("lab.homecluster.dev/v1", "Widget"))
    comps = [component(), component(name="world", namespace="world", manifests_before=[widget])]
    d.prefetch(comps)
    assert d.from_prefetch([component()["manifests"][0]], "hello") is None


def test_a_failure_inside_a_component_names_the_component():
    d, kube, _helm = delivery()

    def refused(objects, ns, one_by_one=True):
        raise CliError("kubectl get Namespace/hello failed: The connection to the server 127.0.0.1:6443 was refused")
    kube.get_many = refused
    with pytest.raises(CliError) as err:
        d.deliver(component(name="web", namespace="hello"))
    assert err.value.msg.startswith("component web: kubectl get Namespace/hello failed"), err.value.msg
    # a message that already names it is left alone
    kube.get_many = FakeKubectl().get_many

    def not_ready(c):
        raise CliError("component web: not ready after 5 s")
    d.deliver_helm = not_ready
    with pytest.raises(CliError) as err:
        d.deliver(component(name="web", namespace="hello"))
    assert err.value.msg == "component web: not ready after 5 s"
