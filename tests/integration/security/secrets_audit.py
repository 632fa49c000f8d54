# SPDX-License-Identifier: GPL-3.0-or-later
"""Where secrets must never end up: the secrets audit of `make test` (issue 19 item 3).

`collect(state, inventory)` gathers the lab's secret values: every key, token and secret of the
Talos secrets bundle, the age private key, the Proxmox token secret, the Cloudflare token and any
other inventory variable named like a password/secret/token, and every value of every Secret in
the cluster (Helm's release records and public certificates left out). `scan(...)` looks for each
value (as is and base64-encoded) in the given texts: ansible-playbook output at -vvv and under
--check --diff, the lab's logs, `git log -p --all` of the GitOps remote, and every file under the
lab state that is readable by anyone but its owner (mode not 0600/0700-only). A finding names the
secret (never its value) and where it was found.
"""
from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from pathlib import Path

import yaml

SECRET_NAME = re.compile(r"(password|passwd|secret|token|private_?key|api_?key)", re.I)
MIN_LEN = 12
# Not scanned as files: the cluster's own store, Git objects (the history is read with git log),
# packaged charts, and the simulators' server-side state (the Proxmox, Cloudflare and Talos
# simulators hold the tokens they issue, as the real services do).
SKIP_DIRS = {"etcd", "objects", ".git", "chartrepo", "www", "proxmox", "cloudflare_sim", "talos-sim"}
# Keys of Secrets that are not secret: flux-operator's entitlement names its vendor.
PUBLIC_SECRET_KEYS = {"ca.crt", "namespace", "vendor",
                      # an OIDC client's issuer URL (discovery is public); the database's Service name
                      # (the authentik chart puts every AUTHENTIK_* setting in its Secret)
                      "issuer_url", "AUTHENTIK_POSTGRESQL__HOST"}
# Inventory variables named like secrets that hold a Secret's namespace/name, not a value.
SECRET_REFERENCES = {"platform_apps_harbor_oidc_secret"}


def _leaves(node, path=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, (*path, str(k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _leaves(v, (*path, str(i)))
    elif isinstance(node, str):
        yield path, node


def talos_secrets(path: Path) -> dict[str, str]:
    """Keys, tokens and secrets of the Talos secrets bundle (certificates are public)."""
    if not path.is_file():
        return {}
    doc = yaml.safe_load(path.read_text()) or {}
    return {"talos " + ".".join(p): v for p, v in _leaves(doc)
            if p and p[-1] != "crt" and len(v) >= MIN_LEN}


def age_keys(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    keys = [line.strip() for line in path.read_text().splitlines() if line.startswith("AGE-SECRET-KEY-")]
    return {"age private key" + (f" {i + 1}" if i else ""): k for i, k in enumerate(keys)}


def inventory_secrets(inventory: Path) -> dict[str, str]:
    """Inventory variables named like secrets (the Proxmox token secret, the Cloudflare token, ...)."""
    found: dict[str, str] = {}
    for f in sorted(inventory.rglob("*.yml")):
        try:
            doc = yaml.safe_load(f.read_text())
        except yaml.YAMLError:
            continue
        for p, v in _leaves(doc or {}):
            name = ".".join(p)
            if SECRET_NAME.search(p[-1] if p else "") and len(v) >= MIN_LEN and "{{" not in v \
                    and not SECRET_NAME.fullmatch(v) and name not in SECRET_REFERENCES:
                found["inventory " + name] = v
    return found


def cluster_secrets(kubectl: list[str]) -> dict[str, str]:
    """Every value of every Secret, decoded; Helm release records and public certificates left out."""
    out = subprocess.run([*kubectl, "get", "secrets", "-A", "-o", "json"], capture_output=True, text=True,
                         check=True).stdout
    found: dict[str, str] = {}
    for s in json.loads(out)["items"]:
        if s.get("type") == "helm.sh/release.v1":
            continue
        for key, b64 in (s.get("data") or {}).items():
            if key.endswith((".crt", ".pub")) or key in PUBLIC_SECRET_KEYS:
                continue
            try:
                value = base64.b64decode(b64).decode()
            except (ValueError, UnicodeDecodeError):
                continue
            if len(value) >= MIN_LEN:
                found[f"Secret {s['metadata']['namespace']}/{s['metadata']['name']}[{key}]"] = value
    return found


def needles(secrets: dict[str, str]) -> dict[str, list[str]]:
    """Each secret as is, base64-encoded, and line by line for multi-line values (PEM keys)."""
    out: dict[str, list[str]] = {}
    for name, value in secrets.items():
        forms = {value, base64.b64encode(value.encode()).decode()}
        forms.update(line for line in value.splitlines() if len(line) >= 40 and "-----" not in line)
        out[name] = sorted(f for f in forms if len(f) >= MIN_LEN)
    return out


def open_files(root: Path) -> list[Path]:
    """Regular files under root readable or writable by group or others (not 0600)."""
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        for name in filenames:
            p = Path(dirpath) / name
            if p.is_file() and not p.is_symlink() and p.stat().st_mode & 0o077 and p.stat().st_size < 20_000_000:
                files.append(p)
    return files


def scan(secrets: dict[str, str], texts: dict[str, str]) -> list[str]:
    """Findings: '<secret name> in <where>' for each secret found in a text."""
    findings = []
    for name, forms in needles(secrets).items():
        for where, text in texts.items():
            if any(f in text for f in forms):
                findings.append(f"{name} in {where}")
    return findings


def audit(state: Path, inventory: Path, kubectl: list[str], logs: list[Path], git_dir: Path) -> tuple[dict, list[str]]:
    """The whole audit of a lab state directory; returns (the secrets' names, findings)."""
    secrets = {**talos_secrets(state / "cluster" / "secrets.yaml"), **age_keys(state / "cluster" / "age.key"),
               **inventory_secrets(inventory), **cluster_secrets(kubectl)}
    texts = {str(p.relative_to(state)) if p.is_relative_to(state) else str(p): p.read_text(errors="replace")
             for p in logs if p.is_file()}
    if git_dir.exists():
        texts["git log -p --all of the GitOps remote"] = subprocess.run(
            ["git", "--git-dir", str(git_dir), "log", "-p", "--all"], capture_output=True, text=True,
            check=True).stdout
    for p in open_files(state):
        if inventory in p.parents or p in logs:
            continue
        texts[f"{p.relative_to(state)} (mode {oct(p.stat().st_mode & 0o777)})"] = p.read_text(errors="replace")
    return secrets, scan(secrets, texts)
