# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: HomeCluster developers
# ruff: noqa: PLR0911, PLR0917 - API handlers mirror PVE's branching; random only fakes ids
"""HTTPS front of the simulator: authentication, CSRF, PVE's answer format, call counts, admin API."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import socket
import ssl
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pvesim_api as api
import pvesim_schema as schema
from pvesim_model import ApiError, Cluster, param_error

TICKET_LIFETIME = 7200
READ_METHODS = ("GET", "HEAD")


class PowerHooks:
    """Tell whoever plays the machine (the Talos simulator) that a VM was powered on or off.

    With a URL, POST {"address", "name", "state"} to it. Without one, and with `port_stub`,
    listen on the VM's address and port (the Talos API port) while it runs, so a
    reachability wait sees the node come up.
    """

    def __init__(self, url=None, port_stub=None):
        self.url = url
        self.port_stub = port_stub
        self.sockets = {}
        self.log = []

    def __call__(self, name, address, state):
        event = {"address": address, "name": name, "state": state}
        if self.url:
            threading.Thread(target=self._post, args=(event,), daemon=True).start()
        elif self.port_stub and address:
            self._stub(address, state)
        self.log.append(event | {"time": time.time()})

    def _post(self, event):
        req = urllib.request.Request(self.url, data=json.dumps(event).encode(), method="POST",  # noqa: S310
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 - the lab config names this URL
                event["hook_status"] = resp.status
        except OSError as e:
            event["hook_error"] = str(e)

    def _stub(self, address, state):
        old = self.sockets.pop(address, None)
        if old:
            old.close()
        if state == "on":
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((address, int(self.port_stub)))
                s.listen(16)
                self.sockets[address] = s
            except OSError:
                s.close()


class SimServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, cluster, secret=None):
        super().__init__(addr, Handler)
        self.cluster = cluster
        self.secret = secret or secrets.token_bytes(32)
        self.calls = Counter()
        self.calls_lock = threading.Lock()
        self.started = time.time()

    # tickets: PVE:<user>:<HEXTIME>::<signature>, CSRF: <HEXTIME>:<signature>
    def make_ticket(self, user):
        ts = f"{int(time.time()):08X}"
        sig = base64.b64encode(hmac.new(self.secret, f"PVE:{user}:{ts}".encode(), hashlib.sha256).digest()).decode()
        return f"PVE:{user}:{ts}::{sig}"

    def check_ticket(self, ticket):
        try:
            prefix, user, ts, _, sig = ticket.split(":", 4)
        except ValueError:
            return None
        want = base64.b64encode(hmac.new(self.secret, f"PVE:{user}:{ts}".encode(), hashlib.sha256).digest()).decode()
        if prefix != "PVE" or not hmac.compare_digest(want, sig) or time.time() - int(ts, 16) > TICKET_LIFETIME:
            return None
        return user

    def make_csrf(self, user):
        ts = f"{int(time.time()):08X}"
        sig = base64.b64encode(hmac.new(self.secret, f"{ts}:{user}".encode(), hashlib.sha256).digest()).decode()
        return f"{ts}:{sig.rstrip('=')}"

    def check_csrf(self, user, token):
        try:
            ts, sig = token.split(":", 1)
        except (AttributeError, ValueError):
            return False
        want = base64.b64encode(hmac.new(self.secret, f"{ts}:{user}".encode(), hashlib.sha256).digest()).decode()
        return hmac.compare_digest(want.rstrip("="), sig)

    def count(self, key):
        with self.calls_lock:
            self.calls[key] += 1

    def stats(self):
        with self.calls_lock:
            calls = dict(sorted(self.calls.items()))
        api_calls = {k: v for k, v in calls.items() if " /api2/json" in k}
        writes = {k: v for k, v in api_calls.items()
                  if k.split(" ", 1)[0] not in READ_METHODS and not k.endswith("/access/ticket")}
        return {"calls": api_calls, "total": sum(api_calls.values()), "writes": sum(writes.values()),
                "write_calls": writes, "tasks": len(self.cluster.tasks),
                "max_concurrent_tasks": self.cluster.max_running_tasks,
                "hooks": self.cluster.hooks.log if self.cluster.hooks else [], "uptime": time.time() - self.started}


class Handler(BaseHTTPRequestHandler):
    server_version = "pve-api-daemon/3.0"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        if getattr(self.server.cluster, "verbose", False):
            super().log_message(fmt, *args)

    def _params(self):
        url = urllib.parse.urlsplit(self.path)
        params = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if body:
            ctype = self.headers.get("Content-Type", "")
            if "json" in ctype:
                params.update({k: v for k, v in json.loads(body).items()})
            else:
                params.update({k: v[-1] for k, v in urllib.parse.parse_qs(body.decode(),
                                                                           keep_blank_values=True).items()})
        return url.path, params

    def _send(self, status, payload, reason=None):
        body = json.dumps(payload).encode()
        self.send_response(status, reason)
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=0")
        self.send_header("Pragma", "no-cache")
        self.end_headers()
        self.wfile.write(body)

    def _error(self, err):
        payload = {"data": None, "message": err.message + "\n"}
        if err.errors:
            payload["errors"] = err.errors
        self._send(err.status, payload, err.message.replace("\n", " "))

    def _auth(self, method):
        cl = self.server.cluster
        header = self.headers.get("Authorization", "")
        if header.startswith("PVEAPIToken="):
            value = header[len("PVEAPIToken="):]
            tokenid, sep, secret = value.partition("=")
            if not sep or "!" not in tokenid:
                raise ApiError(401, "invalid token value!")
            return cl.authenticate_token(tokenid.strip(), secret.strip())
        cookies = {}
        for part in self.headers.get("Cookie", "").split(";"):
            if "=" in part:
                k, v = part.strip().split("=", 1)
                cookies[k] = urllib.parse.unquote(v)
        ticket = cookies.get("PVEAuthCookie")
        if not ticket:
            raise ApiError(401, "No ticket")
        user = self.server.check_ticket(ticket)
        if not user:
            raise ApiError(401, "invalid ticket")
        if method not in READ_METHODS and not self.server.check_csrf(user, self.headers.get("CSRFPreventionToken")):
            raise ApiError(401, "Permission denied - invalid csrf token")
        return user

    def _handle(self, method):
        path, params = self._params()
        if path.startswith("/_sim/"):
            return self._admin(method, path, params)
        if not path.startswith("/api2/json/"):
            self.server.count(f"{method} {path}")
            return self._error(ApiError(501, f"Method '{method} {path}' not implemented"))
        sub = "/" + path[len("/api2/json/"):].strip("/")
        cl = self.server.cluster
        try:
            if sub == "/access/ticket" and method == "POST":
                self.server.count("POST /api2/json/access/ticket")
                user = cl.authenticate_password(params.get("username", ""), params.get("password", ""))
                return self._send(200, {"data": {"username": user, "ticket": self.server.make_ticket(user),
                                                 "CSRFPreventionToken": self.server.make_csrf(user),
                                                 "cap": {"vms": {}, "storage": {}, "nodes": {}, "access": {},
                                                         "dc": {}, "sdn": {}}, "clustername": "homelab"}})
            try:
                template, handler, args = api.match(method, sub)
            except ApiError:
                self.server.count(f"{method} /api2/json{sub}")
                raise
            self.server.count(f"{method} /api2/json{template.replace('{action}', args.get('action', ''))}")
            fault = cl.take_fault("error", method=method, path=sub)
            if fault:
                time.sleep(float(fault.get("delay", 0)))
                if fault.get("status"):
                    raise ApiError(int(fault["status"]), fault.get("message", "simulated failure"))
            who = self._auth(method)
            errors = schema.errors_for(method, template, params, args)
            if errors:
                raise param_error(errors)
            lock_fault = cl.take_fault("lock", method=method, path=sub)
            if lock_fault:
                raise ApiError(500, f"VM is locked ({lock_fault.get('lock', 'backup')})")
            data = handler(cl, who, params, **args)
            self._send(200, {"data": data})
        except ApiError as e:
            self._error(e)
        except Exception as e:
            self._error(ApiError(500, f"internal error: {e}"))

    def _admin(self, method, path, params):
        srv = self.server
        cl = srv.cluster
        if path == "/_sim/stats" and method == "GET":
            return self._send(200, srv.stats())
        if path == "/_sim/stats/reset" and method == "POST":
            with srv.calls_lock:
                srv.calls.clear()
            cl.max_running_tasks = cl.running_tasks
            if cl.hooks:
                cl.hooks.log.clear()
            return self._send(200, {"reset": True})
        if path == "/_sim/faults":
            if method == "GET":
                return self._send(200, {"faults": cl.faults})
            if method == "POST":
                if params.get("type") == "backup":
                    try:
                        cl.hold_lock(params["vmid"], params.get("lock", "backup"), params.get("seconds"),
                                     params.get("failures"))
                    except ApiError as e:
                        return self._send(400, {"error": e.message})
                    return self._send(200, {"faults": cl.faults, "locked": params["vmid"]})
                with cl.lock:
                    cl.faults.append(params)
                return self._send(200, {"faults": cl.faults})
            if method == "DELETE":
                with cl.lock:
                    cl.faults.clear()
                return self._send(200, {"faults": []})
        if path == "/_sim/state" and method == "GET":
            with cl.lock:
                vms = {str(k): {"node": v["node"], "status": v["status"], "config": v["config"],
                                "pending": v.get("pending", {})} for k, v in cl.vms.items()}
                content = {"|".join(k): list(v) for k, v in cl.content.items()}
            running = [t.upid for t in cl.tasks.values() if t.status == "running"]
            return self._send(200, {"vms": vms, "content": content, "running_tasks": running})
        if path == "/_sim/pvestatd" and method == "POST":
            cl.refresh_pvestatd()
            return self._send(200, {"refreshed": True})
        if path == "/_sim/reset" and method == "POST":
            with cl.lock:
                cl.vms.clear()
                cl.content.clear()
                cl.faults.clear()
            cl.save()
            return self._send(200, {"reset": True})
        return self._send(404, {"error": f"no admin endpoint {method} {path}"})

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_PUT(self):
        self._handle("PUT")

    def do_DELETE(self):
        self._handle("DELETE")


def make_server(config, address, port, certfile, keyfile, state_file=None):
    hooks = PowerHooks(config.get("power_hook_url"), config.get("talos_port_stub"))
    cluster = Cluster(config, state_file=state_file, hooks=hooks)
    srv = SimServer((address, port), cluster)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(certfile, keyfile)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
    return srv
