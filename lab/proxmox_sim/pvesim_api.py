# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: HomeCluster developers
# ruff: noqa: PLR0911, PLR0912, PLR0917, PLW2901, S311 - API handlers mirror PVE's branching; random only fakes ids
"""The /api2/json endpoints of the simulator, one function per method and path.

Each handler takes (cluster, principal, params, **path_args) and returns the `data`
of the answer, or raises ApiError. Paths, parameters, privileges and return shapes
follow the Proxmox VE API viewer for PVE 8.
"""

from __future__ import annotations

import hashlib
import random
import re
import time

import pvesim_model
from pvesim_model import (
    CLOUDINIT_KEYS,
    CPU_KEYS,
    DISK_RE,
    DISKOPT_KEYS,
    GENERAL_KEYS,
    HWTYPE_KEYS,
    MAC_OUI,
    MEMORY_KEYS,
    NET_RE,
    NON_HOTPLUG,
    ApiError,
    bytes_to_size,
    param_error,
    parse_prop,
    size_to_bytes,
)

VERSION = {"version": "8.4.1", "release": "8.4", "repoid": "2a5fa54a8503f96d"}
INT_KEYS = {"cores", "sockets", "onboot", "balloon", "vcpus", "cpuunits", "protection", "template", "numa", "acpi",
            "kvm", "tablet", "localtime"}
SCSIHW = {"lsi", "lsi53c810", "virtio-scsi-pci", "virtio-scsi-single", "megasas", "pvscsi"}
NET_MODELS = {"virtio", "e1000", "e1000e", "rtl8139", "vmxnet3"}
ROUTES = []


def route(method, template):
    regex = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$")

    def deco(fn):
        ROUTES.append((method, template, regex, fn))
        return fn

    return deco


def match(method, path):
    """Return (template, handler, path_args) or raise the 501 PVE answers for unknown paths."""
    known_path = False
    for m, template, regex, fn in ROUTES:
        found = regex.match(path)
        if found:
            known_path = True
            if m == method:
                return template, fn, found.groupdict()
    if known_path:
        raise ApiError(501, f"Method '{method} {path}' not implemented")
    raise ApiError(501, f"Method '{method} {path}' not implemented")


def _node(cl, node):
    if node not in cl.nodes:
        raise ApiError(500, f"hostname lookup '{node}' failed - failed to get address info for: {node}: "
                       "Name or service not known")


def _vmid(value, key="vmid"):
    try:
        vmid = int(value)
    except (TypeError, ValueError):
        raise param_error({key: f"type check ('integer') failed - got '{value}'"}) from None
    if vmid < 100 or vmid > 999999999:
        raise param_error({key: "value must have a minimum value of 100" if vmid < 100
                           else "value must have a maximum value of 999999999"})
    return vmid


def _bool(v):
    return 1 if str(v).lower() in ("1", "true", "yes", "on") else 0


# ---------------------------------------------------------------- cluster / nodes
@route("GET", "/version")
def get_version(cl, who, p):
    return dict(VERSION)


@route("GET", "/nodes")
def get_nodes(cl, who, p):
    out = []
    for i, n in enumerate(cl.nodes):
        e = {"node": n, "status": "online", "type": "node", "id": f"node/{n}", "level": "",
             "ssl_fingerprint": ":".join(f"{(i * 37 + k) % 256:02X}" for k in range(32))}
        if cl.can(who, f"/nodes/{n}", ["Sys.Audit"]):
            e.update({"cpu": 0.03, "maxcpu": 16, "mem": 8 << 30, "maxmem": 64 << 30, "uptime": 864000,
                      "disk": 10 << 30, "maxdisk": 100 << 30})
        out.append(e)
    return out


@route("GET", "/nodes/{node}")
def get_node_index(cl, who, p, node):
    _node(cl, node)
    return [{"name": n} for n in ("qemu", "storage", "tasks", "status", "version")]


@route("GET", "/nodes/{node}/status")
def get_node_status(cl, who, p, node):
    _node(cl, node)
    cl.check(who, f"/nodes/{node}", ["Sys.Audit"])
    return {"uptime": 864000, "cpu": 0.03, "memory": {"total": 64 << 30, "used": 8 << 30, "free": 56 << 30},
            "pveversion": "pve-manager/8.4.1/2a5fa54a8503f96d", "kversion": "Linux 6.8.12-9-pve",
            "cpuinfo": {"cpus": 16, "sockets": 1, "model": "Simulated CPU"}}


