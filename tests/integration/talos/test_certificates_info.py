# SPDX-License-Identifier: GPL-3.0-or-later
"""talos_certificates_info on files made by the real talosctl (secrets bundle, talosconfig), a
kubeconfig whose client certificate the test signs with the bundle's Kubernetes CA to expire in
ten days, and the same bundle SOPS-encrypted with the real sops and age."""
from __future__ import annotations

import base64
import datetime
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

REPO = Path(__file__).resolve().parents[3]
from modrun import TOOL_BIN, tool


def client_cert(ca_crt_b64: str, ca_key_b64: str, days: int) -> str:
    ca = x509.load_pem_x509_certificate(base64.b64decode(ca_crt_b64))
    ca_key = serialization.load_pem_private_key(base64.b64decode(ca_key_b64), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
                                     x509.NameAttribute(NameOID.COMMON_NAME, "admin")]))
            .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=days, hours=1))
            .sign(ca_key, hashes.SHA256()))
    return base64.b64encode(cert.public_bytes(serialization.Encoding.PEM)).decode()


@pytest.fixture
def files(tmp_path):
    talosctl = tool("talosctl")
    secrets = tmp_path / "secrets.yaml"
    subprocess.run([talosctl, "gen", "secrets", "-o", str(secrets)], check=True, capture_output=True)
    subprocess.run([talosctl, "gen", "config", "home", "https://192.168.1.9:6443", "--with-secrets", str(secrets),
                    "--output-types", "talosconfig", "--output", str(tmp_path / "talosconfig")],
                   check=True, capture_output=True)
    bundle = yaml.safe_load(secrets.read_text())
    k8s = bundle["certs"]["k8s"]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "admin@home",
        "clusters": [{"name": "home", "cluster": {"server": "https://192.168.1.9:6443",
                                                  "certificate-authority-data": k8s["crt"]}}],
        "users": [{"name": "admin@home", "user": {"client-certificate-data": client_cert(k8s["crt"], k8s["key"], 10),
                                                  "client-key-data": "c2VjcmV0"}}],
        "contexts": [{"name": "admin@home", "context": {"cluster": "home", "user": "admin@home"}}]}))
    return {"dir": tmp_path, "secrets": secrets, "talosconfig": tmp_path / "talosconfig", "kubeconfig": kubeconfig}


def test_every_certificate_reported_and_the_one_near_its_end_listed(files, collection_module):
    r = collection_module("talos_certificates_info", {
        "talosconfig": str(files["talosconfig"]), "kubeconfig": str(files["kubeconfig"]),
        "secrets_file": str(files["secrets"]), "warn_days": 30}, check=True)
    assert not r.get("failed"), r
    assert r["changed"] is False
    names = [c["name"] for c in r["certificates"]]
    assert names[0] == "kubeconfig admin@home client"  # soonest first
    assert set(names) == {"kubeconfig admin@home client", "kubeconfig home CA", "talosconfig home client",
                          "talosconfig home CA", "secrets Talos OS CA", "secrets Kubernetes CA",
                          "secrets aggregator CA", "secrets etcd CA"}
    by = {c["name"]: c for c in r["certificates"]}
    assert by["kubeconfig admin@home client"]["days_left"] == 10
    assert by["kubeconfig admin@home client"]["ca"] is False and by["secrets etcd CA"]["ca"] is True
    # talosctl's CAs last ten years, its admin client certificate one year
    assert by["secrets Kubernetes CA"]["days_left"] > 3600
    assert 360 <= by["talosconfig home client"]["days_left"] <= 366
    assert [c["name"] for c in r["expiring"]] == ["kubeconfig admin@home client"]
    # the same CA read from both files
    assert by["kubeconfig home CA"]["not_after"] == by["secrets Kubernetes CA"]["not_after"]
    text = repr(r)
    assert "PRIVATE KEY" not in text and "c2VjcmV0" not in text


def test_sops_encrypted_bundle_read_with_the_named_key_and_refused_without_it(files, collection_module):
    sops, keygen = tool("sops"), tool("age-keygen")
    key = files["dir"] / "age.key"
    subprocess.run([keygen, "-o", str(key)], check=True, capture_output=True)
    recipient = next(line.split(":", 1)[1].strip() for line in key.read_text().splitlines()
                     if line.startswith("# public key:"))
    enc = subprocess.run([sops, "encrypt", "--age", recipient, "--input-type", "yaml", "--output-type", "yaml",
                          str(files["secrets"])], check=True, capture_output=True, text=True,
                         cwd=files["dir"]).stdout
    encrypted = files["dir"] / "secrets.sops.yaml"
    encrypted.write_text(enc)
    ok = collection_module("talos_certificates_info", {"secrets_file": str(encrypted), "sops_path": sops,
                                                       "sops_age_key_file": str(key)})
    assert not ok.get("failed"), ok
    assert len(ok["certificates"]) == 4 and all(c["ca"] for c in ok["certificates"])
    other = files["dir"] / "other.key"
    subprocess.run([keygen, "-o", str(other)], check=True, capture_output=True)
    bad = collection_module("talos_certificates_info", {"secrets_file": str(encrypted), "sops_path": sops,
                                                        "sops_age_key_file": str(other)})
    assert bad.get("failed") and "sops_age_key_file" in bad["msg"] and str(other) in bad["msg"]


def test_a_missing_file_is_named_with_what_to_set(tmp_path, collection_module):
    r = collection_module("talos_certificates_info", {"kubeconfig": str(tmp_path / "nope")})
    assert r.get("failed") and str(tmp_path / "nope") in r["msg"] and "set kubeconfig" in r["msg"]
    r = collection_module("talos_certificates_info", {})
    assert r.get("failed") and "talosconfig" in r["msg"]


def playbook(files, *extra):
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
           "PATH": f"{TOOL_BIN}:{os.environ['PATH']}"}
    return subprocess.run(["ansible-playbook", "-i", "localhost,", "-c", "local",
                           "-e", f"ansible_python_interpreter={sys.executable}",
                           str(REPO / "playbooks" / "certificates.yml"),
                           "-e", f"talos_bootstrap_config_dir={files['dir']}", *extra],
                          cwd=REPO, env=env, capture_output=True, text=True, check=False)


def test_certificates_playbook_reports_and_fails_only_when_asked(files):
    report = playbook(files, "--check")
    assert report.returncode == 0, report.stdout[-3000:]
    assert "kubeconfig admin@home client |" in report.stdout and "changed=0" in report.stdout
    strict = playbook(files, "-e", "certificates_fail_within_days=20")
    assert strict.returncode != 0
    assert "kubeconfig admin@home client expire(s) within 20 days" in strict.stdout
    refusal = next(line for line in strict.stdout.splitlines() if "expire(s) within 20 days" in line)
    assert "talosconfig" not in refusal and "CA" not in refusal.split("expire(s)")[0]
