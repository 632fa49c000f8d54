# Copyright: HomeCluster developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Preflight rules over the whole inventory: pure functions from described inputs to findings.

Each rule set takes plain data (what a role's tasks/preflight.yml collects from its variables and
the hosts of the play) and returns findings: dicts with rule, host, variable, message and severity
('error' refuses, 'warning' is reported only). Nothing here talks to a system; the module
homecluster.platform.preflight_check runs them and the roles decide what to read first.
"""
from __future__ import annotations

import ipaddress
import json
import os
import re
from urllib.parse import urlsplit

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
VM_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
DNS_NAME = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$")
MAC = re.compile(r"^([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}$")
API_USER = re.compile(r"^[^@!]+@[^@!]+$")
ROLES = ("controlplane", "worker")
LAYERS = ["proxmox", "talos", "cilium", "storage", "istio", "flux"]


def finding(rule, variable, message, host="", severity="error"):
    return {"rule": rule, "host": host or "", "variable": variable, "message": message, "severity": severity}


def _ip(value):
    try:
        return ipaddress.ip_address(str(value).strip())
    except ValueError:
        return None


def _net(value, strict=False):
    try:
        return ipaddress.ip_network(str(value).strip(), strict=strict)
    except ValueError:
        return None


def _iface(value):
    try:
        return ipaddress.ip_interface(str(value).strip())
    except ValueError:
        return None


def _minor(version):
    m = re.match(r"^v?(\d+)\.(\d+)", str(version or "").strip())
    return (int(m.group(1)), int(m.group(2))) if m else None


def _fmt(minor):
    return f"{minor[0]}.{minor[1]}"


def _int(value, default=0):
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


# ---------------------------------------------------------------- ranges (LB pools, CIDRs)
class Range:
    """An address range with where it came from, for overlap messages."""

    def __init__(self, first, last, label, variable, host=""):
        self.first, self.last, self.label, self.variable, self.host = first, last, label, variable, host

    def overlaps(self, other):
        return self.first.version == other.first.version and self.first <= other.last and other.first <= self.last

    def within(self, net):
        return self.first.version == net.version and self.first in net and self.last in net


def net_range(net, label, variable, host=""):
    return Range(net.network_address, net.broadcast_address, label, variable, host)


def pool_ranges(pools, variable="cilium_lb_pools"):  # noqa: PLR0912 - one flat list of rules reads best
    """Parse LB pools into ranges; return (ranges, findings)."""
    out, errors, names = [], [], []
    if not isinstance(pools, list):
        return [], [finding("cilium.lb_pools", variable, f"{variable} must be a list of pools, not {pools!r}.")]
    for i, pool in enumerate(pools):
        if not isinstance(pool, dict):
            errors.append(finding("cilium.lb_pools", f"{variable}[{i}]", f"pool {i} is not a mapping: {pool!r}."))
            continue
        name = pool.get("name") or f"#{i}"
        names.append(name)
        blocks = pool.get("blocks")
        if not isinstance(blocks, list) or not blocks:
            errors.append(finding("cilium.lb_pools", f"{variable}[{name}].blocks",
                                  f"pool '{name}' needs at least one block ({{cidr: 192.0.2.0/28}} or "
                                  f"{{start, stop}})."))
            continue
        for j, block in enumerate(blocks):
            var = f"{variable}[{name}].blocks[{j}]"
            label = f"LB pool '{name}'"
            spec = block if isinstance(block, dict) else {}
            if "cidr" in spec:
                net = _net(spec["cidr"])
                if net is None:
                    errors.append(finding("cilium.lb_pools", var, f"{label}: '{spec['cidr']}' is not a CIDR "
                                                                  "(192.0.2.0/28, 2001:db8::/120)."))
                else:
                    out.append(net_range(net, f"{label} {net}", var))
            elif "start" in spec:
                first, last = _ip(spec["start"]), _ip(spec.get("stop", spec["start"]))
                if first is None or last is None:
                    errors.append(finding("cilium.lb_pools", var, f"{label}: start '{spec.get('start')}' and stop "
                                                                  f"'{spec.get('stop')}' must be IP addresses."))
                elif first.version != last.version:
                    errors.append(finding("cilium.lb_pools", var, f"{label}: start {first} and stop {last} are of "
                                                                  "different address families."))
                elif first > last:
                    errors.append(finding("cilium.lb_pools", var, f"{label}: start {first} comes after stop {last}; "
                                                                  "swap them."))
                else:
                    out.append(Range(first, last, f"{label} {first}-{last}", var))
            else:
                errors.append(finding("cilium.lb_pools", var, f"{label}: block {j} needs a cidr or a start (and "
                                                              f"stop)."))
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        errors.append(finding("cilium.lb_pools", variable, f"pool names must be unique: {', '.join(dups)} "
                                                           "appear more than once."))
    return out, errors


# ---------------------------------------------------------------- Proxmox layer
def check_proxmox_vms(vms, minimums, api=None):  # noqa: PLR0912 - one flat list of rules reads best
    """Rules on each VM's own settings and the API settings (no Proxmox call)."""
    out = []
    api = api or {}
    host0 = vms[0]["host"] if vms else ""
    if api:
        if not api.get("host"):
            out.append(finding("proxmox.api", "proxmox_vm_api_host",
                               "proxmox_vm_api_host is empty; set the address of a Proxmox VE node.", host0))
        if not API_USER.match(str(api.get("user") or "")):
            out.append(finding("proxmox.api", "proxmox_vm_api_user",
                               f"proxmox_vm_api_user '{api.get('user', '')}' must be user@realm "
                               f"(automation@pve).", host0))
        if not api.get("token_id") and not api.get("password_set"):
            out.append(finding("proxmox.api", "proxmox_vm_api_token_id",
                               "set proxmox_vm_api_token_id and proxmox_vm_api_token_secret, or "
                               "proxmox_vm_api_password.", host0))
        if api.get("token_id") and not api.get("token_secret_set"):
            out.append(finding("proxmox.api", "proxmox_vm_api_token_secret",
                               f"proxmox_vm_api_token_secret is empty while proxmox_vm_api_token_id is "
                               f"'{api['token_id']}'; set the token secret (from a vault).", host0))
    min_mem = minimums.get("memory", {})
    min_cores = minimums.get("cores", {})
    min_disk = _int(minimums.get("disk_size"), 10)
    for vm in vms:
        h = vm["host"]
        role = vm.get("role")
        if not str(vm.get("node") or ""):
            out.append(finding("proxmox.vm", "proxmox_vm_node",
                               "proxmox_vm_node is not set; name the Proxmox node the VM lives on.", h))
        vmid = str(vm.get("vmid", ""))
        if not re.match(r"^[0-9]+$", vmid) or not 100 <= int(vmid) <= 999999999:
            out.append(finding("proxmox.vm", "proxmox_vm_vmid",
                               f"proxmox_vm_vmid '{vmid}' must be a number from 100 to 999999999.", h))
        if not VM_NAME.match(str(vm.get("name") or "")):
            out.append(finding("proxmox.vm", "proxmox_vm_name",
                               f"proxmox_vm_name '{vm.get('name')}' is not a valid DNS label.", h))
        if role not in ROLES:
            out.append(finding("proxmox.vm", "proxmox_vm_talos_role",
                               f"proxmox_vm_talos_role '{role}' must be controlplane or worker.", h))
        else:
            mem, cores = _int(min_mem.get(role), 1024), _int(min_cores.get(role), 1)
            if _int(vm.get("memory")) < mem:
                out.append(finding("proxmox.resources", "proxmox_vm_memory",
                                   f"proxmox_vm_memory {vm.get('memory')} MiB is under the Talos minimum for a {role} "
                                   f"({mem} MiB).", h))
            if _int(vm.get("cores")) < cores:
                out.append(finding("proxmox.resources", "proxmox_vm_cores",
                                   f"proxmox_vm_cores {vm.get('cores')} is under the Talos minimum for a {role} "
                                   f"({cores}).", h))
        if _int(vm.get("disk_size")) < min_disk:
            out.append(finding("proxmox.resources", "proxmox_vm_disk_size",
                               f"proxmox_vm_disk_size {vm.get('disk_size')} GiB is under the Talos minimum of "
                               f"{min_disk} GiB.", h))
        address = str(vm.get("address") or "")
        if address and not (re.match(r"^([0-9]{1,3}\.){3}[0-9]{1,3}/[0-9]{1,2}$", address) and _iface(address)):
            out.append(finding("proxmox.vm", "proxmox_vm_address",
                               f"proxmox_vm_address '{address}' must be an IPv4 address with prefix "
                               f"(192.168.1.11/24).", h))
        mac = str(vm.get("mac") or "")
        if mac and not MAC.match(mac):
            out.append(finding("proxmox.vm", "proxmox_vm_mac",
                               f"proxmox_vm_mac '{mac}' is not a MAC address (BC:24:11:00:00:01).", h))
        elif mac and int(mac.split(":", maxsplit=1)[0], 16) & 1:
            out.append(finding("proxmox.vm", "proxmox_vm_mac",
                               f"proxmox_vm_mac '{mac}' is a multicast address (the first octet is odd); use a "
                               "unicast one such as BC:24:11:...", h))
        vlan = _int(vm.get("vlan"), -1)
        if not 0 <= vlan <= 4094:
            out.append(finding("proxmox.vm", "proxmox_vm_vlan",
                               f"proxmox_vm_vlan {vm.get('vlan')} must be 0 (untagged) to 4094.", h))
        if vm.get("state") == "absent" and vm.get("removal_confirmation") != vm.get("removal_phrase"):
            out.append(finding("proxmox.removal", "proxmox_vm_removal_confirmation",
                               f"proxmox_vm_state is absent, which destroys VM {vmid} '{vm.get('name')}' and "
                               f"its disks; "
                               f"set proxmox_vm_removal_confirmation to '{vm.get('removal_phrase')}' to confirm.", h))
    out.extend(check_unique(vms))
    return out


