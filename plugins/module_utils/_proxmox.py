# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: HomeCluster developers
"""Private Proxmox VE API helper on proxmoxer: connection, clear errors, task waits, property strings."""

from __future__ import annotations

import hashlib
import re
import time
import traceback
from typing import Any

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
BARE_PERM_RE = re.compile(r"^Permission check failed\.?$")
WARNINGS_RE = re.compile(r"^WARNINGS: \d+$")
LOCK_WAIT = 30
SERVICE_ERRORS = {502, 503, 504, 595, 596, 597, 598, 599}
SPACE_RE = re.compile(r"insufficient free space|No space left on device|not enough space|out of space", re.I)
UNLOCK_HINT = ("Another task holds the VM (a backup, a migration, a snapshot); wait for it to end (Datacenter > "
               "Tasks), or, if the lock is stale, clear it on the node with 'qm unlock {vmid}'.")


def proxmox_argument_spec() -> dict[str, dict[str, Any]]:
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

    def __init__(self, msg: str, **details: Any) -> None:
        super().__init__(msg)
        self.msg = msg
        self.details = details

    @property
    def locked(self) -> bool:
        """Whether the call or task failed because another task holds the VM's lock."""
        return bool(LOCK_RE.search(str(self.details.get("exitstatus") or self.details.get("reason") or "")))

    def fail(self, module: Any, **extra: Any) -> None:
        module.fail_json(msg=self.msg, **self.details, **extra)


def _vmid_of(path: str, params: dict[str, Any] | None) -> str:
    m = re.search(r"qemu/(\d+)", path)
    if m:
        return m.group(1)
    return str((params or {}).get("vmid") or "<vmid>")


def bare_permission_hint(principal: str, method: str, path: str, params: dict[str, Any] | None = None) -> str:
    """What a bare `Permission check failed` (no path, no privilege) most likely means for this call.

    PVE raises it without details where a check has alternatives: create (VM.Allocate on the VM or its
    pool) and download-url (Sys.AccessNetwork on the node, or Sys.Audit and Sys.Modify on /).
    """
    vmid = _vmid_of(path, params)
    if method == "POST" and re.search(r"nodes/[^/]+/qemu/?$", path):
        stores = sorted({str(v).split(":", 1)[0] for k, v in (params or {}).items()
                         if re.match(r"^(scsi|virtio|sata|ide|efidisk|tpmstate)\d+$", k) and ":" in str(v)})
        where = ", ".join(f"/storage/{s}" for s in stores) or "/storage/<storage>"
        return (f"The API user or token '{principal}' most likely lacks VM.Allocate on /vms/{vmid} (or on the pool "
                f"/pool/<pool> the VM goes into); creating the VM also needs Datastore.AllocateSpace on {where}, "
                "VM.Config.CPU, VM.Config.Memory, VM.Config.Options, VM.Config.HWType, VM.Config.Network and "
                "VM.Config.Cloudinit on the VM, and SDN.Use on the bridge. Grant the role of "
                "docs/roles/proxmox_vm.md ('pveum acl modify /vms --tokens "
                f"{principal} --roles <role>'); a privilege-separated token needs it both on itself and on its user.")
    if "download-url" in path:
        node = path.split("/")[1] if path.startswith("nodes/") else "<node>"
        return (f"The API user or token '{principal}' most likely lacks Sys.AccessNetwork on /nodes/{node} (or "
                "both Sys.Audit and Sys.Modify on /), which download-url needs besides Datastore.AllocateTemplate "
                "on the storage.")
    return (f"The API user or token '{principal}' lacks a privilege this call needs; see the permissions of "
            f"{method} /{path} in the API viewer and docs/roles/proxmox_vm.md.")


