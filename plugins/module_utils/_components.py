# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: HomeCluster developers
"""Platform components as data: normalise, validate and order them (docs/components.md).

Pure functions, no I/O: the module and the tests feed them plain dicts.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import re
from typing import Any

PS_LABEL = "pod-security.kubernetes.io/enforce"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
MASK = "<secret>"
MASK_CHANGED = "<secret, changed>"

FIELDS = {
    "name": None, "enabled": True, "state": "present", "delivery": None, "namespace": None,
    "namespace_create": True, "pod_security": "", "namespace_labels": {}, "chart": None, "values": {},
    "values_variable": "", "values_free_form": [], "values_extra_keys": [], "sensitive": False, "crds": [],
    "manifests_before": [], "manifests": [], "ready": [], "depends_on": [], "timeout": None, "data_kinds": [],
    "remove": {},
}
CHART_FIELDS = ("name", "version", "repo")
READY_FIELDS = ("kind", "api_version", "name", "namespace", "condition", "path", "value", "after")
CRD_FIELDS = ("src", "policy")
REMOVE_FIELDS = ("crds", "namespace", "data")
CRD_POLICIES = ("upgrade", "create")
STATES = ("present", "absent")
DELIVERIES = ("helm", "flux")
PS_LEVELS = ("", "privileged", "baseline", "restricted")


class ComponentError(Exception):
    """Bad component data; carries every problem found, not only the first."""

    def __init__(self, problems: list[dict]) -> None:
        super().__init__("; ".join(p["message"] for p in problems))
        self.problems = problems


def _unknown(keys, allowed, where: str, component: str) -> list[dict]:
    out = []
    for k in keys:
        if k not in allowed:
            near = difflib.get_close_matches(str(k), list(allowed), n=1, cutoff=0.6)
            hint = f" (did you mean {near[0]!r}?)" if near else f" (known: {', '.join(sorted(allowed))})"
            out.append(problem(component, f"{where}.{k}", f"unknown field {where}.{k}{hint}"))
    return out


def problem(component: str, key: str, message: str, variable: str = "") -> dict:
    return {"component": component, "key": key, "variable": variable, "message": f"component {component}: {message}"}


def resolve_chart(chart: dict, chart_repo: str, chart_sources: dict[str, str]) -> dict:
    """Where the chart really comes from, after the per-chart and global overrides."""
    src = chart_sources.get(chart["name"]) or chart_repo or chart["repo"]
    if src.startswith("oci://"):
        kind = "oci"
    elif re.match(r"^https?://", src):
        kind = "http"
    else:
        kind = "dir"
    out = dict(chart)
    out.update({
        "repo": src, "source": kind,
        "ref": chart["name"] if kind == "http" else f"{src.rstrip('/')}/{chart['name']}",
        "repo_url": src if kind == "http" else "",
        "plain_http": kind == "oci" and bool(re.match(r"^oci://(127\.|localhost[:/])", src)),
    })
    return out


def normalise(items: list[dict], *, delivery: str = "helm", chart_repo: str = "",
              chart_sources: dict[str, str] | None = None, timeout: int = 600) -> list[dict]:
    """The enabled components with every field present (the contract both deliveries read).

    Raises ComponentError with every problem found.
    """
    problems: list[dict] = []
    out: list[dict] = []
    for idx, raw in enumerate(items or []):
        c, p = _normalise_one(raw, idx, delivery=delivery, chart_repo=chart_repo,
                              chart_sources=chart_sources or {}, timeout=timeout)
        problems += p
        if c is not None:
            out.append(c)
    names = [c["name"] for c in out]
    for n in sorted({n for n in names if names.count(n) > 1}):
        problems.append(problem(n, "name", "component names must be unique in the list"))
    if not problems:
        try:
            out = order(out)
        except ComponentError as e:
            problems += e.problems
    if problems:
        raise ComponentError(problems)
    return out


def _normalise_one(raw: Any, idx: int, *, delivery: str, chart_repo: str, chart_sources: dict[str, str],
                   timeout: int) -> tuple[dict | None, list[dict]]:
    if not isinstance(raw, dict):
        return None, [problem(f"#{idx}", "", f"must be a mapping, got {type(raw).__name__}")]
    name = str(raw.get("name") or f"#{idx}")
    problems = _unknown(raw.keys(), FIELDS, "platform_component_items[]", name)
    c = {k: copy.deepcopy(raw[k]) if raw.get(k) is not None else copy.deepcopy(v) for k, v in FIELDS.items()}
    if not _bool(c["enabled"]):
        return None, problems
    c.update(enabled=True, sensitive=_bool(c["sensitive"]), namespace_create=_bool(c["namespace_create"]),
             delivery=c["delivery"] or delivery, timeout=int(c["timeout"] or timeout))
    if not raw.get("name"):
        problems.append(problem(name, "name", "every component needs a name"))
    elif not DNS_LABEL.match(name):
        problems.append(problem(name, "name", "the name must be a DNS label (lower case, digits, '-')"))
    if not c["namespace"]:
        problems.append(problem(name, "namespace", "namespace is required"))
    for field, allowed in (("state", STATES), ("delivery", DELIVERIES), ("pod_security", PS_LEVELS)):
        if c[field] not in allowed:
            problems.append(problem(name, field, f"{field} must be one of {', '.join(map(repr, allowed))}, "
                                                 f"got {c[field]!r}"))
    labels = dict(c["namespace_labels"] or {})
    if c["pod_security"]:
        labels[PS_LABEL] = c["pod_security"]
    c["namespace_labels"] = {str(k): str(v) for k, v in labels.items()}
    c["chart"], p = _chart(c["chart"], c["delivery"], name, chart_repo, chart_sources)
    problems += p
    if not isinstance(c["values"], dict):
        problems.append(problem(name, "values", "values must be a mapping", c["values_variable"]))
        c["values"] = {}
    problems += _manifest_problems(c, name)
    c["crds"], p = _crds(c["crds"], name)
    problems += p
    c["ready"], p = _ready(c["ready"], c["namespace"] or "", name)
    problems += p
    remove = c["remove"] if isinstance(c["remove"], dict) else {}
    problems += _unknown(remove.keys(), REMOVE_FIELDS, "remove", name)
    c["remove"] = {k: _bool(remove.get(k, False)) for k in REMOVE_FIELDS}
    for field in ("depends_on", "values_free_form", "values_extra_keys", "data_kinds"):
        c[field] = [str(x) for x in c[field]]
    return c, problems


def _chart(chart: Any, delivery: str, name: str, chart_repo: str,
           chart_sources: dict[str, str]) -> tuple[dict | None, list[dict]]:
    if chart is None:
        return None, []
    if not isinstance(chart, dict):
        return None, [problem(name, "chart", "chart must be a mapping {name, version, repo}")]
    problems = _unknown(chart.keys(), CHART_FIELDS, "chart", name)
    missing = [f for f in CHART_FIELDS if not str(chart.get(f) or "")]
    if missing:
        problems.append(problem(name, "chart", f"chart needs {', '.join(missing)} (a pinned version and a source)"))
        return None, problems
    resolved = resolve_chart({k: str(chart[k]) for k in CHART_FIELDS}, chart_repo, chart_sources)
    if delivery == "flux" and resolved["source"] == "dir":
        problems.append(problem(name, "chart.repo", "Flux delivery needs a chart from an HTTP(S) repository or an "
                                                    "oci:// registry; a local directory works only with delivery helm"))
    return resolved, problems


def _manifest_problems(c: dict, name: str) -> list[dict]:
    problems = []
    for field in ("manifests_before", "manifests"):
        for i, m in enumerate(c[field]):
            if not isinstance(m, dict) or not m.get("apiVersion") or not m.get("kind") \
                    or not (m.get("metadata") or {}).get("name"):
                problems.append(problem(name, f"{field}[{i}]", f"{field}[{i}] needs apiVersion, kind and "
                                                               "metadata.name"))
    if c["chart"] is None and not (c["manifests_before"] or c["manifests"] or c["crds"]) and c["state"] == "present":
        problems.append(problem(name, "chart", "a component needs a chart, crds or manifests"))
    return problems


def _bool(v: Any) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("1", "true", "yes", "on")
    return bool(v)


def _crds(raw: Any, name: str) -> tuple[list[dict], list[dict]]:
    out, problems = [], []
    for i, item in enumerate(raw or []):
        c = {"src": item} if isinstance(item, str) else item
        if not isinstance(c, dict) or not c.get("src"):
            problems.append(problem(name, f"crds[{i}]", f"crds[{i}] needs src (a file or an https:// URL)"))
            continue
        problems += _unknown(c.keys(), CRD_FIELDS, f"crds[{i}]", name)
        policy = c.get("policy") or "upgrade"
        if policy not in CRD_POLICIES:
            problems.append(problem(name, f"crds[{i}].policy", f"crds[{i}].policy must be upgrade (apply on every "
                                                               f"run) or create (only when missing), got {policy!r}"))
        out.append({"src": str(c["src"]), "policy": policy})
    return out, problems


def _ready(raw: Any, namespace: str, name: str) -> tuple[list[dict], list[dict]]:
    out, problems = [], []
    for i, r in enumerate(raw or []):
        if not isinstance(r, dict) or not r.get("kind") or not r.get("name"):
            problems.append(problem(name, f"ready[{i}]", f"ready[{i}] needs kind and name"))
            continue
        problems += _unknown(r.keys(), READY_FIELDS, f"ready[{i}]", name)
        item = {
            "kind": str(r["kind"]), "name": str(r["name"]),
            "api_version": str(r.get("api_version") or "apps/v1"),
            "namespace": namespace if r.get("namespace") is None else str(r["namespace"]),
            "condition": dict(r.get("condition") or {}),
            "path": str(r.get("path") or ""),
            "value": r.get("value"),
            "after": str(r.get("after") or "chart"),
        }
        if item["path"] and item["condition"]:
            problems.append(problem(name, f"ready[{i}]", f"ready[{i}] uses either condition or path + value"))
        if item["path"] and item["value"] is None:
            problems.append(problem(name, f"ready[{i}].value", f"ready[{i}] has a path but no value"))
        if item["after"] not in ("chart", "manifests"):
            problems.append(problem(name, f"ready[{i}].after", f"ready[{i}].after must be chart or manifests"))
        if item["condition"]:
            item["condition"].setdefault("status", "True")
            item["condition"] = {k: str(v) for k, v in item["condition"].items()}
        out.append(item)
    return out, problems


def order(components: list[dict]) -> list[dict]:
    """List order, moved only as far as depends_on requires (stable topological order).

    A dependency on a name not in the list is allowed under flux (a component of an earlier layer,
    a Flux Kustomization of that name) and refused under helm.
    """
    by_name = {c["name"]: c for c in components}
    problems = []
    for c in components:
        for d in c["depends_on"]:
            if d == c["name"]:
                problems.append(problem(c["name"], "depends_on", "a component cannot depend on itself"))
            elif d not in by_name and c["delivery"] == "helm":
                problems.append(problem(c["name"], "depends_on", f"depends_on names {d!r}, which is not in this "
                                        "list (helm delivery orders components of one list only)"))
    if problems:
        raise ComponentError(problems)
    done: list[str] = []
    visiting: list[str] = []

    def visit(c: dict) -> None:
        if c["name"] in done:
            return
        if c["name"] in visiting:
            cycle = [*visiting[visiting.index(c["name"]):], c["name"]]
            raise ComponentError([problem(c["name"], "depends_on", f"depends_on makes a cycle: {' -> '.join(cycle)}")])
        visiting.append(c["name"])
        for d in c["depends_on"]:
            if d in by_name:
                visit(by_name[d])
        visiting.pop()
        done.append(c["name"])

    for c in components:
        visit(c)
    present = [by_name[n] for n in done if by_name[n]["state"] == "present"]
    # Removal runs in reverse: dependants go before what they depend on.
    absent = [by_name[n] for n in reversed(done) if by_name[n]["state"] == "absent"]
    return absent + present


def is_secret(obj: dict) -> bool:
    return obj.get("kind") == "Secret" and obj.get("apiVersion") == "v1"


def mask_object(obj: dict) -> dict:
    """A Secret with its values masked (keys kept), for diffs and messages."""
    if not is_secret(obj):
        return obj
    out = dict(obj)
    for field in ("data", "stringData"):
        if isinstance(obj.get(field), dict):
            out[field] = {k: MASK for k in obj[field]}
    return out


def public_view(c: dict) -> dict:
    """The component as it may be shown: sensitive values and Secret data masked."""
    out = dict(c)
    if c["sensitive"]:
        out["values"] = MASK if c["values"] else {}
    for field in ("manifests_before", "manifests"):
        out[field] = [mask_object(m) for m in c[field]]
    return out


def digest(c: dict) -> str:
    """What Flux is asked to reconcile: a digest of the rendered release and what goes with it."""
    data = json.dumps([c["chart"], c["values"], c["namespace_labels"], c["manifests_before"], c["crds"]],
                      sort_keys=True, default=str)
    return hashlib.sha256(data.encode()).hexdigest()[:20]