def check_unique(vms):
    """VMIDs, names, addresses and MACs given to one VM only."""
    out = []
    keys = (("vmid", "proxmox_vm_vmid", str), ("name", "proxmox_vm_name", str),
            ("address", "proxmox_vm_address", lambda a: str(a).split("/", maxsplit=1)[0]),
            ("mac", "proxmox_vm_mac", lambda m: str(m).upper()))
    for key, variable, norm in keys:
        seen = {}
        for vm in vms:
            value = vm.get(key)
            if value in (None, ""):
                continue
            seen.setdefault(norm(value), []).append(vm["host"])
        for value, hosts in seen.items():
            for h in hosts if len(hosts) > 1 else []:
                others = ", ".join(o for o in hosts if o != h)
                out.append(finding("proxmox.unique", variable,
                                   f"{variable} {value} is also given to {others}; every VM needs its own.", h))
    return out


def check_proxmox_cluster(vms, cluster):
    """Rules against what the Proxmox cluster has: nodes, storages, VMIDs and names in use."""
    out = []
    nodes = cluster.get("nodes") or []
    storages = cluster.get("storages")  # {node: [storage, ...]} when the read returned them
    if storages is None and cluster.get("storage_list") is not None:
        storages = {}
        for entry in cluster["storage_list"]:
            storages.setdefault(entry.get("node"), []).append(entry.get("storage"))
    cvms = cluster.get("vms") or {}
    for vm in vms:
        h, node = vm["host"], vm.get("node")
        if node not in nodes:
            out.append(finding("proxmox.cluster", "proxmox_vm_node",
                               f"proxmox_vm_node '{node}' is not a node of the cluster ({', '.join(nodes)}).", h))
        elif storages is not None:
            have = storages.get(node, [])
            for key, variable in (("disk_storage", "proxmox_vm_disk_storage"),
                                  ("data_disk_storage", "proxmox_vm_data_disk_storage"),
                                  ("image_storage", "proxmox_vm_image_storage")):
                if key == "data_disk_storage" and _int(vm.get("data_disk_size")) <= 0:
                    continue
                if vm.get(key) and vm[key] not in have:
                    out.append(finding("proxmox.cluster", variable,
                                       f"{variable} '{vm[key]}' is not a storage of node {node} "
                                       f"({', '.join(have) or 'none visible to this API user'}).", h))
        found = cvms.get(str(vm.get("vmid")))
        if found and found.get("name") != vm.get("name"):
            out.append(finding("proxmox.cluster", "proxmox_vm_vmid",
                               f"proxmox_vm_vmid {vm.get('vmid')} is already used by VM '{found.get('name')}' on node "
                               f"{found.get('node')}, not by '{vm.get('name')}'; choose another proxmox_vm_vmid.", h))
        same = sorted(k for k, v in cvms.items() if v.get("name") == vm.get("name") and k != str(vm.get("vmid")))
        if vm.get("state") != "absent" and same:
            out.append(finding("proxmox.cluster", "proxmox_vm_name",
                               f"proxmox_vm_name '{vm.get('name')}' is already used by VMID {', '.join(same)}; set "
                               "proxmox_vm_vmid to it or rename one of them.", h))
    return out


