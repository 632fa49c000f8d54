# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests of the Cloudflare API client (module_utils/_cloudflare.py) with a recorded-shape fake
transport (the answers are hand-written in the v4 envelope the API reference documents)."""

from __future__ import annotations

import io
import json
from email.message import Message
from urllib.error import HTTPError

import pytest
from ansible_collections.homecluster.platform.plugins.module_utils._cloudflare import (
    CloudflareClient,
    CloudflareError,
)


class Resp:
    def __init__(self, status, payload):
        self.status = status
        self._raw = json.dumps(payload).encode()

    def getcode(self):
        return self.status

    def read(self):
        return self._raw


def http_error(status, payload, headers=None):
    msg = Message()
    for key, value in (headers or {}).items():
        msg[key] = value
    return HTTPError("https://api.invalid", status, "err", msg, io.BytesIO(json.dumps(payload).encode()))


class Fake:
    def __init__(self, answers):
        self.answers = list(answers)
        self.urls = []
        self.kwargs = []

    def __call__(self, url, **kwargs):
        self.urls.append(url)
        self.kwargs.append(kwargs)
        answer = self.answers.pop(0)
        if isinstance(answer, HTTPError):
            raise answer
        return answer


def ok(result, info=None):
    payload = {"success": True, "errors": [], "messages": [], "result": result}
    if info:
        payload["result_info"] = info
    return Resp(200, payload)


def client(answers, **kw):
    sleeps = []
    fake = Fake(answers)
    cf = CloudflareClient("tok", "https://api.invalid/client/v4", opener=fake, sleep=sleeps.append, **kw)
    return cf, fake, sleeps


def test_paging_follows_total_pages():
    cf, fake, _sleeps = client([ok([1] * 5, {"page": 1, "per_page": 5, "total_pages": 2}),
                                ok([2, 2], {"page": 2, "per_page": 5, "total_pages": 2})])
    assert cf.list_all("/zones", per_page=5) == [1] * 5 + [2, 2]
    assert "page=2" in fake.urls[1] and "per_page=5" in fake.urls[1]


def test_verification_and_ca_reach_the_transport():
    cf, fake, _sleeps = client([ok({"id": "x", "status": "active"})], validate_certs=True, ca_path="/ca.pem")
    cf.verify_token()
    assert fake.kwargs[0]["validate_certs"] is True and fake.kwargs[0]["ca_path"] == "/ca.pem"
    assert fake.kwargs[0]["headers"]["Authorization"] == "Bearer tok"


def test_retry_after_is_honoured_then_gives_up():
    limited = {"success": False, "errors": [{"code": 971, "message": "Please wait"}], "result": None}
    cf, _fake, sleeps = client([http_error(429, limited, {"Retry-After": "7"}), ok([])], retries=2)
    assert cf.list_all("/zones") == []
    assert sleeps == [7]
    cf, _fake, sleeps = client([http_error(503, limited)] * 3, retries=2)
    with pytest.raises(CloudflareError) as err:
        cf.request("GET", "/zones")
    assert err.value.status == 503 and sleeps == [1, 2]


def test_under_scoped_names_the_permission():
    denied = {"success": False, "errors": [{"code": 10000, "message": "Authentication error"}], "result": None}
    cf, _fake, _sleeps = client([http_error(403, denied)])
    with pytest.raises(CloudflareError) as err:
        cf.create_dns_record("z", {}, "create the CNAME a.example")
    assert err.value.permission == "DNS Write"
    assert "lacks the permission 'DNS Write' needed to create the CNAME a.example" in str(err.value)


def test_other_refusals_name_no_permission():
    message = "An A, AAAA, or CNAME record with that host already exists."
    bad = {"success": False, "errors": [{"code": 81053, "message": message}], "result": None}
    cf, _fake, _sleeps = client([http_error(400, bad)])
    with pytest.raises(CloudflareError) as err:
        cf.create_dns_record("z", {}, "create")
    assert err.value.permission is None and "81053" in str(err.value)


@pytest.mark.parametrize(("answer", "text"), [
    (http_error(401, {"success": False, "errors": [{"code": 1000, "message": "Invalid API Token"}]}),
     "invalid or revoked"),
    (ok({"id": "x", "status": "disabled"}), "is disabled"),
])
def test_verify_refusals(answer, text):
    cf, _fake, _sleeps = client([answer])
    with pytest.raises(CloudflareError, match=text):
        cf.verify_token()


def test_zone_not_visible():
    cf, _fake, _sleeps = client([ok([], {"page": 1, "per_page": 50, "total_pages": 0})])
    with pytest.raises(CloudflareError, match="Zone Read"):
        cf.zone_by_name("example.org")
