# SPDX-License-Identifier: GPL-3.0-or-later
"""The OIDC issuer simulator: Authentik's discovery layout per application (issuer with the
trailing slash, shared authorize/token endpoints, per-application JWKS), 404 for anything else,
and tokens whose RS256 signature verifies with the published key and only with it."""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import oidc_sim
import simkit

ADDRESS = "127.0.72.6"


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    d = tmp_path_factory.mktemp("oidc")
    simkit.make_certs(str(d), ADDRESS, ca_name=[("CN", "test CA")], server_name=ADDRESS)
    srv = oidc_sim.make_server(["kubernetes", "grafana"], ADDRESS, 0, str(d))
    port = srv.server_address[1]
    srv.base = f"https://{ADDRESS}:{port}"
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    ctx = ssl.create_default_context(cafile=str(d / "ca.pem"))
    yield srv, ctx, d
    srv.shutdown()


def get(srv, ctx, path):
    try:
        with urllib.request.urlopen(srv.base + path, context=ctx, timeout=5) as r:  # noqa: S310
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def b64d(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def test_discovery_has_authentik_layout(sim):
    srv, ctx, _ = sim
    status, doc = get(srv, ctx, "/application/o/kubernetes/.well-known/openid-configuration")
    assert status == 200
    assert doc["issuer"] == srv.base + "/application/o/kubernetes/"
    assert doc["jwks_uri"] == srv.base + "/application/o/kubernetes/jwks/"
    assert doc["token_endpoint"] == srv.base + "/application/o/token/"
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    assert "groups" in doc["claims_supported"]


@pytest.mark.parametrize("path", ["/application/o/harbor/jwks/", "/application/o/kubernetes/jwks",
                                  "/application/o/kubernetes/.well-known/openid-configuration/",
                                  "/.well-known/openid-configuration"])
def test_unknown_paths_are_404(sim, path):
    srv, ctx, _ = sim
    assert get(srv, ctx, path)[0] == 404


def test_token_verifies_with_the_published_key_only(sim):
    srv, ctx, _ = sim
    _, jwks = get(srv, ctx, "/application/o/kubernetes/jwks/")
    key = jwks["keys"][0]
    pub = rsa.RSAPublicNumbers(int.from_bytes(b64d(key["e"]), "big"),
                               int.from_bytes(b64d(key["n"]), "big")).public_key()
    claims = oidc_sim.claims_for(srv.base, "kubernetes", "alice", groups=["admins"], audience="kubernetes",
                                 expires_in=60)
    token = oidc_sim.sign(srv.key, claims)
    header, payload, sig = token.split(".")
    assert json.loads(b64d(header)) == {"alg": "RS256", "typ": "JWT", "kid": key["kid"]}
    body = json.loads(b64d(payload))
    assert body["iss"] == srv.base + "/application/o/kubernetes/"
    assert body["groups"] == ["admins"]
    assert body["email"] == "alice@lab.home.arpa"
    assert body["preferred_username"] == "alice"
    pub.verify(b64d(sig), f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = oidc_sim.sign(other, claims).split(".")
    with pytest.raises(InvalidSignature):
        pub.verify(b64d(forged[2]), f"{forged[0]}.{forged[1]}".encode(), padding.PKCS1v15(), hashes.SHA256())


def test_mint_refuses_an_unknown_application(tmp_path):
    simkit.write_endpoint(str(tmp_path), {"url": "https://127.0.72.6:1", "applications": ["kubernetes"]})
    out = subprocess.run([sys.executable, str(HERE / "oidc_sim.py"), "mint", "--dir", str(tmp_path), "--app", "harbor",
                          "--user", "x"], capture_output=True, text=True, check=False)
    assert out.returncode == 1 and "harbor is not an application" in out.stderr