def explain(status: int | None, message: str | None, principal: str, method: str, path: str, *,  # noqa: PLR0911 - one answer per kind of error
            params: dict[str, Any] | None = None) -> str:
    """A message for an API error that says what to do about it."""
    text = (message or "").strip()
    base = f"Proxmox API {method} {path} failed: {status} {text}"
    perm = PERM_RE.search(text)
    if status == 403 and perm:
        where, priv = perm.groups()
        return (f"{base}. The API user or token '{principal}' lacks {priv} on {where}: grant it (for example "
                f"'pveum acl modify {where} --tokens {principal} --roles <role with {priv}>'); a "
                "privilege-separated token needs the privilege both on itself and on its user.")
    if status == 403 and BARE_PERM_RE.match(text):
        return f"{base}. {bare_permission_hint(principal, method, path, params)}"
    if status == 401:
        return (f"{base}. Authentication as '{principal}' was refused: check api_user, api_token_id and "
                "api_token_secret (or api_password).")
    if LOCK_RE.search(text):
        return f"{base}. {UNLOCK_HINT.format(vmid=_vmid_of(path, params))}"
    if "detected modified configuration" in text:
        return f"{base}. Someone changed the VM while this run planned its change: rerun to plan again."
    if status in SERVICE_ERRORS:
        return (f"{base}. The Proxmox API (pveproxy/pvedaemon on the node) did not serve the call: check the "
                "node ('systemctl status pveproxy pvedaemon', 'journalctl -u pvedaemon'), then rerun; the "
                "modules read the current state first, so a rerun goes on where this run stopped.")
    return base


def task_hint(exitstatus: str) -> str:
    """What to do about a failed task's exit status."""
    if SPACE_RE.search(exitstatus):
        store = re.search(r"storage '([^']+)'", exitstatus)
        where = f"storage '{store.group(1)}'" if store else "the storage"
        return (f"{where} has no room for the volume: free space on it (or grow it), or put the disk on another "
                "storage (disk.storage / data_disk.storage), then rerun.")
    return "The task log (task_log) shows what failed; fix that, then rerun."


