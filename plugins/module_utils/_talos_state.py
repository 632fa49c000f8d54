# Copyright: HomeCluster developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Node state detection shared by talos_apply, talos_info and talos_health (private)."""

from __future__ import annotations

import os

from ansible_collections.homecluster.platform.plugins.module_utils._talosctl import (
    classify_error,
    node_list,
)

MAINTENANCE = "maintenance"
CONFIGURED = "configured"
UNREACHABLE = "unreachable"
UNKNOWN = "unknown"


def _by_node(items):
    out = {}
    for item in items:
        node = item.get("node")
        if node and node not in out:
            out[node] = item
    return out


def probe_maintenance(talos, nodes, timeout=None):
    """Find out for every node whether it is in maintenance mode, configured or unreachable.

    One insecure ``get machinestatus`` call for all nodes: a node in maintenance answers it. The
    nodes that did not answer are asked once more over mutual TLS (when a talosconfig exists): a
    configured node answers that. What answers neither is unreachable. At most two calls.

    Returns {node: {"state": maintenance|configured|unreachable|unknown, "stage": ..., "error": ...}}.
    """
    nodes = node_list(nodes)
    items, errors, _res = talos.get("machinestatus", nodes=nodes, insecure=True, check=False, timeout=timeout)
    answered = _by_node(items)
    out = {}
    rest = []
    for node in nodes:
        if node in answered:
            spec = answered[node].get("spec") or {}
            out[node] = {"state": MAINTENANCE, "stage": spec.get("stage"), "error": None}
        else:
            rest.append(node)
    secure = {}
    secure_errors = {}
    if rest and talos.talosconfig and os.path.exists(talos.talosconfig):
        items, secure_errors, _res = talos.get("machinestatus", nodes=rest, check=False, timeout=timeout)
        secure = _by_node(items)
    for node in rest:
        if node in secure:
            out[node] = {"state": CONFIGURED, "stage": (secure[node].get("spec") or {}).get("stage"), "error": None}
            continue
        err = secure_errors.get(node) or errors.get(node) or errors.get("*") or "no answer"
        kind = classify_error(errors.get(node) or errors.get("*") or "")
        if kind == "tls" and node not in secure_errors:
            out[node] = {"state": CONFIGURED, "stage": None, "error": None}
        elif kind in ("unreachable", "timeout", "tls", "unavailable", "error"):
            out[node] = {"state": UNREACHABLE, "stage": None, "error": err}
        else:
            out[node] = {"state": UNKNOWN, "stage": None, "error": err}
    return out


def machine_status(talos, nodes, timeout=None):
    """One mTLS ``get machinestatus`` call for every node: {node: {stage, ready, unmet, error}}."""
    nodes = node_list(nodes)
    items, errors, _res = talos.get("machinestatus", nodes=nodes, check=False, timeout=timeout)
    answered = _by_node(items)
    out = {}
    for node in nodes:
        if node in answered:
            spec = answered[node].get("spec") or {}
            status = spec.get("status") or {}
            unmet = [f"{c.get('name')}: {c.get('reason')}" for c in (status.get("unmetConditions") or [])]
            out[node] = {"stage": spec.get("stage"), "ready": bool(status.get("ready")), "unmet": unmet,
                         "error": None}
        else:
            err = errors.get(node) or errors.get("*") or "no answer"
            out[node] = {"stage": None, "ready": False, "unmet": [], "error": err, "error_kind": classify_error(err)}
    return out
