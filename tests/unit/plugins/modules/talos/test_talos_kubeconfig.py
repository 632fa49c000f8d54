# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import base64
import datetime
import os
import stat

import yaml
from ansible_collections.homecluster.platform.plugins.modules import talos_kubeconfig
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

FETCHED = """apiVersion: v1
kind: Config
clusters:
- name: home
  cluster:
    server: https://127.0.10.10:6443
    certificate-authority-data: Q0E=
users:
- name: admin@home
  user:
    client-certificate-data: Q0VSVA==
    client-key-data: S0VZ
contexts:
- name: admin@home
  context:
    cluster: home
    namespace: default
    user: admin@home
current-context: admin@home
"""
OTHER = {"apiVersion": "v1", "kind": "Config", "current-context": "work",
         "clusters": [{"name": "work", "cluster": {"server": "https://work:6443"}}],
         "users": [{"name": "me", "user": {"token": "abc"}}],
         "contexts": [{"name": "work", "context": {"cluster": "work", "user": "me"}}]}


def client_cert(days):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "admin")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=days)).sign(key, hashes.SHA256()))
    return base64.b64encode(cert.public_bytes(serialization.Encoding.PEM)).decode()


def test_merge_keeps_other_contexts_and_is_idempotent(talosctl, run_module, tmp_path):
    dest = tmp_path / "kubeconfig"
    dest.write_text(yaml.safe_dump(OTHER))
    talosctl.on("kubeconfig", stdout=FETCHED.replace("Q0VSVA==", client_cert(365)))
    args = {"node": "127.0.10.11", "dest": str(dest), "talosconfig": "/tmp/tc"}
    res = run_module(talos_kubeconfig.main, args, diff=True)
    assert res.result["changed"] is True
    assert "S0VZ" not in str(res.result["diff"])
    data = yaml.safe_load(dest.read_text())
    assert {c["name"] for c in data["contexts"]} == {"work", "admin@home"}
    assert data["users"][0]["user"]["token"] == "abc"
    assert data["current-context"] == "admin@home"
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o600
    # Talos issues a new client certificate on every fetch: the existing one is kept.
    talosctl.rules.clear()
    talosctl.on("kubeconfig", stdout=FETCHED.replace("Q0VSVA==", client_cert(365)))
    again = run_module(talos_kubeconfig.main, args)
    assert again.result["changed"] is False


def test_expiring_certificate_is_renewed(talosctl, run_module, tmp_path):
    dest = tmp_path / "kubeconfig"
    args = {"node": "127.0.10.11", "dest": str(dest), "talosconfig": "/tmp/tc"}
    talosctl.on("kubeconfig", answers=[(0, FETCHED.replace("Q0VSVA==", client_cert(10)), ""),
                                       (0, FETCHED.replace("Q0VSVA==", client_cert(365)), "")])
    run_module(talos_kubeconfig.main, args)
    again = run_module(talos_kubeconfig.main, args)
    assert again.result["changed"] is True and again.result["renewed"] is True


def test_check_mode_writes_nothing(talosctl, run_module, tmp_path):
    dest = tmp_path / "kubeconfig"
    talosctl.on("kubeconfig", stdout=FETCHED)
    res = run_module(talos_kubeconfig.main, {"node": "n", "dest": str(dest), "talosconfig": "/tmp/tc"},
                     check_mode=True)
    assert res.result["changed"] is True
    assert not dest.exists()