# ---------------------------------------------------------------- Talos layer and cluster networking
def check_talos(nodes, cluster):  # noqa: PLR0912 - one flat list of rules reads best
    """Node roles and groups, control-plane count, cluster name/endpoint and networking."""
    out = []
    cps = [n for n in nodes if n.get("role") == "controlplane"]
    workers = [n for n in nodes if n.get("role") == "worker"]
    addresses = {}
    for n in nodes:
        h, role, groups = n["host"], n.get("role"), set(n.get("groups") or [])
        if role not in ROLES:
            out.append(finding("talos.node", "talos_bootstrap_node_role",
                               f"talos_bootstrap_node_role '{role}' must be controlplane or worker.", h))
        in_groups = [g for g in ("controlplane", "workers") if g in groups]
        if len(in_groups) > 1:
            out.append(finding("talos.groups", "groups controlplane/workers",
                               "the host is in both groups controlplane and workers; keep it in exactly one.", h))
        elif in_groups:
            want = "controlplane" if in_groups[0] == "controlplane" else "worker"
            if role in ROLES and role != want:
                out.append(finding("talos.groups", "talos_bootstrap_node_role",
                                   f"talos_bootstrap_node_role is '{role}' but the host is in group {in_groups[0]}; "
                                   f"set it to {want} or move the host.", h))
        if n.get("vm_role") and role in ROLES and n["vm_role"] != role:
            out.append(finding("talos.groups", "proxmox_vm_talos_role",
                               f"proxmox_vm_talos_role '{n['vm_role']}' and talos_bootstrap_node_role '{role}' "
                               f"disagree; "
                               "give both the same value.", h))
        addr = _ip(n.get("address"))
        if addr is None:
            out.append(finding("talos.node", "talos_bootstrap_node_address",
                               f"talos_bootstrap_node_address '{n.get('address', '')}' is not an IP address; Talos "
                               "nodes are reached by address (port 50000).", h))
        else:
            addresses.setdefault(addr, []).append(h)
            vm_iface = _iface(n.get("vm_address")) if n.get("vm_address") else None
            if vm_iface is not None and vm_iface.ip != addr:
                out.append(finding("talos.node", "talos_bootstrap_node_address",
                                   f"talos_bootstrap_node_address {addr} differs from the address Proxmox gives the VM "
                                   f"(proxmox_vm_address {n['vm_address']}).", h))
        if not str(n.get("install_disk") or "").startswith("/dev/"):
            out.append(finding("talos.node", "talos_bootstrap_install_disk",
                               f"talos_bootstrap_install_disk '{n.get('install_disk')}' must be a /dev path "
                               f"(/dev/sda).", h))
    for addr, hosts in addresses.items():
        for h in hosts if len(hosts) > 1 else []:
            out.append(finding("talos.node", "talos_bootstrap_node_address",
                               f"talos_bootstrap_node_address {addr} is also given to "
                               f"{', '.join(o for o in hosts if o != h)}.", h))
    count = len(cps)
    if nodes and count == 0:
        out.append(finding("talos.controlplane_count", "talos_bootstrap_node_role",
                           "no host is a control plane; set talos_bootstrap_node_role: controlplane on 1, 3 or 5 hosts "
                           "(group controlplane)."))
    elif count % 2 == 0 and count and not cluster.get("allow_even_control_planes"):
        out.append(finding("talos.controlplane_count", "talos_bootstrap_node_role",
                           f"{count} control planes ({', '.join(n['host'] for n in cps)}): etcd needs an odd number "
                           "(1, 3, 5) for quorum, an even count tolerates no more failures than one less. Move a host "
                           "to workers, or set talos_bootstrap_allow_even_control_planes: true to accept it."))
    if nodes and not workers and not cluster.get("schedulable_control_planes"):
        out.append(finding("talos.schedulable", "talos_bootstrap_allow_scheduling_on_control_planes",
                           "there are no workers and the control planes do not take workloads: set "
                           "talos_bootstrap_allow_scheduling_on_control_planes: true (single-node and "
                           "control-plane-only "
                           "clusters) or add workers."))
    out.extend(check_talos_versions(cluster))
    out.extend(check_cluster_network(cluster, nodes))
    return out


