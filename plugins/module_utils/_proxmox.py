# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: HomeCluster developers
"""Private Proxmox VE API helper on proxmoxer: connection, clear errors, task waits, property strings."""

from __future__ import annotations

import hashlib
import re
import time
import traceback

try:
    from proxmoxer import ProxmoxAPI
    from proxmoxer.core import ResourceException

    HAS_PROXMOXER = True
    PROXMOXER_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - reported through missing_required_lib
    ProxmoxAPI = None

    class ResourceException(Exception):
        """Stands in for proxmoxer's exception when proxmoxer is missing (reported at connect time)."""
    HAS_PROXMOXER = False
    PROXMOXER_IMPORT_ERROR = traceback.format_exc()

LOCK_RE = re.compile(r"VM is locked \(|can't lock file")
PERM_RE = re.compile(r"Permission check failed \(([^,]+), ([^)]+)\)")
LOCK_WAIT = 30


def proxmox_argument_spec():
    """Connection options (documented in the homecluster.platform.proxmox doc fragment)."""
    return {
        "api_host": {"type": "str", "required": True},
        "api_port": {"type": "int", "default": 8006},
        "api_user": {"type": "str", "required": True},
        "api_token_id": {"type": "str"},
        "api_token_secret": {"type": "str", "no_log": True},
        "api_password": {"type": "str", "no_log": True},
        "validate_certs": {"type": "bool", "default": True},
        "ca_path": {"type": "path"},
        "api_timeout": {"type": "int", "default": 30},
        "task_timeout": {"type": "int", "default": 600},
    }


PROXMOX_MUTUALLY_EXCLUSIVE = [("api_token_id", "api_password")]
PROXMOX_REQUIRED_ONE_OF = [("api_token_id", "api_password")]
PROXMOX_REQUIRED_TOGETHER = [("api_token_id", "api_token_secret")]


class ProxmoxError(Exception):
    """An API call or task failed; `fail()` reports it with what is needed to act on it."""

    def __init__(self, msg, **details):
        super().__init__(msg)
        self.msg = msg
        self.details = details

    def fail(self, module, **extra):
        module.fail_json(msg=self.msg, **self.details, **extra)


def explain(status, message, principal, method, path):
    """A message for an API error that says what to do about it."""
    text = (message or "").strip()
    base = f"Proxmox API {method} {path} failed: {status} {text}"
    perm = PERM_RE.search(text)
    if status == 403 and perm:
        where, priv = perm.groups()
        return (f"{base}. The API user or token '{principal}' lacks {priv} on {where}: grant it (for example "
                f"'pveum acl modify {where} --tokens {principal} --roles <role with {priv}>'); a "
                "privilege-separated token needs the privilege both on itself and on its user.")
    if status == 401:
        return (f"{base}. Authentication as '{principal}' was refused: check api_user, api_token_id and "
                "api_token_secret (or api_password).")
    if LOCK_RE.search(text):
        return (f"{base}. Another task holds the VM; wait for it to end (Datacenter > Tasks), or, if the lock "
                "is stale, clear it with 'qm unlock <vmid>'.")
    return base


