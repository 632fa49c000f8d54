# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: HomeCluster developers
"""helm and kubectl runners for the component mechanism (on the shared _cli base).

Objects are applied with server-side apply (field manager ``homecluster``), looked up in one call
per batch, and predicted with a server-side dry run, so a check run shows what the API server
itself would do.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from ansible.module_utils.common.yaml import yaml_load_all
from ansible_collections.homecluster.platform.plugins.module_utils._cli import Cli, CliError

FIELD_MANAGER = "homecluster"
# Fields the server owns: left out when comparing an object before and after an apply.
VOLATILE_METADATA = ("managedFields", "resourceVersion", "generation", "uid", "creationTimestamp",
                     "selfLink")
# Built-in cluster-scoped kinds (custom resources of cluster scope are left to kubectl's discovery).
CLUSTER_KINDS = frozenset({
    "Namespace", "Node", "PersistentVolume", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding",
    "StorageClass", "PriorityClass", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration",
    "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "APIService", "CSIDriver", "IngressClass",
    "RuntimeClass", "VolumeSnapshotClass", "GatewayClass",
})
VOLATILE_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",
                        "deployment.kubernetes.io/revision")


def object_key(obj: dict, default_ns: str = "") -> tuple[str, str, str, str]:
    api = obj.get("apiVersion", "")
    group = api.split("/", 1)[0] if "/" in api else ""
    meta = obj.get("metadata") or {}
    return group, obj.get("kind", ""), meta.get("namespace") or default_ns, meta.get("name", "")


def label(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{obj.get('kind')}/{(ns + '/') if ns else ''}{meta.get('name')}"


def comparable(obj: dict | None) -> dict | None:
    """The object without what the server changes on every write (and without status)."""
    if obj is None:
        return None
    out = {k: v for k, v in obj.items() if k != "status"}
    meta = dict(out.get("metadata") or {})
    for k in VOLATILE_METADATA:
        meta.pop(k, None)
    ann = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in VOLATILE_ANNOTATIONS}
    if ann:
        meta["annotations"] = ann
    else:
        meta.pop("annotations", None)
    out["metadata"] = meta
    return out


class Kubectl(Cli):
    name = "kubectl"

    def __init__(self, binary: str, *, kubeconfig: str = "", context: str = "", **kw: Any) -> None:
        base = []
        if kubeconfig:
            base += ["--kubeconfig", kubeconfig]
        if context:
            base += ["--context", context]
        super().__init__(binary, base_args=base, **kw)

    @staticmethod
    def stream(objects: Sequence[dict]) -> str:
        return json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)})

    def server_version(self) -> str:
        data = self.run(["version", "-o", "json", "--request-timeout=20s"]).json() or {}
        return (data.get("serverVersion") or {}).get("gitVersion", "")

    def get_many(self, objects: Sequence[dict], default_ns: str,
                 one_by_one: bool = True) -> dict[tuple[str, str, str, str], dict] | None:
        """The objects that exist, by key; kinds whose API is not served count as absent. When the batch
        fails (one unknown kind fails it all) and one_by_one is false, None instead of a lookup per object."""
        found: dict[tuple[str, str, str, str], dict] = {}
        if not objects:
            return found
        batch = [self.with_ns(o, default_ns) for o in objects]
        res = self.run(["get", "-f", "-", "-o", "json", "--ignore-not-found"], data=self.stream(batch), check=False)
        if res.rc != 0 and not one_by_one:
            return None
        if res.rc != 0:
            # One unknown kind fails the whole batch: look the objects up one by one.
            if len(batch) == 1:
                if self.not_served(res.stderr):
                    return found
                raise CliError(f"kubectl get {label(batch[0])} failed: {res.stderr.strip()[:500]}", cmd=res.cmd,
                               rc=res.rc, stderr=res.stderr)
            for o in batch:
                found.update(self.get_many([o], default_ns))
            return found
        data = res.json() or {}
        items = data.get("items", [data]) if data.get("kind", "").endswith("List") else [data]
        for item in items:
            if item:
                found[object_key(item)] = item
        return found

    @staticmethod
    def not_served(stderr: str) -> bool:
        s = stderr or ""
        return ("the server doesn't have a resource type" in s or "no matches for kind" in s
                or "could not find the requested resource" in s or "ensure CRDs are installed first" in s)

    @staticmethod
    def with_ns(obj: dict, default_ns: str) -> dict:
        meta = obj.get("metadata") or {}
        if meta.get("namespace") or not default_ns or obj.get("kind") in CLUSTER_KINDS:
            return obj
        return dict(obj, metadata=dict(meta, namespace=default_ns))

    def apply(self, objects: Sequence[dict], default_ns: str, *, dry_run: bool = False,
              secret: bool = False) -> list[dict]:
        """Server-side apply of a batch; returns the objects as the server stored (or would store) them."""
        if not objects:
            return []
        args = ["apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "--force-conflicts", "-f", "-",
                "-o", "json"]
        if dry_run:
            args.append("--dry-run=server")
        batch = [self.with_ns(o, default_ns) for o in objects]
        data = self.run(args, data=self.stream(batch), secret_output=secret).json() or {}
        return data.get("items", [data]) if data.get("kind", "").endswith("List") else [data]

    def delete(self, objects: Sequence[dict], default_ns: str, *, wait: bool = True, timeout: int = 300) -> None:
        if not objects:
            return
        args = ["delete", "-f", "-", "--ignore-not-found", f"--wait={'true' if wait else 'false'}",
                f"--timeout={timeout}s"]
        self.run(args, data=self.stream([self.with_ns(o, default_ns) for o in objects]), timeout=timeout + 30)

    def get(self, api_version: str, kind: str, name: str, namespace: str = "") -> dict | None:
        obj = {"apiVersion": api_version, "kind": kind, "metadata": {"name": name}}
        if namespace:
            obj["metadata"]["namespace"] = namespace
        return self.get_many([obj], "").get(object_key(obj))

    def api_served(self, api_version: str, kind: str) -> bool:
        """Whether the API server serves this kind (a CRD may be registered at run time)."""
        if "/" in api_version:
            group, version = api_version.split("/", 1)
        else:
            group, version = "", api_version
        path = f"/apis/{group}/{version}" if group else f"/api/{version}"
        res = self.run(["get", "--raw", path], check=False)
        if res.rc != 0:
            return False
        try:
            data = json.loads(res.stdout)
        except ValueError:
            return False
        return any(r.get("kind") == kind for r in data.get("resources", []))


class Helm(Cli):
    name = "helm"

    def __init__(self, binary: str, *, kubeconfig: str = "", context: str = "", **kw: Any) -> None:
        base = []
        if kubeconfig:
            base += ["--kubeconfig", kubeconfig]
        if context:
            base += ["--kube-context", context]
        super().__init__(binary, base_args=base, **kw)

    def releases(self) -> dict:
        """Every release of the cluster, by (name, namespace): {chart: name-version, status, revision}."""
        data = self.run(["list", "--all", "--all-namespaces", "--max", "0", "-o", "json"]).json() or []
        return {(r["name"], r["namespace"]): {"chart": r.get("chart", ""), "status": r.get("status", ""),
                                              "revision": r.get("revision")} for r in data}

    def user_values(self, release: str, namespace: str) -> dict:
        return self.run(["get", "values", release, "-n", namespace, "-o", "json"], secret_output=True).json() or {}

    @staticmethod
    def source_args(chart: dict) -> list[str]:
        args = ["--version", chart["version"]]
        if chart["repo_url"]:
            args += ["--repo", chart["repo_url"]]
        if chart["plain_http"]:
            args.append("--plain-http")
        return args

    def pull(self, chart: dict, dest: str) -> str:
        """Download the chart archive into dest; return its path."""
        if chart["source"] == "dir":
            return chart["ref"]
        self.run(["pull", chart["ref"], "--destination", dest, *self.source_args(chart)], timeout=300)
        archives = [f for f in os.listdir(dest) if f.endswith(".tgz")]
        if len(archives) != 1:
            raise CliError(f"helm pull {chart['ref']} left {len(archives)} archives in {dest}")
        return os.path.join(dest, archives[0])

    def template(self, release: str, chart_path: str, namespace: str, values: dict, kube_version: str,
                 *, secret: bool = False) -> str:
        args = ["template", release, chart_path, "--namespace", namespace, "--values", "-"]
        if kube_version:
            args += ["--kube-version", kube_version]
        return self.run(args, data=json.dumps(values), secret_output=secret).stdout

    def upgrade(self, release: str, chart_path: str, namespace: str, values: dict, *, timeout: int,
                secret: bool = False) -> None:
        args = ["upgrade", "--install", release, chart_path, "--namespace", namespace, "--values", "-",
                "--wait", "--atomic", f"--timeout={timeout}s", "--reset-values"]
        self.run(args, data=json.dumps(values), timeout=timeout + 60, secret_output=secret)

    def manifest_objects(self, release: str, namespace: str) -> list[tuple[str, str]]:
        """(kind, name) of every object the installed release rendered (`helm get manifest`)."""
        text = self.run(["get", "manifest", release, "-n", namespace], secret_output=True).stdout
        return [(d.get("kind", ""), (d.get("metadata") or {}).get("name", ""))
                for d in yaml_load_all(text) if isinstance(d, dict)]

    def uninstall(self, release: str, namespace: str, timeout: int) -> None:
        self.run(["uninstall", release, "--namespace", namespace, "--wait", f"--timeout={timeout}s"],
                 timeout=timeout + 60)
