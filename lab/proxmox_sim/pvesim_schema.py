# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: HomeCluster developers
# ruff: noqa: PLR0911, PLR0912 - one branch per schema rule, as PVE's JSONSchema checks them
"""Parameter schema of every endpoint the simulator serves, checked as PVE's JSONSchema does.

Facts (key names, index ranges, enums, minimums) follow the API viewer's schema of PVE 8.4 and
9.1 and qemu-server's json_config_properties: scsi0-30, ide0-3, sata0-5, virtio0-15, net0-31,
ipconfig0-31, serial0-3, unused0-255, efidisk0, tpmstate0; a NIC tag 1-4094; memory at least 16
MiB. Unknown parameters are refused per parameter with "property is not defined in schema and the
schema does not allow additional properties" (HTTP 400, "Parameter verification failed."), and all
bad parameters of one call are reported together. The wording of drive-level errors (an ISO on a
drive without media=cdrom) is the simulator's own.
"""

from __future__ import annotations

import re

NOT_IN_SCHEMA = "property is not defined in schema and the schema does not allow additional properties"
BOOL = ("0", "1", "true", "false", "yes", "no", "on", "off")
NET_MODELS = ("e1000", "e1000-82540em", "e1000-82544gc", "e1000-82545em", "e1000e", "i82551", "i82557b",
              "i82559er", "ne2k_isa", "ne2k_pci", "pcnet", "rtl8139", "virtio", "vmxnet3")
OSTYPES = ("other", "wxp", "w2k", "w2k3", "w2k8", "wvista", "win7", "win8", "win10", "win11", "l24", "l26",
           "solaris")