@route("GET", "/cluster/status")
def get_cluster_status(cl, who, p):
    out = [{"type": "cluster", "id": "cluster", "name": "homelab", "nodes": len(cl.nodes), "quorate": 1,
            "version": len(cl.nodes) + 2}]
    for i, n in enumerate(cl.nodes, 1):
        out.append({"type": "node", "id": f"node/{n}", "name": n, "nodeid": i, "online": 1, "local": int(i == 1),
                    "ip": f"127.0.0.{i}", "level": ""})
    return out


def _vm_resource(vmid, vm):
    cfg = vm["config"]
    mem = int(parse_prop(cfg.get("memory", "512"), "current")["current"])
    e = {"id": f"qemu/{vmid}", "type": "qemu", "vmid": vmid, "name": cfg.get("name", f"VM {vmid}"),
         "node": vm["node"], "status": vm["status"], "maxmem": mem << 20, "maxcpu": int(cfg.get("cores", 1)),
         "maxdisk": vm.get("maxdisk", 0), "mem": (mem << 20) // 4 if vm["status"] == "running" else 0,
         "cpu": 0.01 if vm["status"] == "running" else 0, "disk": 0, "diskread": 0, "diskwrite": 0,
         "netin": 0, "netout": 0, "template": 0,
         "uptime": int(time.time() - vm["started"]) if vm["status"] == "running" else 0}
    if cfg.get("tags"):
        e["tags"] = cfg["tags"]
    if cfg.get("lock"):
        e["lock"] = cfg["lock"]
    return e


def _statd_resource(vmid, vm, seen):
    """A VM as /cluster/resources shows it: VMID and node from the cluster's VM list (at once), tags and
    lock from the config (at once), name, status and usage from pvestatd's last round (`seen`)."""
    live = _vm_resource(vmid, vm)
    e = {"id": live["id"], "type": "qemu", "vmid": vmid, "node": vm["node"], "template": 0}
    if seen is None:
        e["status"] = "unknown"
    else:
        e.update({k: v for k, v in seen.items() if k not in ("tags", "lock")})
    for k in ("tags", "lock"):
        if k in live:
            e[k] = live[k]
    return e


@route("GET", "/cluster/resources")
def get_cluster_resources(cl, who, p):
    kind = p.get("type")
    if kind and kind not in ("vm", "storage", "node", "sdn"):
        raise param_error({"type": f"value '{kind}' does not have a value in the enumeration 'vm, storage, node, sdn'"})
    out = []
    with cl.lock:
        if kind in (None, "vm"):
            seen = cl.pvestatd_view()
            for vmid, vm in sorted(cl.vms.items()):
                if cl.can(who, f"/vms/{vmid}", ["VM.Audit"]):
                    out.append(_statd_resource(vmid, vm, seen.get(vmid)))
        if kind in (None, "node"):
            for n in cl.nodes:
                if cl.can(who, f"/nodes/{n}", ["Sys.Audit"]):
                    out.append({"id": f"node/{n}", "type": "node", "node": n, "status": "online",
                                "maxcpu": 16, "maxmem": 64 << 30, "cpu": 0.03, "mem": 8 << 30, "uptime": 864000})
        if kind in (None, "storage"):
            for n in cl.nodes:
                for name, st in sorted(cl.storages.items()):
                    if st.get("nodes") and n not in st["nodes"]:
                        continue
                    if cl.can(who, f"/storage/{name}", ["Datastore.Audit", "Datastore.AllocateSpace"]):
                        out.append({"id": f"storage/{n}/{name}", "type": "storage", "node": n, "storage": name,
                                    "plugintype": st["type"], "content": ",".join(st["content"]),
                                    "shared": int(bool(st.get("shared"))), "status": "available",
                                    "maxdisk": st.get("total", 100 << 30), "disk": 0})
    return out


@route("GET", "/cluster/nextid")
def get_nextid(cl, who, p):
    with cl.lock:
        if p.get("vmid") not in (None, ""):
            vmid = _vmid(p["vmid"])
            if vmid in cl.vms:
                raise param_error({"vmid": f"VM {vmid} already exists"})
            return str(vmid)
        vmid = 100
        while vmid in cl.vms:
            vmid += 1
        return str(vmid)


@route("GET", "/storage")
def get_storage_config(cl, who, p):
    return [{"storage": n, "type": s["type"], "content": ",".join(s["content"]), "shared": int(bool(s.get("shared"))),
             "digest": hashlib.sha1(n.encode()).hexdigest()}  # noqa: S324 - a digest, as PVE's
            for n, s in sorted(cl.storages.items()) if cl.can(who, f"/storage/{n}", ["Datastore.Audit",
                                                                                     "Datastore.AllocateSpace"])]


