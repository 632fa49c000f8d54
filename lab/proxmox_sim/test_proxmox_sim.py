# SPDX-License-Identifier: GPL-3.0-or-later
"""The simulator answers like Proxmox VE 8 to proxmoxer: auth, privileges, tasks, locks, faults, counts, hook."""
from __future__ import annotations

import itertools
import json
import os
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import pytest
import requests
from proxmoxer import ProxmoxAPI
from proxmoxer.core import ResourceException
from proxmoxer.tools import Tasks

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pvesim_cli as cli
from pvesim_server import make_server

TOKEN = "5f0c8e2a-1b7d-4c3e-9a61-2d4b8f7e0c11"
AUDIT = "0d9a7b11-3f2e-4e0a-8c55-6a1f2b3c4d5e"
UPID_RE = re.compile(r"^UPID:pve\d:[0-9A-F]{8}:[0-9A-F]{8}:[0-9A-F]{8}:\w+:[^:]*:[^:]+:$")


class Hook(BaseHTTPRequestHandler):
    events: ClassVar[list] = []

    def do_POST(self):
        Hook.events.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    d = tmp_path_factory.mktemp("pve")
    hook = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    config = cli.load_config(cli.DEFAULT_CONFIG)
    config.update(task_delay=0.05, lock_timeout=1, status_period=0,
                  power_hook_url=f"http://127.0.0.1:{hook.server_address[1]}/power")
    cli.make_certs(str(d), "127.0.0.1")
    srv = make_server(config, "127.0.0.1", 0, str(d / "server.pem"), str(d / "server.key"),
                      state_file=str(d / "state.json"))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield {"port": srv.server_address[1], "ca": str(d / "ca.pem"), "srv": srv, "dir": d}
    srv.shutdown()
    hook.shutdown()


def api(sim, user="automation@pve", name="ansible", secret=TOKEN, password=None):
    kw = {"password": password} if password else {"token_name": name, "token_value": secret}
    return ProxmoxAPI(f"127.0.0.1:{sim['port']}", user=user, verify_ssl=sim["ca"], **kw)


def wait(p, upid):
    return Tasks.blocking_status(p, upid, polling_interval=0.02)


def create(p, vmid, node="pve1", **extra):
    params = {"vmid": vmid, "name": f"vm{vmid}", "memory": 2048, "cores": 2, "scsi0": "local-lvm:10",
              "net0": "virtio,bridge=vmbr0", "ipconfig0": f"ip=127.0.30.{vmid % 250}/24", **extra}
    return p.nodes(node).qemu.post(**params)


def test_tls_is_verified_with_the_own_ca(sim):
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"https://127.0.0.1:{sim['port']}/api2/json/version", timeout=5)
    r = requests.get(f"https://127.0.0.1:{sim['port']}/api2/json/version", verify=sim["ca"], timeout=5)
    assert r.status_code == 401 and r.reason == "No ticket" and r.json() == {"data": None, "message": "No ticket\n"}


def test_ticket_login_and_csrf(sim):
    base = f"https://127.0.0.1:{sim['port']}/api2/json"
    r = requests.post(f"{base}/access/ticket", data={"username": "root@pam", "password": "lab-root-password"},
                      verify=sim["ca"], timeout=5).json()["data"]
    assert r["ticket"].startswith("PVE:root@pam:") and r["username"] == "root@pam"
    cookies = {"PVEAuthCookie": r["ticket"]}
    assert requests.get(f"{base}/nodes", cookies=cookies, verify=sim["ca"], timeout=5).status_code == 200
    no_csrf = requests.post(f"{base}/nodes/pve3/qemu", data={"vmid": 990}, cookies=cookies, verify=sim["ca"],
                            timeout=5)
    assert no_csrf.status_code == 401 and "invalid csrf token" in no_csrf.reason
    bad = requests.post(f"{base}/access/ticket", data={"username": "root@pam", "password": "x"}, verify=sim["ca"],
                        timeout=5)
    assert bad.status_code == 401 and bad.reason == "authentication failure"
    p = api(sim, user="root@pam", password="lab-root-password")
    assert UPID_RE.match(create(p, 990, node="pve3"))


def test_token_privileges_and_pve_error_format(sim):
    p = api(sim, user="auditor@pve", name="readonly", secret=AUDIT)
    assert [n["node"] for n in p.nodes.get()] == ["pve1", "pve2", "pve3"]
    with pytest.raises(ResourceException) as e:
        create(p, 991)
    assert e.value.status_code == 403
    assert e.value.content == "Permission check failed"  # create_vm's raise_perm_exc() carries no path
    with pytest.raises(ResourceException) as e:
        api(sim, secret="wrong").version.get()
    assert e.value.status_code == 401