def check_talos_versions(cluster):
    """The config format contract against the installed release, and documents each format has."""
    out = []
    if "release" not in cluster:
        return out
    release, contract = _minor(cluster.get("release")), _minor(cluster.get("contract"))
    if release is None:
        out.append(finding("talos.versions", "talos_bootstrap_installer_image",
                           f"talos_bootstrap_installer_image '{cluster.get('installer_image', '')}' has no version tag "
                           "(...:v1.14.1); its tag is the Talos release installed."))
    if contract is None:
        out.append(finding("talos.versions", "talos_bootstrap_talos_version",
                           f"talos_bootstrap_talos_version '{cluster.get('contract')}' is not a Talos version "
                           f"(v1.14)."))
    if release and contract and contract > release:
        out.append(finding("talos.versions", "talos_bootstrap_talos_version",
                           f"the config format talos_bootstrap_talos_version v{_fmt(contract)} is newer than the Talos "
                           f"release installed (v{_fmt(release)}, from talos_bootstrap_installer_image); a node "
                           f"rejects "
                           f"documents it does not know. Set talos_bootstrap_talos_version: v{_fmt(release)}."))
    if contract and contract >= (1, 14) and cluster.get("kubelet_extra_mounts"):
        out.append(finding("talos.versions", "talos_bootstrap_kubelet_extra_mounts",
                           "kubelet extraMounts exist only in config formats before v1.14; use "
                           "talos_bootstrap_user_volumes."))
    if contract and contract < (1, 14) and cluster.get("user_volumes"):
        out.append(finding("talos.versions", "talos_bootstrap_user_volumes",
                           f"user volumes need config format v1.14 or later (talos_bootstrap_talos_version is "
                           f"v{_fmt(contract)}); set talos_bootstrap_user_volumes: [] and use "
                           "talos_bootstrap_kubelet_extra_mounts."))
    return out


def parse_endpoint(endpoint):
    """(host, port, error) of a cluster endpoint https://host:port."""
    text = str(endpoint or "")
    if "://" not in text:
        return None, None, f"talos_bootstrap_cluster_endpoint '{text}' needs a scheme: https://{text or 'ADDRESS'}" + (
            "" if ":" in text else ":6443") + "."
    parts = urlsplit(text)
    if parts.scheme != "https":
        return None, None, f"talos_bootstrap_cluster_endpoint '{text}' must use https (the API server serves TLS)."
    try:
        port = parts.port
    except ValueError:
        return None, None, f"talos_bootstrap_cluster_endpoint '{text}' has an invalid port."
    if not parts.hostname:
        return None, None, f"talos_bootstrap_cluster_endpoint '{text}' has no host."
    if parts.path not in ("", "/"):
        return None, None, f"talos_bootstrap_cluster_endpoint '{text}' must not have a path."
    return parts.hostname, port or 443, None


