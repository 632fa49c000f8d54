# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: HomeCluster developers
"""Private helpers for the X.509 certificates that Talos and Kubernetes client configs carry."""

from __future__ import annotations

import base64
import datetime

try:
    from cryptography import x509

    HAS_CRYPTO = True
except ImportError:  # pragma: no cover
    HAS_CRYPTO = False


def days_left(cert_b64):
    """Whole days until the base64-encoded PEM certificate expires.

    None when it cannot be judged (no certificate given, or the cryptography library is missing),
    0 when the data is not a certificate (so a caller renews it), negative once it has expired.
    """
    if not HAS_CRYPTO or not cert_b64:
        return None
    try:
        cert = x509.load_pem_x509_certificate(base64.b64decode(cert_b64))
    except (ValueError, TypeError):
        return 0
    return (cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC)).days