def test_parameter_errors(sim):
    p = api(sim)
    with pytest.raises(ResourceException) as e:
        p.nodes("pve1").qemu.post(vmid=99, name="x", bogus=1)
    assert e.value.status_code == 400 and e.value.content == "Parameter verification failed."
    assert set(e.value.errors) == {"vmid", "bogus"}


def test_create_is_async_locked_and_counted(sim):
    p = api(sim)
    sim["srv"].cluster.task_delay = 1.0
    upid = create(p, 992, tags="talos;controlplane")
    sim["srv"].cluster.task_delay = 0.05
    assert UPID_RE.match(upid) and ":qmcreate:992:automation@pve!ansible:" in upid
    with pytest.raises(ResourceException) as e:
        p.nodes("pve1").qemu(992).config.put(cores=4)
    assert e.value.content == "VM is locked (create)"
    assert wait(p, upid)["exitstatus"] == "OK"
    cfg = p.nodes("pve1").qemu(992).config.get()
    assert cfg["scsi0"] == "local-lvm:vm-992-disk-0,size=10G" and cfg["memory"] == "2048" and cfg["cores"] == 2
    assert re.match(r"^virtio=BC:24:11:[0-9A-F:]{8},bridge=vmbr0$", cfg["net0"]) and len(cfg["digest"]) == 40
    with pytest.raises(ResourceException) as e:
        create(p, 992, node="pve2")
    assert e.value.content == "VM 992 already exists on node 'pve1'"
    res = [r for r in p.cluster.resources.get(type="vm") if r["vmid"] == 992]
    assert res[0]["name"] == "vm992" and res[0]["node"] == "pve1" and res[0]["status"] == "stopped"
    assert int(p.cluster.nextid.get()) == 100
    stats = requests.get(f"https://127.0.0.1:{sim['port']}/_sim/stats", verify=sim["ca"], timeout=5).json()
    assert stats["calls"]["POST /api2/json/nodes/{node}/qemu"] >= 2 and stats["writes"] >= 2


def test_start_stop_call_the_power_hook_and_delete_needs_stopped(sim):
    p = api(sim)
    wait(p, create(p, 993))
    assert wait(p, p.nodes("pve1").qemu(993).status.start.post())["exitstatus"] == "OK"
    assert p.nodes("pve1").qemu(993).status.current.get()["status"] == "running"
    assert wait(p, p.nodes("pve1").qemu(993).status.start.post())["exitstatus"] == "VM 993 already running"
    with pytest.raises(ResourceException) as e:
        p.nodes("pve1").qemu(993).delete()
    assert e.value.content == "VM 993 is running - destroy failed"
    p.nodes("pve1").qemu(993).config.put(memory=4096)
    assert p.nodes("pve1").qemu(993).config.get(current=1)["memory"] == "2048"
    assert p.nodes("pve1").qemu(993).config.get()["memory"] == "4096"
    wait(p, p.nodes("pve1").qemu(993).status.stop.post())
    wait(p, p.nodes("pve1").qemu(993).delete())
    assert all(r["vmid"] != 993 for r in p.cluster.resources.get(type="vm"))
    time.sleep(0.2)
    events = [e for e in Hook.events if e["name"] == "vm993"]
    assert events == [{"address": "127.0.30.243", "name": "vm993", "state": "on"},
                      {"address": "127.0.30.243", "name": "vm993", "state": "off"}]


def test_download_url_once_and_task_log(sim):
    p = api(sim)
    url = "https://factory.talos.dev/image/abc/v1.14.1/nocloud-amd64.iso"
    upid = p.nodes("pve2").storage("local")("download-url").post(url=url, content="iso", filename="t.iso")
    assert wait(p, upid)["exitstatus"] == "OK"
    assert [e["volid"] for e in p.nodes("pve2").storage("local").content.get(content="iso")] == ["local:iso/t.iso"]
    assert p.nodes("pve1").storage("local").content.get(content="iso") == []  # local storage is per node
    with pytest.raises(ResourceException) as e:
        p.nodes("pve2").storage("local")("download-url").post(url=url, content="iso", filename="t.iso")
    assert "refusing to override existing file" in e.value.content
    log = p.nodes("pve2").tasks(upid).log.get()
    assert log[0]["n"] == 1 and log[-1]["t"] == "TASK OK"


