# SPDX-License-Identifier: GPL-3.0-or-later
"""The component data contract: normalise, validate, order, mask, flux rendering."""
from __future__ import annotations

import pytest
from ansible.module_utils.common.yaml import yaml_load_all
from ansible_collections.homecluster.platform.plugins.module_utils import _component_flux as flux
from ansible_collections.homecluster.platform.plugins.module_utils import _components as comp


def base(**kw):
    c = {"name": "hello", "namespace": "hello", "chart": {"name": "lab-hello", "version": "0.1.0",
                                                          "repo": "https://charts.example.org"}}
    c.update(kw)
    return c


def test_normalise_fills_every_field_and_resolves_sources():
    (c,) = comp.normalise([base(pod_security="baseline")], chart_repo="http://127.0.0.1:8879")
    assert c["chart"]["source"] == "http"
    assert c["chart"]["repo_url"] == "http://127.0.0.1:8879"
    assert c["chart"]["ref"] == "lab-hello"
    assert c["namespace_labels"] == {"pod-security.kubernetes.io/enforce": "baseline"}
    assert c["state"] == "present" and c["delivery"] == "helm" and c["timeout"] == 600
    assert c["remove"] == {"crds": False, "namespace": False, "data": False}


def test_per_chart_source_wins_and_oci_loopback_is_plain_http():
    (c,) = comp.normalise([base()], chart_repo="https://mirror.example.org",
                          chart_sources={"lab-hello": "oci://127.0.0.1:5000/charts"})
    assert c["chart"]["source"] == "oci"
    assert c["chart"]["ref"] == "oci://127.0.0.1:5000/charts/lab-hello"
    assert c["chart"]["plain_http"] is True


def test_disabled_components_are_dropped():
    assert comp.normalise([base(enabled=False)]) == []
    assert comp.normalise([base(enabled="false")]) == []


def test_every_problem_is_reported_at_once():
    items = [base(nmespace="x"), {"name": "b"}, base(name="Bad_Name"),
             base(name="d", manifests=[{"kind": "ConfigMap"}]), base(name="e", state="gone")]
    with pytest.raises(comp.ComponentError) as e:
        comp.normalise(items)
    messages = " | ".join(p["message"] for p in e.value.problems)
    assert "unknown field platform_component_items[].nmespace (did you mean 'namespace'?)" in messages
    assert "component b: namespace is required" in messages
    assert "DNS label" in messages
    assert "manifests[0] needs apiVersion, kind and metadata.name" in messages
    assert "state must be one of" in messages


def test_names_must_be_unique():
    with pytest.raises(comp.ComponentError, match="unique"):
        comp.normalise([base(), base()])


def test_depends_on_orders_stably_and_refuses_cycles_and_unknown_names():
    a, b, c = base(name="a", depends_on=["c"]), base(name="b"), base(name="c")
    assert [x["name"] for x in comp.normalise([a, b, c])] == ["c", "a", "b"]
    assert [x["name"] for x in comp.normalise([b, c, a])] == ["b", "c", "a"]
    with pytest.raises(comp.ComponentError, match="cycle"):
        comp.normalise([base(name="a", depends_on=["b"]), base(name="b", depends_on=["a"])])
    with pytest.raises(comp.ComponentError, match="not in this list"):
        comp.normalise([base(name="a", depends_on=["elsewhere"])])
    # Under flux a dependency may be a component of an earlier layer.
    assert comp.normalise([base(name="a", depends_on=["elsewhere"], delivery="flux")])


def test_removal_goes_first_and_in_reverse_dependency_order():
    items = [base(name="db", state="absent"), base(name="app", state="absent", depends_on=["db"]), base(name="x")]
    assert [c["name"] for c in comp.normalise(items)] == ["app", "db", "x"]


def test_flux_refuses_a_local_chart_directory():
    with pytest.raises(comp.ComponentError, match="Flux delivery needs"):
        comp.normalise([base(delivery="flux")], chart_repo="/srv/charts")


def test_ready_defaults_and_conflicts():
    (c,) = comp.normalise([base(ready=[{"kind": "Deployment", "name": "hello"},
                                       {"kind": "X", "name": "y", "api_version": "a/v1", "namespace": "",
                                        "condition": {"type": "Ready"}, "after": "manifests"}])])
    assert c["ready"][0] == {"kind": "Deployment", "name": "hello", "api_version": "apps/v1", "namespace": "hello",
                             "condition": {}, "path": "", "value": None, "after": "chart"}
    assert c["ready"][1]["condition"] == {"type": "Ready", "status": "True"}
    assert c["ready"][1]["namespace"] == ""
    with pytest.raises(comp.ComponentError, match="either condition or path"):
        comp.normalise([base(ready=[{"kind": "X", "name": "y", "path": "status.phase", "value": "Ready",
                                     "condition": {"type": "Ready"}}])])


