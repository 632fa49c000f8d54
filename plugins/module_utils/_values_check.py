# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: HomeCluster developers
"""Check Helm values against the default values of the chart actually being installed.

Most upstream charts ship no values.schema.json, or one that allows unknown keys, so a misspelt key
is rendered and silently ignored. This check walks the values a role or a user sets and refuses
every key that the chart's own defaults (values.yaml of the chart and of its subcharts) do not have,
naming the nearest real key.

Rules:
- a key must exist in the defaults at the same path;
- below a default that is an empty map, a list or null, anything goes (the chart leaves it open);
- below a path the component lists in ``values_free_form`` (``*`` matches one segment), or below a
  key named like a Kubernetes-typed field (``resources``, ``nodeSelector``, ``podAnnotations``,
  ...), anything goes;
- keys the chart reads without listing them in values.yaml (Istio's ``profile``) are declared by
  the component in ``values_extra_keys``;
- a map given where the default is a scalar is refused;
- subcharts count: their defaults sit under their name (or alias), ``global`` is shared;
- defaults a chart keeps under ``_internal_defaults_do_not_set`` (Istio's charts since 1.2x)
  count as top-level defaults, as the chart's templates merge them.
"""

from __future__ import annotations

import builtins
import difflib
import io
import os
import tarfile
from collections.abc import Iterable
from typing import Any

from ansible.module_utils.common.yaml import yaml_load

# Keys whose contents are Kubernetes objects or free-form string maps in nearly every chart.
K8S_TYPED_KEYS = frozenset({
    "resources", "nodeSelector", "tolerations", "affinity", "podAnnotations", "podLabels", "annotations",
    "labels", "extraEnv", "env", "envFrom", "topologySpreadConstraints", "livenessProbe", "readinessProbe",
    "startupProbe", "extraVolumes", "extraVolumeMounts", "extraArgs", "commonLabels", "commonAnnotations",
})


INTERNAL_DEFAULTS = "_internal_defaults_do_not_set"


class ChartInfo:
    """What a chart says about its values: the defaults with subcharts folded in."""

    def __init__(self, name: str, version: str, values: dict, subcharts: list[str] | None = None,
                 has_schema: bool = False) -> None:
        self.name = name
        self.version = version
        self.values = values
        self.subcharts = subcharts or []
        self.has_schema = has_schema


def deep_merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = deep_merge(base.get(k), v) if k in base else v
        return out
    return over if over is not None else base


def _load_yaml(data: bytes | None) -> Any:
    if not data:
        return None
    return yaml_load(data.decode("utf-8", "replace"))


class _TarSource:
    """Files of a packaged chart (.tgz), nested chart archives included."""

    def __init__(self, data: bytes) -> None:
        self.tar = tarfile.open(fileobj=io.BytesIO(data), mode="r:gz")
        names = [m.name for m in self.tar.getmembers() if m.isfile()]
        tops = {n.split("/", 1)[0] for n in names}
        self.top = sorted(tops)[0] if tops else ""
        self.names = set(names)

    def read(self, rel: str) -> bytes | None:
        name = f"{self.top}/{rel}"
        if name not in self.names:
            return None
        f = self.tar.extractfile(name)
        return f.read() if f else None

    def list(self, rel_dir: str) -> builtins.list[str]:
        prefix = f"{self.top}/{rel_dir.rstrip('/')}/"
        return sorted(n[len(prefix):] for n in self.names if n.startswith(prefix))


class _DirSource:
    def __init__(self, path: str) -> None:
        self.path = path

    def read(self, rel: str) -> bytes | None:
        full = os.path.join(self.path, rel)
        if not os.path.isfile(full):
            return None
        with open(full, "rb") as f:
            return f.read()

    def list(self, rel_dir: str) -> builtins.list[str]:
        base = os.path.join(self.path, rel_dir)
        out = []
        for root, _dirs, files in os.walk(base):
            for fn in files:
                out.append(os.path.relpath(os.path.join(root, fn), base))
        return sorted(out)


class _SubSource:
    """A directory inside another source (a subchart that `helm package` stored as a directory)."""

    def __init__(self, parent, prefix: str) -> None:
        self.parent = parent
        self.prefix = prefix.rstrip("/")

    def read(self, rel: str) -> bytes | None:
        return self.parent.read(f"{self.prefix}/{rel}")

    def list(self, rel_dir: str) -> list[str]:
        return self.parent.list(f"{self.prefix}/{rel_dir}")