def test_faults_error_lock_and_task_failure(sim):
    p = api(sim)
    base = f"https://127.0.0.1:{sim['port']}/_sim/faults"
    requests.post(base, json={"method": "GET", "path": "^/version$", "status": 503, "message": "sim outage"},
                  verify=sim["ca"], timeout=5)
    with pytest.raises(ResourceException) as e:
        p.version.get()
    assert e.value.status_code == 503
    assert p.version.get()["release"] == "8.4"
    requests.post(base, json={"type": "task_error", "task_type": "qmcreate", "vmid": 994, "message": "no space"},
                  verify=sim["ca"], timeout=5)
    status = wait(p, create(p, 994))
    assert status["exitstatus"] == "no space"
    assert all(r["vmid"] != 994 for r in p.cluster.resources.get(type="vm"))  # cleaned up, a rerun can create it
    assert wait(p, create(p, 994))["exitstatus"] == "OK"
    requests.post(base, json={"type": "lock", "path": "/qemu/994/config", "lock": "backup"}, verify=sim["ca"],
                  timeout=5)
    with pytest.raises(ResourceException) as e:
        p.nodes("pve1").qemu(994).config.put(cores=3)
    assert e.value.content == "VM is locked (backup)"
    p.nodes("pve1").qemu(994).config.put(cores=3)


def test_state_persists(sim):
    sim["srv"].cluster.save()
    data = json.loads((sim["dir"] / "state.json").read_text())
    assert "992" in data["vms"]


@pytest.mark.parametrize("cmd", ["up", "serve"])
def test_refuses_non_loopback_bind(cmd, tmp_path):
    with pytest.raises(SystemExit, match="loopback"):
        cli.main([cmd, "--dir", str(tmp_path), "--address", "192.168.1.10"])
    assert not (tmp_path / "sim.pid").exists()


VMIDS = itertools.count(1000)
NOT_IN_SCHEMA = "property is not defined in schema and the schema does not allow additional properties"


@pytest.mark.parametrize(("call", "bad"), [
    (lambda p: p.cluster.resources.get(type="vm", bogus=1), "bogus"),
    (lambda p: p.nodes("pve1").storage("local").content.get(content="iso", colour="red"), "colour"),
    (lambda p: p.nodes("pve1").qemu(992).config.get(verbose=1), "verbose"),
    (lambda p: p.nodes("pve1").qemu(992).status.current.get(full=1), "full"),
    (lambda p: p.nodes("pve1").qemu(992).status.start.post(fast=1), "fast"),
    (lambda p: p.nodes("pve1").qemu(992).resize.put(disk="scsi0", size="11G", grow=1), "grow"),
    (lambda p: p.nodes("pve1").qemu(992).config.put(cores=2, turbo=1), "turbo"),
    (lambda p: p.nodes("pve1").qemu(992).delete(force=1), "force"),
    (lambda p: p.nodes("pve1").storage("local")("download-url").post(url="https://x/y.iso", content="iso",
                                                                      filename="y.iso", mirror=1), "mirror"),
])
def test_unknown_parameters_are_refused_on_every_endpoint(sim, call, bad):
    with pytest.raises(ResourceException) as e:
        call(api(sim))
    assert e.value.status_code == 400 and e.value.content == "Parameter verification failed."
    assert e.value.errors == {bad: NOT_IN_SCHEMA}


def test_keys_pve_accepts_are_accepted(sim):
    p = api(sim)
    upid = create(p, 995, acpi=1, smbios1="uuid=5b0f6d1c-1c38-4c2b-9a61-2d4b8f7e0c11,manufacturer=aG9tZQ==",
                  ipconfig5="ip=dhcp", net5="virtio,bridge=vmbr0", ipconfig31="ip=10.0.0.2/24,gw=10.0.0.1",
                  serial1="socket", serial3="socket", scsi30="local-lvm:1", ide3="none,media=cdrom",
                  net31="e1000,bridge=vmbr0,tag=4094")
    assert wait(p, upid)["exitstatus"] == "OK"
    cfg = p.nodes("pve1").qemu(995).config.get()
    assert cfg["acpi"] == 1 and cfg["serial3"] == "socket" and cfg["ipconfig31"].startswith("ip=10.0.0.2/24")


