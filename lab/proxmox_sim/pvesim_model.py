# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: HomeCluster developers
# ruff: noqa: PLR0917, S311 - API handlers mirror PVE's branching; random only fakes ids
"""State of the simulated Proxmox VE cluster: nodes, storages, VMs, tasks, ACLs.

Shapes, messages and privilege rules follow the Proxmox VE API documentation
(pve-docs api-viewer) and the behaviour of PVE 8: asynchronous workers return a
UPID, VMs carry a `lock` while a create runs, a per-VM file lock serialises
workers, and permission failures read `Permission check failed (<path>, <priv>)`.
"""

from __future__ import annotations

import copy
import json
import os
import random
import re
import threading
import time

ALL_PRIVS = [
    "Datastore.Allocate", "Datastore.AllocateSpace", "Datastore.AllocateTemplate", "Datastore.Audit",
    "SDN.Allocate", "SDN.Audit", "SDN.Use", "Sys.AccessNetwork", "Sys.Audit", "Sys.Console", "Sys.Modify",
    "Sys.PowerMgmt", "VM.Allocate", "VM.Audit", "VM.Backup", "VM.Clone", "VM.Config.CDROM",
    "VM.Config.CPU", "VM.Config.Cloudinit", "VM.Config.Disk", "VM.Config.HWType", "VM.Config.Memory",
    "VM.Config.Network", "VM.Config.Options", "VM.Console", "VM.Migrate", "VM.PowerMgmt",
    "VM.Snapshot", "VM.Snapshot.Rollback",
]
_VM_ADMIN = [p for p in ALL_PRIVS if p.startswith("VM.")] + ["Datastore.AllocateSpace", "Datastore.Audit"]
ROLES = {
    "Administrator": ALL_PRIVS,
    "PVEVMAdmin": _VM_ADMIN,
    "PVEVMUser": ["VM.Audit", "VM.Console", "VM.PowerMgmt", "VM.Backup", "VM.Config.CDROM",
                  "VM.Config.Cloudinit", "VM.Snapshot"],
    "PVEDatastoreAdmin": ["Datastore.Allocate", "Datastore.AllocateSpace", "Datastore.AllocateTemplate",
                          "Datastore.Audit"],
    "PVEDatastoreUser": ["Datastore.AllocateSpace", "Datastore.Audit"],
    "PVEAuditor": ["Datastore.Audit", "SDN.Audit", "Sys.Audit", "VM.Audit"],
    "PVESDNUser": ["SDN.Audit", "SDN.Use"],
    "NoAccess": [],
}

# Which privilege guards which VM option: qemu-server's PVE::API2::Qemu option groups and
# check_vm_modify_config_perm (drives, serial ports and tags are checked apart from these).
CPU_KEYS = {"cores", "cpu", "cpulimit", "cpuunits", "numa", "smp", "sockets", "vcpus", "affinity"}
MEMORY_KEYS = {"memory", "balloon", "shares"}
HWTYPE_KEYS = {"acpi", "hotplug", "kvm", "machine", "scsihw", "smbios1", "tablet", "vga", "watchdog", "audio0"}
GENERAL_KEYS = {"agent", "autostart", "bios", "description", "keyboard", "localtime", "migrate_downtime",
                "migrate_speed", "name", "onboot", "ostype", "protection", "reboot", "startdate", "startup", "tdf",
                "template", "tags", "vmgenid", "meta"}
DISKOPT_KEYS = {"boot", "bootdisk", "vmstatestorage"}
CLOUDINIT_KEYS = {"cicustom", "cipassword", "citype", "ciuser", "ciupgrade", "nameserver", "searchdomain", "sshkeys"}
DISK_RE = re.compile(r"^(scsi|virtio|sata|ide|efidisk|tpmstate|unused)\d+$")
NET_RE = re.compile(r"^net\d+$")
NON_HOTPLUG = CPU_KEYS | MEMORY_KEYS | HWTYPE_KEYS | {"bios", "ostype"}
MAC_OUI = "BC:24:11"
NAME_RE = re.compile(r"^(?=.{1,63}$)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9-]+)*$")


