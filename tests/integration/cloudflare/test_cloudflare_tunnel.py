# SPDX-License-Identifier: GPL-3.0-or-later
"""homecluster.platform.cloudflare_tunnel against the Cloudflare API simulator (lab/cloudflare_sim).

The four-step model (check predicts and changes nothing, apply, check again: no change, apply
again: no change), --diff, the credentials file, a new hostname, refusals of a revoked and of
under-scoped tokens naming the missing permission, and retries through 429 and 5xx.
"""

from __future__ import annotations

import json
import os
import ssl
import stat
import sys
import threading
import urllib.request

import pytest
from modrun import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "lab" / "cloudflare_sim"))
import cfsim_cli
import cfsim_server

ACCOUNT = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
ZONE = "edge.example"
TOKENS = {
    "full": ("tok-full-000000000000000000000000000000", ["Zone Read", "DNS Write", "Cloudflare Tunnel Write"]),
    "no-dns": ("tok-nodns-00000000000000000000000000000", ["Zone Read", "Cloudflare Tunnel Write"]),
    "no-tunnel": ("tok-notun-00000000000000000000000000000", ["Zone Read", "DNS Write"]),
    "tunnel-read": ("tok-tunro-00000000000000000000000000000",
                    ["Zone Read", "DNS Write", "Cloudflare Tunnel Read"]),
    "revoked": ("tok-revoked-000000000000000000000000000", ["Zone Read", "DNS Write", "Cloudflare Tunnel Write"]),
}


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("cfsim"))
    cfsim_cli.make_certs(directory, "127.0.40.3")
    config = {"account_id": ACCOUNT, "zones": [ZONE],
              "tokens": [{"name": n, "value": v, "permissions": p} for n, (v, p) in TOKENS.items()]}
    srv = cfsim_server.make_server(config, "127.0.40.3", 0, os.path.join(directory, "server.pem"),
                                   os.path.join(directory, "server.key"))
    srv.sim.state.revoke("revoked")
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = f"https://127.0.40.3:{srv.server_address[1]}"
    yield {"base": base, "api": base + "/client/v4", "ca": os.path.join(directory, "ca.pem"), "srv": srv}
    srv.shutdown()
    srv.server_close()


def control(sim, method, path, body):
    req = urllib.request.Request(sim["base"] + "/_sim" + path, data=json.dumps(body).encode(), method=method)  # noqa: S310
    ctx = ssl.create_default_context(cafile=sim["ca"])
    with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:  # noqa: S310
        return json.loads(resp.read())


def args(sim, tmp_path, token="full", **extra):  # noqa: S107 - names a lab token
    out = {"api_token": TOKENS[token][0], "api_url": sim["api"], "ca_path": sim["ca"], "account_id": ACCOUNT,
           "name": "homecluster", "zone": ZONE, "credentials_path": str(tmp_path / "creds" / "tunnel.json"),
           "ingress": [{"hostname": f"hello.{ZONE}", "service": "https://istio-gateway.istio-ingress.svc:443",
                        "origin_request": {"originServerName": f"hello.{ZONE}"}}]}
    out.update(extra)
    return out


def records(sim):
    state = sim["srv"].sim.state
    zone = next(z for z in state.zones.values() if z["name"] == ZONE)
    return {(r["name"], r["type"]): r for r in state.records[zone["id"]].values()}


def live_tunnels(sim):
    return [t for t in sim["srv"].sim.state.tunnels.values() if not t["deleted_at"]]


def test_four_steps(sim, tmp_path, collection_module):
    creds = tmp_path / "creds" / "tunnel.json"
    # 1. check mode predicts the creation and changes nothing
    res = collection_module("cloudflare_tunnel", args(sim, tmp_path), check=True)
    assert res.get("failed") is not True, res
    assert res["changed"] is True and res["created"] is True
    assert res["changes"][0] == "create tunnel homecluster"
    assert any(c.startswith(f"create CNAME hello.{ZONE}") for c in res["changes"])
    assert res["diff"]["before"]["tunnel"] is None
    assert live_tunnels(sim) == [] and records(sim) == {} and not creds.exists()
    # 2. apply
    res = collection_module("cloudflare_tunnel", args(sim, tmp_path))
    assert res.get("failed") is not True, res
    assert res["changed"] is True
    tid = res["tunnel_id"]
    assert [t["id"] for t in live_tunnels(sim)] == [tid]
    cname = records(sim)[(f"hello.{ZONE}", "CNAME")]
    assert (cname["content"], cname["proxied"], cname["ttl"]) == (f"{tid}.cfargotunnel.com", True, 1)
    config = sim["srv"].sim.state.configs[tid]["config"]
    assert config["ingress"][-1] == {"service": "http_status:404"}
    assert config["ingress"][0]["hostname"] == f"hello.{ZONE}"
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    data = json.loads(creds.read_text())
    assert data["TunnelID"] == tid and data["AccountTag"] == ACCOUNT
    assert data["TunnelSecret"] == sim["srv"].sim.state.tunnels[tid]["secret"]
    # the secret is in no result
    assert data["TunnelSecret"] not in json.dumps(res)
    # 3. check mode again: no change; 4. apply again: no change
    for check in (True, False):
        res = collection_module("cloudflare_tunnel", args(sim, tmp_path), check=check)
        assert res.get("failed") is not True, res
        assert res["changed"] is False, res["changes"]
    # a new hostname: check shows the rule and the record, changes nothing; then apply
    more = args(sim, tmp_path)
    more["ingress"].append({"hostname": f"new.{ZONE}", "service": "https://istio-gateway.istio-ingress.svc:443"})
    version = sim["srv"].sim.state.configs[tid]["version"]
    res = collection_module("cloudflare_tunnel", more, check=True)
    assert res["changed"] is True
    assert res["changes"] == [f"set ingress rules (version {version} -> {version + 1})",
                              f"create CNAME new.{ZONE} -> {tid}.cfargotunnel.com"]
    assert any(r["hostname"] == f"new.{ZONE}" for r in res["diff"]["after"]["ingress"] if "hostname" in r)
    assert (f"new.{ZONE}", "CNAME") not in records(sim)
    assert collection_module("cloudflare_tunnel", more)["changed"] is True
    assert collection_module("cloudflare_tunnel", more)["changed"] is False
    # the credentials file lost: rewritten from the tunnel's token, the same secret
    creds.unlink()
    res = collection_module("cloudflare_tunnel", more)
    assert res["changes"] == [f"write the credentials file {creds}"]
    assert json.loads(creds.read_text())["TunnelSecret"] == data["TunnelSecret"]


