# Copyright: HomeCluster developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A small client of the Cloudflare API v4 (private to this collection).

The v4 envelope (``success``, ``errors[{code, message}]``, ``result``, ``result_info``) is
unwrapped here; a refusal becomes one CloudflareError carrying the HTTP status, the error objects
and, where the token lacks a permission, the name of that permission (the API itself answers an
under-scoped token with a bare ``10000 Authentication error`` or ``9109 Unauthorized``, so the
caller says which permission each call needs). 429 and 5xx answers are retried, honouring
``Retry-After``.
"""

from __future__ import annotations

import json
import time

from ansible.module_utils.six.moves.urllib.parse import urlencode
from ansible.module_utils.urls import open_url

try:
    from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
except ImportError:  # pragma: no cover
    from urllib.error import HTTPError, URLError

DEFAULT_API_URL = "https://api.cloudflare.com/client/v4"
AUTH_CODES = {9109, 10000}
RETRY_STATUSES = {429, 500, 502, 503, 504}


def cloudflare_argument_spec():
    """Connection options shared by the Cloudflare modules."""
    return {
        "api_token": {"type": "str", "required": True, "no_log": True},
        "api_url": {"type": "str", "default": DEFAULT_API_URL},
        "validate_certs": {"type": "bool", "default": True},
        "ca_path": {"type": "path"},
        "timeout": {"type": "int", "default": 30},
        "retries": {"type": "int", "default": 5},
    }


class CloudflareError(Exception):
    def __init__(self, message, status=None, errors=None, permission=None):
        super().__init__(message)
        self.status = status
        self.errors = errors or []
        self.permission = permission

    @property
    def codes(self):
        return {e.get("code") for e in self.errors if isinstance(e, dict)}

    @property
    def unauthorized(self):
        return self.status in (401, 403) and bool(self.codes & AUTH_CODES | self.codes & {1000})


def _describe(errors):
    return "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors if isinstance(e, dict)) or "no detail"


class CloudflareClient:
    def __init__(self, api_token, api_url=DEFAULT_API_URL, *, validate_certs=True, ca_path=None, timeout=30,
                 retries=5, opener=None, sleep=time.sleep):
        self.api_url = api_url.rstrip("/")
        self.token = api_token
        self.validate_certs = validate_certs
        self.ca_path = ca_path
        self.timeout = timeout
        self.retries = retries
        self.opener = opener or open_url
        self.sleep = sleep
        self.calls = []

    def request(self, method, path, *, params=None, body=None, permission=None, action=None):
        """The ``result`` and ``result_info`` of one call, or CloudflareError."""
        url = self.api_url + path
        if params:
            url += "?" + urlencode(sorted(params.items()))
        data = json.dumps(body) if body is not None else None
        headers = {"Authorization": "Bearer " + self.token, "Content-Type": "application/json",
                   "Accept": "application/json"}
        attempt = 0
        while True:
            attempt += 1
            self.calls.append((method, path))
            status, payload, retry_after = self._once(method, url, data, headers)
            if status in RETRY_STATUSES and attempt <= self.retries:
                delay = retry_after if retry_after is not None else min(2 ** (attempt - 1), 8)
                self.sleep(min(delay, 60))
                continue
            break
        if isinstance(payload, dict) and payload.get("success") is True and status < 400:
            return payload.get("result"), payload.get("result_info")
        errors = payload.get("errors") if isinstance(payload, dict) else None
        errors = errors or [{"code": None, "message": f"HTTP {status}"}]
        what = f"{method} {path}" + (f" ({action})" if action else "")
        err = CloudflareError(f"Cloudflare API refused {what}: HTTP {status}, {_describe(errors)}", status, errors)
        if permission and err.unauthorized:
            err.permission = permission
            err.args = (f"the Cloudflare API token lacks the permission '{permission}' needed to {action or what} "
                        f"(HTTP {status}, {_describe(errors)}); add '{permission}' to the token's policies (or "
                        f"scope it to this account/zone) and set the new token in the inventory",)
        raise err

    def _once(self, method, url, data, headers):
        try:
            resp = self.opener(url, method=method, data=data, headers=headers, validate_certs=self.validate_certs,
                               ca_path=self.ca_path, timeout=self.timeout, follow_redirects="none")
            status = resp.getcode() if hasattr(resp, "getcode") else resp.status
            raw = resp.read()
            retry_after = None
        except HTTPError as exc:
            status = exc.code
            raw = exc.read() if hasattr(exc, "read") else b""
            retry_after = exc.headers.get("Retry-After") if exc.headers else None
        except URLError as exc:
            raise CloudflareError(f"cannot reach the Cloudflare API at {self.api_url}: {exc.reason}") from exc
        try:
            payload = json.loads(raw or b"{}")
        except ValueError:
            payload = {"errors": [{"code": None, "message": f"HTTP {status}, not JSON"}]}
        try:
            retry_after = int(retry_after) if retry_after is not None else None
        except ValueError:
            retry_after = None
        return status, payload, retry_after

    def list_all(self, path, *, params=None, per_page=100, permission=None, action=None):
        """Every item of a paged list (page by page until the last page)."""
        items = []
        page = 1
        while True:
            query = dict(params or {}, page=page, per_page=per_page)
            result, info = self.request("GET", path, params=query, permission=permission, action=action)
            items.extend(result or [])
            total_pages = (info or {}).get("total_pages")
            if not result or (total_pages is not None and page >= total_pages) or len(result) < per_page:
                return items
            page += 1

    # ----- the calls the modules use, each with the permission it needs
    def verify_token(self):
        try:
            result = self.request("GET", "/user/tokens/verify")[0]
        except CloudflareError as exc:
            if exc.status in (400, 401, 403):
                raise CloudflareError(f"the Cloudflare API token is invalid or revoked ({_describe(exc.errors)}); "
                                      "create a new token and set it in the inventory", exc.status,
                                      exc.errors) from None
            raise
        status = (result or {}).get("status")
        if status != "active":
            raise CloudflareError(f"the Cloudflare API token is {status}, not active; create or re-enable a token "
                                  "and set it in the inventory")
        return result

    def zone_by_name(self, name):
        zones = self.list_all("/zones", params={"name": name}, per_page=50, permission="Zone Read",
                              action=f"find the zone {name}")
        for zone in zones:
            if zone.get("name") == name:
                return zone
        raise CloudflareError(f"the zone {name} is not visible to the Cloudflare API token: it is not in the "
                              "account, or the token lacks 'Zone Read' (and 'DNS Write') on it", 403,
                              permission="Zone Read")

    def dns_records(self, zone_id, name, action, permission="DNS Read"):
        return self.list_all(f"/zones/{zone_id}/dns_records", params={"name": name}, per_page=100,
                             permission=permission, action=action)

    def create_dns_record(self, zone_id, record, action):
        return self.request("POST", f"/zones/{zone_id}/dns_records", body=record, permission="DNS Write",
                            action=action)[0]

    def update_dns_record(self, zone_id, record_id, record, action):
        return self.request("PUT", f"/zones/{zone_id}/dns_records/{record_id}", body=record,
                            permission="DNS Write", action=action)[0]

    def tunnels(self, account_id, name, permission="Cloudflare Tunnel Read"):
        return self.list_all(f"/accounts/{account_id}/cfd_tunnel", params={"name": name, "is_deleted": "false"},
                             per_page=50, permission=permission, action=f"find the tunnel {name}")

    def create_tunnel(self, account_id, name, secret_b64):
        return self.request("POST", f"/accounts/{account_id}/cfd_tunnel",
                            body={"name": name, "config_src": "cloudflare", "tunnel_secret": secret_b64},
                            permission="Cloudflare Tunnel Write", action=f"create the tunnel {name}")[0]

    def tunnel_token(self, account_id, tunnel_id):
        return self.request("GET", f"/accounts/{account_id}/cfd_tunnel/{tunnel_id}/token",
                            permission="Cloudflare Tunnel Write", action="read the tunnel's token")[0]

    def tunnel_config(self, account_id, tunnel_id):
        return self.request("GET", f"/accounts/{account_id}/cfd_tunnel/{tunnel_id}/configurations",
                            permission="Cloudflare Tunnel Read", action="read the tunnel's ingress rules")[0]

    def put_tunnel_config(self, account_id, tunnel_id, config):
        return self.request("PUT", f"/accounts/{account_id}/cfd_tunnel/{tunnel_id}/configurations",
                            body={"config": config}, permission="Cloudflare Tunnel Write",
                            action="set the tunnel's ingress rules")[0]
