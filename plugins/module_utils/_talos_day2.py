# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: HomeCluster developers
"""Day-2 reads shared by the talos_upgrade* and talos_etcd_* modules: what a node runs (version,
Image Factory schematic, extensions) and what etcd looks like from every control plane."""
from __future__ import annotations

import re

from ansible_collections.homecluster.platform.plugins.module_utils._talosctl import TalosctlError, parse_table

EMPTY_SCHEMATIC = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"
_FACTORY = re.compile(r"^(?P<registry>[^/]*factory[^/]*)/(?:[a-z0-9-]+-)?installer/(?P<schematic>[0-9a-f]{64})"
                      r"(?::(?P<tag>[^:@/]+))?(?:@sha256:[0-9a-f]{64})?$")


def installer_parts(image):
    """(schematic or None when not an Image Factory image, tag or None) of an installer image."""
    m = _FACTORY.match(image or "")
    if m:
        return m.group("schematic"), m.group("tag")
    tag = None
    name = (image or "").split("@", 1)[0]
    if ":" in name.rsplit("/", 1)[-1]:
        tag = name.rsplit(":", 1)[1]
    return None, tag


def node_release(talos, nodes):  # noqa: PLR0912 - per-node answers and errors of two calls
    """{node: {version, schematic, extensions, error}}: what each node runs now.

    The version is the server tag of ``talosctl version``; the schematic is the version of the
    virtual ``schematic`` extension the Image Factory injects (``talosctl get extensions``), and
    extensions are the other ExtensionStatus resources.
    """
    out = {n: {"version": None, "schematic": None, "extensions": [], "error": None} for n in nodes}
    versions, errors = talos.version(nodes=nodes, check=False)[:2]
    for node in nodes:
        if node in versions:
            out[node]["version"] = versions[node].get("tag")
        elif node in errors:
            out[node]["error"] = errors[node]
        elif len(nodes) == 1 and versions:
            out[node]["version"] = next(iter(versions.values())).get("tag")
        else:
            out[node]["error"] = "no answer to talosctl version"
    up = [n for n in nodes if out[n]["error"] is None]
    if up:
        items, errs = talos.get("extensions", nodes=up, namespace="runtime", check=False)[:2]
        for node, err in errs.items():
            if node in out:
                out[node]["error"] = err
        for item in items:
            node = item.get("node") or (up[0] if len(up) == 1 else None)
            if node not in out:
                continue
            meta = (item.get("spec") or {}).get("metadata") or {}
            if meta.get("name") == "schematic":
                out[node]["schematic"] = meta.get("version")
            elif meta.get("name"):
                out[node]["extensions"].append(meta["name"])
        for node in up:
            out[node]["extensions"].sort()
    return out


def _by_node(rows, nodes):
    grouped = {}
    for row in rows:
        node = row.get("node") or (nodes[0] if len(nodes) == 1 else "")
        grouped.setdefault(node, []).append(row)
    return grouped


def etcd_view(talos, control_planes, *, alarms=True):  # noqa: PLR0912 - three calls, each with per-node errors
    """etcd as every control plane sees it.

    Returns {"members": {cp: [hostnames] or None}, "status": {cp: {member, leader}}, "errors": {cp: text},
    "alarms": [rows], "leader": member id or None, "consistent": bool}.
    """
    errors = {}
    res = talos.run(["etcd", "members"], nodes=control_planes, check=False)
    errors.update(res.node_errors())
    if res.rc != 0 and not res.node_errors():
        for cp in control_planes:
            errors[cp] = (res.stderr or res.stdout).strip()
    members = {cp: None for cp in control_planes}
    for node, rows in _by_node(parse_table(res.stdout), control_planes).items():
        if node in members:
            members[node] = sorted(r.get("hostname", "") for r in rows)
    res = talos.run(["etcd", "status"], nodes=control_planes, check=False)
    for node, err in res.node_errors().items():
        errors.setdefault(node, err)
    if res.rc != 0 and not res.node_errors():
        for cp in control_planes:
            errors.setdefault(cp, (res.stderr or res.stdout).strip())
    status = {}
    for node, rows in _by_node(parse_table(res.stdout), control_planes).items():
        if node in members and rows:
            status[node] = {"member": rows[0].get("member"), "leader": rows[0].get("leader")}
    for cp in control_planes:
        if members[cp] is None and cp not in errors:
            errors[cp] = "no etcd member list"
        if cp not in status and cp not in errors:
            errors[cp] = "no etcd status"
    alarm_rows = []
    if alarms:
        answering = [cp for cp in control_planes if cp not in errors]
        if answering:
            res = talos.run(["etcd", "alarm", "list"], nodes=answering[:1], check=False)
            if res.rc != 0:
                errors.setdefault(answering[0], (res.stderr or res.stdout).strip())
            alarm_rows = [r for r in parse_table(res.stdout) if r.get("alarm") and r.get("alarm") != "NONE"]
    leaders = {s["leader"] for s in status.values() if s.get("leader")}
    lists = {tuple(m) for m in members.values() if m is not None}
    return {
        "members": members,
        "status": status,
        "errors": errors,
        "alarms": alarm_rows,
        "leader": next(iter(leaders)) if len(leaders) == 1 else None,
        "consistent": not errors and len(lists) == 1 and len(leaders) == 1,
    }


def etcd_problems(view, expected_members=None):
    """Human-readable reasons etcd is not healthy and consistent (empty when it is)."""
    problems = []
    for cp, err in sorted(view["errors"].items()):
        problems.append(f"{cp}: {err}")
    lists = {cp: m for cp, m in view["members"].items() if m is not None}
    if len({tuple(m) for m in lists.values()}) > 1:
        per_cp = "; ".join(f"{cp}: {','.join(m)}" for cp, m in sorted(lists.items()))
        problems.append(f"etcd member lists differ: {per_cp}")
    if expected_members is not None:
        for cp, m in sorted(lists.items()):
            if len(m) != expected_members:
                problems.append(f"{cp} lists {len(m)} etcd members ({', '.join(m)}), "
                                f"the inventory has {expected_members} control planes")
                break
    leaders = {s.get("leader") for s in view["status"].values()}
    if len(leaders) > 1:
        problems.append(f"control planes disagree on the etcd leader: {sorted(leaders)}")
    for row in view["alarms"]:
        problems.append(f"etcd alarm {row.get('alarm')} on member {row.get('member')}")
    return problems


def describe_error(exc):
    if isinstance(exc, TalosctlError):
        return exc.msg
    return str(exc)