def _subchart_sources(src) -> dict[str, Any]:
    """Subcharts under charts/: name -> source (nested archives and directories alike)."""
    out = {}
    for rel in src.list("charts"):
        if rel.endswith(".tgz") and "/" not in rel:
            data = src.read(f"charts/{rel}")
            if data:
                sub = _TarSource(data)
                meta = _load_yaml(sub.read("Chart.yaml")) or {}
                out[meta.get("name") or sub.top] = sub
        elif rel.endswith("/Chart.yaml") and rel.count("/") == 1:
            d = rel.split("/", 1)[0]
            sub = _SubSource(src, f"charts/{d}")
            meta = _load_yaml(sub.read("Chart.yaml")) or {}
            out[meta.get("name") or d] = sub
    return out


def _info_from(src) -> ChartInfo:
    meta = _load_yaml(src.read("Chart.yaml")) or {}
    values = _load_yaml(src.read("values.yaml")) or {}
    if not isinstance(values, dict):
        values = {}
    # Istio's charts keep their defaults under _internal_defaults_do_not_set and merge them into the
    # values in their templates: those are the keys a user sets at the top level.
    internal = values.pop(INTERNAL_DEFAULTS, None)
    if isinstance(internal, dict):
        values = deep_merge(internal, values)
    subs = _subchart_sources(src)
    deps = {d.get("name"): d for d in meta.get("dependencies") or [] if isinstance(d, dict)}
    names = []
    for sub_name, sub_src in subs.items():
        key = (deps.get(sub_name) or {}).get("alias") or sub_name
        sub_info = _info_from(sub_src)
        values[key] = deep_merge(sub_info.values, values.get(key) if isinstance(values.get(key), dict) else {})
        names.append(key)
    for dep in deps.values():
        # A dependency that is not vendored still owns its key (charts with unfetched dependencies).
        key = dep.get("alias") or dep.get("name")
        if key and key not in values:
            values[key] = None
    return ChartInfo(str(meta.get("name", "")), str(meta.get("version", "")), values, names,
                     has_schema=src.read("values.schema.json") is not None)


def chart_info_from_archive(data: bytes) -> ChartInfo:
    return _info_from(_TarSource(data))


def chart_info_from_dir(path: str) -> ChartInfo:
    return _info_from(_DirSource(path))


def _matches(path: tuple[str, ...], pattern: tuple[str, ...]) -> bool:
    """path is at or below pattern (``*`` matches one segment)."""
    if len(path) < len(pattern):
        return False
    return all(p in ("*", s) for p, s in zip(pattern, path, strict=False))


def _all_paths(tree: Any, prefix: tuple[str, ...] = ()) -> Iterable[tuple[str, ...]]:
    if isinstance(tree, dict):
        for k, v in tree.items():
            here = (*prefix, str(k))
            yield here
            yield from _all_paths(v, here)


def nearest(key: str, siblings: Iterable[str], tree: Any, path: tuple[str, ...]) -> str | None:
    """The real key a misspelt one most likely meant, as a dotted path."""
    sib = [str(s) for s in siblings]
    lower = {s.lower(): s for s in sib}
    if key.lower() in lower:
        return ".".join((*path, lower[key.lower()]))
    close = difflib.get_close_matches(key, sib, n=1, cutoff=0.6)
    if close:
        return ".".join((*path, close[0]))
    elsewhere = [p for p in _all_paths(tree) if p[-1] == key or p[-1].lower() == key.lower()]
    if elsewhere:
        return ".".join(sorted(elsewhere, key=len)[0])
    return None


def check_values(values: Any, defaults: dict, *, free_form: Iterable[str] = (),
                 extra_keys: Iterable[str] = ()) -> list[dict]:
    """Every key of values that the defaults do not have: [{key, nearest, problem}]."""
    free = [tuple(p.split(".")) for p in free_form if p]
    extra = [tuple(p.split(".")) for p in extra_keys if p]
    problems: list[dict] = []

    def open_below(path: tuple[str, ...]) -> bool:
        return any(_matches(path, f) for f in free) or any(_matches(path, e) for e in extra) \
            or (path and path[-1] in K8S_TYPED_KEYS)

    def walk(node: Any, default: Any, path: tuple[str, ...]) -> None:
        if not isinstance(node, dict) or open_below(path):
            return
        if path and (default is None or isinstance(default, list) or default == {}):
            return
        if not isinstance(default, dict):
            problems.append({"key": ".".join(path), "nearest": None,
                             "problem": f"is a {type(default).__name__} in the chart's defaults, not a map"})
            return
        for k, v in node.items():
            here = (*path, str(k))
            if k in default:
                walk(v, default[k], here)
            elif open_below(here):
                continue
            else:
                problems.append({"key": ".".join(here), "nearest": nearest(str(k), default.keys(), defaults, path),
                                 "problem": "is not in the chart's default values"})

    walk(values, defaults, ())
    return problems
