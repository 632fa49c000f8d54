# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: HomeCluster developers
"""Render a normalised platform component into a GitOps repository for Flux.

Layout, for component C of layer L in cluster K:

- ``clusters/K/S/C.yaml``: the Flux Kustomization ``C`` (the release: namespace, CRDs,
  objects needed before the chart, the chart source and the HelmRelease) and, when C has custom
  resources, ``C-manifests`` depending on it. ``depends_on`` becomes ``dependsOn``. S is the
  deployment stage of layer L (``stage()``): flux_bootstrap's Kustomization ``stage-S`` applies
  the directory and is Ready when all of it is; each stage depends on the one before.
- ``infrastructure/L/C/release/``: ``release.yaml`` and ``crds.yaml`` in clear text, and
  ``secrets.sops.yaml`` (sensitive values, Secret objects) SOPS-encrypted.
- ``infrastructure/L/C/manifests/``: ``manifests.yaml`` and ``secrets.sops.yaml`` likewise.

A Secret never reaches a clear-text file: Secrets and the values of a ``sensitive`` component go
only into ``*.sops.yaml`` files, which the caller hands to sops. CRDs and the namespace carry
``kustomize.toolkit.fluxcd.io/prune: disabled`` unless the component's ``remove`` opts in, so
removing a component never deletes a CRD (and with it every custom resource) or a namespace
(and with it every volume claim) by accident.
"""

from __future__ import annotations

from ansible.module_utils.common.yaml import yaml_dump_all
from ansible_collections.homecluster.platform.plugins.module_utils._components import digest, is_secret

PRUNE_ANNOTATION = "kustomize.toolkit.fluxcd.io/prune"
REQUESTED_ANNOTATION = "reconcile.fluxcd.io/requestedAt"


def to_yaml(docs: list) -> str:
    docs = [d for d in docs if d]
    if not docs:
        return ""
    return yaml_dump_all(docs, sort_keys=False, default_flow_style=False, explicit_start=True)


# The deployment stages in order (flux_bootstrap's _flux_bootstrap_stages) and the layers of each.
STAGES = ("infrastructure", "core", "applications")
CORE_LAYERS = frozenset({"istio"})
APPLICATION_LAYERS = frozenset({"apps"})


def stage(layer: str) -> str:
    if layer in APPLICATION_LAYERS:
        return "applications"
    return "core" if layer in CORE_LAYERS else "infrastructure"


def paths(c: dict, layer: str, cluster: str) -> dict:
    d = f"infrastructure/{layer}/{c['name']}"
    return {
        "kustomizations": f"clusters/{cluster}/{stage(layer)}/{c['name']}.yaml",
        "release": f"{d}/release/release.yaml",
        "crds": f"{d}/release/crds.yaml",
        "release_secrets": f"{d}/release/secrets.sops.yaml",
        "manifests": f"{d}/manifests/manifests.yaml",
        "manifest_secrets": f"{d}/manifests/secrets.sops.yaml",
        "dir": d,
    }


def _no_prune(obj: dict) -> dict:
    meta = dict(obj.get("metadata") or {})
    meta["annotations"] = dict(meta.get("annotations") or {}, **{PRUNE_ANNOTATION: "disabled"})
    return dict(obj, metadata=meta)


def kustomizations(c: dict, p: dict, sops_secret: str) -> list:
    def ks(name: str, path: str, depends: list, extra: dict) -> dict:
        spec = {}
        if depends:
            spec["dependsOn"] = [{"name": d} for d in depends]
        spec.update({
            "interval": "10m", "retryInterval": "1m", "timeout": f"{c['timeout']}s", "path": f"./{path}",
            "prune": True, "sourceRef": {"kind": "GitRepository", "name": "flux-system"},
            "decryption": {"provider": "sops", "secretRef": {"name": sops_secret}},
        })
        spec.update(extra)
        return {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
                "metadata": {"name": name, "namespace": "flux-system"}, "spec": spec}

    release_dir = p["release"].rsplit("/", 1)[0]
    docs = [ks(c["name"], release_dir, c["depends_on"], {"wait": True})]
    if c["manifests"]:
        docs.append(ks(f"{c['name']}-manifests", p["manifests"].rsplit("/", 1)[0], [c["name"]],
                       {"targetNamespace": c["namespace"]}))
    return docs