# ---------------------------------------------------------------- storage
@route("GET", "/nodes/{node}/storage")
def get_node_storage(cl, who, p, node):
    _node(cl, node)
    out = []
    for name, st in sorted(cl.storages.items()):
        if st.get("nodes") and node not in st["nodes"]:
            continue
        if not cl.can(who, f"/storage/{name}", ["Datastore.Audit", "Datastore.AllocateSpace"]):
            continue
        if p.get("content") and p["content"] not in st["content"]:
            continue
        used = sum(e["size"] for e in cl.content_of(node, name).values())
        total = st.get("total", 100 << 30)
        out.append({"storage": name, "type": st["type"], "content": ",".join(st["content"]), "active": 1,
                    "enabled": 1, "shared": int(bool(st.get("shared"))), "total": total, "used": used,
                    "avail": total - used, "used_fraction": round(used / total, 6)})
    return out


@route("GET", "/nodes/{node}/storage/{storage}/content")
def get_storage_content(cl, who, p, node, storage):
    _node(cl, node)
    cl.storage(node, storage)
    cl.check(who, f"/storage/{storage}", ["Datastore.Audit", "Datastore.AllocateSpace"], any_of=True)
    with cl.lock:
        entries = [dict(e) for e in cl.content_of(node, storage).values()]
    if p.get("content"):
        entries = [e for e in entries if e["content"] == p["content"]]
    if p.get("vmid"):
        entries = [e for e in entries if str(e.get("vmid")) == str(p["vmid"])]
    for e in entries:
        e.pop("url", None)
    return sorted(entries, key=lambda e: e["volid"])


@route("POST", "/nodes/{node}/storage/{storage}/download-url")
def post_download_url(cl, who, p, node, storage):
    _node(cl, node)
    errors = {k: "property is missing and it is not optional" for k in ("url", "content", "filename") if not p.get(k)}
    if errors:
        raise param_error(errors)
    if p["content"] not in ("iso", "vztmpl", "import"):
        raise param_error({"content": f"value '{p['content']}' does not have a value in the enumeration "
                           "'iso, vztmpl, import'"})
    if not re.match(r"^https?://", p["url"]):
        raise param_error({"url": "value does not match the regex pattern"})
    cl.check(who, f"/storage/{storage}", ["Datastore.AllocateTemplate"])
    if not (cl.can(who, "/", ["Sys.Modify"]) and cl.can(who, "/", ["Sys.Audit"])) and \
            not cl.can(who, f"/nodes/{node}", ["Sys.AccessNetwork"]):
        raise ApiError(403, "Permission check failed")  # an 'or' of two checks: PVE names neither
    st = cl.storage(node, storage)
    if p["content"] not in st["content"]:
        raise ApiError(500, f"storage '{storage}' is not configured for content-type '{p['content']}'")
    filename = re.sub(r"[^\w\-.+]", "_", p["filename"])
    if p["content"] == "iso" and not re.search(r"\.(iso|img)$", filename, re.I):
        raise param_error({"filename": "wrong file extension"})
    subdir = {"iso": "iso", "vztmpl": "vztmpl", "import": "import"}[p["content"]]
    volid = f"{storage}:{subdir}/{filename}"
    content = cl.content_of(node, storage)
    if volid in content:
        raise ApiError(500, f"refusing to override existing file '{st.get('path', '/var/lib/vz')}/template/"
                       f"{subdir}/{filename}'")
    size = int(cl.config.get("download_size", 104857600))

    def work(task):
        task.log.append(f"downloading {p['url']} to {st.get('path', '/var/lib/vz')}/template/{subdir}/{filename}")
        task.log.append(f"download of '{p['url']}' to '{filename}' finished")
        with cl.lock:
            content[volid] = {"volid": volid, "content": p["content"], "format": subdir if subdir == "iso" else "raw",
                              "size": size, "ctime": int(time.time()), "url": p["url"]}

    return cl.start_task(node, "download", filename, who, work)


# ---------------------------------------------------------------- tasks
def _task_access(cl, who, node, task):
    if task.user != who and task.user.split("!")[0] != who:
        cl.check(who, f"/nodes/{node}", ["Sys.Audit"])


