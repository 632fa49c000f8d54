# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: HomeCluster developers
"""Tests of the Cloudflare API v4 simulator, in process over HTTPS with its lab CA.

    python -m pytest -q lab/cloudflare_sim/test_cloudflare_sim.py
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import sys
import threading
import urllib.error
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import cfsim_cli
import cfsim_server

ACCOUNT = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
TOKENS = {
    "full": "tok-full-000000000000000000000000000000",
    "dns": "tok-dns-0000000000000000000000000000000",
    "ro": "tok-ro-00000000000000000000000000000000",
    "other-zone": "tok-oz-00000000000000000000000000000000",
}


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("cfsim"))
    cfsim_cli.make_certs(directory, "127.0.40.2")
    config = {
        "account_id": ACCOUNT,
        "zones": ["example.org", "other.example"],
        "tokens": [
            {"name": "full", "value": TOKENS["full"],
             "permissions": ["Zone Read", "DNS Write", "Cloudflare Tunnel Write"]},
            {"name": "dns", "value": TOKENS["dns"], "permissions": ["Zone Read", "DNS Write"]},
            {"name": "ro", "value": TOKENS["ro"], "permissions": ["Zone Read", "DNS Read", "Cloudflare Tunnel Read"]},
            {"name": "other-zone", "value": TOKENS["other-zone"], "permissions": ["Zone Read", "DNS Write"],
             "zones": ["other.example"]},
        ],
    }
    srv = cfsim_server.make_server(config, "127.0.40.2", 0, os.path.join(directory, "server.pem"),
                                   os.path.join(directory, "server.key"))
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    ctx = ssl.create_default_context(cafile=os.path.join(directory, "ca.pem"))
    base = f"https://127.0.40.2:{srv.server_address[1]}"
    yield {"base": base, "api": base + "/client/v4", "ctx": ctx, "srv": srv}
    srv.shutdown()
    srv.server_close()


def call(sim, method, path, body=None, *, token="full", raw_auth=None, control=False):  # noqa: S107 - lab tokens
    url = (sim["base"] + "/_sim" if control else sim["api"]) + path
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)  # noqa: S310
    req.add_header("Content-Type", "application/json")
    if raw_auth is not None:
        req.add_header("Authorization", raw_auth)
    elif token:
        req.add_header("Authorization", "Bearer " + TOKENS.get(token, token))
    try:
        with urllib.request.urlopen(req, context=sim["ctx"], timeout=10) as resp:  # noqa: S310
            return resp.status, json.loads(resp.read()), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), dict(exc.headers)


def zone_id(sim, name="example.org"):
    status, body, _ = call(sim, "GET", f"/zones?name={name}")
    assert status == 200, body
    return body["result"][0]["id"]


def test_envelope_and_verify(sim):
    status, body, _ = call(sim, "GET", "/user/tokens/verify")
    assert status == 200
    assert set(body) == {"success", "errors", "messages", "result"}
    assert body["success"] is True and body["result"]["status"] == "active"
    assert body["messages"][0]["message"] == "This API Token is valid and active"


def test_unknown_token_and_missing_header(sim):
    status, body, _ = call(sim, "GET", "/user/tokens/verify", token="nope")
    assert (status, body["errors"][0]["code"], body["success"]) == (401, 1000, False)
    status, body, _ = call(sim, "GET", "/zones", token=None)
    assert (status, body["errors"][0]["code"]) == (400, 9106)
    status, body, _ = call(sim, "GET", "/zones", raw_auth="Token x")
    assert (status, body["errors"][0]["code"]) == (400, 6003)


def test_revoked_token_fails_verify(sim):
    status, body, _ = call(sim, "POST", "/tokens", {"name": "tmp", "permissions": ["Zone Read"]}, control=True)
    assert status == 200
    value = body["value"]
    assert call(sim, "GET", "/user/tokens/verify", token=value)[0] == 200
    assert call(sim, "POST", "/tokens/tmp/revoke", {}, control=True)[0] == 200
    status, body, _ = call(sim, "GET", "/user/tokens/verify", token=value)
    assert (status, body["errors"][0]["message"]) == (401, "Invalid API Token")
    status, body, _ = call(sim, "GET", "/zones", token=value)
    assert (status, body["errors"][0]["code"]) == (403, 9109)


def test_zone_list_pagination_and_scope(sim):
    status, body, _ = call(sim, "GET", "/zones?per_page=5")
    assert status == 200
    assert body["result_info"] == {"page": 1, "per_page": 5, "count": 2, "total_count": 2, "total_pages": 1}
    zone = body["result"][0]
    for key in ("id", "name", "status", "account", "name_servers", "plan", "paused", "type"):
        assert key in zone
    # A token scoped to one zone sees only that zone, and is refused on the other.
    status, body, _ = call(sim, "GET", "/zones", token="other-zone")
    assert [z["name"] for z in body["result"]] == ["other.example"]
    status, body, _ = call(sim, "GET", f"/zones/{zone_id(sim)}/dns_records", token="other-zone")
    assert (status, body["errors"][0]["code"], body["errors"][0]["message"]) == (403, 10000, "Authentication error")
    assert call(sim, "GET", "/zones?per_page=51")[0] == 400
    status, body, _ = call(sim, "GET", "/zones/not-an-id")
    assert (status, body["errors"][0]["code"]) == (400, 7003)


def test_dns_records_crud_filters_pagination(sim):
    zid = zone_id(sim)
    status, body, _ = call(sim, "POST", f"/zones/{zid}/dns_records",
                           {"type": "A", "name": "www", "content": "192.0.2.1", "ttl": 300, "comment": "c"})
    assert status == 200, body
    rec = body["result"]
    assert rec["name"] == "www.example.org" and rec["ttl"] == 300 and rec["proxied"] is False
    assert rec["proxiable"] is True and rec["comment"] == "c" and "comment_modified_on" in rec
    # Proxied records carry the automatic TTL.
    status, body, _ = call(sim, "POST", f"/zones/{zid}/dns_records",
                           {"type": "CNAME", "name": "app.example.org", "content": "t.cfargotunnel.com",
                            "proxied": True, "ttl": 600})
    assert status == 200 and body["result"]["ttl"] == 1
    cname_id = body["result"]["id"]
    for i in range(12):
        assert call(sim, "POST", f"/zones/{zid}/dns_records",
                    {"type": "TXT", "name": f"t{i:02d}", "content": f'"v={i}"', "ttl": 1})[0] == 200
    status, body, _ = call(sim, "GET", f"/zones/{zid}/dns_records?type=TXT&per_page=5&page=3&order=name")
    assert body["result_info"] == {"page": 3, "per_page": 5, "count": 2, "total_count": 12, "total_pages": 3}
    assert [r["name"] for r in body["result"]] == ["t10.example.org", "t11.example.org"]
    status, body, _ = call(sim, "GET", f"/zones/{zid}/dns_records?type=TXT&per_page=5&page=4")
    assert body["result"] == []
    status, body, _ = call(sim, "GET", f"/zones/{zid}/dns_records?name=app.example.org")
    assert [r["id"] for r in body["result"]] == [cname_id]
    status, body, _ = call(sim, "PATCH", f"/zones/{zid}/dns_records/{cname_id}", {"content": "u.cfargotunnel.com"})
    assert status == 200 and body["result"]["content"] == "u.cfargotunnel.com" and body["result"]["proxied"]
    status, body, _ = call(sim, "PUT", f"/zones/{zid}/dns_records/{cname_id}", {"content": "x"})
    assert status == 400
    assert call(sim, "DELETE", f"/zones/{zid}/dns_records/{cname_id}")[0] == 200
    status, body, _ = call(sim, "GET", f"/zones/{zid}/dns_records/{cname_id}")
    assert (status, body["errors"][0]["code"]) == (404, 81044)


@pytest.mark.parametrize(("record", "code"), [
    ({"type": "A", "name": "bad", "content": "not-an-ip"}, 9005),
    ({"type": "AAAA", "name": "bad", "content": "192.0.2.1"}, 9006),
    ({"type": "TXT", "name": "bad", "content": "x", "proxied": True}, 9004),
    ({"type": "A", "name": "bad", "content": "192.0.2.1", "ttl": 30}, 9021),
    ({"type": "BOGUS", "name": "bad", "content": "x"}, 9000),
    ({"type": "A", "name": "bad", "content": "192.0.2.1", "proxied": "yes"}, 9003),
])
def test_dns_record_validation(sim, record, code):
    status, body, _ = call(sim, "POST", f"/zones/{zone_id(sim)}/dns_records", record)
    assert (status, body["errors"][0]["code"], body["success"]) == (400, code, False)


def test_cname_conflicts_and_identical(sim):
    path = f"/zones/{zone_id(sim)}/dns_records"
    assert call(sim, "POST", path, {"type": "A", "name": "dup", "content": "192.0.2.9"})[0] == 200
    _status, body, _ = call(sim, "POST", path, {"type": "A", "name": "dup", "content": "192.0.2.9"})
    assert body["errors"][0]["code"] == 81058
    _status, body, _ = call(sim, "POST", path, {"type": "CNAME", "name": "dup", "content": "a.b"})
    assert body["errors"][0]["code"] == 81053


def test_batch_is_all_or_nothing(sim):
    zid = zone_id(sim)
    before = call(sim, "GET", f"/zones/{zid}/dns_records?per_page=5000")[1]["result_info"]["total_count"]
    status, body, _ = call(sim, "POST", f"/zones/{zid}/dns_records/batch", {
        "posts": [{"type": "A", "name": "b1", "content": "192.0.2.1"}, {"type": "A", "name": "b2", "content": "x"}]})
    assert status == 400
    after = call(sim, "GET", f"/zones/{zid}/dns_records?per_page=5000")[1]["result_info"]["total_count"]
    assert after == before
    status, body, _ = call(sim, "POST", f"/zones/{zid}/dns_records/batch", {
        "posts": [{"type": "A", "name": "b1", "content": "192.0.2.1"}]})
    assert status == 200 and [r["name"] for r in body["result"]["posts"]] == ["b1.example.org"]
    assert set(body["result"]) == {"deletes", "patches", "puts", "posts"}


def test_read_only_token_cannot_write(sim):
    zid = zone_id(sim)
    status, body, _ = call(sim, "POST", f"/zones/{zid}/dns_records",
                           {"type": "A", "name": "ro", "content": "192.0.2.1"}, token="ro")
    assert (status, body["errors"][0]["code"]) == (403, 10000)
    assert call(sim, "GET", f"/zones/{zid}/dns_records", token="ro")[0] == 200


def test_tunnel_lifecycle(sim):
    path = f"/accounts/{ACCOUNT}/cfd_tunnel"
    status, body, _ = call(sim, "POST", path, {"name": "edge", "config_src": "cloudflare"})
    assert status == 200, body
    tun = body["result"]
    assert tun["tun_type"] == "cfd_tunnel" and tun["status"] == "inactive" and tun["remote_config"] is True
    creds = tun["credentials_file"]
    assert creds["TunnelID"] == tun["id"] and creds["AccountTag"] == ACCOUNT
    assert len(base64.b64decode(creds["TunnelSecret"])) == 32
    assert "secret" not in tun
    status, body, _ = call(sim, "POST", path, {"name": "edge"})
    assert (status, body["errors"][0]["code"]) == (409, 1013)
    status, body, _ = call(sim, "GET", f"{path}/{tun['id']}/token")
    decoded = json.loads(base64.b64decode(body["result"]))
    assert decoded == {"a": ACCOUNT, "t": tun["id"], "s": creds["TunnelSecret"]}
    # Configurations: the last rule must be a catch-all.
    status, body, _ = call(sim, "PUT", f"{path}/{tun['id']}/configurations",
                           {"config": {"ingress": [{"hostname": "app.example.org", "service": "http://gw:80"}]}})
    assert status == 400 and "last ingress rule must match all URLs" in body["errors"][0]["message"]
    config = {"ingress": [{"hostname": "app.example.org", "service": "http://gw:80"}, {"service": "http_status:404"}]}
    status, body, _ = call(sim, "PUT", f"{path}/{tun['id']}/configurations", {"config": config})
    assert status == 200 and body["result"]["version"] == 1 and body["result"]["config"] == config
    status, body, _ = call(sim, "GET", f"{path}/{tun['id']}/configurations")
    assert body["result"]["config"] == config
    status, body, _ = call(sim, "PUT", f"{path}/{tun['id']}/configurations",
                           {"config": {"ingress": [{"service": "ftp://x"}]}})
    assert status == 400
    # Deleted tunnels stay listed unless is_deleted=false is asked for (as upstream).
    assert call(sim, "DELETE", f"{path}/{tun['id']}")[0] == 200
    assert [t["name"] for t in call(sim, "GET", f"{path}?name=edge")[1]["result"]] == ["edge"]
    assert call(sim, "GET", f"{path}?name=edge&is_deleted=false")[1]["result"] == []
    assert call(sim, "POST", path, {"name": "edge"})[0] == 200


def test_tunnel_permissions(sim):
    path = f"/accounts/{ACCOUNT}/cfd_tunnel"
    status, body, _ = call(sim, "GET", path, token="dns")
    assert (status, body["errors"][0]["code"]) == (403, 9109)
    assert call(sim, "GET", path, token="ro")[0] == 200
    status, body, _ = call(sim, "POST", path, {"name": "ro"}, token="ro")
    assert (status, body["errors"][0]["code"]) == (403, 9109)
    status, body, _ = call(sim, "GET", "/accounts/ffffffffffffffffffffffffffffffff/cfd_tunnel")
    assert status == 403


def test_rate_limit_and_faults(sim):
    assert call(sim, "PUT", "/rate_limit", {"requests": 3, "window": 60}, control=True)[0] == 200
    codes = [call(sim, "GET", "/zones")[0] for _ in range(4)]
    status, body, headers = call(sim, "GET", "/zones")
    assert codes == [200, 200, 200, 429] and status == 429
    assert body["errors"][0]["code"] == 971 and int(headers["Retry-After"]) >= 1
    assert call(sim, "PUT", "/rate_limit", {"requests": 1200, "window": 300}, control=True)[0] == 200
    call(sim, "POST", "/faults", {"status": 503, "count": 2, "path": "^/zones$"}, control=True)
    assert [call(sim, "GET", "/zones")[0] for _ in range(3)] == [503, 503, 200]
    status, body, _ = call(sim, "GET", "/nope")
    assert (status, body["errors"][0]["code"]) == (400, 7000)
    status, body, _ = call(sim, "DELETE", "/zones")
    assert status == 405
