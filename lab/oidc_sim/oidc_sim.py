# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: HomeCluster developers
"""An OpenID Connect issuer on loopback HTTPS, shaped like Authentik's OAuth2/OpenID providers.

    lab/oidc_sim/run up     [--dir DIR] [--config FILE] [--address 127.0.0.1] [--port 9443] [--fresh]
    lab/oidc_sim/run status [--dir DIR]
    lab/oidc_sim/run down   [--dir DIR]
    lab/oidc_sim/run mint   [--dir DIR] --app SLUG --user NAME [--group G ...] [--audience A]
                            [--key PEM] [--expires-in SECONDS]

What the real kube-apiserver needs from an issuer, as Authentik serves it per application (slug):

  GET /application/o/<slug>/.well-known/openid-configuration   discovery (issuer with the trailing
                                                                slash Authentik uses)
  GET /application/o/<slug>/jwks/                               the signing key (RS256, kid)
  GET /_sim/stats                                               liveness for `up`

Anything else is 404, an unknown slug too; no authorize/token flow is served (the lab mints
tokens with `mint`, signed with the issuer's own key in DIR/signing.key, or with another key
given by --key to prove the API server refuses it). A token carries the claims Authentik's
default scope mappings emit for openid, email and profile: iss, sub, aud, exp, iat, auth_time,
acr, email, email_verified, name, given_name, preferred_username, nickname, groups.

DIR holds ca.pem (the CA the API server's AuthenticationConfiguration trusts through
issuer.certificateAuthority), server.pem/key, signing.key (0600), sim.log, sim.pid and
endpoint.json. Binds loopback addresses only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import ssl
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # lab/simkit.py

import simkit

DEFAULT_DIR = os.path.join(os.path.dirname(HERE), ".state", "oidc_sim")
DEFAULT_CONFIG = os.path.join(HERE, "config.yml")
PATH_RE = re.compile(r"^/application/o/([a-z0-9][a-z0-9-]*)/(\.well-known/openid-configuration|jwks/)$")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def load_key(path):
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    with open(path, "rb") as f:
        return serialization.load_pem_private_key(f.read(), password=None)


def signing_key(directory):
    """The issuer's RSA key, created once (0600)."""
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: PLC0415

    path = os.path.join(directory, "signing.key")
    if not os.path.exists(path):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    return load_key(path)