class ApiError(Exception):
    """An error the API answers with: HTTP status, message and per-parameter errors."""

    def __init__(self, status, message, errors=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors


def param_error(errors):
    return ApiError(400, "Parameter verification failed.", errors)


def perm_error(path, privs):
    return ApiError(403, f"Permission check failed ({path}, {'|'.join(privs)})")


def parse_prop(value, default_key=None):
    """Parse a PVE property string `a=b,c=d` (first item may be a bare default key value)."""
    out = {}
    for i, part in enumerate(str(value).split(",")):
        if not part:
            continue
        if "=" in part:
            k, v = part.split("=", 1)
            out[k] = v
        elif i == 0 and default_key:
            out[default_key] = part
        else:
            out[part] = "1"
    return out


def size_to_bytes(size):
    m = re.match(r"^(\d+(?:\.\d+)?)([KMGT]?)$", str(size))
    if not m:
        raise ValueError(size)
    mult = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[m.group(2)]
    return int(float(m.group(1)) * mult)


def bytes_to_size(n):
    for unit, mult in (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= mult and n % mult == 0:
            return f"{n // mult}{unit}"
    return str(n)


class Task:
    def __init__(self, node, ttype, tid, user, pid):
        self.node = node
        self.type = ttype
        self.id = str(tid)
        self.user = user
        self.pid = pid
        self.pstart = random.randint(0x100000, 0xFFFFFF)
        self.starttime = int(time.time())
        self.endtime = None
        self.status = "running"
        self.exitstatus = None
        self.log = []
        self.upid = (f"UPID:{node}:{pid:08X}:{self.pstart:08X}:{self.starttime:08X}:"
                     f"{ttype}:{self.id}:{user}:")

    def as_status(self):
        d = {"upid": self.upid, "node": self.node, "pid": self.pid, "pstart": self.pstart,
             "starttime": self.starttime, "type": self.type, "id": self.id, "user": self.user,
             "status": self.status}
        if self.status == "stopped":
            d["exitstatus"] = self.exitstatus
        return d


class Cluster:
    """Everything the simulator knows, guarded by one lock; workers run in threads."""

    def __init__(self, config, state_file=None, hooks=None):
        self.config = config
        self.lock = threading.RLock()
        self.state_file = state_file
        self.hooks = hooks
        self.task_delay = float(config.get("task_delay", 0.3))
        self.lock_timeout = float(config.get("lock_timeout", 10))
        self.nodes = list(config.get("nodes") or ["pve1"])
        self.storages = config.get("storages") or default_storages()
        self.users = config.get("users") or {}
        self.tokens = config.get("tokens") or {}
        self.vms = {}  # vmid -> {"node", "config", "status", "started"}
        self.content = {}  # (node-or-shared, storage) -> {volid: entry}
        self.tasks = {}
        self.vm_flocks = {}
        self.next_pid = 0x1000
        self.running_tasks = 0
        self.max_running_tasks = 0
        self.faults = []
        # pvestatd: /cluster/resources takes name, status and usage from its last round, every
        # status_period seconds (PVE: about 10 s); 0 shows the live state.
        self.status_period = float(config.get("status_period", 10))
        self._statd = {}
        if state_file and os.path.exists(state_file):
            self._load()
        self.refresh_pvestatd()
        if self.status_period > 0:
            threading.Thread(target=self._pvestatd_loop, daemon=True, name="pvestatd").start()

    # ---------- pvestatd ----------
    resource_fn = None  # set by pvesim_api: (vmid, vm) -> the VM's live resource entry

    def refresh_pvestatd(self):
        """One pvestatd round: remember every VM's name, status and usage as they are now."""
        if not self.resource_fn:
            return
        with self.lock:
            self._statd = {vmid: self.resource_fn(vmid, vm) for vmid, vm in self.vms.items()}

    def _pvestatd_loop(self):
        while True:
            time.sleep(self.status_period)
            self.refresh_pvestatd()

    def pvestatd_view(self):
        """{vmid: entry} as pvestatd last saw it (the live state when status_period is 0)."""
        if self.status_period <= 0:
            self.refresh_pvestatd()
        return dict(self._statd)

    def hold_lock(self, vmid, lock, seconds=None, failures=None):
        """A backup (or another job) holds the VM's config lock, as vzdump does: for `seconds`, or until
        it has made `failures` calls or tasks fail (a deterministic "the backup ends meanwhile")."""
        with self.lock:
            vm = self.vms.get(int(vmid))
            if not vm:
                raise ApiError(400, f"no VM {vmid}")
            vm["config"]["lock"] = lock
            if failures is not None:
                vm["lock_failures_left"] = int(failures)
        if seconds is None:
            return

        def release():
            time.sleep(float(seconds))
            with self.lock:
                if vm["config"].get("lock") == lock:
                    vm["config"].pop("lock", None)

        threading.Thread(target=release, daemon=True).start()

    # ---------- persistence ----------
    def _load(self):
        with open(self.state_file, encoding="utf-8") as f:
            data = json.load(f)
        self.vms = {int(k): v for k, v in data.get("vms", {}).items()}
        self.content = {tuple(k.split("|", 1)): v for k, v in data.get("content", {}).items()}

    def save(self):
        if not self.state_file:
            return
        with self.lock:
            data = {"vms": self.vms, "content": {"|".join(k): v for k, v in self.content.items()}}
            tmp = self.state_file + ".tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=1, sort_keys=True)
            os.replace(tmp, self.state_file)

    # ---------- access control ----------
    def authenticate_password(self, username, password):
        user = self.users.get(username)
        if not user or user.get("password") != password or not user.get("enable", True):
            raise ApiError(401, "authentication failure")
        return username

    def authenticate_token(self, tokenid, secret):
        tok = self.tokens.get(tokenid)
        if not tok or tok.get("secret") != secret:
            raise ApiError(401, "authentication failure")
        return tokenid

    def _acl_privs(self, acl, path):
        """Privileges from an ACL list at path: the most specific matching entry wins, parents propagate."""
        parts = [p for p in path.split("/") if p]
        privs = set()
        for depth in range(len(parts) + 1):
            cur = "/" + "/".join(parts[:depth])
            entries = [e for e in acl if _norm(e.get("path", "/")) == cur]
            if not entries:
                continue
            exact = depth == len(parts)
            applicable = [e for e in entries if exact or e.get("propagate", True)]
            if applicable:
                privs = set()
                for e in applicable:
                    for role in e.get("roles", []):
                        privs.update(ROLES.get(role, []))
                    privs.update(e.get("privs", []))
        return privs

    def privs(self, principal, path):
        user = principal.split("!", 1)[0]
        if user == "root@pam":
            return set(ALL_PRIVS)
        privs = self._acl_privs(self.users.get(user, {}).get("acl", []), path)
        if "!" in principal:
            tok = self.tokens.get(principal, {})
            if tok.get("privsep", True):
                privs &= self._acl_privs(tok.get("acl", []), path)
        return privs

    def check(self, principal, path, privs, any_of=False):
        have = self.privs(principal, path)
        ok = any(p in have for p in privs) if any_of else all(p in have for p in privs)
        if not ok:
            missing = privs if any_of else [p for p in privs if p not in have]
            raise perm_error(path, missing)

    def can(self, principal, path, privs):
        have = self.privs(principal, path)
        return any(p in have for p in privs)

    # ---------- faults ----------
    def take_fault(self, kind, **match):
        """Return (and consume one use of) the first fault of this kind matching the request."""
        with self.lock:
            for f in self.faults:
                if f.get("type", "error") != kind:
                    continue
                if "method" in f and f["method"].upper() != match.get("method", "").upper():
                    continue
                if "path" in f and not re.search(f["path"], match.get("path", "")):
                    continue
                if "task_type" in f and f["task_type"] != match.get("task_type"):
                    continue
                if "vmid" in f and str(f["vmid"]) != str(match.get("vmid")):
                    continue
                f["count"] = f.get("count", 1) - 1
                if f["count"] <= 0:
                    self.faults.remove(f)
                return dict(f)
        return None

    # ---------- tasks ----------
    def start_task(self, node, ttype, tid, user, work, vmid=None, on_error=None):
        """Run `work(task)` in a worker thread after the configured delay; return the UPID."""
        with self.lock:
            self.next_pid += random.randint(1, 40)
            task = Task(node, ttype, tid, user, self.next_pid)
            self.tasks[task.upid] = task
            self.running_tasks += 1
            self.max_running_tasks = max(self.max_running_tasks, self.running_tasks)
        fault = self.take_fault("task_error", task_type=ttype, vmid=vmid)
        warning = self.take_fault("task_warning", task_type=ttype, vmid=vmid)
        delay = self.task_delay + float((fault or {}).get("delay", 0))

        def run():
            flock = self.vm_flocks.setdefault(vmid, threading.Lock()) if vmid is not None else None
            try:
                if flock is not None and not flock.acquire(timeout=self.lock_timeout):
                    raise ApiError(500, f"can't lock file '/var/lock/qemu-server/lock-{vmid}.conf' - got timeout")
                try:
                    time.sleep(delay)
                    if fault:
                        raise ApiError(500, fault.get("message", f"simulated failure of {ttype}"))
                    work(task)
                finally:
                    if flock is not None:
                        flock.release()
                if warning:
                    task.log.append(f"WARN: {warning.get('message', 'simulated warning')}")
                    task.exitstatus = "WARNINGS: 1"
                    task.log.append("TASK WARNINGS: 1")
                else:
                    task.exitstatus = "OK"
                    task.log.append("TASK OK")
            except ApiError as e:
                if on_error:
                    on_error(task)
                task.exitstatus = e.message
                task.log.append(f"TASK ERROR: {e.message}")
            except Exception as e:
                if on_error:
                    on_error(task)
                task.exitstatus = f"internal error: {e}"
                task.log.append(f"TASK ERROR: internal error: {e}")
            finally:
                with self.lock:
                    task.status = "stopped"
                    task.endtime = int(time.time())
                    self.running_tasks -= 1
                self.save()

        threading.Thread(target=run, daemon=True, name=task.upid).start()
        return task.upid

    def get_task(self, upid):
        task = self.tasks.get(upid)
        if not task:
            raise ApiError(500, f"unable to parse worker upid '{upid}'" if not upid.startswith("UPID:")
                           else "no such task")
        return task

    # ---------- storage ----------
    def storage(self, node, storage):
        st = self.storages.get(storage)
        if not st or (st.get("nodes") and node not in st["nodes"]):
            raise ApiError(500, f"storage '{storage}' does not exist")
        return st

    def content_of(self, node, storage):
        st = self.storage(node, storage)
        key = ("shared" if st.get("shared") else node, storage)
        return self.content.setdefault(key, {})

    def alloc_disk(self, node, storage, vmid, size_bytes, fmt="raw"):
        st = self.storage(node, storage)
        if "images" not in st.get("content", []):
            raise ApiError(500, f"storage '{storage}' does not support vm images")
        content = self.content_of(node, storage)
        n = 0
        while f"{storage}:vm-{vmid}-disk-{n}" in content:
            n += 1
        volid = f"{storage}:vm-{vmid}-disk-{n}"
        self.check_space(storage, st, content, size_bytes, f"vm-{vmid}-disk-{n}")
        content[volid] = {"volid": volid, "content": "images", "format": fmt, "size": size_bytes,
                          "vmid": vmid, "ctime": int(time.time())}
        return volid

    @staticmethod
    def check_space(storage, st, content, size_bytes, name):
        """Refuse an allocation the storage has no room for, as LVM answers it (4 MiB extents)."""
        total = st.get("total", 100 << 30)
        free = total - sum(e["size"] for e in content.values())
        if size_bytes > free:
            extents = lambda n: max(n, 0) // (4 << 20)  # noqa: E731 - LVM counts 4 MiB extents
            raise ApiError(500, f"lvcreate 'pve/{name}' error:   Volume group \"pve\" has insufficient free space "
                           f"({extents(free)} extents): {extents(size_bytes)} required. (storage '{storage}')")

    def free_volume(self, node, volid):
        storage = volid.split(":", 1)[0]
        try:
            self.content_of(node, storage).pop(volid, None)
        except ApiError:
            pass

    def volume(self, node, volid):
        storage = volid.split(":", 1)[0]
        entry = self.content_of(node, storage).get(volid)
        if not entry:
            raise ApiError(500, f"volume '{volid}' does not exist")
        return entry

    # ---------- VMs ----------
    def vm(self, node, vmid):
        vm = self.vms.get(vmid)
        if not vm or vm["node"] != node:
            raise ApiError(500, f"Configuration file 'nodes/{node}/qemu-server/{vmid}.conf' does not exist")
        return vm

    def check_lock(self, vm, skiplock=False):
        lock = vm["config"].get("lock")
        if lock and not skiplock:
            if "lock_failures_left" in vm:
                vm["lock_failures_left"] -= 1
                if vm["lock_failures_left"] <= 0:
                    vm.pop("lock_failures_left")
                    vm["config"].pop("lock", None)
            raise ApiError(500, f"VM is locked ({lock})")

    def maxdisk(self, vm):
        d = parse_prop(vm["config"].get("scsi0", ""), "file")
        return size_to_bytes(d["size"]) if "size" in d else 0


def _norm(path):
    return "/" + "/".join(x for x in str(path).split("/") if x)


def default_storages():
    return {
        "local": {"type": "dir", "content": ["iso", "vztmpl", "backup", "import"], "shared": 0,
                  "path": "/var/lib/vz", "total": 100 << 30},
        "local-lvm": {"type": "lvmthin", "content": ["images", "rootdir"], "shared": 0, "total": 500 << 30},
    }


def public_vm_config(vm):
    cfg = copy.deepcopy(vm["config"])
    return cfg
