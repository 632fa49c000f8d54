# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: HomeCluster developers
# ruff: noqa: PLR0912, PLR0915 - request validation mirrors the API's many distinct refusals
"""State and rules of the Cloudflare API v4 simulator: accounts, zones, DNS records, Cloudflare
Tunnels (cfd_tunnel) with their remote configurations, and API tokens scoped by permission.

Every refusal is an ApiError carrying the HTTP status and the v4 error objects
(`{code, message}`); the server wraps them in the v4 envelope.
"""

from __future__ import annotations

import base64
import copy
import datetime
import ipaddress
import json
import re
import secrets
import threading
import uuid

RECORD_TYPES = {"A", "AAAA", "CAA", "CERT", "CNAME", "DNSKEY", "DS", "HTTPS", "LOC", "MX", "NAPTR", "NS",
                "OPENPGPKEY", "PTR", "SMIMEA", "SRV", "SSHFP", "SVCB", "TLSA", "TXT", "URI"}
PROXIABLE = {"A", "AAAA", "CNAME"}
# Permission names as the API reference lists them under "Accepted Permissions".
ZONE_READ = "Zone Read"
DNS_READ = "DNS Read"
DNS_WRITE = "DNS Write"
TUNNEL_READ = "Cloudflare Tunnel Read"
TUNNEL_WRITE = "Cloudflare Tunnel Write"
PERMISSIONS = {ZONE_READ, DNS_READ, DNS_WRITE, TUNNEL_READ, TUNNEL_WRITE}
# A write permission also grants the matching read (as Edit does in the dashboard).
IMPLIED = {DNS_WRITE: {DNS_READ}, TUNNEL_WRITE: {TUNNEL_READ}}
TUNNEL_SERVICE_RE = re.compile(r"^(https?|tcp|ssh|rdp|smb|unix|unix\+tls|wss?)://.+$|^http_status:[1-5]\d\d$"
                               r"|^hello_world$|^bastion$")
