# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: HomeCluster developers
# ruff: noqa: PLR0911 - one dispatcher for the API's routes; http.server's do_GET naming
"""HTTP(S) front of the Cloudflare API v4 simulator.

API under /client/v4 (the v4 envelope {success, errors, messages, result, result_info}), the
simulator's own control under /_sim (no token: loopback only): stats, tokens (add, revoke),
faults (injected 5xx), rate limit, state.
"""

from __future__ import annotations

import json
import re
import ssl
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cfsim_model import (
    DNS_READ,
    DNS_WRITE,
    TUNNEL_READ,
    TUNNEL_WRITE,
    ZONE_READ,
    ApiError,
    State,
)

PREFIX = "/client/v4"
ROUTES = []


def route(method, template):
    regex = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$")

    def deco(fn):
        ROUTES.append((method, regex, fn))
        return fn
    return deco


def paginate(items, query, *, default, maximum):
    try:
        page = int(query.get("page", 1))
        per_page = int(query.get("per_page", default))
    except ValueError:
        raise ApiError(400, 1004, "page and per_page must be integers") from None
    if page < 1:
        raise ApiError(400, 1004, "page must be at least 1")
    if not 5 <= per_page <= maximum:
        raise ApiError(400, 1004, f"per_page must be between 5 and {maximum}")
    total = len(items)
    chunk = items[(page - 1) * per_page:page * per_page]
    info = {"page": page, "per_page": per_page, "count": len(chunk), "total_count": total,
            "total_pages": (total + per_page - 1) // per_page}
    return chunk, info


# ---------------------------------------------------------------- user / tokens
@route("GET", "/user/tokens/verify")
def verify(state, _token, _query, _body, headers):
    result = state.verify(headers.get("Authorization"))
    return result, None, [{"code": 10000, "message": "This API Token is valid and active", "type": None}]


# ---------------------------------------------------------------- zones
@route("GET", "/zones")
def list_zones(state, token, query, _body, _headers):
    zones = state.visible_zones(token)
    if "name" in query:
        zones = [z for z in zones if z["name"] == query["name"].lower()]
    if "status" in query:
        zones = [z for z in zones if z["status"] == query["status"]]
    account = query.get("account.id")
    if account:
        zones = [z for z in zones if z["account"]["id"] == account]
    zones.sort(key=lambda z: z["name"])
    return paginate(zones, query, default=20, maximum=50)


@route("GET", "/zones/{zone_id}")
def get_zone(state, token, _query, _body, _headers, zone_id):
    return state.zone(token, zone_id, ZONE_READ), None


# ---------------------------------------------------------------- DNS records
def _match(rec, query):
    for key in ("name", "name.exact"):
        if key in query and rec["name"] != query[key].rstrip(".").lower():
            return False
    if "name.contains" in query and query["name.contains"].lower() not in rec["name"]:
        return False
    if "type" in query and rec["type"] != query["type"]:
        return False
    for key in ("content", "content.exact"):
        if key in query and rec.get("content") != query[key]:
            return False
    if "proxied" in query and rec["proxied"] != (query["proxied"].lower() == "true"):
        return False
    if "comment" in query and rec.get("comment") != query["comment"]:
        return False
    return True


@route("GET", "/zones/{zone_id}/dns_records")
def list_records(state, token, query, _body, _headers, zone_id):
    zone = state.zone(token, zone_id, DNS_READ)
    with state.lock:
        recs = [dict(r) for r in state.records[zone["id"]].values() if _match(r, query)]
    order = query.get("order", "type")
    if order not in ("type", "name", "content", "ttl", "proxied"):
        raise ApiError(400, 1004, "order must be one of type, name, content, ttl, proxied")
    recs.sort(key=lambda r: (str(r.get(order)), r["name"], r["id"]), reverse=query.get("direction") == "desc")
    return paginate(recs, query, default=100, maximum=5000)


@route("POST", "/zones/{zone_id}/dns_records")
def create_record(state, token, _query, body, _headers, zone_id):
    return state.create_record(state.zone(token, zone_id, DNS_WRITE), body), None


@route("POST", "/zones/{zone_id}/dns_records/batch")
def batch_records(state, token, _query, body, _headers, zone_id):
    return state.batch(state.zone(token, zone_id, DNS_WRITE), body), None


@route("GET", "/zones/{zone_id}/dns_records/{record_id}")
def get_record(state, token, _query, _body, _headers, zone_id, record_id):
    return dict(state.record(state.zone(token, zone_id, DNS_READ), record_id)), None


@route("PUT", "/zones/{zone_id}/dns_records/{record_id}")
def put_record(state, token, _query, body, _headers, zone_id, record_id):
    return state.update_record(state.zone(token, zone_id, DNS_WRITE), record_id, body, patch=False), None


@route("PATCH", "/zones/{zone_id}/dns_records/{record_id}")
def patch_record(state, token, _query, body, _headers, zone_id, record_id):
    return state.update_record(state.zone(token, zone_id, DNS_WRITE), record_id, body, patch=True), None


@route("DELETE", "/zones/{zone_id}/dns_records/{record_id}")
def delete_record(state, token, _query, _body, _headers, zone_id, record_id):
    return state.delete_record(state.zone(token, zone_id, DNS_WRITE), record_id), None


# ---------------------------------------------------------------- Cloudflare Tunnels
@route("GET", "/accounts/{account_id}/cfd_tunnel")
def list_tunnels(state, token, query, _body, _headers, account_id):
    state.check_account(token, account_id, TUNNEL_READ)
    return paginate(state.list_tunnels(query), query, default=20, maximum=1000)


@route("POST", "/accounts/{account_id}/cfd_tunnel")
def create_tunnel(state, token, _query, body, _headers, account_id):
    state.check_account(token, account_id, TUNNEL_WRITE)
    return state.create_tunnel(body), None


@route("GET", "/accounts/{account_id}/cfd_tunnel/{tunnel_id}")
def get_tunnel(state, token, _query, _body, _headers, account_id, tunnel_id):
    state.check_account(token, account_id, TUNNEL_READ)
    return state.get_tunnel(tunnel_id), None


@route("DELETE", "/accounts/{account_id}/cfd_tunnel/{tunnel_id}")
def delete_tunnel(state, token, _query, _body, _headers, account_id, tunnel_id):
    state.check_account(token, account_id, TUNNEL_WRITE)
    return state.delete_tunnel(tunnel_id), None


@route("GET", "/accounts/{account_id}/cfd_tunnel/{tunnel_id}/token")
def tunnel_token(state, token, _query, _body, _headers, account_id, tunnel_id):
    # The token lets anyone run the tunnel: the reference accepts only the write permission.
    state.check_account(token, account_id, TUNNEL_WRITE)
    return state.tunnel_token(tunnel_id), None


@route("GET", "/accounts/{account_id}/cfd_tunnel/{tunnel_id}/configurations")
def get_config(state, token, _query, _body, _headers, account_id, tunnel_id):
    state.check_account(token, account_id, TUNNEL_READ)
    return state.get_config(tunnel_id), None


@route("PUT", "/accounts/{account_id}/cfd_tunnel/{tunnel_id}/configurations")
def put_config(state, token, _query, body, _headers, account_id, tunnel_id):
    state.check_account(token, account_id, TUNNEL_WRITE)
    return state.put_config(tunnel_id, body), None


class Sim:
    """State plus the simulator's behaviour knobs: rate limit, injected faults, request log."""

    def __init__(self, config, state_file=None):
        self.state = State(config)
        self.state_file = state_file
        self.rate = dict(config.get("rate_limit") or {"requests": 1200, "window": 300})
        self.hits = []
        self.faults = []  # {"status", "count", "method", "path"}
        self.requests = []
        self.lock = threading.Lock()
        if state_file:
            try:
                with open(state_file, encoding="utf-8") as f:
                    self.state.load(json.load(f))
            except FileNotFoundError:
                pass

    def save(self):
        if self.state_file:
            with open(self.state_file + ".tmp", "w", encoding="utf-8") as f:
                json.dump(self.state.dump(), f)
            import os  # noqa: PLC0415

            os.replace(self.state_file + ".tmp", self.state_file)

    def throttle(self):
        with self.lock:
            stamp = time.monotonic()
            window = float(self.rate["window"])
            self.hits = [h for h in self.hits if h > stamp - window]
            if len(self.hits) >= int(self.rate["requests"]):
                retry = max(1, int(self.hits[0] + window - stamp + 0.999))
                raise ApiError(429, 971, "Please wait and consider throttling your request speed",
                               headers={"Retry-After": str(retry)})
            self.hits.append(stamp)

    def fault(self, method, path):
        with self.lock:
            for fault in self.faults:
                if fault["count"] <= 0:
                    continue
                if fault.get("method") and fault["method"] != method:
                    continue
                if fault.get("path") and not re.search(fault["path"], path):
                    continue
                fault["count"] -= 1
                raise ApiError(int(fault.get("status", 503)), 10001,
                               fault.get("message", "Service temporarily unavailable; please retry."))


class Handler(BaseHTTPRequestHandler):
    server_version = "cloudflare"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        if getattr(self.server, "verbose", False):
            super().log_message(fmt, *args)

    def _send(self, status, payload, headers=None):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            raise ApiError(400, 9207, "Request body is invalid.") from None
        if not isinstance(body, dict):
            raise ApiError(400, 9207, "Request body is invalid.")
        return body

    def _dispatch(self, method):
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        sim = self.server.sim
        if url.path.startswith("/_sim/"):
            return self._control(method, url.path[len("/_sim/"):], query)
        with sim.lock:
            sim.requests.append({"method": method, "path": url.path, "query": query})
        try:
            if not url.path.startswith(PREFIX + "/"):
                raise ApiError(400, 7000, "No route for that URI")
            path = url.path[len(PREFIX):].rstrip("/")
            body = self._body() if method in ("POST", "PUT", "PATCH") else {}
            sim.throttle()
            sim.fault(method, path)
            allowed = False
            for r_method, regex, fn in ROUTES:
                match = regex.match(path)
                if not match:
                    continue
                allowed = True
                if r_method != method:
                    continue
                token = None if fn is verify else sim.state.authenticate(self.headers.get("Authorization"))
                out = fn(sim.state, token, query, body, self.headers, **match.groupdict())
                result, info = out[0], out[1]
                messages = out[2] if len(out) > 2 else []
                payload = {"success": True, "errors": [], "messages": messages, "result": result}
                if info is not None:
                    payload["result_info"] = info
                if method != "GET":
                    sim.save()
                return self._send(200, payload)
            if allowed:
                raise ApiError(405, 7001, "Method not allowed for this endpoint")
            raise ApiError(400, 7000, "No route for that URI")
        except ApiError as exc:
            return self._send(exc.status, {"success": False, "errors": exc.errors, "messages": [],
                                           "result": None}, exc.headers)

    def _control(self, method, path, query):
        sim = self.server.sim
        state = sim.state
        try:
            body = self._body() if method in ("POST", "PUT") else {}
        except ApiError as exc:
            return self._send(400, {"error": exc.errors[0]["message"]})
        if path == "stats" and method == "GET":
            with sim.lock:
                return self._send(200, {"requests": len(sim.requests), "account_id": state.account["id"]})
        if path == "requests" and method == "GET":
            with sim.lock:
                return self._send(200, sim.requests[-int(query.get("last", 200)):])
        if path == "state" and method == "GET":
            dump = state.dump()
            dump["tokens"] = [{k: v for k, v in t.items() if k != "value"} for t in dump["tokens"]]
            dump["tunnels"] = {i: {k: v for k, v in t.items() if k != "secret"} for i, t in dump["tunnels"].items()}
            return self._send(200, dump)
        if path == "tokens" and method == "POST":
            try:
                tok = state.add_token(body["name"], body.get("value"), body.get("permissions", []),
                                      zones=body.get("zones"))
            except (KeyError, ValueError) as exc:
                return self._send(400, {"error": str(exc)})
            sim.save()
            return self._send(200, {"name": tok.name, "value": tok.value, "id": tok.id})
        match = re.match(r"^tokens/([^/]+)/revoke$", path)
        if match and method == "POST":
            try:
                state.revoke(match.group(1))
            except KeyError:
                return self._send(404, {"error": f"no token named {match.group(1)}"})
            sim.save()
            return self._send(200, {"revoked": match.group(1)})
        if path == "zones" and method == "POST":
            zone = state.add_zone(body["name"])
            sim.save()
            return self._send(200, zone)
        if path == "faults" and method == "POST":
            with sim.lock:
                sim.faults.append({"status": int(body.get("status", 503)), "count": int(body.get("count", 1)),
                                   "method": body.get("method"), "path": body.get("path")})
            return self._send(200, {"faults": sim.faults})
        if path == "faults" and method == "DELETE":
            with sim.lock:
                sim.faults.clear()
            return self._send(200, {"faults": []})
        if path == "rate_limit" and method == "PUT":
            with sim.lock:
                sim.rate = {"requests": int(body["requests"]), "window": float(body["window"])}
                sim.hits.clear()
            return self._send(200, sim.rate)
        return self._send(404, {"error": f"no control endpoint {method} /_sim/{path}"})

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_PATCH(self):
        self._dispatch("PATCH")

    def do_DELETE(self):
        self._dispatch("DELETE")


def make_server(config, address, port, certfile=None, keyfile=None, *, state_file=None):
    srv = ThreadingHTTPServer((address, port), Handler)
    srv.daemon_threads = True
    srv.sim = Sim(config, state_file=state_file)
    if certfile:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(certfile, keyfile)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    return srv