def check_cluster_network(cluster, nodes):
    out = []
    name = str(cluster.get("name") or "")
    if not DNS_LABEL.match(name):
        out.append(finding("talos.cluster_name", "talos_bootstrap_cluster_name",
                           f"talos_bootstrap_cluster_name '{name}' is not a DNS label (lower-case letters, digits and "
                           "'-', at most 63, starting and ending with a letter or digit), e.g. "
                           f"'{re.sub(r'[^a-z0-9-]+', '-', name.lower()).strip('-') or 'homecluster'}'."))
    host, _port, err = parse_endpoint(cluster.get("endpoint"))
    if err:
        out.append(finding("talos.endpoint", "talos_bootstrap_cluster_endpoint", err))
    domain = str(cluster.get("dns_domain") or "")
    if not DNS_NAME.match(domain):
        out.append(finding("network.dns_domain", "talos_bootstrap_cluster_dns_domain",
                           f"talos_bootstrap_cluster_dns_domain '{domain}' is not a DNS name (cluster.local)."))
    ranges = []
    for key, variable, label in (("pod_cidr", "talos_bootstrap_pod_cidr", "the pod CIDR"),
                                 ("service_cidr", "talos_bootstrap_service_cidr", "the service CIDR")):
        net = _net(cluster.get(key), strict=True)
        if net is None:
            out.append(finding("network.cidr", variable,
                               f"{variable} '{cluster.get(key)}' is not a network in CIDR form with its host bits zero "
                               f"(10.42.0.0/16)."))
            continue
        ranges.append(net_range(net, f"{label} {net}", variable))
    pod = next((r for r in ranges if r.variable == "talos_bootstrap_pod_cidr"), None)
    svc = next((r for r in ranges if r.variable == "talos_bootstrap_service_cidr"), None)
    if pod and svc and pod.overlaps(svc):
        out.append(finding("network.overlap", "talos_bootstrap_service_cidr",
                           f"{svc.label} overlaps {pod.label}; give services and pods separate ranges "
                           "(10.42.0.0/16 and 10.43.0.0/16)."))
    if pod and pod.first.version == 4 and _net(cluster.get("pod_cidr")).prefixlen > 24:
        out.append(finding("network.cidr", "talos_bootstrap_pod_cidr",
                           f"talos_bootstrap_pod_cidr {cluster.get('pod_cidr')} is smaller than one node's /24 "
                           f"share; use "
                           "a /16 (10.42.0.0/16)."))
    for net_r in ranges:
        for n in nodes:
            addr = _ip(n.get("address"))
            if addr is not None and addr.version == net_r.first.version and net_r.first <= addr <= net_r.last:
                out.append(finding("network.overlap", net_r.variable,
                                   f"node address {addr} is inside {net_r.label}; pick a {net_r.variable} that "
                                   f"does not "
                                   "contain the node network.", n["host"]))
            iface = _iface(n.get("vm_address")) if n.get("vm_address") else None
            subnet = iface.network if iface is not None else None
            if subnet is not None and net_r.overlaps(net_range(subnet, "", "")) and not (
                    addr is not None and net_r.first <= addr <= net_r.last):
                out.append(finding("network.overlap", net_r.variable,
                                   f"{net_r.label} overlaps the node network {subnet}; pick a range outside it.",
                                   n["host"]))
        ep = _ip(host) if host else None
        if ep is not None and ep.version == net_r.first.version and net_r.first <= ep <= net_r.last:
            out.append(finding("network.overlap", "talos_bootstrap_cluster_endpoint",
                               f"the cluster endpoint {ep} is inside {net_r.label}; the endpoint must be a node "
                               "address, a VIP or a load balancer on the node network."))
    return out


# ---------------------------------------------------------------- Cilium layer
def _get(d, path, default=None):
    for key in path.split("."):
        if not isinstance(d, dict) or key not in d:
            return default
        d = d[key]
    return d


def _true(value):
    return str(value).strip().lower() == "true"


def check_cilium(data):  # noqa: PLR0912 - one flat list of rules reads best
    """Values combinations, LB pools against every other address range, L2 pools inside the node network."""
    out = []
    v = data.get("values") or {}
    masq, legacy = _true(_get(v, "bpf.masquerade")), _true(_get(v, "bpf.hostLegacyRouting"))
    if masq and data.get("forward_kube_dns_to_host", True) and not legacy:
        out.append(finding("cilium.values", "cilium_bpf_masquerade",
                           "bpf.masquerade=true with Talos forwardKubeDNSToHost (on by default) needs "
                           "bpf.hostLegacyRouting=true: set cilium_bpf_host_legacy_routing: true, or turn "
                           "masquerading off "
                           "(cilium_bpf_masquerade: false), or set cilium_talos_forward_kube_dns_to_host: false if the "
                           "machine config disables machine.features.hostDNS.forwardKubeDNSToHost."))
    if data.get("istio_ambient"):
        bad = []
        if _true(_get(v, "cni.exclusive")):
            bad.append("cni.exclusive=true")
        if not _true(_get(v, "socketLB.hostNamespaceOnly", False)):
            bad.append("socketLB.hostNamespaceOnly is not true")
        if masq:
            bad.append("bpf.masquerade=true")
        if bad:
            out.append(finding("cilium.istio_ambient", "cilium_bpf_masquerade" if masq else "cilium_values",
                               "cilium_istio_ambient is true, so Cilium must run with cni.exclusive=false and "
                               "socketLB.hostNamespaceOnly=true, and without bpf.masquerade (Istio ambient does not "
                               f"support it); effective values: {', '.join(bad)}. Fix cilium_bpf_masquerade or "
                               "cilium_values."))
    elif data.get("istio_layer"):
        out.append(finding("cilium.istio_ambient", "cilium_istio_ambient",
                           "the Istio ambient layer runs on this cluster (playbooks/istio.yml) but "
                           "cilium_istio_ambient is "
                           "false; set cilium_istio_ambient: true so Cilium leaves the CNI chain and socket LB to it."))
    kpr = _true(_get(v, "kubeProxyReplacement"))
    if kpr and not (str(_get(v, "k8sServiceHost", "")) and str(_get(v, "k8sServicePort", ""))):
        out.append(finding("cilium.values", "cilium_k8s_service_host",
                           "without kube-proxy Cilium must reach the API server directly: set cilium_k8s_service_host "
                           "and cilium_k8s_service_port (KubePrism localhost:7445 on Talos)."))
    for key, what in (("l2announcements.enabled", "L2 announcements"), ("gatewayAPI.enabled", "Gateway API")):
        if not kpr and _true(_get(v, key)):
            out.append(finding("cilium.values", "cilium_kube_proxy_replacement",
                               f"{what} need kube-proxy replacement: set cilium_kube_proxy_replacement: true."))
    if _true(_get(v, "hubble.ui.enabled")) and not _true(_get(v, "hubble.relay.enabled")):
        out.append(finding("cilium.values", "cilium_hubble_relay", "the Hubble UI needs the relay: set "
                                                                   "cilium_hubble_relay: true."))
    if _true(_get(v, "hubble.relay.enabled")) and not _true(_get(v, "hubble.enabled")):
        out.append(finding("cilium.values", "cilium_hubble_enabled", "the Hubble relay needs Hubble: set "
                                                                     "cilium_hubble_enabled: true."))
    if not data.get("kube_proxy_disabled", True) and kpr:
        out.append(finding("cilium.values", "cilium_kube_proxy_replacement",
                           "talos_bootstrap_kube_proxy is true (Talos runs kube-proxy) while Cilium replaces "
                           "it; keep one: "
                           "talos_bootstrap_kube_proxy: false, or cilium_kube_proxy_replacement: false."))
    ipam_mode = str(_get(v, "ipam.mode", ""))
    pod_cidr = _net(data.get("pod_cidr"))
    pool_list = _get(v, "ipam.operator.clusterPoolIPv4PodCIDRList")
    if ipam_mode == "cluster-pool" and pod_cidr and pool_list and [str(p) for p in pool_list] != [str(pod_cidr)]:
        out.append(finding("cilium.values", "cilium_values",
                           f"ipam.operator.clusterPoolIPv4PodCIDRList {pool_list} differs from the cluster's pod CIDR "
                           f"{pod_cidr} (talos_bootstrap_pod_cidr); drop it from cilium_values, the role sets it."))
    out.extend(check_lb_pools(data))
    return out