def test_return_credentials_needs_no_log(sim, tmp_path, collection_module):
    res = collection_module("cloudflare_tunnel", args(sim, tmp_path, name="other", return_credentials=True,
                                                      dns_records=False))
    assert res["failed"] is True and "no_log" in res["msg"]
    res = collection_module("cloudflare_tunnel", args(sim, tmp_path, name="other", return_credentials=True,
                                                      dns_records=False, _ansible_no_log=True))
    assert res.get("failed") is not True, res
    assert res["credentials"]["TunnelID"] == res["tunnel_id"]
    assert json.loads(__import__("base64").b64decode(res["tunnel_token"]))["t"] == res["tunnel_id"]


@pytest.mark.parametrize(("token", "permission"), [
    ("no-dns", "DNS Write"),
    ("no-tunnel", "Cloudflare Tunnel Write"),
    ("tunnel-read", "Cloudflare Tunnel Write"),
])
def test_under_scoped_token_names_the_permission(sim, tmp_path, collection_module, token, permission):
    before = (len(sim["srv"].sim.state.tunnels), dict(records(sim)))
    res = collection_module("cloudflare_tunnel", args(sim, tmp_path, token=token, name=f"scoped-{token}"))
    assert res["failed"] is True
    assert res["missing_permission"] == permission
    assert f"lacks the permission '{permission}'" in res["msg"]
    assert (len(sim["srv"].sim.state.tunnels), dict(records(sim))) == before


def test_revoked_token(sim, tmp_path, collection_module):
    res = collection_module("cloudflare_tunnel", args(sim, tmp_path, token="revoked"))
    assert res["failed"] is True and "invalid or revoked" in res["msg"]
    assert TOKENS["revoked"][0] not in json.dumps(res)


def test_retries_through_rate_limit_and_faults(sim, tmp_path, collection_module):
    control(sim, "PUT", "/rate_limit", {"requests": 4, "window": 2})
    res = collection_module("cloudflare_tunnel", args(sim, tmp_path))
    control(sim, "PUT", "/rate_limit", {"requests": 1200, "window": 300})
    assert res.get("failed") is not True, res
    assert any(r for r in sim["srv"].sim.requests if r["path"].endswith("/verify"))
    control(sim, "POST", "/faults", {"status": 503, "count": 2, "path": "cfd_tunnel$"})
    res = collection_module("cloudflare_tunnel", args(sim, tmp_path))
    assert res.get("failed") is not True, res
    control(sim, "POST", "/faults", {"status": 500, "count": 10, "path": "^/user/tokens/verify$"})
    res = collection_module("cloudflare_tunnel", args(sim, tmp_path, retries=1))
    assert res["failed"] is True and "HTTP 500" in res["msg"]
    control(sim, "DELETE", "/faults", {})


def test_bad_input_before_any_call(sim, tmp_path, collection_module):
    res = collection_module("cloudflare_tunnel", args(sim, tmp_path, account_id="nope",
                                                      ingress=[{"hostname": "x.other.example", "service": "http://a"}]))
    assert res["failed"] is True
    assert "account_id must be" in res["msg"] and "outside the zone" in res["msg"]


def test_validate_certs_off_warns(sim, tmp_path, collection_module):
    res = collection_module("cloudflare_tunnel", args(sim, tmp_path, validate_certs=False, ca_path=None))
    assert res.get("failed") is not True, res
    assert "validate_certs is false" in json.dumps(res.get("warnings"))
    res = collection_module("cloudflare_tunnel", args(sim, tmp_path, ca_path=None))
    assert res["failed"] is True and "CERTIFICATE_VERIFY_FAILED" in res["msg"].upper().replace(" ", "_")