class ProxmoxClient:
    """proxmoxer session with errors turned into ProxmoxError and asynchronous tasks awaited."""

    def __init__(self, module: Any) -> None:
        self.module = module
        self.warnings: list[str] = []
        p = module.params
        if not HAS_PROXMOXER:
            from ansible.module_utils.basic import missing_required_lib  # noqa: PLC0415

            module.fail_json(msg=missing_required_lib("proxmoxer"), exception=PROXMOXER_IMPORT_ERROR)
        user = p["api_user"]
        if "@" not in user:
            module.fail_json(msg=f"api_user '{user}' has no realm: write it as user@realm (automation@pve)")
        verify = p["validate_certs"]
        if not verify:
            # every run says so, as the module's own warning (not only urllib3's, which Ansible hides)
            module.warn(f"validate_certs is false: the Proxmox API at {p['api_host']}:{p['api_port']} is used "
                        "without verifying its certificate. Set proxmox_vm_ca_path (api ca_path) to the "
                        "cluster's CA (/etc/pve/pve-root-ca.pem) and validate_certs back to true.")
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
        self.api_timeout = p["api_timeout"]
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

    def call(self, method: str, path: str, **params: Any) -> Any:
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
                raise ProxmoxError(explain(e.status_code, text, self.principal, method.upper(), path, params=params),
                                   status=e.status_code, errors=e.errors, reason=text) from None
            except ProxmoxError:
                raise
            except Exception as e:
                hint = ("no answer within api_timeout ({t} s): check that the node is up and not overloaded, raise "
                        "api_timeout if it is only slow, then rerun; a write may still have happened, and the "
                        "rerun reads it back before doing anything" if "timed out" in str(e).lower() or
                        type(e).__name__ in ("Timeout", "ReadTimeout", "ConnectTimeout") else
                        "check that the node is up and reachable (api_host, api_port), then rerun")
                raise ProxmoxError(f"Proxmox API {method.upper()} {path} failed: {e}. "
                                   f"{hint.format(t=self.api_timeout)}") from None

    def wait(self, node: str, upid: Any, what: str | None = None) -> dict[str, Any]:
        """Wait for a task; raise ProxmoxError with its exit status and log tail when it did not end OK.

        `WARNINGS: n` is a success in PVE (the worker finished, and logged n warnings): the task's
        `WARN:` lines are kept in `self.warnings` for the module to show.
        """
        if not isinstance(upid, str) or not upid.startswith("UPID:"):
            return {"exitstatus": "OK"}
        deadline = time.monotonic() + self.task_timeout
        delay = 0.1
        while True:
            status = self.call("get", f"nodes/{node}/tasks/{upid}/status")
            if status.get("status") == "stopped":
                break
            if time.monotonic() > deadline:
                raise ProxmoxError(f"{what or 'task'} did not finish within {self.task_timeout} s (task_timeout); "
                                   f"see the task {upid} in Datacenter > Tasks, then rerun", upid=upid)
            time.sleep(delay)
            delay = min(delay * 1.5, 2)
        exitstatus = str(status.get("exitstatus") or "")
        if exitstatus == "OK":
            return status
        lines = self.task_log(node, upid)
        if WARNINGS_RE.match(exitstatus):
            warns = [ln.split("WARN:", 1)[1].strip() for ln in lines if "WARN:" in ln] or [exitstatus]
            self.warnings.extend(f"{what or 'Proxmox task'}: {w} (task {upid})" for w in warns)
            return {**status, "warnings": warns}
        msg = f"{what or 'Proxmox task'} failed: {exitstatus} (task {upid})"
        if LOCK_RE.search(exitstatus):
            parts = upid.split(":")
            msg += ". " + UNLOCK_HINT.format(vmid=(parts[6] if len(parts) > 6 and parts[6] else "<vmid>"))
        else:
            msg += ". " + task_hint(exitstatus)
        raise ProxmoxError(msg, upid=upid, exitstatus=exitstatus, task_log=lines[-20:])

    def task_log(self, node: str, upid: str) -> list[str]:
        """The task's log lines in order (at most 500)."""
        log = self.call("get", f"nodes/{node}/tasks/{upid}/log", limit=500) or []
        return [e.get("t", "") for e in sorted(log, key=lambda e: e.get("n", 0))]

    def run_task(self, node: str, method: str, path: str, what: str, **params: Any) -> dict[str, Any]:
        """Start a task and wait for it; retry (for up to LOCK_WAIT s) while the VM is locked.

        PVE checks the lock of start, stop, shutdown, reboot, resize and destroy inside the worker: the
        call answers 200 with a UPID and the task then ends with `VM is locked (backup)`.
        """
        deadline = time.monotonic() + LOCK_WAIT
        delay = 0.5
        while True:
            try:
                return self.wait(node, self.call(method, path, **params), what)
            except ProxmoxError as e:
                if not e.locked or time.monotonic() >= deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 4)

    def vm_status(self, node: str, vmid: int) -> dict[str, Any]:
        """The VM's live state from qemu-server (`status/current`), not pvestatd's cached view."""
        return self.call("get", f"nodes/{node}/qemu/{vmid}/status/current") or {}


def parse_prop(value: Any, default_key: str | None = None) -> dict[str, str]:
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


def size_to_gib(size: Any) -> float:
    """`32G`, `512M`, `1T` or bytes to GiB (float)."""
    m = re.match(r"^(\d+(?:\.\d+)?)([KMGT]?)$", str(size or "0"))
    if not m:
        return 0.0
    mult = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[m.group(2)]
    return float(m.group(1)) * mult / (1 << 30)


def schematic_yaml(extensions: list[str]) -> str:
    """The Image Factory schematic for a list of official extensions, in the factory's own YAML form."""
    if not extensions:
        return "customization: {}\n"
    lines = ["customization:", "    systemExtensions:", "        officialExtensions:"]
    lines += [f"            - {e}" for e in extensions]
    return "\n".join(lines) + "\n"


def schematic_id(extensions: list[str]) -> str:
    """Schematic ID as the Image Factory computes it: SHA-256 of the marshalled schematic."""
    return hashlib.sha256(schematic_yaml(extensions).encode()).hexdigest()
