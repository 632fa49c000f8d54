# Copyright: HomeCluster developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A small client of the Harbor API v2.0 (private to this collection), and the plan of projects and
proxy-cache registries the module harbor_projects applies.

Harbor answers a refusal with ``{"errors": [{"code", "message"}]}``; it becomes one HarborError
carrying the method, path, HTTP status and that detail. Lists are paged (``page``, ``page_size`` at
most 100, the total in ``X-Total-Count``): every page is read.
"""

from __future__ import annotations

import base64
import json
import re

from ansible.module_utils.six.moves.urllib.parse import quote, urlencode
from ansible.module_utils.urls import open_url

try:
    from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
except ImportError:  # pragma: no cover
    from urllib.error import HTTPError, URLError

PAGE_SIZE = 100
PROJECT_NAME = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
PROXY_TYPES = (
    "docker-hub",
    "docker-registry",
    "harbor",
    "aws-ecr",
    "azure-acr",
    "google-gcr",
    "github-ghcr",
    "quay",
    "jfrog-artifactory",
)
SEVERITIES = ("none", "low", "medium", "high", "critical")
# Project settings this collection manages, as Harbor's ProjectMetadata strings.
BOOL_SETTINGS = {
    "public": "public",
    "auto_scan": "auto_scan",
    "prevent_vul": "prevent_vul",
    "auto_sbom_generation": "auto_sbom_generation",
}
SECRET_MASK = "<secret>"  # noqa: S105 - what diffs show instead of a secret


class HarborError(Exception):
    def __init__(self, message, status=None, method=None, path=None, errors=None):
        super().__init__(message)
        self.status = status
        self.method = method
        self.path = path
        self.errors = errors or []


def harbor_argument_spec():
    """Connection options of the Harbor modules."""
    return {
        "url": {"type": "str", "required": True},
        "username": {"type": "str", "default": "admin"},
        "password": {"type": "str", "required": True, "no_log": True},
        "validate_certs": {"type": "bool", "default": True},
        "ca_path": {"type": "path"},
        "timeout": {"type": "int", "default": 30},
    }


class HarborClient:
    def __init__(self, url, username, password, *, validate_certs=True, ca_path=None, timeout=30, opener=None):
        self.base = url.rstrip("/") + "/api/v2.0"
        self.auth = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        self.validate_certs = validate_certs
        self.ca_path = ca_path
        self.timeout = timeout
        self.opener = opener or open_url
        self.calls = []

    def request(self, method, path, *, params=None, body=None):
        """(status, headers, parsed body or None); HarborError on a refusal or no answer."""
        url = self.base + path + ("?" + urlencode(params) if params else "")
        headers = {"Authorization": self.auth, "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body)
            headers["Content-Type"] = "application/json"
        self.calls.append(f"{method} {path}")
        try:
            resp = self.opener(
                url,
                method=method,
                data=data,
                headers=headers,
                validate_certs=self.validate_certs,
                ca_path=self.ca_path,
                timeout=self.timeout,
                force_basic_auth=False,
            )
            raw = resp.read()
            return resp.getcode(), dict(resp.headers.items()), (json.loads(raw) if raw else None)
        except HTTPError as e:
            raw = e.read() if hasattr(e, "read") else b""
            try:
                errors = (json.loads(raw) or {}).get("errors") or []
            except ValueError:
                errors = []
            detail = "; ".join(f"{x.get('code')}: {x.get('message')}" for x in errors if isinstance(x, dict))
            hint = {
                401: " (check the Harbor username and password)",
                403: " (the user needs the system administrator role)",
            }.get(e.code, "")
            raise HarborError(
                f"Harbor refused {method} {path}: HTTP {e.code} {detail or e.reason}{hint}",
                status=e.code,
                method=method,
                path=path,
                errors=errors,
            ) from None
        except URLError as e:
            raise HarborError(
                f"Harbor at {self.base} did not answer {method} {path}: {e.reason}", method=method, path=path
            ) from None

    def list_all(self, path, params=None):
        items, page = [], 1
        while True:
            resp = self.request("GET", path, params=dict(params or {}, page=page, page_size=PAGE_SIZE))
            headers, chunk = resp[1], resp[2] or []
            items += chunk
            total = int({k.lower(): v for k, v in headers.items()}.get("x-total-count", len(items)))
            if not chunk or len(items) >= total:
                return items
            page += 1

    def project_exists(self, name):
        try:
            self.request("HEAD", "/projects", params={"project_name": name})
            return True
        except HarborError as e:
            if e.status == 404:
                return False
            raise

    def get_project(self, name):
        return self.request("GET", "/projects/" + quote(name, safe=""))[2]

    @staticmethod
    def created_id(headers):
        loc = {k.lower(): v for k, v in headers.items()}.get("location", "")
        tail = loc.rstrip("/").rsplit("/", 1)[-1]
        return int(tail) if tail.isdigit() else None


def _bool(value):
    return "true" if value else "false"


def check_inputs(registries, projects):
    """Problems with the inputs, each naming the field and what to do (before any call)."""
    errors, names = [], set()
    for i, r in enumerate(registries):
        where = f"registries[{i}]"
        if not r.get("name"):
            errors.append(f"{where}.name is required")
        elif r["name"] in names:
            errors.append(f"{where}.name {r['name']} is listed twice")
        names.add(r.get("name"))
        if r.get("type") not in PROXY_TYPES:
            errors.append(
                f"{where}.type {r.get('type')} cannot back a proxy cache; use one of {', '.join(PROXY_TYPES)}"
            )
        if not re.match(r"^https?://[^\s/]+", r.get("url") or ""):
            errors.append(f"{where}.url {r.get('url')!r} must be an http(s) URL such as https://registry-1.docker.io")
        if bool(r.get("access_key")) != bool(r.get("access_secret")):
            errors.append(f"{where}: give both access_key and access_secret, or neither (anonymous pulls)")
    seen = set()
    for i, p in enumerate(projects):
        where = f"projects[{i}]"
        name = p.get("name") or ""
        if not PROJECT_NAME.match(name) or len(name) > 255:
            errors.append(
                f"{where}.name {name!r} is not a Harbor project name: lower-case letters and digits, "
                "separated by single '.', '_' or '-'"
            )
        if name in seen:
            errors.append(f"{where}.name {name} is listed twice")
        seen.add(name)
        if p.get("proxy_cache") and p["proxy_cache"] not in names:
            errors.append(
                f"{where}.proxy_cache {p['proxy_cache']} is not one of the registries "
                f"({', '.join(sorted(n for n in names if n)) or 'none listed'})"
            )
        if p.get("severity") and p["severity"] not in SEVERITIES:
            errors.append(f"{where}.severity must be one of {', '.join(SEVERITIES)}")
    return errors


def desired_metadata(p):
    md = {key: _bool(p[opt]) for opt, key in BOOL_SETTINGS.items() if p.get(opt) is not None}
    if p.get("severity"):
        md["severity"] = p["severity"]
    return md


def registry_view(r, *, masked=True):
    """The registry fields this collection compares, as Harbor's Registry object holds them."""
    cred = r.get("credential") or {}
    view = {
        "name": r.get("name"),
        "type": r.get("type"),
        "url": (r.get("url") or "").rstrip("/"),
        "insecure": bool(r.get("insecure", False)),
        "description": r.get("description") or "",
        "access_key": cred.get("access_key", ""),
    }
    if not masked:
        view["access_secret"] = cred.get("access_secret", "")
    return view


def registry_want(r):
    return {
        "name": r["name"],
        "type": r["type"],
        "url": r["url"].rstrip("/"),
        "insecure": bool(r.get("insecure")),
        "description": r.get("description") or "",
        "access_key": r.get("access_key") or "",
    }
