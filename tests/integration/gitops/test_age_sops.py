# SPDX-License-Identifier: GPL-3.0-or-later
"""age_keypair, sops_file and gitops_repo secrets with the real age-keygen and sops."""

from __future__ import annotations

import os
import stat
import subprocess

from modrun import TOOL_BIN, git, run_module, tool

SECRET = "s3cr3t-token-value-0123456789"
SECRET_YAML = f"""apiVersion: v1
kind: Secret
metadata:
  name: demo
  namespace: flux-system
stringData:
  token: {SECRET}
"""


def sops_decrypt(path, key_file, fmt="yaml"):
    env = {**os.environ, "SOPS_AGE_KEY_FILE": key_file, "PATH": f"{TOOL_BIN}:{os.environ['PATH']}"}
    return subprocess.run([tool("sops"), "decrypt", "--input-type", fmt, "--output-type", fmt, str(path)],
                          capture_output=True, text=True, check=True, env=env).stdout


def test_age_keypair_generated_once(tmp_path):
    tool("age-keygen")
    key = tmp_path / "k" / "age.key"
    predicted = run_module("age_keypair", {"path": str(key)}, check=True)
    assert predicted["changed"] and predicted["generated"] and not key.exists()
    made = run_module("age_keypair", {"path": str(key)})
    assert made["changed"] and made["public_key"].startswith("age1")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "AGE-SECRET-KEY" not in str(made)
    content = key.read_text()
    again = run_module("age_keypair", {"path": str(key)})
    assert not again["changed"] and again["public_key"] == made["public_key"]
    assert key.read_text() == content, "an existing key is never replaced"
    key.chmod(0o644)
    fixed = run_module("age_keypair", {"path": str(key)})
    assert fixed["changed"] and stat.S_IMODE(key.stat().st_mode) == 0o600


def test_age_keypair_refuses_a_file_without_key(tmp_path):
    tool("age-keygen")
    bogus = tmp_path / "age.key"
    bogus.write_text("not a key\n")
    failed = run_module("age_keypair", {"path": str(bogus)}, expect_fail=True)
    assert "no age secret key" in failed["msg"]


def test_sops_file_round_trip_and_idempotence(tmp_path, age_key):
    tool("sops")
    key_file, public = age_key
    dest = tmp_path / "secret.sops.yaml"
    a = {"dest": str(dest), "content": SECRET_YAML, "age_recipients": [public], "age_key_file": key_file}
    assert run_module("sops_file", a, check=True)["changed"] and not dest.exists()
    result = run_module("sops_file", a)
    assert result["changed"] and SECRET not in dest.read_text() and SECRET not in str(result)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    assert f"token: {SECRET}" in sops_decrypt(dest, key_file)
    before = dest.read_bytes()
    assert not run_module("sops_file", a, check=True)["changed"]
    assert not run_module("sops_file", a)["changed"]
    assert dest.read_bytes() == before
    a["content"] = SECRET_YAML.replace(SECRET, "another-value")
    changed = run_module("sops_file", a, check=True)
    assert changed["changed"] and changed["reason"] == "content"
    assert "another-value" not in str(changed) and "<secret, changed>" in changed["diff"]["after"]


def test_gitops_repo_secrets_never_in_history(tmp_path, remote, age_key):
    tool("sops")
    key_file, public = age_key
    clone = tmp_path / "clone"
    sops_files = [
        {"path": "clusters/lab/demo.sops.yaml", "content": SECRET_YAML},
        {"path": "talos/lab/secrets.sops.yaml", "content": f"cluster:\n  secret: {SECRET}-talos\n",
         "encrypted_regex": ""},
    ]
    a = {"path": str(clone), "url": remote, "commit_message": "test: secrets", "age_recipients": [public],
         "age_key_file": key_file,
         "files": [{"path": "clusters/lab/a.yaml", "content": "a: 1\n"}],
         "sops_files": sops_files}
    predicted = run_module("gitops_repo", a, check=True)
    assert predicted["changed"] and SECRET not in str(predicted)
    run_module("gitops_repo", a)
    assert not run_module("gitops_repo", a)["changed"]
    a["sops_files"][0]["content"] = SECRET_YAML.replace(SECRET, f"{SECRET}-v2")
    diff = run_module("gitops_repo", a, check=True)
    assert [f["path"] for f in diff["files_changed"]] == ["clusters/lab/demo.sops.yaml"]
    assert SECRET not in str(diff)
    run_module("gitops_repo", a)
    assert not run_module("gitops_repo", a)["changed"]
    bare = remote.removeprefix("file://")
    assert git("--git-dir", bare, "rev-list", "--count", "main").strip() == "2"
    history = git("--git-dir", bare, "log", "-p", "--all")
    assert SECRET not in history
    assert f"token: {SECRET}-v2" in sops_decrypt(clone / "clusters/lab/demo.sops.yaml", key_file)
    assert f"secret: {SECRET}-talos" in sops_decrypt(clone / "talos/lab/secrets.sops.yaml", key_file)
    assert "apiVersion: v1" in (clone / "clusters/lab/demo.sops.yaml").read_text(), "only data is encrypted"
