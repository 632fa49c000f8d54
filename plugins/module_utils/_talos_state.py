# Copyright: HomeCluster developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Node state detection shared by talos_apply, talos_info and talos_health (private)."""

from __future__ import annotations

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
    """One insecure ``get machinestatus`` call for every node.

    Returns {node: {"state": maintenance|configured|unreachable|unknown, "stage": ..., "error": ...}}.
    A node in maintenance answers the insecure call; a configured node refuses it at the TLS
    handshake (it requires a client certificate); a node that is off does not answer at all.
    """
    nodes = node_list(nodes)
    items, errors, _res = talos.get("machinestatus", nodes=nodes, insecure=True, check=False, timeout=timeout)
    answered = _by_node(items)
    out = {}
    for node in nodes:
        if node in answered:
            spec = answered[node].get("spec") or {}
            out[node] = {"state": MAINTENANCE, "stage": spec.get("stage"), "error": None}
            continue
        err = errors.get(node) or errors.get("*") or "no answer"
        kind = classify_error(err)
        if kind == "tls":
            out[node] = {"state": CONFIGURED, "stage": None, "error": None}
        elif kind in ("unreachable", "timeout"):
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
