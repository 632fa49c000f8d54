#!/usr/bin/python
# Copyright: HomeCluster developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cloudflare_tunnel
short_description: Ensure a remotely-managed Cloudflare Tunnel, its ingress rules and its DNS records
version_added: 0.2.0
description:
  - Finds the Cloudflare Tunnel (C(cfd_tunnel)) named O(name) in the account, or creates it with a
    secret generated here, managed remotely (C(config_src=cloudflare)).
  - Sets its ingress rules (each hostname to its service, then the catch-all O(catch_all_service),
    which Cloudflare requires last) and, with O(dns_records), ensures a proxied C(CNAME) from each
    hostname to C(<tunnel-id>.cfargotunnel.com).
  - The tunnel's credentials (account tag, tunnel id, secret) are never shown. They are written to
    O(credentials_path) at mode C(0600), and returned (with the connector token) only when
    O(return_credentials=true) on a task that has C(no_log), for SOPS encryption into Git.
  - The token is checked first (C(/user/tokens/verify)); a revoked or under-scoped token fails before
    any change with a message naming the permission it lacks (C(Zone Read), C(DNS Write),
    C(Cloudflare Tunnel Write)).
author:
  - HomeCluster developers (@homecluster)
extends_documentation_fragment:
  - homecluster.platform.attributes
  - ansible.builtin.action_common_attributes
  - homecluster.platform.cloudflare
attributes:
  check_mode:
    support: full
    details: reads the current state and predicts every change; creates, writes and sets nothing.
  diff_mode:
    support: full
    details: the tunnel, its ingress rules and DNS records before and after; never the secret.