def check_lb_pools(data):  # noqa: PLR0912 - one flat list of rules reads best
    ranges, out = pool_ranges(data.get("lb_pools") or [])
    for i, a in enumerate(ranges):
        for b in ranges[i + 1:]:
            if a.overlaps(b):
                out.append(finding("cilium.lb_pools", b.variable, f"{b.label} overlaps {a.label}; pools must not share "
                                                                  "addresses."))
    others = []
    for key, variable, label in (("pod_cidr", "talos_bootstrap_pod_cidr", "the pod CIDR"),
                                 ("service_cidr", "talos_bootstrap_service_cidr", "the service CIDR")):
        net = _net(data.get(key))
        if net is not None:
            others.append(net_range(net, f"{label} {net}", variable))
    for r in ranges:
        for o in others:
            if r.overlaps(o):
                out.append(finding("network.overlap", r.variable, f"{r.label} overlaps {o.label} ({o.variable}); LB "
                                                                  "addresses must be outside the cluster's own "
                                                                  "ranges."))
    node_addrs = [(h, _ip(a)) for h, a in (data.get("node_addresses") or {}).items()]
    endpoint = _ip(parse_endpoint(data.get("endpoint"))[0] or "")
    for r in ranges:
        hit = [h for h, a in node_addrs if a is not None and a.version == r.first.version and r.first <= a <= r.last]
        if hit:
            out.append(finding("network.overlap", r.variable, f"{r.label} contains the address of node(s) "
                                                              f"{', '.join(sorted(hit))}; move the pool out of "
                                                              f"the node "
                                                              "addresses."))
        if endpoint is not None and endpoint.version == r.first.version and r.first <= endpoint <= r.last:
            out.append(finding("network.overlap", r.variable, f"{r.label} contains the cluster endpoint {endpoint} "
                                                              "(talos_bootstrap_cluster_endpoint)."))
    nets = [n for n in (_net(x) for x in data.get("node_networks") or []) if n is not None]
    if data.get("l2_announcements") and nets:
        for r in ranges:
            if not any(r.within(n) for n in nets):
                out.append(finding("cilium.l2", r.variable,
                                   f"{r.label} is announced by L2 (cilium_l2_announcements) but lies outside the node "
                                   f"network ({', '.join(str(n) for n in nets)}): ARP answers for it reach no one. Use "
                                   "addresses of the node network outside its DHCP range."))
    return out