@route("GET", "/nodes/{node}/tasks")
def get_tasks(cl, who, p, node):
    _node(cl, node)
    audit = cl.can(who, f"/nodes/{node}", ["Sys.Audit"])
    out = []
    for t in list(cl.tasks.values()):
        if t.node == node and (audit or t.user == who):
            d = t.as_status()
            if t.endtime:
                d["endtime"] = t.endtime
                d["status"] = t.exitstatus
            else:
                d.pop("status")
            out.append(d)
    return sorted(out, key=lambda d: d["starttime"], reverse=True)[: int(p.get("limit", 50))]


@route("GET", "/nodes/{node}/tasks/{upid}/status")
def get_task_status(cl, who, p, node, upid):
    task = cl.get_task(upid)
    _task_access(cl, who, node, task)
    return task.as_status()


@route("GET", "/nodes/{node}/tasks/{upid}/log")
def get_task_log(cl, who, p, node, upid):
    task = cl.get_task(upid)
    _task_access(cl, who, node, task)
    start, limit = int(p.get("start", 0)), int(p.get("limit", 50))
    lines = [{"n": i + 1, "t": t} for i, t in enumerate(task.log)]
    return lines[start:start + limit]


# ---------------------------------------------------------------- qemu
@route("GET", "/nodes/{node}/qemu")
def get_qemu_list(cl, who, p, node):
    _node(cl, node)
    out = []
    for vmid, vm in sorted(cl.vms.items()):
        if vm["node"] == node and cl.can(who, f"/vms/{vmid}", ["VM.Audit"]):
            r = _vm_resource(vmid, vm)
            out.append({k: r[k] for k in ("vmid", "name", "status", "maxmem", "maxdisk", "mem", "cpu", "uptime",
                                          "disk", "diskread", "diskwrite", "netin", "netout", "tags", "lock")
                        if k in r} | {"cpus": r["maxcpu"]})
    return out


def _config_privs(key):
    """(privileges, any_of) for one non-drive option, as check_vm_modify_config_perm decides."""
    if NET_RE.match(key):
        return ["VM.Config.Network"], False
    if key in CPU_KEYS or re.match(r"^numa\d+$", key):
        return ["VM.Config.CPU"], False
    if key in MEMORY_KEYS:
        return ["VM.Config.Memory"], False
    if key in HWTYPE_KEYS or re.match(r"^serial\d+$", key):
        return ["VM.Config.HWType"], False
    if key in GENERAL_KEYS:
        return ["VM.Config.Options"], False
    if key in DISKOPT_KEYS:
        return ["VM.Config.Disk"], False
    if key in CLOUDINIT_KEYS or re.match(r"^ipconfig\d+$", key):
        return ["VM.Config.Cloudinit", "VM.Config.Network"], True
    raise ApiError(500, f"only root can set '{key}' config")


def _storage_access(cl, who, vmid, key, value):
    """check_storage_access: new volumes need Datastore.AllocateSpace, ISOs read access to their storage."""
    d = parse_prop(value, "file")
    volid = d.get("file", "")
    store, _, volname = volid.partition(":")
    if not volid or volid in ("none", "cloudinit") or volname == "cloudinit" or key.startswith("unused"):
        return
    if volid == "cdrom":
        cl.check(who, "/", ["Sys.Console"])
    elif re.match(r"^([^/:\s]+:)?\d+(\.\d+)?$", volid) and d.get("media") != "cdrom":
        cl.check(who, f"/storage/{store}", ["Datastore.AllocateSpace"])
    elif volname.startswith(("iso/", "vztmpl/", "import/")):
        cl.check(who, f"/storage/{store}", ["Datastore.AllocateSpace", "Datastore.Audit"], any_of=True)
    elif not re.match(rf"^(vm|base)-{vmid}-", volname):
        cl.check(who, f"/storage/{store}", ["Datastore.Allocate"])