options:
  account_id:
    description: Cloudflare account id (32 hex digits) that owns the tunnel.
    type: str
    required: true
  name:
    description: Tunnel name, unique among the account's live tunnels.
    type: str
    required: true
  zone:
    description: Zone (domain) of the hostnames, for the DNS records. Required with O(dns_records=true).
    type: str
  ingress:
    description: Ingress rules in order; the catch-all rule is appended.
    type: list
    elements: dict
    default: []
    suboptions:
      hostname:
        description: Public hostname.
        type: str
        required: true
      service:
        description: Origin, for example C(https://istio-gateway.istio-ingress.svc:443) or C(http_status:404).
        type: str
        required: true
      path:
        description: Path regular expression the rule also matches on.
        type: str
      origin_request:
        description: C(originRequest) settings of the rule (for example C(noTLSVerify), C(originServerName)).
        type: dict
  catch_all_service:
    description: Service of the final catch-all rule.
    type: str
    default: http_status:404
  dns_records:
    description: Ensure a proxied CNAME to the tunnel for each ingress hostname.
    type: bool
    default: true
  dns_comment:
    description: Comment set on the CNAME records this module writes.
    type: str
    default: managed by homecluster.platform.cloudflare_tunnel
  credentials_path:
    description:
      - File the tunnel credentials JSON (C(AccountTag), C(TunnelID), C(TunnelSecret)) is written to, mode C(0600).
      - Rewritten only when missing or naming another tunnel.
    type: path
  return_credentials:
    description:
      - Return RV(credentials) and RV(tunnel_token). Refused unless the task sets C(no_log).
    type: bool
    default: false
notes:
  - Only C(state=present) is supported; delete a tunnel in the dashboard or with the API.
  - A hostname that already has an C(A) or C(AAAA) record is refused, never overwritten.
seealso:
  - name: Cloudflare Tunnel API
    description: The cfd_tunnel endpoints of the Cloudflare API v4.
    link: https://developers.cloudflare.com/api/resources/zero_trust/subresources/tunnels/
"""

EXAMPLES = r"""
- name: Ensure the edge tunnel routes the public hostnames to the Istio gateway
  homecluster.platform.cloudflare_tunnel:
    api_token: "{{ platform_edge_cloudflare_api_token }}"
    account_id: 0a1b2c3d4e5f60718293a4b5c6d7e8f9
    name: homecluster
    zone: example.org
    ingress:
      - hostname: hello.example.org
        service: https://istio-gateway.istio-ingress.svc.cluster.local:443
        origin_request:
          originServerName: hello.example.org
    credentials_path: ~/.config/homecluster/lab/tunnel.json

- name: Read the credentials for the SOPS-encrypted Secret
  homecluster.platform.cloudflare_tunnel:
    api_token: "{{ platform_edge_cloudflare_api_token }}"
    account_id: 0a1b2c3d4e5f60718293a4b5c6d7e8f9
    name: homecluster
    dns_records: false
    return_credentials: true
  register: tunnel
  no_log: true
"""

RETURN = r"""
tunnel_id:
  description: Tunnel id (empty in check mode when the tunnel would be created).
  returned: always
  type: str
  sample: 6ff42ae2-765d-4adf-8112-31c55c1551ef
cname_target:
  description: What the hostnames' CNAME records point to.
  returned: always
  type: str
  sample: 6ff42ae2-765d-4adf-8112-31c55c1551ef.cfargotunnel.com
created:
  description: Whether the tunnel was (or, in check mode, would be) created.
  returned: always
  type: bool
changes:
  description: What changed (or would change), one line each.
  returned: always
  type: list
  elements: str
  sample: ["create tunnel homecluster", "set ingress rules (version 1 -> 2)", "create CNAME hello.example.org"]
credentials:
  description: Tunnel credentials file content. Only with O(return_credentials) on a no_log task.
  returned: when return_credentials
  type: dict
tunnel_token:
  description: Connector token (C(cloudflared tunnel run --token)). Only with O(return_credentials) on a no_log task.
  returned: when return_credentials
  type: str
"""

import base64
import json
import os
import secrets

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.homecluster.platform.plugins.module_utils._cloudflare import (
    CloudflareClient,
    CloudflareError,
    cloudflare_argument_spec,
)

CREDENTIALS_MODE = 0o600


def desired_ingress(params):
    rules = []
    for item in params["ingress"]:
        rule = {"hostname": item["hostname"].lower().rstrip("."), "service": item["service"]}
        if item.get("path"):
            rule["path"] = item["path"]
        if item.get("origin_request"):
            rule["originRequest"] = item["origin_request"]
        rules.append(rule)
    rules.append({"service": params["catch_all_service"]})
    return rules


def check_input(params):
    """Problems with the inputs, before any call."""
    problems = []
    if len(params["account_id"]) != 32 or any(c not in "0123456789abcdef" for c in params["account_id"]):
        problems.append("account_id must be the account's 32 hex digit id (dashboard: Account Home, Account ID)")
    hosts = [i["hostname"].lower().rstrip(".") for i in params["ingress"]]
    dupes = sorted({h for h in hosts if hosts.count(h) > 1})
    if dupes:
        problems.append(f"ingress lists these hostnames more than once: {', '.join(dupes)}")
    if params["dns_records"] and params["ingress"]:
        zone = (params.get("zone") or "").lower().rstrip(".")
        if not zone:
            problems.append("zone is required with dns_records=true")
        outside = [h for h in hosts if zone and h != zone and not h.endswith("." + zone)]
        if outside:
            problems.append(f"ingress hostnames outside the zone {zone}: {', '.join(outside)}")
    return problems


def normalise_rule(rule):
    out = {k: rule[k] for k in ("hostname", "service", "path") if rule.get(k)}
    if rule.get("originRequest"):
        out["originRequest"] = rule["originRequest"]
    return out


def credentials_state(path, account_id, tunnel_id):
    """'ok', 'missing' or 'stale' for the credentials file (compared without reading the secret out)."""
    if not path or not os.path.exists(path):
        return "missing"
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return "stale"
    if data.get("TunnelID") != tunnel_id or data.get("AccountTag") != account_id or not data.get("TunnelSecret"):
        return "stale"
    if os.stat(path).st_mode & 0o777 != CREDENTIALS_MODE:
        return "mode"
    return "ok"


def write_credentials(path, creds):
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o700, exist_ok=True)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, CREDENTIALS_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(creds, f)
    os.chmod(tmp, CREDENTIALS_MODE)
    os.replace(tmp, path)


def credentials_from_token(token):
    data = json.loads(base64.b64decode(token))
    return {"AccountTag": data["a"], "TunnelID": data["t"], "TunnelSecret": data["s"]}


class Tunnel:
    """Read everything first (so a token lacking a read permission fails before any change), then act."""

    def __init__(self, module, client):
        self.module = module
        self.client = client
        self.params = module.params
        self.changes = []
        self.actions = []
        self.before = {}
        self.after = {}
        self.tunnel_id = ""
        self.creds = None

    def run(self):
        p = self.params
        self.client.verify_token()
        account = p["account_id"]
        # The module writes, so a token that cannot even read is told the write permission it needs.
        found = self.client.tunnels(account, p["name"], permission="Cloudflare Tunnel Write")
        live = [t for t in found if t.get("name") == p["name"] and not t.get("deleted_at")]
        created = not live
        if live:
            self.tunnel_id = live[0]["id"]
            self.before["tunnel"] = {"name": p["name"], "id": self.tunnel_id}
        else:
            self.before["tunnel"] = None
            self.changes.append(f"create tunnel {p['name']}")
            self.actions.append(self.create)
        self.after["tunnel"] = {"name": p["name"], "id": self.tunnel_id or "(new)"}
        self.plan_ingress(account)
        if p["dns_records"] and p["ingress"]:
            self.plan_records()
        self.plan_credentials(account)
        if not self.module.check_mode:
            for action in self.actions:
                action()
        target = f"{self.tunnel_id or '<new tunnel id>'}.cfargotunnel.com"
        result = {"changed": bool(self.changes), "tunnel_id": self.tunnel_id, "cname_target": target,
                  "created": created, "changes": self.changes}
        if p["return_credentials"]:
            creds = self.creds
            if creds is None and self.tunnel_id:
                creds = credentials_from_token(self.client.tunnel_token(account, self.tunnel_id))
            result["credentials"] = dict(creds, TunnelName=p["name"]) if creds else {}
            result["tunnel_token"] = base64.b64encode(json.dumps(
                {"a": creds["AccountTag"], "t": creds["TunnelID"], "s": creds["TunnelSecret"]},
                separators=(",", ":")).encode()).decode() if creds else ""
        if self.module._diff:
            result["diff"] = {"before": self.before, "after": self.after}
        return result

    def target(self):
        return f"{self.tunnel_id}.cfargotunnel.com"

    def create(self):
        account = self.params["account_id"]
        secret = base64.b64encode(secrets.token_bytes(32)).decode()
        made = self.client.create_tunnel(account, self.params["name"], secret)
        self.tunnel_id = made["id"]
        self.creds = {"AccountTag": account, "TunnelID": self.tunnel_id, "TunnelSecret": secret}

    def plan_ingress(self, account):
        want = desired_ingress(self.params)
        have = None
        version = 0
        if self.tunnel_id:
            current = self.client.tunnel_config(account, self.tunnel_id) or {}
            version = current.get("version") or 0
            config = current.get("config") or {}
            have = [normalise_rule(r) for r in (config.get("ingress") or [])] or None
        self.before["ingress"] = have
        self.after["ingress"] = want
        if have == want:
            return
        self.changes.append(f"set ingress rules (version {version} -> {version + 1})")
        self.actions.append(lambda: self.client.put_tunnel_config(account, self.tunnel_id, {"ingress": want}))

    def plan_records(self):
        zone_name = self.params["zone"].lower().rstrip(".")
        zone_id = self.client.zone_by_name(zone_name)["id"]
        shown_target = f"{self.tunnel_id or '<new tunnel id>'}.cfargotunnel.com"
        before, after = [], []
        for item in self.params["ingress"]:
            host = item["hostname"].lower().rstrip(".")
            existing = self.client.dns_records(zone_id, host, f"read the DNS records of {host}",
                                               permission="DNS Write")
            blocking = [r for r in existing if r.get("type") in ("A", "AAAA")]
            if blocking:
                self.module.fail_json(msg=f"{host} already has an {blocking[0]['type']} record "
                                          f"({blocking[0].get('content')}); remove it or leave {host} out of "
                                          "ingress: this module never overwrites address records")
            cname = next((r for r in existing if r.get("type") == "CNAME"), None)
            after.append({"name": host, "type": "CNAME", "content": shown_target, "proxied": True})
            if cname:
                before.append({k: cname.get(k) for k in ("name", "type", "content", "proxied")})
                if (cname.get("content"), cname.get("proxied"), cname.get("comment")) == \
                        (shown_target, True, self.params["dns_comment"]):
                    continue
                self.changes.append(f"update CNAME {host} -> {shown_target}")
            else:
                self.changes.append(f"create CNAME {host} -> {shown_target}")
            self.actions.append(self._record_action(zone_id, host, cname))
        self.before["dns_records"] = before
        self.after["dns_records"] = after

    def _record_action(self, zone_id, host, cname):
        def act():
            want = {"type": "CNAME", "name": host, "content": self.target(), "proxied": True, "ttl": 1,
                    "comment": self.params["dns_comment"]}
            if cname:
                self.client.update_dns_record(zone_id, cname["id"], want, f"update the CNAME {host}")
            else:
                self.client.create_dns_record(zone_id, want, f"create the CNAME {host}")
        return act

    def plan_credentials(self, account):
        path = self.params["credentials_path"]
        if not path:
            return
        state = credentials_state(path, account, self.tunnel_id) if self.tunnel_id else "missing"
        self.before["credentials_file"] = {"path": path, "state": state}
        self.after["credentials_file"] = {"path": path, "state": "ok"}
        if state == "ok":
            return
        self.changes.append(f"{'fix the mode of' if state == 'mode' else 'write'} the credentials file {path}")

        def act():
            if state == "mode":
                os.chmod(path, CREDENTIALS_MODE)
                return
            if self.creds is None:
                self.creds = credentials_from_token(self.client.tunnel_token(account, self.tunnel_id))
            write_credentials(path, dict(self.creds, TunnelName=self.params["name"]))
        self.actions.append(act)


def main():
    spec = cloudflare_argument_spec()
    spec.update(
        account_id={"type": "str", "required": True},
        name={"type": "str", "required": True},
        zone={"type": "str"},
        ingress={"type": "list", "elements": "dict", "default": [], "options": {
            "hostname": {"type": "str", "required": True},
            "service": {"type": "str", "required": True},
            "path": {"type": "str"},
            "origin_request": {"type": "dict"},
        }},
        catch_all_service={"type": "str", "default": "http_status:404"},
        dns_records={"type": "bool", "default": True},
        dns_comment={"type": "str", "default": "managed by homecluster.platform.cloudflare_tunnel"},
        credentials_path={"type": "path"},
        return_credentials={"type": "bool", "default": False},
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    p = module.params
    if p["return_credentials"] and not module.no_log:
        module.fail_json(msg="return_credentials: true returns the tunnel secret; set no_log: true on the task")
    problems = check_input(p)
    if problems:
        module.fail_json(msg="; ".join(problems))
    if not p["validate_certs"]:
        module.warn(f"validate_certs is false: the Cloudflare API at {p['api_url']} is used without verifying its "
                    "certificate, so the token can be intercepted; set ca_path instead")
    client = CloudflareClient(p["api_token"], p["api_url"], validate_certs=p["validate_certs"], ca_path=p["ca_path"],
                              timeout=p["timeout"], retries=p["retries"])
    try:
        result = Tunnel(module, client).run()
    except CloudflareError as exc:
        module.fail_json(msg=str(exc), status=exc.status, errors=exc.errors, missing_permission=exc.permission)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
