# Copyright: HomeCluster developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Parsers of talosctl's output, pure functions unit-tested on output recorded from the real tool.

Error text (classes and per-node errors), ``-o json`` streams, YAML streams, tables, ``version``
text and what ``apply-config`` prints. Re-exported by ``_talosctl``, which modules import.
"""

from __future__ import annotations

import json
import re

try:
    import yaml
except ImportError:  # pragma: no cover - PyYAML ships with ansible-core
    yaml = None


# Error classes recognised in talosctl's stderr (gRPC status codes and transport errors).
# Transport failures: the node did not answer at all (as opposed to answering with an error).
UNREACHABLE_PATTERNS = (
    "connection refused",
    "no route to host",
    "network is unreachable",
    "i/o timeout",
    "connection reset",
    "broken pipe",
    "error while dialing",
    "error reading from server",
    "transport is closing",
    "connection closed",
    "dial tcp",
)
TLS_PATTERNS = (
    "certificate required",
    "bad certificate",
    "remote error: tls",
    "tls: ",
    "authentication handshake failed",
    "x509:",
)
ALREADY_EXISTS_PATTERNS = ("code = alreadyexists", "already bootstrapped", "etcd data directory is not empty")

PER_NODE_ERROR_RE = re.compile(
    r"(?:on node|from node|for node) \"?(?P<node>[^\s:\"]+)\"?: (?P<error>.*)$", re.IGNORECASE
)
APPLY_ERROR_RE = re.compile(
    r"^(?P<node>[^\s:]+(?::\d+)?): error (?:applying configuration|getting server version|parsing server version): "
    r"(?P<error>.*)$"
)


def classify_error(text):
    """Classify talosctl's error text.

    Returns 'already_exists', 'unreachable' (transport failure: the node did not answer), 'tls'
    (handshake refused, e.g. a configured node asked without a client certificate), a gRPC code
    the node answered with ('unavailable', 'failed_precondition', 'not_found', ...), 'timeout' or
    'error'.
    """
    low = (text or "").lower()
    if any(p in low for p in ALREADY_EXISTS_PATTERNS):
        return "already_exists"
    if any(p in low for p in TLS_PATTERNS) and "connection refused" not in low:
        return "tls"
    if any(p in low for p in UNREACHABLE_PATTERNS):
        return "unreachable"
    names = {"failedprecondition": "failed_precondition", "notfound": "not_found",
             "permissiondenied": "permission_denied", "invalidargument": "invalid_argument",
             "deadlineexceeded": "timeout", "unavailable": "unavailable", "unimplemented": "unimplemented",
             "unauthenticated": "unauthenticated", "internal": "internal"}
    for code, name in names.items():
        if f"code = {code}" in low:
            return name
    if "context deadline exceeded" in low:
        return "timeout"
    return "error"


def parse_node_errors(stderr):
    """Map node -> error text from talosctl's per-node error lines (multi-node calls)."""
    errors = {}
    for raw in (stderr or "").splitlines():
        line = raw.strip()
        m = APPLY_ERROR_RE.match(line) or PER_NODE_ERROR_RE.search(line)
        if m and m.group("node") not in errors:
            errors[m.group("node")] = m.group("error")
    return errors


def parse_json_stream(text):
    """Parse talosctl's ``-o json`` output: a stream of JSON objects (not an array)."""
    decoder = json.JSONDecoder()
    items = []
    idx = 0
    text = text or ""
    while True:
        while idx < len(text) and text[idx].isspace():
            idx += 1
        if idx >= len(text):
            return items
        obj, idx = decoder.raw_decode(text, idx)
        items.append(obj)


def parse_yaml_stream(text):
    """Parse a multi-document YAML stream, dropping empty documents."""
    return [doc for doc in yaml.safe_load_all(text or "") if doc is not None]


def parse_table(text):
    """Parse a talosctl table (tabwriter, columns aligned) into a list of dicts keyed by lower-case header.

    Column boundaries are taken from where each header starts, so empty cells and headers
    with spaces ("PEER URLS") are handled.
    """
    lines = [line for line in (text or "").splitlines() if line.strip()]
    if not lines:
        return []
    header = lines[0]
    starts = [m.start() for m in re.finditer(r"(?:(?<=\s{2})|^)\S", header)]
    names = []
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(header)
        names.append(header[start:end].strip().lower().replace(" ", "_"))
    rows = []
    for line in lines[1:]:
        row = {}
        for i, start in enumerate(starts):
            end = starts[i + 1] if i + 1 < len(starts) else None
            row[names[i]] = line[start:end].strip() if end is not None else line[start:].strip()
        rows.append(row)
    return rows


def parse_version_text(text):
    """Parse ``talosctl version`` text: {node: {"tag", "sha", "go_version", "os_arch", ...}} for the servers."""
    out = {}
    current = None
    in_server = False
    for raw in (text or "").splitlines():
        line = raw.strip()
        if line == "Server:":
            in_server = True
            continue
        if not in_server or ":" not in line:
            continue
        key, value = line.split(":", 1)
        key = key.strip().lower().replace(" ", "_").replace("/", "_")
        value = value.strip()
        if key == "node":
            current = out.setdefault(value, {})
        elif current is not None:
            current[key] = value
    return out


def parse_apply_output(text):
    """Parse what apply-config prints (ModeDetails and warnings).

    Returns a dict: mode_details (first line of the summary), reboot_required, staged,
    no_changes, diff (unified diff text or ''), warnings (list).
    """
    text = text or ""
    warnings = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("WARNING:")]
    body = "\n".join(line for line in text.splitlines() if not line.startswith("WARNING:"))
    summary = ""
    m = re.search(r"Dry run summary:\s*\n(?P<summary>[^\n]*)", body)
    if m:
        summary = m.group("summary").strip()
    else:
        first = [line for line in body.splitlines() if line.strip()]
        summary = first[0].strip() if first else ""
    diff = ""
    no_changes = False
    m = re.search(r"Config diff:\s*\n\n?(?P<diff>.*)\Z", body, re.DOTALL)
    if m:
        diff = m.group("diff").rstrip("\n")
        if diff.strip() == "No changes.":
            no_changes = True
            diff = ""
    low = summary.lower()
    return {
        "mode_details": summary,
        "reboot_required": "with a reboot" in low or "reboot is required" in low,
        "staged": "staged" in low,
        "no_changes": no_changes,
        "diff": diff,
        "warnings": warnings,
    }


def node_list(value):
    """Normalise a node list or comma-separated string to a list of strings."""
    if not value:
        return []
    if isinstance(value, str):
        value = value.split(",")
    return [str(v).strip() for v in value if str(v).strip()]