class ProxmoxClient:
    """proxmoxer session with errors turned into ProxmoxError and asynchronous tasks awaited."""

    def __init__(self, module):
        self.module = module
        p = module.params
        if not HAS_PROXMOXER:
            from ansible.module_utils.basic import missing_required_lib  # noqa: PLC0415

            module.fail_json(msg=missing_required_lib("proxmoxer"), exception=PROXMOXER_IMPORT_ERROR)
        user = p["api_user"]
        if "@" not in user:
            module.fail_json(msg=f"api_user '{user}' has no realm: write it as user@realm (automation@pve)")
        verify = p["validate_certs"]
        if verify and p.get("ca_path"):
            verify = p["ca_path"]
        kwargs = {"port": p["api_port"], "verify_ssl": verify, "timeout": p["api_timeout"]}
        if p.get("api_token_id"):
            token = p["api_token_id"]
            if "!" in token:
                tuser, token = token.split("!", 1)
                if tuser != user:
                    module.fail_json(
                        msg=f"api_token_id '{p['api_token_id']}' belongs to {tuser}, not to api_user {user}")
            if not p.get("api_token_secret"):
                module.fail_json(msg="api_token_secret is empty: set the secret of the API token")
            kwargs.update(user=user, token_name=token, token_value=p["api_token_secret"])
            self.principal = f"{user}!{token}"
        else:
            kwargs.update(user=user, password=p["api_password"])
            self.principal = user
        self.task_timeout = p["task_timeout"]
        try:
            self.api = ProxmoxAPI(p["api_host"], **kwargs)
        except ResourceException as e:
            raise ProxmoxError(explain(e.status_code, e.status_message or str(e), self.principal, "POST",
                                       "/access/ticket")) from None
        except Exception as e:
            url = f"https://{p['api_host']}:{p['api_port']}"
            if type(e).__name__ == "AuthenticationError":  # proxmoxer's failed ticket login
                raise ProxmoxError(explain(401, "authentication failure", self.principal, "POST",
                                           "/access/ticket")) from None
            raise ProxmoxError(f"cannot reach the Proxmox API at {url}: {e}") from None

    def call(self, method, path, **params):
        """One API call; retries while the VM is locked by another task, then fails clearly."""
        deadline = time.monotonic() + LOCK_WAIT
        delay = 0.5
        while True:
            try:
                endpoint = self.api(path.strip("/"))
                return getattr(endpoint, method.lower())(**params)
            except ResourceException as e:
                text = e.content or e.status_message or ""
                if LOCK_RE.search(text) and time.monotonic() < deadline:
                    time.sleep(delay)
                    delay = min(delay * 2, 4)
                    continue
                raise ProxmoxError(explain(e.status_code, text, self.principal, method.upper(), path),
                                   status=e.status_code, errors=e.errors) from None
            except ProxmoxError:
                raise
            except Exception as e:
                raise ProxmoxError(f"Proxmox API {method.upper()} {path} failed: {e}") from None

    def wait(self, node, upid, what=None):
        """Wait for a task; raise ProxmoxError with its exit status and log tail when it did not end OK."""
        if not isinstance(upid, str) or not upid.startswith("UPID:"):
            return {"exitstatus": "OK"}
        deadline = time.monotonic() + self.task_timeout
        delay = 0.1
        while True:
            status = self.call("get", f"nodes/{node}/tasks/{upid}/status")
            if status.get("status") == "stopped":
                break
            if time.monotonic() > deadline:
                raise ProxmoxError(f"{what or 'task'} did not finish within {self.task_timeout} s", upid=upid)
            time.sleep(delay)
            delay = min(delay * 1.5, 2)
        if status.get("exitstatus") != "OK":
            log = self.call("get", f"nodes/{node}/tasks/{upid}/log", limit=500) or []
            lines = [e.get("t", "") for e in sorted(log, key=lambda e: e.get("n", 0))]
            raise ProxmoxError(f"{what or 'Proxmox task'} failed: {status.get('exitstatus')} (task {upid})",
                               upid=upid, exitstatus=status.get("exitstatus"), task_log=lines[-20:])
        return status


def parse_prop(value, default_key=None):
    """Parse a property string (`virtio=BC:..,bridge=vmbr0`) into a dict."""
    out = {}
    for i, part in enumerate(str(value or "").split(",")):
        if not part:
            continue
        if "=" in part:
            k, v = part.split("=", 1)
            out[k.strip()] = v.strip()
        elif i == 0 and default_key:
            out[default_key] = part.strip()
        else:
            out[part.strip()] = "1"
    return out


def size_to_gib(size):
    """`32G`, `512M`, `1T` or bytes to GiB (float)."""
    m = re.match(r"^(\d+(?:\.\d+)?)([KMGT]?)$", str(size or "0"))
    if not m:
        return 0.0
    mult = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[m.group(2)]
    return float(m.group(1)) * mult / (1 << 30)


def schematic_yaml(extensions):
    """The Image Factory schematic for a list of official extensions, in the factory's own YAML form."""
    if not extensions:
        return "customization: {}\n"
    lines = ["customization:", "    systemExtensions:", "        officialExtensions:"]
    lines += [f"            - {e}" for e in extensions]
    return "\n".join(lines) + "\n"


def schematic_id(extensions):
    """Schematic ID as the Image Factory computes it: SHA-256 of the marshalled schematic."""
    return hashlib.sha256(schematic_yaml(extensions).encode()).hexdigest()
