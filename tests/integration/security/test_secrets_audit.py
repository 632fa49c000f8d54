# SPDX-License-Identifier: GPL-3.0-or-later
"""The secrets audit's own tests: it finds a planted secret (raw, base64, a PEM line) in a log,
in the GitOps history and in a world-readable file, and stays quiet on a clean state."""
from __future__ import annotations

import base64
import subprocess

import secrets_audit as sa
import yaml

KEY = "LS0tLS1CRUdJTiBFRDI1NTE5IFBSSVZBVEUgS0VZLS0tLS0KTUM0Q0FRQXdCUVlESzJWd0JDSUVJRlhYWFhYWFhYWFhYWFhYWFhY"


def make_state(tmp_path):
    state = tmp_path / "state"
    (state / "cluster").mkdir(parents=True)
    (state / "inventory").mkdir()
    (state / "cluster" / "secrets.yaml").write_text(yaml.safe_dump(
        {"secrets": {"bootstraptoken": "abcdef.0123456789abcdef"},
         "certs": {"os": {"crt": "PUBLICCERTPUBLICCERT", "key": KEY}}}))
    (state / "cluster" / "secrets.yaml").chmod(0o600)
    (state / "cluster" / "age.key").write_text("# public key: age1xyz\nAGE-SECRET-KEY-1PLANTEDPLANTEDPLANTED\n")
    (state / "cluster" / "age.key").chmod(0o600)
    (state / "inventory" / "proxmox.yml").write_text("proxmox_vm_api_token_secret: 5f0c8e2a-planted-token\n")
    return state


def run_audit(state, logs):
    git_dir = state / "git" / "gitops.git"
    return sa.audit(state, state / "inventory", ["true"], logs, git_dir)


def test_clean_state_has_no_findings(tmp_path, monkeypatch):
    state = make_state(tmp_path)
    monkeypatch.setattr(sa, "cluster_secrets", lambda _k: {})
    (state / "cold.log").write_text("ok: [localhost] => changed=0 PUBLICCERTPUBLICCERT\n")
    names, findings = run_audit(state, [state / "cold.log"])
    assert {"talos secrets.bootstraptoken", "talos certs.os.key", "age private key",
            "inventory proxmox_vm_api_token_secret"} <= set(names)
    assert findings == []


def test_planted_secrets_are_found_everywhere(tmp_path, monkeypatch):
    state = make_state(tmp_path)
    monkeypatch.setattr(sa, "cluster_secrets", lambda _k: {"Secret db/app[password]": "hunter2-database-pw"})
    (state / "cold.log").write_text("TASK ... 'token': 'abcdef.0123456789abcdef'\n")
    (state / "check.log").write_text("+ key: " + base64.b64encode(b"hunter2-database-pw").decode() + "\n")
    leak = state / "cluster" / "talosconfig.bak"
    leak.write_text("AGE-SECRET-KEY-1PLANTEDPLANTEDPLANTED")
    leak.chmod(0o644)
    git_dir = state / "git" / "gitops.git"
    work = tmp_path / "work"
    subprocess.run(["git", "init", "-q", "--bare", str(git_dir)], check=True)
    subprocess.run(["git", "clone", "-q", str(git_dir), str(work)], check=True, capture_output=True)
    (work / "values.yaml").write_text("token: 5f0c8e2a-planted-token\n")
    subprocess.run(["git", "-C", str(work), "add", "."], check=True)
    subprocess.run(["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"],
                   check=True)
    subprocess.run(["git", "-C", str(work), "push", "-q", "origin", "HEAD"], check=True, capture_output=True)
    _names, findings = run_audit(state, [state / "cold.log", state / "check.log"])
    assert "talos secrets.bootstraptoken in cold.log" in findings
    assert "Secret db/app[password] in check.log" in findings
    assert any(f.startswith("age private key in cluster/talosconfig.bak (mode 0o644)") for f in findings)
    assert "inventory proxmox_vm_api_token_secret in git log -p --all of the GitOps remote" in findings