def jwk(key) -> dict:
    numbers = key.public_key().public_numbers()
    n = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
    e = numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")
    kid = hashlib.sha256(n).hexdigest()[:32]
    return {"kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid, "n": b64url(n), "e": b64url(e)}


def sign(key, claims: dict) -> str:
    from cryptography.hazmat.primitives import hashes  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import padding  # noqa: PLC0415

    header = {"alg": "RS256", "typ": "JWT", "kid": jwk(key)["kid"]}
    signing_input = b64url(json.dumps(header, separators=(",", ":")).encode()) + "." + \
        b64url(json.dumps(claims, separators=(",", ":")).encode())
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return signing_input + "." + b64url(signature)


def issuer(base: str, slug: str) -> str:
    return f"{base}/application/o/{slug}/"


def discovery(base: str, slug: str) -> dict:
    """The discovery document of one application, with Authentik's endpoint layout."""
    shared = f"{base}/application/o"
    return {
        "issuer": issuer(base, slug),
        "authorization_endpoint": f"{shared}/authorize/",
        "token_endpoint": f"{shared}/token/",
        "userinfo_endpoint": f"{shared}/userinfo/",
        "end_session_endpoint": f"{shared}/{slug}/end-session/",
        "introspection_endpoint": f"{shared}/introspect/",
        "revocation_endpoint": f"{shared}/revoke/",
        "device_authorization_endpoint": f"{shared}/device/",
        "jwks_uri": f"{shared}/{slug}/jwks/",
        "response_types_supported": ["code", "id_token", "id_token token", "code token", "code id_token",
                                     "code id_token token"],
        "response_modes_supported": ["query", "fragment", "form_post"],
        "grant_types_supported": ["authorization_code", "refresh_token", "implicit", "client_credentials",
                                  "password", "urn:ietf:params:oauth:grant-type:device_code"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "subject_types_supported": ["public"],
        "scopes_supported": ["openid", "email", "profile", "offline_access"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        "code_challenge_methods_supported": ["plain", "S256"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "acr", "amr", "nonce", "email",
                             "email_verified", "name", "given_name", "preferred_username", "nickname", "groups"],
        "request_parameter_supported": False,
    }


def claims_for(base: str, slug: str, user: str, *, groups, audience: str, expires_in: int,
               now: int | None = None) -> dict:
    now = int(time.time()) if now is None else now
    return {
        "iss": issuer(base, slug), "sub": hashlib.sha256(user.encode()).hexdigest(), "aud": audience,
        "exp": now + expires_in, "iat": now, "auth_time": now, "acr": "goauthentik.io/providers/oauth2/default",
        "email": f"{user}@lab.home.arpa", "email_verified": True, "name": user, "given_name": user,
        "preferred_username": user, "nickname": user, "groups": list(groups),
    }


class Handler(BaseHTTPRequestHandler):
    server_version = "oidc-sim"

    def log_message(self, fmt, *args):
        if self.server.verbose:
            super().log_message(fmt, *args)

    def reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.server.requests += 1
        if self.path == "/_sim/stats":
            self.reply(200, {"requests": self.server.requests, "applications": self.server.applications})
            return
        m = PATH_RE.match(self.path)
        if not m or m.group(1) not in self.server.applications:
            self.reply(404, {"detail": "Not found."})
            return
        if m.group(2) == "jwks/":
            self.reply(200, {"keys": [jwk(self.server.key)]})
        else:
            self.reply(200, discovery(self.server.base, m.group(1)))


def make_server(applications, address, port, directory):
    srv = ThreadingHTTPServer((address, port), Handler)
    srv.daemon_threads = True
    srv.applications = list(applications)
    srv.key = signing_key(directory)
    srv.base = f"https://{address}:{port}"
    srv.requests = 0
    srv.verbose = False
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(os.path.join(directory, "server.pem"), os.path.join(directory, "server.key"))
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    return srv


def cmd_serve(args):
    config = simkit.load_config(args.config)
    os.makedirs(args.dir, exist_ok=True)
    if args.fresh:
        for name in ("signing.key",):
            if os.path.exists(os.path.join(args.dir, name)):
                os.remove(os.path.join(args.dir, name))
    simkit.make_certs(args.dir, args.address, ca_name=[("CN", "HomeCluster lab CA (OIDC simulator)")],
                      server_name=args.address, dns_names=("localhost",))
    srv = make_server(config.get("applications", []), args.address, args.port, args.dir)
    srv.verbose = args.verbose
    ep = {"url": srv.base, "host": args.address, "port": args.port, "ca": os.path.join(args.dir, "ca.pem"),
          "pid": os.getpid(), "applications": srv.applications,
          "issuers": {slug: issuer(srv.base, slug) for slug in srv.applications}}
    simkit.write_endpoint(args.dir, ep)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    print(f"OIDC simulator on {srv.base} for {', '.join(srv.applications)} (CA {ep['ca']})", flush=True)
    srv.serve_forever()


def cmd_mint(argv):
    import argparse  # noqa: PLC0415

    p = argparse.ArgumentParser(prog="oidc_sim mint")
    p.add_argument("--dir", default=os.environ.get("OIDC_SIM_DIR", DEFAULT_DIR))
    p.add_argument("--app", required=True, help="the application's slug (issuer path)")
    p.add_argument("--user", required=True)
    p.add_argument("--group", action="append", default=[])
    p.add_argument("--audience", help="default: the slug (the client id the lab gives each provider)")
    p.add_argument("--key", help="sign with this PEM key instead of the issuer's")
    p.add_argument("--expires-in", type=int, default=600)
    args = p.parse_args(argv)
    ep = simkit.endpoint(os.path.abspath(args.dir))
    if not ep:
        print(f"no simulator in {args.dir}: run up first", file=sys.stderr)
        return 1
    if args.app not in ep["applications"]:
        print(f"{args.app} is not an application of the simulator ({', '.join(ep['applications'])})", file=sys.stderr)
        return 1
    key = load_key(args.key) if args.key else signing_key(os.path.abspath(args.dir))
    claims = claims_for(ep["url"], args.app, args.user, groups=args.group, audience=args.audience or args.app,
                        expires_in=args.expires_in)
    print(sign(key, claims))
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["mint"]:
        return cmd_mint(argv[1:])
    return simkit.cli(argv, prog="oidc_sim", doc=__doc__, script=os.path.abspath(__file__),
                      env_dir="OIDC_SIM_DIR", default_dir=DEFAULT_DIR, default_config=DEFAULT_CONFIG,
                      default_port=9443, serve=cmd_serve)


if __name__ == "__main__":
    sys.exit(main())