def _check_config_perms(cl, who, vmid, params, create=False):
    """The permission checks of create_vm (create=True) or update_vm for these parameters."""
    keys = [k for k in params if k not in ("vmid", "node", "digest", "delete", "skiplock", "start", "revert",
                                           "pool", "storage", "force", "background_delay")]
    deleted = [k for k in re.split(r"[,;\s]+", params.get("delete", "")) if k]
    for key in keys:
        if DISK_RE.match(key):
            _storage_access(cl, who, vmid, key, params[key])
    for key in keys + deleted:
        if DISK_RE.match(key):
            if create:
                continue  # create checks drives through storage access only
            value = str(params.get(key, ""))
            if "cloudinit" in value:
                cl.check(who, f"/vms/{vmid}", ["VM.Config.Cloudinit", "VM.Config.CDROM"])
            elif "media=cdrom" in value:
                cl.check(who, f"/vms/{vmid}", ["VM.Config.CDROM"])
            else:
                cl.check(who, f"/vms/{vmid}", ["VM.Config.Disk"])
            continue
        privs, any_of = _config_privs(key)
        cl.check(who, f"/vms/{vmid}", privs, any_of=any_of)
    for key in keys:
        if NET_RE.match(key):
            d = parse_prop(params[key])
            bridge = d.get("bridge")
            if bridge:
                path = f"/sdn/zones/localnetwork/{bridge}" + (f"/{d['tag']}" if d.get("tag") else "")
                cl.check(who, path, ["SDN.Use"])


def _tags_value(value):
    """PVE stores tags lower-cased (case-insensitive tag style, the default), de-duplicated and sorted."""
    return ";".join(sorted({t.lower() for t in re.split(r"[;,\s]+", str(value)) if t}))


def _net_value(value):
    d = parse_prop(value)
    model = d.pop("model", None) or next(k for k in list(d) if k in NET_MODELS)
    mac = d.pop("macaddr", None) or d.pop(model, None)
    if not mac or mac == "1":
        mac = MAC_OUI + "".join(f":{random.randint(0, 255):02X}" for _ in range(3))
    order = ("bridge", "firewall", "link_down", "mtu", "queues", "rate", "tag", "trunks")
    rest = [f"{k}={d[k]}" for k in order if k in d]
    return ",".join([f"{model}={mac.upper()}", *rest])


def _disk_value(cl, node, vmid, key, value, cfg):
    """Turn an allocation request (`storage:size`) into a volume; keep existing volumes."""
    head, _, opts = str(value).partition(",")
    if head in ("none", "cdrom"):
        return value
    m = re.match(r"^([\w.-]+):(\d+(?:\.\d+)?|cloudinit)$", head)
    if m and "/" not in head:
        store, size = m.groups()
        if size == "cloudinit":
            volid = f"{store}:vm-{vmid}-cloudinit"
            cl.content_of(node, store)[volid] = {"volid": volid, "content": "images", "format": "raw",
                                                 "size": 4 << 20, "vmid": vmid, "ctime": int(time.time())}
            return f"{volid},media=cdrom"
        if key.startswith("efidisk"):
            nbytes = 4 << 20 if "efitype=4m" in opts else 528 << 10
        else:
            nbytes = int(float(size) * (1 << 30))
        volid = cl.alloc_disk(node, store, vmid, nbytes)
        old = cfg.get(key)
        if old and not old.startswith("none"):
            n = 0
            while f"unused{n}" in cfg:
                n += 1
            cfg[f"unused{n}"] = old.split(",", 1)[0]
        return ",".join(x for x in (volid, opts, f"size={bytes_to_size(nbytes)}") if x)
    entry = cl.volume(node, head)
    opts_d = parse_prop(opts)
    opts_d["size"] = bytes_to_size(entry["size"])
    return ",".join([head] + [f"{k}={v}" for k, v in opts_d.items()])


def _apply_config(cl, node, vmid, vm, params, hot=True):
    cfg = vm["config"]
    running = vm["status"] == "running"
    for key in [k for k in re.split(r"[,;\s]+", params.get("delete", "")) if k]:
        if running and key in NON_HOTPLUG:
            vm.setdefault("pending_delete", []).append(key)
            continue
        old = cfg.pop(key, None)
        if old and DISK_RE.match(key) and not key.startswith("unused") and "media=cdrom" not in old:
            n = 0
            while f"unused{n}" in cfg:
                n += 1
            cfg[f"unused{n}"] = old.split(",", 1)[0]
        elif old and key.startswith("unused"):
            cl.free_volume(node, old)
    for key, value in params.items():
        if key in ("vmid", "node", "digest", "delete", "skiplock", "start", "revert"):
            continue
        if NET_RE.match(key):
            value = _net_value(value)
        elif key == "tags":
            value = _tags_value(value)
        elif DISK_RE.match(key):
            value = _disk_value(cl, node, vmid, key, value, cfg)
        elif key in INT_KEYS:
            value = int(value)
        else:
            value = str(value)
        if hot and running and key in NON_HOTPLUG and cfg.get(key) != value:
            vm.setdefault("pending", {})[key] = value
        else:
            cfg[key] = value
    cfg["digest"] = None
    vm["maxdisk"] = cl.maxdisk(vm)