@pytest.mark.parametrize(("extra", "key", "text"), [
    ({"scsi31": "local-lvm:1"}, "scsi31", NOT_IN_SCHEMA),
    ({"ide4": "none,media=cdrom"}, "ide4", NOT_IN_SCHEMA),
    ({"net32": "virtio,bridge=vmbr0"}, "net32", NOT_IN_SCHEMA),
    ({"ipconfig32": "ip=dhcp"}, "ipconfig32", NOT_IN_SCHEMA),
    ({"serial4": "socket"}, "serial4", NOT_IN_SCHEMA),
    ({"net0": "virtio,bridge=vmbr0,tag=0"}, "net0", "value must have a minimum value of 1"),
    ({"net0": "virtio,bridge=vmbr0,tag=4095"}, "net0", "value must have a maximum value of 4094"),
    ({"ide2": "local:iso/talos.iso"}, "ide2", "media=cdrom"),
    ({"scsi1": "local:iso/talos.iso,media=disk"}, "scsi1", "media=cdrom"),
    ({"memory": "8"}, "memory", "minimum value of 16"),
    ({"bios": "uefi"}, "bios", "enumeration 'seabios, ovmf'"),
    ({"acpi": "maybe"}, "acpi", "type check ('boolean')"),
    ({"smbios1": "colour=red"}, "smbios1", "colour"),
    ({"ipconfig0": "ip=10.0.0.300"}, "ipconfig0", "IPv4 network configuration"),
    ({"scsi0": "local-lvm:10,discard=maybe"}, "scsi0", "discard"),
])
def test_invalid_values_are_refused_per_parameter(sim, extra, key, text):
    p = api(sim)
    vmid = next(VMIDS)  # each case its own VMID, so one wrongly accepted create does not spill into the next
    with pytest.raises(ResourceException) as e:
        create(p, vmid, **extra)
    assert e.value.status_code == 400 and key in e.value.errors and text in e.value.errors[key], e.value.errors
    assert all(r["vmid"] != vmid for r in p.cluster.resources.get(type="vm"))


def test_pvestatd_lags_behind_and_locks_fail_inside_tasks(tmp_path):
    config = cli.load_config(cli.DEFAULT_CONFIG)
    config.update(task_delay=0.05, lock_timeout=1, status_period=3600)
    cli.make_certs(str(tmp_path), "127.0.0.1")
    srv = make_server(config, "127.0.0.1", 0, str(tmp_path / "server.pem"), str(tmp_path / "server.key"))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    s = {"port": srv.server_address[1], "ca": str(tmp_path / "ca.pem")}
    try:
        p = api(s)
        wait(p, create(p, 997, tags="Talos;ControlPlane;talos"))
        entry = next(r for r in p.cluster.resources.get(type="vm") if r["vmid"] == 997)
        assert entry["status"] == "unknown" and "name" not in entry and entry["node"] == "pve1"
        assert entry["tags"] == "controlplane;talos"  # tags come from the config at once, lower-cased, sorted
        assert p.nodes("pve1").qemu(997).status.current.get()["status"] == "stopped"  # the live state
        srv.cluster.refresh_pvestatd()
        entry = next(r for r in p.cluster.resources.get(type="vm") if r["vmid"] == 997)
        assert entry["name"] == "vm997" and entry["status"] == "stopped"
        srv.cluster.hold_lock(997, "backup")
        upid = p.nodes("pve1").qemu(997).status.start.post()  # 200 and a UPID, as PVE answers
        assert UPID_RE.match(upid) and wait(p, upid)["exitstatus"] == "VM is locked (backup)"
        upid = p.nodes("pve1").qemu(997).resize.put(disk="scsi0", size="12G")
        assert wait(p, upid)["exitstatus"] == "VM is locked (backup)"
        with pytest.raises(ResourceException) as e:  # a config write checks the lock at once
            p.nodes("pve1").qemu(997).config.put(cores=3)
        assert e.value.status_code == 500 and e.value.content == "VM is locked (backup)"
        srv.cluster.vms[997]["config"].pop("lock")
        srv.cluster.faults.append({"type": "task_warning", "task_type": "qmstart", "vmid": 997, "message": "w1"})
        upid = p.nodes("pve1").qemu(997).status.start.post()
        assert wait(p, upid)["exitstatus"] == "WARNINGS: 1"
        assert [x["t"] for x in p.nodes("pve1").tasks(upid).log.get()][-2:] == ["WARN: w1", "TASK WARNINGS: 1"]
    finally:
        srv.shutdown()