HOST_RE = re.compile(r"^(\*\.)?([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
ID_RE = re.compile(r"^[0-9a-f]{32}$")


class ApiError(Exception):
    def __init__(self, status, code, message, headers=None):
        super().__init__(message)
        self.status = status
        self.errors = [{"code": code, "message": message}]
        self.headers = headers or {}


def now():
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_id():
    return secrets.token_hex(16)


class Token:
    def __init__(self, name, value, permissions, *, zones=None, status="active", expires_on=None):
        unknown = set(permissions) - PERMISSIONS
        if unknown:
            raise ValueError(f"unknown permissions {sorted(unknown)}; known: {sorted(PERMISSIONS)}")
        self.id = new_id()
        self.name = name
        self.value = value
        self.permissions = set(permissions)
        for perm in list(self.permissions):
            self.permissions |= IMPLIED.get(perm, set())
        self.zones = zones  # None: every zone of the account
        self.status = status
        self.expires_on = expires_on
        self.revoked = False

    def grants(self, permission, zone_name=None):
        if permission not in self.permissions:
            return False
        return zone_name is None or self.zones is None or zone_name in self.zones

    def to_dict(self):
        return {"name": self.name, "value": self.value, "permissions": sorted(self.permissions),
                "zones": self.zones, "status": self.status, "revoked": self.revoked}


class State:
    """The whole simulated account; every public method holds the lock."""

    def __init__(self, config):
        self.lock = threading.RLock()
        self.account = {"id": config.get("account_id") or new_id(),
                        "name": config.get("account_name", "HomeCluster lab")}
        self.zones = {}
        self.records = {}  # zone id -> {record id -> record}
        self.tunnels = {}
        self.configs = {}
        self.tokens = {}
        for zone in config.get("zones", []):
            self.add_zone(zone if isinstance(zone, str) else zone["name"])
        for tok in config.get("tokens", []):
            self.add_token(tok["name"], tok.get("value"), tok.get("permissions", []), zones=tok.get("zones"))

    # ----- tokens
    def add_token(self, name, value, permissions, *, zones=None):
        with self.lock:
            token = Token(name, value or secrets.token_urlsafe(30)[:40], permissions, zones=zones)
            self.tokens[token.value] = token
            return token

    def revoke(self, name):
        with self.lock:
            for token in self.tokens.values():
                if token.name == name:
                    token.revoked = True
                    return token
            raise KeyError(name)

    def authenticate(self, header):
        """The token of an Authorization header, or the API's refusal."""
        if not header:
            raise ApiError(400, 9106, "Missing X-Auth-Email header")
        scheme, _, value = header.partition(" ")
        if scheme != "Bearer" or not value.strip():
            raise ApiError(400, 6003, "Invalid request headers")
        token = self.tokens.get(value.strip())
        if token is None or token.revoked:
            raise ApiError(403, 9109, "Invalid access token")
        return token

    def verify(self, header):
        try:
            token = self.authenticate(header)
        except ApiError as exc:
            if exc.status == 403:
                raise ApiError(401, 1000, "Invalid API Token") from None
            raise
        result = {"id": token.id, "status": token.status}
        if token.expires_on:
            result["expires_on"] = token.expires_on
        return result

    @staticmethod
    def require(token, permission, zone_name=None, *, account=False):
        if token.status != "active":
            raise ApiError(403, 9109, "Invalid access token")
        if not token.grants(permission, zone_name):
            # The API answers an under-scoped token with 10000 on zone endpoints, 9109 on account ones.
            if account:
                raise ApiError(403, 9109, "Unauthorized to access requested resource")
            raise ApiError(403, 10000, "Authentication error")

    # ----- zones
    def add_zone(self, name):
        with self.lock:
            zid = new_id()
            stamp = now()
            self.zones[zid] = {
                "id": zid, "name": name, "status": "active", "paused": False, "type": "full",
                "development_mode": 0, "name_servers": ["ada.ns.cloudflare.com", "bob.ns.cloudflare.com"],
                "original_name_servers": None, "original_registrar": None, "original_dnshost": None,
                "created_on": stamp, "modified_on": stamp, "activated_on": stamp,
                "account": dict(self.account),
                "owner": {"id": None, "type": "user", "email": None},
                "permissions": ["#dns_records:edit", "#dns_records:read", "#zone:read"],
                "plan": {"id": "0feeeeeeeeeeeeeeeeeeeeeeeeeeeeee", "name": "Free Website", "price": 0,
                         "currency": "USD", "frequency": "", "is_subscribed": False, "can_subscribe": False,
                         "legacy_id": "free", "legacy_discount": False, "externally_managed": False},
                "meta": {"step": 2, "custom_certificate_quota": 0, "page_rule_quota": 3,
                         "phishing_detected": False},
                "vanity_name_servers": [], "verification_key": None,
            }
            self.records[zid] = {}
            return self.zones[zid]

    def visible_zones(self, token):
        return [z for z in self.zones.values()
                if token.status == "active" and any(token.grants(p, z["name"]) for p in (ZONE_READ, DNS_READ))]

    def zone(self, token, zone_id, permission):
        if not ID_RE.match(zone_id):
            raise ApiError(400, 7003,
                           f"Could not route to /zones/{zone_id}, perhaps your object identifier is invalid?")
        zone = self.zones.get(zone_id)
        if zone is None:
            # Unknown and inaccessible zones look alike to a token.
            raise ApiError(403, 10000, "Authentication error") if token.status == "active" else \
                ApiError(403, 9109, "Invalid access token")
        self.require(token, permission, zone["name"])
        return zone

    # ----- DNS records
    def check_record(self, zone, body, existing=None):
        """The record a POST/PUT/PATCH body describes, validated like the API does."""
        rec = dict(existing or {})
        for key in ("name", "type", "content", "ttl", "proxied", "comment", "tags", "priority", "data", "settings"):
            if key in body:
                rec[key] = body[key]
        rtype = rec.get("type")
        if rtype not in RECORD_TYPES:
            raise ApiError(400, 9000, "DNS record type is invalid.")
        name = str(rec.get("name") or "").strip().rstrip(".").lower()
        if not name:
            raise ApiError(400, 9007, "DNS record name is required.")
        if name == "@":
            name = zone["name"]
        elif name != zone["name"] and not name.endswith("." + zone["name"]):
            name = f"{name}.{zone['name']}"
        if not HOST_RE.match(name) or len(name) > 253:
            raise ApiError(400, 9005, "DNS name is invalid.")
        rec["name"] = name
        content = rec.get("content")
        if rtype not in {"CAA", "CERT", "DNSKEY", "DS", "HTTPS", "LOC", "NAPTR", "SMIMEA", "SRV", "SSHFP",
                         "SVCB", "TLSA", "URI"} and not content:
            raise ApiError(400, 9008, "Content for this record is required.")
        if rtype == "A":
            try:
                ipaddress.IPv4Address(content)
            except ValueError:
                raise ApiError(400, 9005, "Content for A record must be a valid IPv4 address.") from None
        if rtype == "AAAA":
            try:
                ipaddress.IPv6Address(content)
            except ValueError:
                raise ApiError(400, 9006, "Content for AAAA record must be a valid IPv6 address.") from None
        if rtype == "CNAME":
            rec["content"] = str(content).rstrip(".").lower()
            if rec["content"] == name:
                raise ApiError(400, 9039, "CNAME content cannot reference itself.")
        if rtype == "MX" and not isinstance(rec.get("priority"), int):
            raise ApiError(400, 9102, "MX records require a priority.")
        proxied = rec.get("proxied", False)
        if not isinstance(proxied, bool):
            raise ApiError(400, 9003, "Invalid 'proxied' value, must be a boolean")
        if proxied and rtype not in PROXIABLE:
            raise ApiError(400, 9004, "This record type cannot be proxied.")
        rec["proxied"] = proxied
        ttl = rec.get("ttl", 1)
        if not isinstance(ttl, int) or isinstance(ttl, bool) or (ttl != 1 and not 60 <= ttl <= 86400):
            raise ApiError(400, 9021, "Invalid TTL. Must be between 60 and 86400 seconds, or 1 for Automatic.")
        rec["ttl"] = 1 if proxied else ttl
        comment = rec.get("comment")
        if comment is not None and (not isinstance(comment, str) or len(comment) > 100):
            raise ApiError(400, 9101, "DNS record comment must be a string of at most 100 characters.")
        tags = rec.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ApiError(400, 9101, "DNS record tags must be a list of strings.")
        rec["tags"] = tags
        return rec

    def _conflicts(self, zone_id, rec, ignore_id=None):
        for other in self.records[zone_id].values():
            if other["id"] == ignore_id or other["name"] != rec["name"]:
                continue
            if other["type"] == rec["type"] == "CNAME" or (
                    "CNAME" in {other["type"], rec["type"]}
                    and {other["type"], rec["type"]} <= {"A", "AAAA", "CNAME"}):
                raise ApiError(400, 81053, "An A, AAAA, or CNAME record with that host already exists.")
            if other["type"] == rec["type"] and other.get("content") == rec.get("content"):
                raise ApiError(400, 81058, "An identical record already exists.")

    def _store(self, zone, rec, record_id=None):
        stamp = now()
        rid = record_id or new_id()
        old = self.records[zone["id"]].get(rid)
        out = {
            "id": rid, "name": rec["name"], "type": rec["type"], "content": rec.get("content"),
            "proxiable": rec["type"] in PROXIABLE, "proxied": rec["proxied"], "ttl": rec["ttl"],
            "settings": rec.get("settings") or {}, "meta": {}, "comment": rec.get("comment"),
            "tags": rec["tags"], "created_on": old["created_on"] if old else stamp, "modified_on": stamp,
        }
        if rec.get("priority") is not None:
            out["priority"] = rec["priority"]
        if rec.get("data") is not None:
            out["data"] = rec["data"]
        if rec.get("comment") is not None:
            changed = not old or old.get("comment") != rec.get("comment")
            out["comment_modified_on"] = stamp if changed else old.get("comment_modified_on", stamp)
        self.records[zone["id"]][rid] = out
        return copy.deepcopy(out)

    def create_record(self, zone, body):
        with self.lock:
            rec = self.check_record(zone, body)
            self._conflicts(zone["id"], rec)
            return self._store(zone, rec)

    def record(self, zone, record_id):
        rec = self.records[zone["id"]].get(record_id)
        if rec is None:
            raise ApiError(404, 81044, "Record does not exist.")
        return rec

    def update_record(self, zone, record_id, body, *, patch):
        with self.lock:
            old = self.record(zone, record_id)
            if not patch:
                for key in ("name", "type"):
                    if key not in body:
                        raise ApiError(400, 9000 if key == "type" else 9007,
                                       f"DNS record {key} is required.")
                base = {}
            else:
                base = {k: v for k, v in old.items() if k in ("name", "type", "content", "ttl", "proxied",
                                                              "comment", "tags", "priority", "data", "settings")}
            rec = self.check_record(zone, body, existing=base)
            self._conflicts(zone["id"], rec, ignore_id=record_id)
            return self._store(zone, rec, record_id=old["id"])

    def delete_record(self, zone, record_id):
        with self.lock:
            self.record(zone, record_id)
            del self.records[zone["id"]][record_id]
            return {"id": record_id}

    def batch(self, zone, body):
        """deletes, patches, puts, posts in that order, all or nothing (the first error is returned)."""
        with self.lock:
            saved = copy.deepcopy(self.records[zone["id"]])
            out = {"deletes": [], "patches": [], "puts": [], "posts": []}
            try:
                for item in body.get("deletes") or []:
                    rec = copy.deepcopy(self.record(zone, item.get("id", "")))
                    self.delete_record(zone, rec["id"])
                    out["deletes"].append(rec)
                for item in body.get("patches") or []:
                    out["patches"].append(self.update_record(zone, item.get("id", ""), item, patch=True))
                for item in body.get("puts") or []:
                    out["puts"].append(self.update_record(zone, item.get("id", ""), item, patch=False))
                for item in body.get("posts") or []:
                    out["posts"].append(self.create_record(zone, item))
            except ApiError:
                self.records[zone["id"]] = saved
                raise
            return out

    # ----- tunnels
    def check_account(self, token, account_id, permission):
        if not ID_RE.match(account_id):
            raise ApiError(400, 7003, f"Could not route to /accounts/{account_id}, perhaps your object identifier"
                                      " is invalid?")
        if account_id != self.account["id"]:
            raise ApiError(403, 9109, "Unauthorized to access requested resource")
        self.require(token, permission, account=True)

    def _tunnel_view(self, tun):
        return {k: v for k, v in tun.items() if k not in ("secret",)}

    def tunnel(self, tunnel_id):
        tun = self.tunnels.get(tunnel_id)
        if tun is None:
            raise ApiError(404, 1003, "Tunnel not found")
        return tun

    def create_tunnel(self, body):
        with self.lock:
            name = body.get("name")
            if not isinstance(name, str) or not name.strip():
                raise ApiError(400, 1001, "name is required")
            if any(t["name"] == name and not t["deleted_at"] for t in self.tunnels.values()):
                raise ApiError(409, 1013, "You already have a tunnel with this name.")
            config_src = body.get("config_src", "local")
            if config_src not in ("local", "cloudflare"):
                raise ApiError(400, 1001, "config_src must be one of: local, cloudflare")
            secret_b64 = body.get("tunnel_secret")
            if secret_b64 is None:
                secret_raw = secrets.token_bytes(32)
            else:
                try:
                    secret_raw = base64.b64decode(secret_b64, validate=True)
                except ValueError:
                    raise ApiError(400, 1001, "tunnel_secret must be base64") from None
                if len(secret_raw) < 32:
                    raise ApiError(400, 1001, "tunnel_secret must be at least 32 bytes")
            tid = str(uuid.uuid4())
            tun = {"id": tid, "account_tag": self.account["id"], "created_at": now(), "deleted_at": None,
                   "name": name, "connections": [], "conns_active_at": None, "conns_inactive_at": now(),
                   "tun_type": "cfd_tunnel", "metadata": {}, "status": "inactive",
                   "remote_config": config_src == "cloudflare", "config_src": config_src,
                   "secret": base64.b64encode(secret_raw).decode()}
            self.tunnels[tid] = tun
            view = self._tunnel_view(tun)
            view["credentials_file"] = {"AccountTag": self.account["id"], "TunnelID": tid, "TunnelName": name,
                                        "TunnelSecret": tun["secret"]}
            view["token"] = self.tunnel_token(tid)
            return view

    def list_tunnels(self, query):
        with self.lock:
            items = list(self.tunnels.values())
            if "name" in query:
                items = [t for t in items if t["name"] == query["name"]]
            if "uuid" in query:
                items = [t for t in items if t["id"] == query["uuid"]]
            if "include_prefix" in query:
                items = [t for t in items if t["name"].startswith(query["include_prefix"])]
            if "exclude_prefix" in query:
                items = [t for t in items if not t["name"].startswith(query["exclude_prefix"])]
            if "is_deleted" in query:
                want = query["is_deleted"].lower() == "true"
                items = [t for t in items if bool(t["deleted_at"]) == want]
            if "status" in query:
                items = [t for t in items if t["status"] == query["status"]]
            items.sort(key=lambda t: t["created_at"])
            return [self._tunnel_view(t) for t in items]

    def get_tunnel(self, tunnel_id):
        with self.lock:
            return self._tunnel_view(self.tunnel(tunnel_id))

    def delete_tunnel(self, tunnel_id):
        with self.lock:
            tun = self.tunnel(tunnel_id)
            if tun["deleted_at"]:
                raise ApiError(400, 1022, "Tunnel has already been deleted")
            tun["deleted_at"] = now()
            self.configs.pop(tunnel_id, None)
            return self._tunnel_view(tun)

    def tunnel_token(self, tunnel_id):
        tun = self.tunnel(tunnel_id)
        if tun["deleted_at"]:
            raise ApiError(404, 1003, "Tunnel not found")
        blob = json.dumps({"a": self.account["id"], "t": tun["id"], "s": tun["secret"]}, separators=(",", ":"))
        return base64.b64encode(blob.encode()).decode()

    def put_config(self, tunnel_id, body):
        with self.lock:
            tun = self.tunnel(tunnel_id)
            if tun["deleted_at"]:
                raise ApiError(404, 1003, "Tunnel not found")
            config = body.get("config")
            if not isinstance(config, dict):
                raise ApiError(400, 1055, "Validation failed: config is required")
            ingress = config.get("ingress")
            if ingress is not None:
                if not isinstance(ingress, list) or not ingress:
                    raise ApiError(400, 1055, "Validation failed: ingress must be a non-empty list of rules")
                for index, rule in enumerate(ingress):
                    if not isinstance(rule, dict) or not isinstance(rule.get("service"), str):
                        raise ApiError(400, 1055, f"Validation failed: ingress rule #{index + 1} has no service")
                    if not TUNNEL_SERVICE_RE.match(rule["service"]):
                        raise ApiError(400, 1055, f"Validation failed: ingress rule #{index + 1}: "
                                                  f"'{rule['service']}' is not a valid service")
                    host = rule.get("hostname")
                    if host and not HOST_RE.match(host.lower()):
                        raise ApiError(400, 1055, f"Validation failed: ingress rule #{index + 1}: hostname "
                                                  f"'{host}' is invalid")
                last = ingress[-1]
                if last.get("hostname") or last.get("path"):
                    raise ApiError(400, 1055, "Validation failed: The last ingress rule must match all URLs (i.e. "
                                              "it should not have a hostname or path filter)")
            previous = self.configs.get(tunnel_id)
            entry = {"tunnel_id": tunnel_id, "account_id": self.account["id"], "config": copy.deepcopy(config),
                     "source": "cloudflare", "version": (previous["version"] + 1) if previous else 1,
                     "created_at": now()}
            self.configs[tunnel_id] = entry
            tun["remote_config"] = True
            tun["config_src"] = "cloudflare"
            return copy.deepcopy(entry)

    def get_config(self, tunnel_id):
        with self.lock:
            tun = self.tunnel(tunnel_id)
            if tun["deleted_at"]:
                raise ApiError(404, 1003, "Tunnel not found")
            entry = self.configs.get(tunnel_id)
            if entry is None:
                return {"tunnel_id": tunnel_id, "account_id": self.account["id"], "config": None,
                        "source": "cloudflare" if tun["remote_config"] else "local", "version": 0,
                        "created_at": None}
            return copy.deepcopy(entry)

    # ----- persistence
    def dump(self):
        with self.lock:
            return {"account": self.account, "zones": self.zones, "records": self.records, "tunnels": self.tunnels,
                    "configs": self.configs, "tokens": [dict(t.to_dict(), id=t.id) for t in self.tokens.values()]}

    def load(self, data):
        with self.lock:
            self.account = data["account"]
            self.zones = data["zones"]
            self.records = data["records"]
            self.tunnels = data["tunnels"]
            self.configs = data["configs"]
            self.tokens = {}
            for item in data["tokens"]:
                tok = Token(item["name"], item["value"], item["permissions"], zones=item["zones"],
                            status=item["status"])
                tok.id = item.get("id", tok.id)
                tok.revoked = item["revoked"]
                self.tokens[tok.value] = tok