def _digest(cfg):
    text = "\n".join(f"{k}: {v}" for k, v in sorted(cfg.items()) if k != "digest")
    return hashlib.sha1(text.encode()).hexdigest()  # noqa: S324 - PVE's config digest is SHA-1


def _with_pending(vm):
    cfg = {k: v for k, v in vm["config"].items() if k != "digest"}
    cfg.update(vm.get("pending", {}))
    for k in vm.get("pending_delete", []):
        cfg.pop(k, None)
    return cfg


@route("POST", "/nodes/{node}/qemu")
def post_qemu_create(cl, who, p, node):
    _node(cl, node)
    # The schema (400, every bad parameter at once) was checked by the server before this handler.
    vmid = _vmid(p["vmid"])
    pool = p.get("pool")
    if not (cl.can(who, f"/vms/{vmid}", ["VM.Allocate"]) or (pool and cl.can(who, f"/pool/{pool}", ["VM.Allocate"]))):
        raise ApiError(403, "Permission check failed")  # raise_perm_exc() without arguments, as create_vm does
    _check_config_perms(cl, who, vmid, p, create=True)
    with cl.lock:
        if vmid in cl.vms:
            raise ApiError(500, f"VM {vmid} already exists on node '{cl.vms[vmid]['node']}'")
        vm = {"node": node, "status": "stopped", "started": 0, "maxdisk": 0,
              "config": {"lock": "create"}}
        cl.vms[vmid] = vm
    now = int(time.time())

    def work(task):
        with cl.lock:
            cfg = vm["config"]
            cfg.update({"meta": f"creation-qemu=9.2.0,ctime={now}", "vmgenid": _uuid(vmid, "gen"),
                        "smbios1": f"uuid={_uuid(vmid, 'smbios')}"})
            _apply_config(cl, node, vmid, vm, {k: v for k, v in p.items() if k != "start"}, hot=False)
            for k, v in cfg.items():
                if DISK_RE.match(k) and "media=cdrom" not in v:
                    task.log.append(f'  Logical volume "{v.split(",")[0].split(":")[1]}" created.')
            cfg.pop("lock", None)
            cfg["digest"] = _digest(cfg)
        if _bool(p.get("start", 0)):
            _do_start(cl, vmid, vm, task)

    def cleanup(task):
        with cl.lock:
            for k, v in vm["config"].items():
                if DISK_RE.match(k) or k.startswith("unused"):
                    cl.free_volume(node, v.split(",", 1)[0])
            cl.vms.pop(vmid, None)
        task.log.append(f"unable to create VM {vmid} - cleaning up")

    upid = cl.start_task(node, "qmcreate", vmid, who, work, vmid=vmid, on_error=cleanup)
    cl.save()
    return upid


