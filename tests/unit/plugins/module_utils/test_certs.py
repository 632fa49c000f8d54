# SPDX-License-Identifier: GPL-3.0-or-later
"""days_left: the one expiry reading of the Talos and Kubernetes client configs."""
from __future__ import annotations

import base64
import datetime

from ansible_collections.homecluster.platform.plugins.module_utils._certs import days_left
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def certificate(days):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "admin")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - datetime.timedelta(days=400))
            .not_valid_after(now + datetime.timedelta(days=days, hours=1)).sign(key, hashes.SHA256()))
    return base64.b64encode(cert.public_bytes(serialization.Encoding.PEM)).decode()


def test_days_left_counts_whole_days():
    assert days_left(certificate(10)) == 10
    assert days_left(certificate(365)) == 365


def test_an_expired_certificate_is_negative():
    assert days_left(certificate(-3)) == -3


def test_no_certificate_cannot_be_judged_and_garbage_is_due():
    assert days_left(None) is None
    assert days_left("") is None
    assert days_left(base64.b64encode(b"not a certificate").decode()) == 0
    assert days_left("%%%") == 0