# ---------------------------------------------------------------- Rook-Ceph layer
def check_rook(data):  # noqa: PLR0912 - one flat list of rules reads best
    out = []
    if data.get("state") == "absent":
        if data.get("teardown_confirmation") != "yes-really-destroy-data":
            out.append(finding("rook.teardown", "rook_ceph_teardown_confirmation",
                               "rook_ceph_state=absent destroys every volume, bucket and file stored in Ceph. Set "
                               "rook_ceph_teardown_confirmation to 'yes-really-destroy-data' to confirm."))
        return out
    osd_nodes = [dict(n) for n in data.get("osd_nodes") or [] if isinstance(n, dict)]
    by_name = {str(v or k): k for k, v in (data.get("hostnames") or {}).items()}
    sizes = data.get("disk_sizes") or {}
    for n in osd_nodes:
        host = n.get("host") or by_name.get(str(n.get("name")), "")
        n["host"] = host
        if "disk_size" not in n and host in sizes and data.get("from_inventory"):
            n["disk_size"] = sizes[host]
    min_size = _int(data.get("min_osd_size_gib"), 5)
    if not osd_nodes:
        out.append(finding("rook.osds", "proxmox_vm_data_disk_size",
                           f"no OSD node with a disk: give hosts of group '{data.get('group')}' a Ceph data disk "
                           "(proxmox_vm_data_disk_size > 0) or set rook_ceph_osd_nodes ([{name, devices: [sdb]}])."))
    usable = []
    for n in osd_nodes:
        h = n.get("host", "")
        if not n.get("name"):
            out.append(finding("rook.osds", "rook_ceph_osd_nodes", f"an OSD node has no name: {n}.", h))
        devices = n.get("devices")
        if isinstance(devices, str) or not devices:
            out.append(finding("rook.osds", "rook_ceph_osd_devices",
                               f"OSD node {n.get('name')}: devices must be a non-empty list ([sdb]), not "
                               f"{devices!r}.", h))
            continue
        size = n.get("disk_size")
        if size is not None and _int(size) < min_size:
            out.append(finding("rook.osds", "proxmox_vm_data_disk_size",
                               f"the Ceph data disk is {size} GiB; an OSD needs at least {min_size} GiB (ceph-volume "
                               f"refuses smaller devices). Set proxmox_vm_data_disk_size to {max(min_size, 10)} or "
                               "more.", h))
            continue
        usable.append(n)
    replicas = {"rook_ceph_block_replicas": _int(data.get("block_replicas"), 3)}
    if data.get("filesystem"):
        replicas["rook_ceph_filesystem_replicas"] = _int(data.get("filesystem_replicas"), 3)
    if data.get("object_store"):
        replicas["rook_ceph_object_store_replicas"] = _int(data.get("object_store_replicas"), 3)
    if data.get("failure_domain", "host") == "host" and osd_nodes:
        for variable, count in replicas.items():
            if count > len(usable):
                out.append(finding("rook.replicas", variable,
                                   f"{variable} is {count}, but with rook_ceph_failure_domain=host every "
                                   f"replica needs its "
                                   f"own host and only {len(usable)} host(s) carry a usable OSD disk "
                                   f"({', '.join(n.get('name', '?') for n in usable) or 'none'}); lower it to "
                                   f"{max(len(usable), 1)} or add OSD hosts."))
    for variable, count in replicas.items():
        if count < 1:
            out.append(finding("rook.replicas", variable, f"{variable} must be at least 1."))
    mons, mgrs = _int(data.get("mon_count"), 3), _int(data.get("mgr_count"), 2)
    if mons not in (1, 3, 5):
        out.append(finding("rook.mons", "rook_ceph_mon_count", f"rook_ceph_mon_count is {mons}; use 1, 3 or 5 (an odd "
                                                               "quorum)."))
    if mgrs not in (1, 2):
        out.append(finding("rook.mons", "rook_ceph_mgr_count", f"rook_ceph_mgr_count is {mgrs}; use 1 or 2."))
    hosts = data.get("host_count", len(osd_nodes))
    if not data.get("allow_multiple_per_node") and mons > _int(hosts) and osd_nodes:
        out.append(finding("rook.mons", "rook_ceph_mon_count",
                           f"rook_ceph_mon_count {mons} needs {mons} nodes, one monitor each, but Ceph runs on "
                           f"{hosts}; lower it or set rook_ceph_allow_multiple_per_node: true."))
    if data.get("two_default_classes"):
        out.append(finding("rook.storageclass", "rook_ceph_block_default_class",
                           "both the Ceph block class and the OpenEBS hostpath class are marked default; keep one "
                           "(rook_ceph_block_default_class or rook_ceph_openebs_values)."))
    return out


# ---------------------------------------------------------------- Istio layer
def check_istio(data):
    out = []
    system = {"kube-system", "kube-public", "kube-node-lease", data.get("namespace") or "istio-system"}
    names = data.get("enrolled_namespaces") or []
    for ns in names:
        if ns in system:
            out.append(finding("istio.namespaces", "istio_ambient_enrolled_namespaces",
                               f"'{ns}' is a system namespace; enrol application namespaces only."))
        elif not DNS_LABEL.match(str(ns)):
            out.append(finding("istio.namespaces", "istio_ambient_enrolled_namespaces",
                               f"'{ns}' is not a namespace name (a DNS label)."))
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        out.append(finding("istio.namespaces", "istio_ambient_enrolled_namespaces",
                           f"{', '.join(dups)} listed more than once."))
    return out


# ---------------------------------------------------------------- compatibility table
def _nearest(releases, want_in):
    """Release minors of a table section for which want_in(entry) holds, nearest first."""
    return [k for k, e in releases.items() if want_in(e)]


