# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: HomeCluster developers
# ruff: noqa: PLR0911 - one dispatcher for the API's routes; http.server's do_GET naming
"""The Harbor API v2.0 simulator: projects and registries (proxy-cache endpoints), as Harbor 2.15
serves them (api/v2.0/swagger.yaml of goharbor/harbor).

Strict where Harbor is strict: HTTP basic authentication (401 UNAUTHORIZED), registries only for a
system administrator (403 FORBIDDEN), project names as Harbor's regular expression, duplicate names
409 CONFLICT, `HEAD /projects?project_name=` 200/404, pagination with `page`/`page_size` (at most
100) and the `X-Total-Count` and `Link` headers, the error envelope `{"errors": [{code, message}]}`,
metadata values as strings ("true"/"false"), a proxy-cache project's `registry_id` only at creation.
Stricter than Harbor in one way, on purpose: a request body field the swagger does not define is
refused with 400 (Harbor's server ignores it, which hides a client's misspelt field).

The simulator's own control under /_sim (no auth, loopback only): stats (calls per endpoint), state.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import re
import ssl
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PREFIX = "/api/v2.0"
PROJECT_NAME = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
PROJECT_REQ = {"project_name", "public", "metadata", "cve_allowlist", "storage_limit", "registry_id"}
PROJECT_METADATA = {
    "public",
    "enable_content_trust",
    "enable_content_trust_cosign",
    "prevent_vul",
    "severity",
    "auto_scan",
    "auto_sbom_generation",
    "reuse_sys_cve_allowlist",
    "retention_id",
    "proxy_speed_kb",
}
BOOL_METADATA = {
    "public",
    "enable_content_trust",
    "enable_content_trust_cosign",
    "prevent_vul",
    "auto_scan",
    "auto_sbom_generation",
    "reuse_sys_cve_allowlist",
}
SEVERITIES = {"none", "low", "medium", "high", "critical"}
REGISTRY = {"name", "type", "url", "credential", "insecure", "description"}
REGISTRY_CREDENTIAL = {"type", "access_key", "access_secret"}
REGISTRY_UPDATE = {"name", "description", "url", "credential_type", "access_key", "access_secret", "insecure"}
# Adapter types of Harbor 2.15 (GET /replication/adapters); the ones a proxy-cache project may use.
REGISTRY_TYPES = {
    "docker-hub",
    "docker-registry",
    "harbor",
    "aws-ecr",
    "azure-acr",
    "ali-acr",
    "google-gcr",
    "github-ghcr",
    "gitlab",
    "quay",
    "jfrog-artifactory",
    "huawei-SWR",
    "tencent-tcr",
    "volcengine-cr",
    "dtr",
    "helm-hub",
}
PROXY_TYPES = {
    "docker-hub",
    "docker-registry",
    "harbor",
    "aws-ecr",
    "azure-acr",
    "google-gcr",
    "github-ghcr",
    "quay",
    "jfrog-artifactory",
}
ROUTES = []


class ApiError(Exception):
    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def route(method, template):
    regex = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$")

    def deco(fn):
        ROUTES.append((method, regex, fn))
        return fn

    return deco


def now():
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Sim:
    def __init__(self, config, state_file=None):
        self.config = config
        self.users = {u["username"]: u for u in config.get("users", [])}
        self.state_file = state_file
        self.lock = threading.Lock()
        self.stats = {}
        self.state = {"projects": {}, "registries": {}, "next_project": 2, "next_registry": 1}
        # Harbor creates the public project "library" (id 1) at installation.
        self.state["projects"]["1"] = self._project(1, "library", {"public": "true"}, None, "admin")
        if state_file and os.path.exists(state_file):
            with open(state_file, encoding="utf-8") as f:
                self.state = json.load(f)

    def save(self):
        if self.state_file:
            with open(self.state_file, "w", encoding="utf-8") as f:
                json.dump(self.state, f, indent=1)

    @staticmethod
    def _project(pid, name, metadata, registry_id, owner):
        t = now()
        return {
            "project_id": pid,
            "owner_id": 1,
            "name": name,
            "registry_id": registry_id,
            "creation_time": t,
            "update_time": t,
            "deleted": False,
            "owner_name": owner,
            "togglable": True,
            "current_user_role_id": 1,
            "current_user_role_ids": [1],
            "repo_count": 0,
            "metadata": metadata,
            "cve_allowlist": {"id": pid, "project_id": pid, "items": [], "creation_time": t, "update_time": t},
        }

    def auth(self, header):
        if not header or not header.startswith("Basic "):
            raise ApiError(401, "UNAUTHORIZED", "unauthorized")
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise ApiError(401, "UNAUTHORIZED", "unauthorized") from None
        u = self.users.get(user)
        if not u or u["password"] != password:
            raise ApiError(401, "UNAUTHORIZED", "unauthorized")
        return u


def strict_fields(body, allowed, what):
    if not isinstance(body, dict):
        raise ApiError(400, "BAD_REQUEST", f"{what}: the body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiError(
            400,
            "BAD_REQUEST",
            f"{what}: unknown field(s) {', '.join(unknown)} (the swagger defines {', '.join(sorted(allowed))})",
        )


def paginate(items, query):
    try:
        page = int(query.get("page", 1))
        size = int(query.get("page_size", 10))
    except ValueError:
        raise ApiError(400, "BAD_REQUEST", "page and page_size must be integers") from None
    if page < 1 or size < 1:
        raise ApiError(400, "BAD_REQUEST", "page and page_size must be positive")
    if size > 100:
        raise ApiError(400, "BAD_REQUEST", "page_size must be at most 100")
    total = len(items)
    return items[(page - 1) * size : page * size], total, page, size


def check_metadata(md):
    if not isinstance(md, dict):
        raise ApiError(400, "BAD_REQUEST", "metadata must be an object")
    strict_fields(md, PROJECT_METADATA, "ProjectMetadata")
    for k, v in md.items():
        if not isinstance(v, str):
            raise ApiError(400, "BAD_REQUEST", f"metadata.{k} must be a string, not {type(v).__name__}")
        if k in BOOL_METADATA and v not in ("true", "false"):
            raise ApiError(400, "BAD_REQUEST", f'metadata.{k} must be "true" or "false", not {v}')
        if k == "severity" and v not in SEVERITIES:
            raise ApiError(400, "BAD_REQUEST", f"metadata.severity must be one of {', '.join(sorted(SEVERITIES))}")


def find_project(sim, key, by_name):
    for p in sim.state["projects"].values():
        if (by_name and p["name"] == key) or (not by_name and str(p["project_id"]) == key):
            return p
    raise ApiError(404, "NOT_FOUND", f"project {key} not found")


# ---------------------------------------------------------------- projects
@route("HEAD", "/projects")
def head_projects(sim, _user, query, _body, _headers):
    name = query.get("project_name")
    if not name:
        raise ApiError(400, "BAD_REQUEST", "project_name is required")
    if any(p["name"] == name for p in sim.state["projects"].values()):
        return 200, None, {}
    raise ApiError(404, "NOT_FOUND", f"project {name} not found")


@route("GET", "/projects")
def list_projects(sim, _user, query, _body, _headers):
    items = sorted(sim.state["projects"].values(), key=lambda p: p["project_id"])
    if "name" in query:
        items = [p for p in items if query["name"] in p["name"]]
    chunk, total, page, size = paginate(items, query)
    return 200, chunk, {"X-Total-Count": str(total), "_page": (page, size, total, "/projects")}


@route("GET", "/projects/{key}")
def get_project(sim, _user, _query, _body, headers, key):
    by_name = headers.get("X-Is-Resource-Name", "").lower() == "true" or not key.isdigit()
    return 200, find_project(sim, urllib.parse.unquote(key), by_name), {}


@route("POST", "/projects")
def create_project(sim, user, _query, body, _headers):
    strict_fields(body, PROJECT_REQ, "ProjectReq")
    name = body.get("project_name")
    if not isinstance(name, str) or not name or len(name) > 255 or not PROJECT_NAME.match(name):
        raise ApiError(
            400, "BAD_REQUEST", f"project_name {name!r} must match {PROJECT_NAME.pattern} and be at most 255 characters"
        )
    if sim.config.get("project_creation_restriction") == "adminonly" and not user.get("sysadmin"):
        raise ApiError(403, "FORBIDDEN", "only system admin can create project")
    md = dict(body.get("metadata") or {})
    check_metadata(md)
    if "public" in body:
        if not isinstance(body["public"], bool):
            raise ApiError(400, "BAD_REQUEST", "public must be a boolean")
        md.setdefault("public", "true" if body["public"] else "false")
    md.setdefault("public", "false")
    reg = body.get("registry_id")
    if reg is not None:
        if not isinstance(reg, int) or isinstance(reg, bool):
            raise ApiError(400, "BAD_REQUEST", "registry_id must be an integer")
        r = sim.state["registries"].get(str(reg))
        if not r:
            raise ApiError(400, "BAD_REQUEST", f"registry {reg} not found")
        if r["type"] not in PROXY_TYPES:
            raise ApiError(400, "BAD_REQUEST", f"unsupported registry type {r['type']} for proxy cache")
    if "storage_limit" in body and (
        not isinstance(body["storage_limit"], int) or body["storage_limit"] < -1 or body["storage_limit"] == 0
    ):
        raise ApiError(400, "BAD_REQUEST", "storage_limit must be -1 (unlimited) or a positive number of bytes")
    if any(p["name"] == name for p in sim.state["projects"].values()):
        raise ApiError(409, "CONFLICT", f"The project named {name} already exists")
    pid = sim.state["next_project"]
    sim.state["next_project"] += 1
    sim.state["projects"][str(pid)] = Sim._project(pid, name, md, reg, user["username"])
    sim.save()
    return 201, None, {"Location": f"{PREFIX}/projects/{pid}"}


@route("PUT", "/projects/{key}")
def update_project(sim, _user, _query, body, headers, key):
    strict_fields(body, PROJECT_REQ, "ProjectReq")
    by_name = headers.get("X-Is-Resource-Name", "").lower() == "true"
    p = find_project(sim, urllib.parse.unquote(key), by_name)
    if "project_name" in body and body["project_name"] != p["name"]:
        raise ApiError(400, "BAD_REQUEST", "the project name cannot be changed")
    if "registry_id" in body and body["registry_id"] != p["registry_id"]:
        raise ApiError(400, "BAD_REQUEST", "the registry of a proxy-cache project cannot be changed")
    md = body.get("metadata") or {}
    check_metadata(md)
    p["metadata"].update(md)
    p["update_time"] = now()
    sim.save()
    return 200, None, {}


# ---------------------------------------------------------------- registries
def sysadmin(user):
    if not user.get("sysadmin"):
        raise ApiError(403, "FORBIDDEN", f"{user['username']} is not a system administrator")


def check_url(url):
    if not isinstance(url, str) or not re.match(r"^https?://[^\s/]+", url):
        raise ApiError(400, "BAD_REQUEST", f"url {url!r} must be an http(s) URL")


def public_registry(r):
    out = json.loads(json.dumps(r))
    cred = out.get("credential") or {}
    if cred.get("access_secret"):
        cred["access_secret"] = "*****"  # noqa: S105 - the mask Harbor returns, not a secret
    return out


@route("GET", "/registries")
def list_registries(sim, user, query, _body, _headers):
    sysadmin(user)
    items = sorted(sim.state["registries"].values(), key=lambda r: r["id"])
    q = query.get("q", "")
    if q:
        m = re.match(r"^name=(~?)(.+)$", q)
        if not m:
            raise ApiError(400, "BAD_REQUEST", f"unsupported query {q} (use q=name=NAME or q=name=~PART)")
        items = [r for r in items if (m.group(2) in r["name"] if m.group(1) else r["name"] == m.group(2))]
    chunk, total, page, size = paginate(items, query)
    return (
        200,
        [public_registry(r) for r in chunk],
        {"X-Total-Count": str(total), "_page": (page, size, total, "/registries")},
    )


@route("GET", "/registries/{rid}")
def get_registry(sim, user, _query, _body, _headers, rid):
    sysadmin(user)
    r = sim.state["registries"].get(rid)
    if not r:
        raise ApiError(404, "NOT_FOUND", f"registry {rid} not found")
    return 200, public_registry(r), {}


@route("POST", "/registries")
def create_registry(sim, user, _query, body, _headers):
    sysadmin(user)
    strict_fields(body, REGISTRY, "Registry")
    for k in ("name", "type", "url"):
        if not isinstance(body.get(k), str) or not body[k]:
            raise ApiError(400, "BAD_REQUEST", f"{k} is required")
    if body["type"] not in REGISTRY_TYPES:
        raise ApiError(400, "BAD_REQUEST", f"adapter for type {body['type']} is not registered")
    check_url(body["url"])
    cred = body.get("credential") or {}
    strict_fields(cred, REGISTRY_CREDENTIAL, "RegistryCredential")
    if cred and cred.get("type") not in ("basic", "oauth", "secret"):
        raise ApiError(400, "BAD_REQUEST", "credential.type must be basic, oauth or secret")
    if any(r["name"] == body["name"] for r in sim.state["registries"].values()):
        raise ApiError(409, "CONFLICT", f"the registry whose name is {body['name']} already exists")
    rid = sim.state["next_registry"]
    sim.state["next_registry"] += 1
    t = now()
    sim.state["registries"][str(rid)] = {
        "id": rid,
        "name": body["name"],
        "type": body["type"],
        "url": body["url"].rstrip("/"),
        "description": body.get("description", ""),
        "insecure": bool(body.get("insecure", False)),
        "credential": {
            "type": cred.get("type", "basic"),
            "access_key": cred.get("access_key", ""),
            "access_secret": cred.get("access_secret", ""),
        },
        "status": "healthy",
        "creation_time": t,
        "update_time": t,
    }
    sim.save()
    return 201, None, {"Location": f"{PREFIX}/registries/{rid}"}


@route("PUT", "/registries/{rid}")
def update_registry(sim, user, _query, body, _headers, rid):
    sysadmin(user)
    strict_fields(body, REGISTRY_UPDATE, "RegistryUpdate")
    r = sim.state["registries"].get(rid)
    if not r:
        raise ApiError(404, "NOT_FOUND", f"registry {rid} not found")
    if (
        "name" in body
        and body["name"] != r["name"]
        and any(x["name"] == body["name"] for x in sim.state["registries"].values())
    ):
        raise ApiError(409, "CONFLICT", f"the registry whose name is {body['name']} already exists")
    if "url" in body:
        check_url(body["url"])
        r["url"] = body["url"].rstrip("/")
    for k in ("name", "description", "insecure"):
        if k in body:
            r[k] = body[k]
    for src, dst in (("credential_type", "type"), ("access_key", "access_key"), ("access_secret", "access_secret")):
        if src in body:
            r["credential"][dst] = body[src]
    r["update_time"] = now()
    sim.save()
    return 200, None, {}


@route("GET", "/systeminfo")
def systeminfo(sim, _user, _query, _body, _headers):
    return (
        200,
        {
            "harbor_version": sim.config.get("harbor_version", "v2.15.1"),
            "auth_mode": "db_auth",
            "project_creation_restriction": sim.config.get("project_creation_restriction", "everyone"),
            "self_registration": False,
            "has_ca_root": False,
        },
        {},
    )


class Handler(BaseHTTPRequestHandler):
    server_version = "harbor-sim"

    def log_message(self, fmt, *args):
        if getattr(self.server, "verbose", False):
            super().log_message(fmt, *args)

    def _send(self, status, payload, headers):
        body = b"" if payload is None or self.command == "HEAD" else json.dumps(payload).encode()
        self.send_response(status)
        if payload is not None:
            self.send_header("Content-Type", "application/json")
        page = headers.pop("_page", None)
        if page:
            p, size, total, path = page
            links = []
            if p > 1:
                links.append(f'<{PREFIX}{path}?page={p - 1}&page_size={size}>; rel="prev"')
            if p * size < total:
                links.append(f'<{PREFIX}{path}?page={p + 1}&page_size={size}>; rel="next"')
            if links:
                self.send_header("Link", ", ".join(links))
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _handle(self):
        sim = self.server.sim
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        if url.path.startswith("/_sim/"):
            with sim.lock:
                if url.path == "/_sim/stats":
                    return self._send(200, sim.stats, {})
                if url.path == "/_sim/state":
                    return self._send(200, sim.state, {})
            return self._send(404, {"errors": [{"code": "NOT_FOUND", "message": "no such simulator path"}]}, {})
        if not url.path.startswith(PREFIX + "/"):
            return self._send(404, {"errors": [{"code": "NOT_FOUND", "message": f"{url.path} not found"}]}, {})
        path = url.path[len(PREFIX) :]
        for method, regex, fn in ROUTES:
            m = regex.match(path)
            if not m or method != self.command:
                continue
            key = f"{self.command} {regex.pattern}"
            body = None
            length = int(self.headers.get("Content-Length") or 0)
            try:
                with sim.lock:
                    sim.stats[key] = sim.stats.get(key, 0) + 1
                    user = sim.auth(self.headers.get("Authorization"))
                    if self.command in ("POST", "PUT"):
                        raw = self.rfile.read(length) if length else b""
                        if "application/json" not in (self.headers.get("Content-Type") or ""):
                            raise ApiError(415, "UNSUPPORTED_MEDIA_TYPE", "the body must be application/json")
                        try:
                            body = json.loads(raw or b"null")
                        except ValueError:
                            raise ApiError(400, "BAD_REQUEST", "the body is not JSON") from None
                    status, payload, headers = fn(sim, user, query, body, self.headers, **m.groupdict())
            except ApiError as e:
                headers = {"WWW-Authenticate": 'Basic realm="harbor"'} if e.status == 401 else {}
                return self._send(e.status, {"errors": [{"code": e.code, "message": e.message}]}, headers)
            return self._send(status, payload, headers)
        allowed = any(regex.match(path) for _, regex, _ in ROUTES)
        status = 405 if allowed else 404
        return self._send(
            status,
            {
                "errors": [
                    {"code": "METHOD_NOT_ALLOWED" if allowed else "NOT_FOUND", "message": f"{self.command} {url.path}"}
                ]
            },
            {},
        )

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _handle


def make_server(config, address, port, cert, key, *, state_file=None):
    srv = ThreadingHTTPServer((address, port), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    srv.sim = Sim(config, state_file)
    srv.verbose = False
    return srv