def _uuid(vmid, salt):
    h = hashlib.sha256(f"{vmid}-{salt}".encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


@route("GET", "/nodes/{node}/qemu/{vmid}")
def get_qemu_index(cl, who, p, node, vmid):
    _node(cl, node)
    cl.vm(node, _vmid(vmid))
    cl.check(who, f"/vms/{vmid}", ["VM.Audit"])
    return [{"subdir": s} for s in ("config", "pending", "status", "resize", "snapshot", "agent", "firewall")]


@route("GET", "/nodes/{node}/qemu/{vmid}/config")
def get_qemu_config(cl, who, p, node, vmid):
    _node(cl, node)
    vmid = _vmid(vmid)
    cl.check(who, f"/vms/{vmid}", ["VM.Audit"])
    with cl.lock:
        vm = cl.vm(node, vmid)
        cfg = {k: v for k, v in vm["config"].items() if k != "digest"} if _bool(p.get("current", 0)) \
            else _with_pending(vm)
        cfg["digest"] = _digest(vm["config"])
    return cfg


@route("GET", "/nodes/{node}/qemu/{vmid}/pending")
def get_qemu_pending(cl, who, p, node, vmid):
    _node(cl, node)
    vmid = _vmid(vmid)
    cl.check(who, f"/vms/{vmid}", ["VM.Audit"])
    vm = cl.vm(node, vmid)
    out = []
    for k, v in sorted(vm["config"].items()):
        if k == "digest":
            continue
        e = {"key": k, "value": v}
        if k in vm.get("pending", {}):
            e["pending"] = vm["pending"][k]
        if k in vm.get("pending_delete", []):
            e["delete"] = 1
        out.append(e)
    return out


def _update_config(cl, who, p, node, vmid):
    _node(cl, node)
    vmid = _vmid(vmid)
    _check_config_perms(cl, who, vmid, p)
    with cl.lock:
        vm = cl.vm(node, vmid)
        cl.check_lock(vm, _bool(p.get("skiplock", 0)) and who == "root@pam")
        if p.get("digest") and p["digest"] != _digest(vm["config"]):
            raise ApiError(500, "detected modified configuration - file changed by other user? Try again.")
    return vmid, vm


@route("PUT", "/nodes/{node}/qemu/{vmid}/config")
def put_qemu_config(cl, who, p, node, vmid):
    vmid, vm = _update_config(cl, who, p, node, vmid)
    fault = cl.take_fault("lock_timeout", vmid=vmid)
    flock = cl.vm_flocks.setdefault(vmid, __import__("threading").Lock())
    if fault or not flock.acquire(timeout=cl.lock_timeout):
        raise ApiError(500, f"can't lock file '/var/lock/qemu-server/lock-{vmid}.conf' - got timeout")
    try:
        with cl.lock:
            _apply_config(cl, node, vmid, vm, p)
            vm["config"]["digest"] = _digest(vm["config"])
    finally:
        flock.release()
    cl.save()


@route("POST", "/nodes/{node}/qemu/{vmid}/config")
def post_qemu_config(cl, who, p, node, vmid):
    vmid, vm = _update_config(cl, who, p, node, vmid)

    def work(task):
        with cl.lock:
            _apply_config(cl, node, vmid, vm, p)
            vm["config"]["digest"] = _digest(vm["config"])
        task.log.append(f"update VM {vmid}: " + " ".join(f"-{k} {v}" for k, v in p.items() if k != "digest"))

    return cl.start_task(node, "qmconfig", vmid, who, work, vmid=vmid)


@route("PUT", "/nodes/{node}/qemu/{vmid}/resize")
def put_qemu_resize(cl, who, p, node, vmid):
    _node(cl, node)
    vmid = _vmid(vmid)
    errors = {k: "property is missing and it is not optional" for k in ("disk", "size") if not p.get(k)}
    if errors:
        raise param_error(errors)
    cl.check(who, f"/vms/{vmid}", ["VM.Config.Disk"])
    with cl.lock:
        vm = cl.vm(node, vmid)
        disk = p["disk"]
        if disk not in vm["config"]:
            raise ApiError(500, f"disk '{disk}' does not exist")
        d = parse_prop(vm["config"][disk], "file")
        cur = size_to_bytes(d.get("size", "0"))
        m = re.match(r"^(\+?)(\d+(?:\.\d+)?[KMGT]?)$", p["size"])
        if not m:
            raise param_error({"size": "value does not match the regex pattern"})
        new = cur + size_to_bytes(m.group(2)) if m.group(1) else size_to_bytes(m.group(2))
        if new < cur:
            raise ApiError(500, "shrinking disks is not supported")
        cl.check(who, f"/storage/{d['file'].split(':', 1)[0]}", ["Datastore.AllocateSpace"])
    skip = _bool(p.get("skiplock", 0)) and who == "root@pam"

    def work(task):
        with cl.lock:
            cl.check_lock(vm, skip)  # inside the worker, as PVE checks it: 200 + UPID, then the task fails
            entry = cl.volume(node, d["file"])
            store = d["file"].split(":", 1)[0]
            cl.check_space(store, cl.storage(node, store), cl.content_of(node, store), new - entry["size"],
                           d["file"].split(":", 1)[1])
            entry["size"] = new
            parts = [x for x in vm["config"][disk].split(",") if not x.startswith("size=")]
            vm["config"][disk] = ",".join([*parts, f"size={bytes_to_size(new)}"])
            vm["config"]["digest"] = _digest(vm["config"])
            vm["maxdisk"] = cl.maxdisk(vm)
        task.log.append(f"resized {disk} to {bytes_to_size(new)}")

    return cl.start_task(node, "resize", vmid, who, work, vmid=vmid)


@route("DELETE", "/nodes/{node}/qemu/{vmid}")
def delete_qemu(cl, who, p, node, vmid):
    _node(cl, node)
    vmid = _vmid(vmid)
    cl.check(who, f"/vms/{vmid}", ["VM.Allocate"])
    skip = _bool(p.get("skiplock", 0)) and who == "root@pam"
    with cl.lock:
        vm = cl.vm(node, vmid)
        if vm["status"] == "running":
            raise ApiError(500, f"VM {vmid} is running - destroy failed")

    def work(task):
        with cl.lock:
            cl.check_lock(vm, skip)  # in the worker (destroy_vm), after the early checks
            for k, v in vm["config"].items():
                if (DISK_RE.match(k) or k.startswith("unused")) and ":" in str(v) and "/iso/" not in str(v):
                    cl.free_volume(node, str(v).split(",", 1)[0])
                    task.log.append(f'  Logical volume "{str(v).split(",")[0].split(":")[1]}" successfully removed.')
            cl.vms.pop(vmid, None)

    return cl.start_task(node, "qmdestroy", vmid, who, work, vmid=vmid)


@route("GET", "/nodes/{node}/qemu/{vmid}/status/current")
def get_qemu_status(cl, who, p, node, vmid):
    _node(cl, node)
    vmid = _vmid(vmid)
    cl.check(who, f"/vms/{vmid}", ["VM.Audit"])
    with cl.lock:
        vm = cl.vm(node, vmid)
        r = _vm_resource(vmid, vm)
    out = {k: r[k] for k in ("vmid", "name", "status", "maxmem", "maxdisk", "mem", "cpu", "uptime", "disk",
                             "diskread", "diskwrite", "netin", "netout", "tags", "lock") if k in r}
    out.update({"cpus": r["maxcpu"], "qmpstatus": vm["status"], "ha": {"managed": 0},
                "agent": int("enabled=1" in str(vm["config"].get("agent", "")) or vm["config"].get("agent") == "1")})
    if vm["status"] == "running":
        out.update({"pid": 4000 + vmid, "running-qemu": "9.2.0", "running-machine": "pc-q35-9.2+pve1"})
    return out


def _address(vm):
    ip = parse_prop(vm["config"].get("ipconfig0", "")).get("ip", "")
    return ip.split("/")[0] if ip and ip != "dhcp" else ""


def _do_start(cl, vmid, vm, task):
    with cl.lock:
        if vm["status"] == "running":
            raise ApiError(500, f"VM {vmid} already running")
        vm["config"].update(vm.pop("pending", {}))
        for k in vm.pop("pending_delete", []):
            vm["config"].pop(k, None)
        vm["config"]["digest"] = _digest(vm["config"])
        vm["status"] = "running"
        vm["started"] = time.time()
    task.log.append(f"start VM {vmid}: UPID {task.upid}")
    if cl.hooks:
        cl.hooks(vm["config"].get("name", ""), _address(vm), "on")


def _do_stop(cl, vmid, vm, task):
    with cl.lock:
        was = vm["status"]
        vm["status"] = "stopped"
        vm["started"] = 0
    if was == "running" and cl.hooks:
        cl.hooks(vm["config"].get("name", ""), _address(vm), "off")


@route("POST", "/nodes/{node}/qemu/{vmid}/status/{action}")
def post_qemu_status(cl, who, p, node, vmid, action):
    _node(cl, node)
    vmid = _vmid(vmid)
    if action not in ("start", "stop", "shutdown", "reboot", "reset", "suspend", "resume"):
        raise ApiError(501, f"Method 'POST /nodes/{node}/qemu/{vmid}/status/{action}' not implemented")
    cl.check(who, f"/vms/{vmid}", ["VM.PowerMgmt"])
    with cl.lock:
        vm = cl.vm(node, vmid)
        skip = _bool(p.get("skiplock", 0)) and who == "root@pam"
        if action in ("reboot", "reset") and vm["status"] != "running":
            raise ApiError(500, f"VM {vmid} not running")

    def work(task):
        with cl.lock:
            cl.check_lock(vm, skip)  # PVE checks the lock inside the worker: 200 + UPID, then the task fails
        if action == "start":
            _do_start(cl, vmid, vm, task)
        elif action in ("stop", "shutdown"):
            _do_stop(cl, vmid, vm, task)
        elif action in ("reboot", "reset"):
            _do_stop(cl, vmid, vm, task)
            _do_start(cl, vmid, vm, task)

    ttype = {"start": "qmstart", "stop": "qmstop", "shutdown": "qmshutdown", "reboot": "qmreboot",
             "reset": "qmreset", "suspend": "qmsuspend", "resume": "qmresume"}[action]
    return cl.start_task(node, ttype, vmid, who, work, vmid=vmid)


pvesim_model.Cluster.resource_fn = staticmethod(_vm_resource)