def check_compat(table, component, aspect, release, against, *, variable, allow=(), label=None,  # noqa: PLR0911
                 against_variable=""):
    """One pair from the table: `component` release (e.g. Istio 1.27.0) against `against` (a version).

    aspect is a section name (kubernetes, ceph, gateway_api). Returns findings (error or warning).
    """
    section = (table.get(component) or {}).get(aspect) or {}
    releases = section.get("releases") or {}
    rel = _minor(release)
    name = label or component.capitalize()
    rule = f"compat.{component}_{aspect}"
    if rel is None:
        return [finding(rule, variable, f"cannot read a version from {variable} '{release}'.")]
    entry = releases.get(_fmt(rel))
    if entry is None:
        known = ", ".join(sorted(releases, key=_minor))
        return [finding(rule, variable, f"{name} {_fmt(rel)} is not in the compatibility table "
                                        f"(compat/compatibility.yml knows {known}); add it with its source to have "
                                        "it checked.", severity="warning")]
    allowed = component in allow or f"{component}.{aspect}" in allow
    severity = "error" if section.get("on_outside", "refuse") == "refuse" and not allowed else "warning"
    source = entry.get("source") or section.get("source", "")
    if aspect == "kubernetes":
        k = _minor(against)
        if k is None:
            return [finding(rule, against_variable or variable, f"cannot read a Kubernetes version from '{against}'.")]
        lo, hi = _minor(entry["min"]), _minor(entry["max"])
        if lo <= k <= hi:
            return []
        fits = sorted(_nearest(releases, lambda e: _minor(e["min"]) <= k <= _minor(e["max"])), key=_minor)
        hint = (f"{name} {fits[-1]} supports Kubernetes {_fmt(k)}" if fits else
                f"no {name} release in the table supports Kubernetes {_fmt(k)}")
        nearest_k = _fmt(hi if k > hi else lo)
        return [finding(rule, variable,
                        f"{name} {_fmt(rel)} ({variable}) supports Kubernetes {entry['min']} to {entry['max']}, not "
                        f"{_fmt(k)}{(' (' + against_variable + ')') if against_variable else ''}. Nearest supported: "
                        f"{hint}, or Kubernetes {nearest_k} with {name} {_fmt(rel)}. Source: {source}"
                        + ("" if severity == "error" or section.get("on_outside") == "warn" else
                           f" (allowed by homecluster_preflight_allow_unsupported: {component}.{aspect})"),
                        severity=severity)]
    if aspect == "ceph":
        major = _int(re.sub(r"^v", "", str(against)).split(".")[0], -1)
        majors = entry.get("majors") or []
        if major in majors:
            return []
        return [finding(rule, against_variable or variable,
                        f"Rook {_fmt(rel)} ({variable}) supports Ceph {', '.join(f'v{m}' for m in majors)}, not "
                        f"'{against}'. Nearest supported: Ceph v{min(majors, key=lambda m: abs(m - major))}. "
                        f"Source: {source}", severity=severity)]
    if aspect == "gateway_api":
        g = _minor(against)
        want = _minor(entry.get("version"))
        if g is None or want is None or g <= want:
            return []
        return [finding(rule, against_variable or variable,
                        f"the Gateway API CRDs are v{_fmt(g)}, newer than the v{_fmt(want)} {name} {_fmt(rel)} "
                        f"is built "
                        f"and tested on; use the v{_fmt(want)} CRDs. Source: {source}", severity=severity)]
    return []


def gateway_api_version(urls):
    """The Gateway API release named in CRD URLs (.../v1.3.0/...), or None."""
    for url in urls or []:
        m = re.search(r"/v(\d+\.\d+)(\.\d+)?/", str(url))
        if m:
            return m.group(1)
    return None


RULE_SETS = {
    "proxmox_vms": lambda d: check_proxmox_vms(d.get("vms") or [], d.get("minimums") or {}, d.get("api")),
    "proxmox_cluster": lambda d: check_proxmox_cluster(d.get("vms") or [], d.get("cluster") or {}),
    "talos": lambda d: check_talos(d.get("nodes") or [], d.get("cluster") or {}),
    "cilium": check_cilium,
    "rook": check_rook,
    "istio": check_istio,
}


def run(checks, data, table=None, allow=()):
    """Run named rule sets over data, plus the compatibility pairs in data['compat']."""
    out = []
    for name in checks:
        out.extend(RULE_SETS[name](data))
    for pair in data.get("compat") or []:
        out.extend(check_compat(table or {}, pair["component"], pair["aspect"], pair["release"], pair.get("against"),
                                variable=pair["variable"], allow=allow, label=pair.get("label"),
                                against_variable=pair.get("against_variable", "")))
    return out


def message(findings):
    """One line per finding, as the fail message of a layer run."""
    return "\n".join((f"host {f['host']}: " if f["host"] else "") + f["message"] + f" [{f['variable']}]"
                     for f in findings)


def table(findings, layers=None):
    """Lines of the human report: per layer checked the error and warning counts, then every finding."""
    layers = LAYERS if layers is None else list(layers)
    lines = [f"{'layer':<8} {'errors':>6} {'warnings':>8}  result"]
    for layer in layers + sorted({f["layer"] for f in findings} - set(layers)):
        e = sum(1 for f in findings if f["layer"] == layer and f["severity"] == "error")
        w = sum(1 for f in findings if f["layer"] == layer and f["severity"] == "warning")
        lines.append(f"{layer:<8} {e:>6} {w:>8}  {'REFUSED' if e else 'ok'}")

    def order(f):
        return (f["severity"] != "error", LAYERS.index(f["layer"]) if f["layer"] in LAYERS else 99)

    for f in sorted(findings, key=order):
        where = f" {f['host']}" if f["host"] else ""
        lines.append(f"{f['severity'].upper():<7} {f['layer']}{where} {f['variable']}: {f['message']}")
    return lines


REPORT_KEYS = ("layer", "rule", "host", "variable", "severity", "message")


def report(findings, layers=None):
    """The preflight_report.json document of a list of findings (layers: those checked, default LAYERS)."""
    findings = [{k: str(f.get(k, "")) for k in REPORT_KEYS} for f in findings]
    errors = [f for f in findings if f["severity"] == "error"]
    return {"result": "refused" if errors else "passed", "errors": len(errors),
            "warnings": len(findings) - len(errors), "layers_checked": LAYERS if layers is None else list(layers),
            "findings": findings}


def write_report(doc, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp_path = path + ".tmp"
    with open(tmp_path, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    os.replace(tmp_path, path)