SCSIHW = ("lsi", "lsi53c810", "virtio-scsi-pci", "virtio-scsi-single", "megasas", "pvscsi")
DRIVE_MAX = {"scsi": 30, "ide": 3, "sata": 5, "virtio": 15, "efidisk": 0, "tpmstate": 0, "unused": 255}
DRIVE_RE = re.compile(r"^(scsi|ide|sata|virtio|efidisk|tpmstate|unused)(\d+)$")
INDEXED = {"net": 31, "ipconfig": 31, "serial": 3, "numa": 7, "hostpci": 15, "usb": 13, "parallel": 2}
INDEXED_RE = re.compile(r"^(net|ipconfig|serial|numa|hostpci|usb|parallel)(\d+)$")
DNS_NAME = re.compile(r"^(?=.{1,63}$)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9-]+)*$")
TAG = re.compile(r"^(?i:[a-z0-9_][a-z0-9_+.-]*)$")
MAC = re.compile(r"^(?:[0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}$")
CIDR4 = re.compile(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})/(\d{1,2})$")
IP4 = re.compile(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$")
SIZE = re.compile(r"^\d+(\.\d+)?[KMGT]?$")
DRIVE_OPTS = {"media", "size", "discard", "ssd", "iothread", "cache", "format", "backup", "replicate", "aio",
              "cyls", "heads", "secs", "trans", "snapshot", "ro", "shared", "serial", "wwn", "werror", "rerror",
              "detect_zeroes", "mbps", "iops", "model", "product", "vendor", "queues", "scsiblock", "import-from",
              "efitype", "pre-enrolled-keys", "version"}


def _int(value, lo=None, hi=None):
    if not re.match(r"^-?\d+$", str(value)):
        return f"type check ('integer') failed - got '{value}'"
    n = int(value)
    if lo is not None and n < lo:
        return f"value must have a minimum value of {lo}"
    if hi is not None and n > hi:
        return f"value must have a maximum value of {hi}"
    return None


def _bool(value):
    return None if str(value).lower() in BOOL else f"type check ('boolean') failed - got '{value}'"


def _enum(value, allowed):
    if str(value) in allowed:
        return None
    return f"value '{value}' does not have a value in the enumeration '{', '.join(allowed)}'"


def _props(value, default_key=None):
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
            out[part] = None
    return out


def _fmt(msg):
    return f"invalid format - {msg}"


def _drive(key, value):
    kind = DRIVE_RE.match(key).group(1)
    d = _props(value, "file")
    file = d.get("file") or ""
    if kind == "unused":
        return None if ":" in file else _fmt(f"unable to parse volume ID '{file}'")
    for opt in d:
        if opt != "file" and opt not in DRIVE_OPTS:
            return _fmt(f"format error\n{opt}: property is not defined in schema and the schema does not allow "
                        "additional properties")
    if not file:
        return _fmt("format error\nfile: property is missing and it is not optional")
    if "media" in d and d["media"] not in ("cdrom", "disk"):
        return _fmt(f"format error\nmedia: value '{d['media']}' does not have a value in the enumeration 'cdrom, disk'")
    if "discard" in d and d["discard"] not in ("on", "ignore"):
        return _fmt(f"format error\ndiscard: value '{d['discard']}' does not have a value in the enumeration "
                    "'ignore, on'")
    for opt in ("ssd", "backup", "iothread", "ro", "replicate", "pre-enrolled-keys"):
        if opt in d and d[opt] is not None and _bool(d[opt]):
            return _fmt(f"format error\n{opt}: type check ('boolean') failed - got '{d[opt]}'")
    if "efitype" in d and d["efitype"] not in ("2m", "4m"):
        return _fmt(f"format error\nefitype: value '{d['efitype']}' does not have a value in the enumeration '2m, 4m'")
    if "size" in d and not SIZE.match(str(d["size"])):
        return _fmt(f"format error\nsize: value '{d['size']}' does not match the regex pattern")
    is_iso = bool(re.match(r"^[\w.-]+:iso/", file))
    if is_iso and d.get("media") != "cdrom":
        return _fmt(f"ISO image '{file}' on {key} needs media=cdrom (a CD-ROM drive); a disk cannot hold an ISO")
    if d.get("media") == "cdrom" and kind in ("virtio", "efidisk", "tpmstate"):
        return _fmt(f"{kind} drives cannot be a CD-ROM (media=cdrom)")
    if not (file in ("none", "cdrom") or ":" in file or file.startswith("/")):
        return _fmt(f"unable to parse volume ID '{file}'")
    return None


def _net(value):
    d = _props(value)
    model = d.pop("model", None)
    mac = d.pop("macaddr", None)
    for k in list(d):
        if k in NET_MODELS:
            model, mac = k, d.pop(k)
    if not model:
        return _fmt("format error\nmodel: property is missing and it is not optional")
    if mac and not MAC.match(mac):
        return _fmt(f"unable to parse mac address '{mac}'")
    for k, v in d.items():
        if k not in ("bridge", "firewall", "link_down", "mtu", "queues", "rate", "tag", "trunks"):
            return _fmt(f"format error\n{k}: {NOT_IN_SCHEMA}")
        if k == "tag" and _int(v, 1, 4094):
            return _fmt(f"format error\ntag: {_int(v, 1, 4094)}")
        if k == "mtu" and _int(v, 1, 65520):
            return _fmt(f"format error\nmtu: {_int(v, 1, 65520)}")
        if k == "queues" and _int(v, 0, 64):
            return _fmt(f"format error\nqueues: {_int(v, 0, 64)}")
        if k in ("firewall", "link_down") and _bool(v):
            return _fmt(f"format error\n{k}: {_bool(v)}")
        if k == "bridge" and not re.match(r"^[-_.\w\d]+$", v or ""):
            return _fmt(f"format error\nbridge: value '{v}' does not match the regex pattern")
    return None


def _ipconfig(value):
    d = _props(value)
    for k, v in d.items():
        if k not in ("ip", "gw", "ip6", "gw6"):
            return _fmt(f"format error\n{k}: {NOT_IN_SCHEMA}")
        if k == "ip" and v != "dhcp" and not (CIDR4.match(v or "") and int(v.rsplit("/", 1)[1]) <= 32):
            return _fmt(f"format error\nip: value '{v}' does not look like a valid IPv4 network configuration")
        if k == "gw" and not IP4.match(v or ""):
            return _fmt(f"format error\ngw: value '{v}' does not look like a valid IPv4 address")
    return None


def _smbios1(value):
    if len(str(value)) > 512:
        return "value may only be 512 characters long"
    for k in _props(value):
        if k not in ("uuid", "manufacturer", "product", "version", "serial", "sku", "family", "base64"):
            return _fmt(f"format error\n{k}: {NOT_IN_SCHEMA}")
    return None


def _memory(value):
    cur = _props(value, "current").get("current") or ""
    return _int(cur, 16) if cur else _fmt("format error\ncurrent: property is missing and it is not optional")


def _boot(value):
    order = _props(value, "legacy")
    if "legacy" in order:
        return None if re.match(r"^[acdn]{1,4}$", order["legacy"]) else _fmt("invalid boot order")
    for dev in (order.get("order") or "").split(";"):
        if dev and not (DRIVE_RE.match(dev) or re.match(r"^(net\d+|hostpci\d+|usb\d+)$", dev)):
            return _fmt(f"format error\norder: invalid boot device '{dev}'")
    return None


def _tags(value):
    bad = [t for t in re.split(r"[;, ]+", str(value)) if t and not TAG.match(t)]
    return _fmt(f"invalid tag '{bad[0]}'") if bad else None


VM_KEYS = {
    "name": lambda v: None if DNS_NAME.match(str(v)) else _fmt("value does not look like a valid DNS name"),
    "description": lambda v: None if len(str(v)) <= 8192 else "value may only be 8192 characters long",
    "tags": _tags,
    "cores": lambda v: _int(v, 1), "sockets": lambda v: _int(v, 1), "vcpus": lambda v: _int(v, 1),
    "cpuunits": lambda v: _int(v, 1, 262144), "cpulimit": lambda v: None, "affinity": lambda v: None,
    "memory": _memory, "balloon": lambda v: _int(v, 0), "shares": lambda v: _int(v, 0, 50000),
    "cpu": lambda v: None if _props(v, "cputype").get("cputype") else _fmt("cputype is missing"),
    "machine": lambda v: None if re.match(r"^(type=)?(pc|q35|virt|pc-(i440fx|q35)-\d+\.\d+(\+pve\d+)?)"
                                          r"(,viommu=(intel|virtio))?$", str(v)) else _fmt("value does not match"),
    "bios": lambda v: _enum(v, ("seabios", "ovmf")),
    "ostype": lambda v: _enum(v, OSTYPES),
    "scsihw": lambda v: _enum(v, SCSIHW),
    "vga": lambda v: _enum(_props(v, "type").get("type"), ("cirrus", "none", "qxl", "qxl2", "qxl3", "qxl4",
                                                           "serial0", "serial1", "serial2", "serial3", "std",
                                                           "virtio", "virtio-gl", "vmware")),
    "boot": _boot,
    "agent": lambda v: _bool(_props(v, "enabled").get("enabled", "1")),
    "acpi": _bool, "onboot": _bool, "protection": _bool, "template": _bool, "kvm": _bool, "tablet": _bool,
    "localtime": _bool, "numa": _bool, "ciupgrade": _bool,
    "smbios1": _smbios1,
    "vmgenid": lambda v: None, "meta": lambda v: None, "hotplug": lambda v: None, "startup": lambda v: None,
    "keyboard": lambda v: None, "hookscript": lambda v: None, "args": lambda v: None,
    "nameserver": lambda v: None, "searchdomain": lambda v: None, "ciuser": lambda v: None,
    "cipassword": lambda v: None, "sshkeys": lambda v: None, "cicustom": lambda v: None,
    "citype": lambda v: _enum(v, ("configdrive2", "nocloud", "opennebula")),
}


def vm_key_error(key, value):
    """The error PVE gives for one VM config key, or None (also None for keys it does not know: see known)."""
    m = DRIVE_RE.match(key)
    if m:
        return _drive(key, value)
    m = INDEXED_RE.match(key)
    if m:
        if m.group(1) == "net":
            return _net(value)
        if m.group(1) == "ipconfig":
            return _ipconfig(value)
        if m.group(1) == "serial":
            return None if re.match(r"^(/dev/.+|socket)$", str(value)) else _fmt("value does not match")
        return None
    return VM_KEYS[key](value)


def vm_key_known(key):
    m = DRIVE_RE.match(key)
    if m:
        return int(m.group(2)) <= DRIVE_MAX[m.group(1)] and not (m.group(2).startswith("0") and m.group(2) != "0")
    m = INDEXED_RE.match(key)
    if m:
        return int(m.group(2)) <= INDEXED[m.group(1)] and not (m.group(2).startswith("0") and m.group(2) != "0")
    return key in VM_KEYS


def _vmid(v):
    return _int(v, 100, 999999999)


def _drive_name(v):
    return None if DRIVE_RE.match(str(v)) and vm_key_known(str(v)) and not str(v).startswith("unused") else \
        _fmt(f"value '{v}' does not look like a valid disk key")


# Parameters (beyond the path's own) per METHOD and path template, with a check per parameter.
ANY = lambda v: None  # noqa: E731 - a check that accepts any string
ENDPOINTS = {
    ("GET", "/version"): {},
    ("GET", "/nodes"): {},
    ("GET", "/nodes/{node}"): {},
    ("GET", "/nodes/{node}/status"): {},
    ("GET", "/cluster/status"): {},
    ("GET", "/cluster/resources"): {"type": lambda v: _enum(v, ("vm", "storage", "node", "sdn"))},
    ("GET", "/cluster/nextid"): {"vmid": _vmid},
    ("GET", "/storage"): {"type": ANY},
    ("GET", "/nodes/{node}/storage"): {"content": ANY, "enabled": _bool, "format": _bool, "storage": ANY,
                                        "target": ANY},
    ("GET", "/nodes/{node}/storage/{storage}/content"): {"content": ANY, "vmid": _vmid},
    ("POST", "/nodes/{node}/storage/{storage}/download-url"): {
        "url": ANY, "content": lambda v: _enum(v, ("iso", "vztmpl", "import")), "filename": ANY, "checksum": ANY,
        "checksum-algorithm": lambda v: _enum(v, ("md5", "sha1", "sha224", "sha256", "sha384", "sha512")),
        "compression": ANY, "verify-certificates": _bool},
    ("GET", "/nodes/{node}/tasks"): {"start": lambda v: _int(v, 0), "limit": lambda v: _int(v, 0),
                                      "userfilter": ANY, "typefilter": ANY, "vmid": _vmid, "errors": _bool,
                                      "source": lambda v: _enum(v, ("archive", "active", "all")),
                                      "since": _int, "until": _int,
                                      "statusfilter": ANY},
    ("GET", "/nodes/{node}/tasks/{upid}/status"): {},
    ("GET", "/nodes/{node}/tasks/{upid}/log"): {"start": lambda v: _int(v, 0), "limit": lambda v: _int(v, 0),
                                                 "download": _bool},
    ("GET", "/nodes/{node}/qemu"): {"full": _bool},
    ("POST", "/nodes/{node}/qemu"): "vm_create",
    ("GET", "/nodes/{node}/qemu/{vmid}"): {},
    ("GET", "/nodes/{node}/qemu/{vmid}/config"): {"current": _bool, "snapshot": ANY},
    ("GET", "/nodes/{node}/qemu/{vmid}/pending"): {},
    ("PUT", "/nodes/{node}/qemu/{vmid}/config"): "vm_update",
    ("POST", "/nodes/{node}/qemu/{vmid}/config"): "vm_update_async",
    ("PUT", "/nodes/{node}/qemu/{vmid}/resize"): {
        "disk": _drive_name, "size": lambda v: None if re.match(r"^\+?\d+(\.\d+)?[KMGT]?$", str(v)) else
        "value does not match the regex pattern", "digest": ANY, "skiplock": _bool},
    ("DELETE", "/nodes/{node}/qemu/{vmid}"): {"purge": _bool, "destroy-unreferenced-disks": _bool, "skiplock": _bool},
    ("GET", "/nodes/{node}/qemu/{vmid}/status/current"): {},
    ("POST", "/nodes/{node}/qemu/{vmid}/status/start"): {"skiplock": _bool, "timeout": lambda v: _int(v, 0, 86400),
                                                         "machine": ANY, "migratedfrom": ANY, "stateuri": ANY,
                                                         "force-cpu": ANY, "targetstorage": ANY},
    ("POST", "/nodes/{node}/qemu/{vmid}/status/stop"): {"skiplock": _bool, "timeout": lambda v: _int(v, 0),
                                                        "keepActive": _bool, "migratedfrom": ANY,
                                                        "overrule-shutdown": _bool},
    ("POST", "/nodes/{node}/qemu/{vmid}/status/shutdown"): {"skiplock": _bool, "timeout": lambda v: _int(v, 0),
                                                            "forceStop": _bool, "keepActive": _bool},
    ("POST", "/nodes/{node}/qemu/{vmid}/status/reboot"): {"timeout": lambda v: _int(v, 0)},
    ("POST", "/nodes/{node}/qemu/{vmid}/status/reset"): {"skiplock": _bool},
    ("POST", "/nodes/{node}/qemu/{vmid}/status/suspend"): {"skiplock": _bool, "todisk": _bool, "statestorage": ANY},
    ("POST", "/nodes/{node}/qemu/{vmid}/status/resume"): {"skiplock": _bool, "nocheck": _bool},
}
CREATE_EXTRA = {"vmid": _vmid, "start": _bool, "pool": ANY, "storage": ANY, "unique": _bool, "bwlimit": ANY}
UPDATE_EXTRA = {"digest": ANY, "delete": ANY, "revert": ANY, "skiplock": _bool, "force": _bool}


def errors_for(method, template, params, path_args):
    """Per-parameter errors of one call (empty when the call passes the schema)."""
    spec = ENDPOINTS.get((method, template.replace("{action}", path_args.get("action", ""))), {})
    errors = {}
    for key, value in params.items():
        if key in path_args:
            continue
        if isinstance(spec, str):
            extra = CREATE_EXTRA if spec == "vm_create" else {**UPDATE_EXTRA, "background_delay": lambda v:
                                                              _int(v, 1, 30)} if spec == "vm_update_async" \
                else UPDATE_EXTRA
            if key in extra:
                err = extra[key](value)
            elif vm_key_known(key):
                err = vm_key_error(key, value)
            else:
                err = NOT_IN_SCHEMA
        elif key in spec:
            err = spec[key](value)
        else:
            err = NOT_IN_SCHEMA
        if err:
            errors[key] = err
    if spec == "vm_create" and "vmid" not in params:
        errors["vmid"] = "property is missing and it is not optional"
    if isinstance(spec, dict) and template.endswith("download-url"):
        for k in ("url", "content", "filename"):
            if not params.get(k):
                errors.setdefault(k, "property is missing and it is not optional")
    if template.endswith("/resize"):
        for k in ("disk", "size"):
            if not params.get(k):
                errors.setdefault(k, "property is missing and it is not optional")
    return errors
