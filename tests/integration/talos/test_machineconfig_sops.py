# SPDX-License-Identifier: GPL-3.0-or-later
"""talos_machineconfig with a SOPS-encrypted secrets bundle: real talosctl, sops and age-keygen.

The bundle is decrypted through module_utils/_sops (a clean environment, the age key named
explicitly), never written in clear outside the module's private 0700 directory, and a wrong
key fails with a message that names the key file and the option to set.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml
from modrun import tool


@pytest.fixture
def bundle(tmp_path):
    talosctl, sops, keygen = tool("talosctl"), tool("sops"), tool("age-keygen")
    key = tmp_path / "age.key"
    subprocess.run([keygen, "-o", str(key)], check=True, capture_output=True)
    recipient = next(line.split(":", 1)[1].strip() for line in key.read_text().splitlines()
                     if line.startswith("# public key:"))
    plain = tmp_path / "plain.yaml"
    subprocess.run([talosctl, "gen", "secrets", "-o", str(plain)], check=True, capture_output=True)
    enc = subprocess.run([sops, "encrypt", "--age", recipient, "--input-type", "yaml", "--output-type", "yaml",
                          str(plain)], check=True, capture_output=True, text=True, cwd=tmp_path).stdout
    secrets = tmp_path / "secrets.sops.yaml"
    secrets.write_text(enc)
    plain.unlink()
    return {"talosctl": talosctl, "sops": sops, "key": key, "secrets": secrets, "dir": tmp_path}


def args(b, **kw):
    a = {"dest": str(b["dir"] / "out" / "cp1.yaml"), "cluster_name": "lab", "cluster_endpoint": "https://127.0.0.1:6443",
         "secrets_file": str(b["secrets"]), "machine_type": "controlplane", "talos_version": "v1.14",
         "talosctl_path": b["talosctl"], "sops_path": b["sops"]}
    a.update(kw)
    return a


def test_encrypted_bundle_renders_with_the_named_key_then_reruns_unchanged(bundle, collection_module):
    (bundle["dir"] / "out").mkdir()
    first = collection_module("talos_machineconfig", args(bundle, sops_age_key_file=str(bundle["key"])))
    assert not first.get("failed"), first
    assert first["changed"]
    dest = Path(first.get("dest", bundle["dir"] / "out" / "cp1.yaml"))
    assert oct(dest.stat().st_mode & 0o777) == "0o600"
    assert "machine:" in dest.read_text()
    again = collection_module("talos_machineconfig", args(bundle, sops_age_key_file=str(bundle["key"])))
    assert not again.get("failed") and not again["changed"], again


def test_a_wrong_age_key_names_the_key_and_the_option(bundle, collection_module, tmp_path):
    other = tmp_path / "other.key"
    subprocess.run([tool("age-keygen"), "-o", str(other)], check=True, capture_output=True)
    (bundle["dir"] / "out").mkdir()
    res = collection_module("talos_machineconfig", args(bundle, sops_age_key_file=str(other)))
    assert res.get("failed"), res
    assert str(other) in res["msg"] and "sops_age_key_file" in res["msg"]
    assert not (bundle["dir"] / "out" / "cp1.yaml").exists()


def talosconfig_args(b, **kw):
    a = {"dest": str(b["dir"] / "out" / "talosconfig"), "cluster_name": "lab",
         "cluster_endpoint": "https://127.0.0.1:6443", "secrets_file": str(b["secrets"]),
         "talos_endpoints": ["127.0.0.1"], "talos_version": "v1.14", "talosctl_path": b["talosctl"],
         "sops_path": b["sops"]}
    a.update(kw)
    return a


def test_talosconfig_from_an_encrypted_bundle_is_signed_by_its_os_ca_and_kept_on_rerun(bundle, collection_module):
    """The talosconfig's CA is the bundle's OS CA (read through sops), and a rerun keeps the certificate."""
    (bundle["dir"] / "out").mkdir()
    first = collection_module("talos_talosconfig", talosconfig_args(bundle, sops_age_key_file=str(bundle["key"])))
    assert not first.get("failed"), first
    assert first["changed"] and first["renewed"]
    dest = Path(first["dest"])
    assert oct(dest.stat().st_mode & 0o777) == "0o600"
    ctx = yaml.safe_load(dest.read_text())["contexts"]["lab"]
    plain = subprocess.run([bundle["sops"], "decrypt", str(bundle["secrets"])], check=True, capture_output=True,
                           text=True, env={**os.environ, "SOPS_AGE_KEY_FILE": str(bundle["key"])}).stdout
    assert ctx["ca"] == yaml.safe_load(plain)["certs"]["os"]["crt"]
    again = collection_module("talos_talosconfig", talosconfig_args(bundle, sops_age_key_file=str(bundle["key"])))
    assert not again.get("failed") and not again["changed"] and not again["renewed"], again
    assert yaml.safe_load(dest.read_text())["contexts"]["lab"]["crt"] == ctx["crt"]
    assert not any(p.name.endswith("secrets.yaml") for p in bundle["dir"].rglob("*")), "plaintext bundle on disk"


def test_talosconfig_with_a_wrong_age_key_names_the_key_and_the_option(bundle, collection_module, tmp_path):
    other = tmp_path / "other.key"
    subprocess.run([tool("age-keygen"), "-o", str(other)], check=True, capture_output=True)
    (bundle["dir"] / "out").mkdir()
    res = collection_module("talos_talosconfig", talosconfig_args(bundle, sops_age_key_file=str(other)))
    assert res.get("failed"), res
    assert str(other) in res["msg"] and "sops_age_key_file" in res["msg"]
    assert not (bundle["dir"] / "out" / "talosconfig").exists()