def test_masking_hides_secret_values_and_sensitive_values():
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"token": "hunter2"}}
    (c,) = comp.normalise([base(sensitive=True, values={"password": "hunter2"}, manifests=[secret])])
    shown = comp.public_view(c)
    assert "hunter2" not in repr(shown)
    assert shown["manifests"][0]["stringData"] == {"token": comp.MASK}


def test_digest_follows_what_flux_reconciles():
    (a,) = comp.normalise([base(values={"x": 1})])
    (b,) = comp.normalise([base(values={"x": 2})])
    (a2,) = comp.normalise([base(values={"x": 1}, manifests=[{"apiVersion": "v1", "kind": "ConfigMap",
                                                              "metadata": {"name": "m"}}])])
    assert comp.digest(a) != comp.digest(b)
    # Custom resources are applied by their own Kustomization: they do not re-run the release.
    assert comp.digest(a) == comp.digest(a2)


def test_flux_render_puts_secrets_only_into_sops_files():
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "token"}, "stringData": {"t": "hunter2"}}
    before_secret = dict(secret, metadata={"name": "early"})
    (c,) = comp.normalise([base(delivery="flux", sensitive=True, values={"password": "hunter2"},
                                manifests=[secret, {"apiVersion": "v1", "kind": "ConfigMap",
                                                    "metadata": {"name": "cm"}}],
                                manifests_before=[before_secret], depends_on=["cilium"])])
    files, secrets = flux.render(c, layer="apps", cluster="lab", sops_secret="sops-age", crd_docs=[])
    clear = "".join(f["content"] or "" for f in files)
    assert "hunter2" not in clear
    assert {s["path"] for s in secrets} == {"infrastructure/apps/hello/release/secrets.sops.yaml",
                                            "infrastructure/apps/hello/manifests/secrets.sops.yaml"}
    assert all(s["encrypted_regex"] == "^(data|stringData)$" for s in secrets)
    ks = list(yaml_load_all(next(f["content"] for f in files if f["path"] == "clusters/lab/applications/hello.yaml")))
    assert ks[0]["spec"]["dependsOn"] == [{"name": "cilium"}]
    assert ks[1]["metadata"]["name"] == "hello-manifests" and ks[1]["spec"]["dependsOn"] == [{"name": "hello"}]
    release = list(yaml_load_all(next(f["content"] for f in files if f["path"].endswith("release/release.yaml"))))
    hr = next(d for d in release if d["kind"] == "HelmRelease")
    assert hr["spec"]["valuesFrom"][0]["name"] == "hello-values"
    assert "values" not in hr["spec"]
    ns = next(d for d in release if d["kind"] == "Namespace")
    assert ns["metadata"]["annotations"][flux.PRUNE_ANNOTATION] == "disabled"


def test_flux_render_of_an_absent_component_removes_its_files():
    (c,) = comp.normalise([base(delivery="flux", state="absent")])
    files, secrets = flux.render(c, layer="apps", cluster="lab", sops_secret="sops-age", crd_docs=[])
    assert secrets == []
    assert {f["state"] for f in files} == {"absent"}
    assert "clusters/lab/applications/hello.yaml" in {f["path"] for f in files}


def test_flux_crds_are_kept_unless_opted_in():
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "widgets.example.org"}}
    (c,) = comp.normalise([base(delivery="flux", crds=[{"src": "crds.yaml"}])])
    files, _secrets = flux.render(c, layer="apps", cluster="lab", sops_secret="s", crd_docs=[crd])
    crds = list(yaml_load_all(next(f["content"] for f in files if f["path"].endswith("release/crds.yaml"))))
    assert crds[0]["metadata"]["annotations"][flux.PRUNE_ANNOTATION] == "disabled"
    (c,) = comp.normalise([base(delivery="flux", crds=[{"src": "crds.yaml"}], remove={"crds": True})])
    files, _secrets = flux.render(c, layer="apps", cluster="lab", sops_secret="s", crd_docs=[crd])
    crds = list(yaml_load_all(next(f["content"] for f in files if f["path"].endswith("release/crds.yaml"))))
    assert "annotations" not in crds[0]["metadata"]