def source_and_release(c: dict) -> list:
    chart = c["chart"]
    if chart["source"] == "oci":
        source = {"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "OCIRepository",
                  "metadata": {"name": c["name"], "namespace": c["namespace"]},
                  "spec": {"interval": "1h", "url": chart["ref"], "ref": {"tag": chart["version"]},
                           "layerSelector": {"mediaType": "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
                                             "operation": "copy"}}}
        if chart["plain_http"]:
            source["spec"]["insecure"] = True
        chart_spec = {"chartRef": {"kind": "OCIRepository", "name": c["name"]}}
    else:
        source = {"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "HelmRepository",
                  "metadata": {"name": c["name"], "namespace": c["namespace"]},
                  "spec": {"interval": "1h", "url": chart["repo_url"]}}
        chart_spec = {"chart": {"spec": {"chart": chart["name"], "version": chart["version"],
                                         "sourceRef": {"kind": "HelmRepository", "name": c["name"]},
                                         "interval": "1h"}}}
    spec = {"interval": "30m", "releaseName": c["name"], "timeout": f"{c['timeout']}s"}
    spec.update(chart_spec)
    spec.update({"install": {"remediation": {"retries": 3}},
                 "upgrade": {"remediation": {"retries": 3, "remediateLastFailure": True}}})
    if c["sensitive"]:
        spec["valuesFrom"] = [{"kind": "Secret", "name": f"{c['name']}-values", "valuesKey": "values.yaml"}]
    elif c["values"]:
        spec["values"] = c["values"]
    release = {"apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
               "metadata": {"name": c["name"], "namespace": c["namespace"],
                            "annotations": {REQUESTED_ANNOTATION: digest(c)}},
               "spec": spec}
    return [source, release]


def render(c: dict, *, layer: str, cluster: str, sops_secret: str, crd_docs: list) -> tuple:
    """(files, sops_files) for homecluster's gitops runner; absent components list their paths as absent."""
    p = paths(c, layer, cluster)
    every = ("kustomizations", "release", "crds", "release_secrets", "manifests", "manifest_secrets")
    if c["state"] == "absent":
        return [{"path": p[k], "state": "absent", "content": None} for k in every], []
    files, secrets = {}, {}
    files["kustomizations"] = to_yaml(kustomizations(c, p, sops_secret))
    release_docs = []
    if c["namespace_create"]:
        ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": c["namespace"]}}
        if c["namespace_labels"]:
            ns["metadata"]["labels"] = dict(c["namespace_labels"])
        release_docs.append(ns if c["remove"]["namespace"] else _no_prune(ns))
    before = c["manifests_before"]
    release_docs += [m for m in before if not is_secret(m)]
    if c["chart"]:
        release_docs += source_and_release(c)
    files["release"] = to_yaml(release_docs)
    crds = [d if c["remove"]["crds"] else _no_prune(d) for d in crd_docs]
    crds += [m if c["remove"]["crds"] else _no_prune(m) for m in before
             if m.get("kind") == "CustomResourceDefinition"]
    if crds:
        files["crds"] = to_yaml(crds)
        files["release"] = to_yaml([m for m in release_docs if m.get("kind") != "CustomResourceDefinition"])
    release_secrets = [m for m in before if is_secret(m)]
    if c["sensitive"] and c["chart"]:
        release_secrets.append({"apiVersion": "v1", "kind": "Secret",
                                "metadata": {"name": f"{c['name']}-values", "namespace": c["namespace"]},
                                "type": "Opaque",
                                "stringData": {"values.yaml": to_yaml([c["values"]])[4:] if c["values"] else "{}\n"}})
    if release_secrets:
        secrets["release_secrets"] = to_yaml(release_secrets)
    if c["manifests"]:
        plain = [m for m in c["manifests"] if not is_secret(m)]
        if plain:
            files["manifests"] = to_yaml(plain)
        hidden = [m for m in c["manifests"] if is_secret(m)]
        if hidden:
            secrets["manifest_secrets"] = to_yaml(hidden)
    out_files = [{"path": p[k], "state": "present", "content": files[k]} for k in every
                 if k in files]
    out_files += [{"path": p[k], "state": "absent", "content": None} for k in every
                  if k not in files and k not in secrets]
    out_secrets = [{"path": p[k], "content": secrets[k], "format": "yaml",
                    "encrypted_regex": "^(data|stringData)$"} for k in every if k in secrets]
    return out_files, out_secrets
