# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests of the pure parts of homecluster.platform.cloudflare_tunnel."""

from __future__ import annotations

import base64
import json
import os

from ansible_collections.homecluster.platform.plugins.modules import cloudflare_tunnel as mod

ACCOUNT = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"


def params(**kw):
    out = {"account_id": ACCOUNT, "zone": "example.org", "dns_records": True, "catch_all_service": "http_status:404",
           "ingress": [{"hostname": "A.example.org.", "service": "http://gw", "path": None, "origin_request": None}]}
    out.update(kw)
    return out


def test_desired_ingress_ends_with_catch_all_and_normalises_hosts():
    assert mod.desired_ingress(params()) == [{"hostname": "a.example.org", "service": "http://gw"},
                                             {"service": "http_status:404"}]


def test_check_input():
    assert mod.check_input(params()) == []
    problems = mod.check_input(params(account_id="x", ingress=[
        {"hostname": "a.other.org", "service": "s"}, {"hostname": "a.other.org", "service": "s"}]))
    assert any("account_id" in p for p in problems)
    assert any("more than once" in p for p in problems)
    assert any("outside the zone" in p for p in problems)
    assert any("zone is required" in p for p in mod.check_input(params(zone=None)))


def test_credentials_state(tmp_path):
    path = str(tmp_path / "c.json")
    assert mod.credentials_state(path, ACCOUNT, "t1") == "missing"
    mod.write_credentials(path, {"AccountTag": ACCOUNT, "TunnelID": "t1", "TunnelSecret": "s"})
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    assert mod.credentials_state(path, ACCOUNT, "t1") == "ok"
    assert mod.credentials_state(path, ACCOUNT, "t2") == "stale"
    os.chmod(path, 0o644)
    assert mod.credentials_state(path, ACCOUNT, "t1") == "mode"


def test_credentials_from_token():
    token = base64.b64encode(json.dumps({"a": ACCOUNT, "t": "t1", "s": "c2VjcmV0"}).encode()).decode()
    assert mod.credentials_from_token(token) == {"AccountTag": ACCOUNT, "TunnelID": "t1", "TunnelSecret": "c2VjcmV0"}
