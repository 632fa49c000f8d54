# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import pytest
from ansible_collections.homecluster.platform.plugins.module_utils import _proxmox as p


@pytest.mark.parametrize(("extensions", "sid"), [
    # IDs the Image Factory gives for these schematics (the empty one and qemu-guest-agent).
    ([], "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"),
    (["siderolabs/qemu-guest-agent"], "ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515"),
])
def test_schematic_id_matches_the_image_factory(extensions, sid):
    assert p.schematic_id(extensions) == sid


def test_parse_prop():
    assert p.parse_prop("virtio=BC:24:11:00:00:01,bridge=vmbr0,tag=20") == {
        "virtio": "BC:24:11:00:00:01", "bridge": "vmbr0", "tag": "20"}
    want = {"file": "local-lvm:vm-100-disk-0", "size": "32G"}
    assert p.parse_prop("local-lvm:vm-100-disk-0,size=32G", "file") == want
    assert p.parse_prop("4096", "current") == {"current": "4096"}
    assert p.parse_prop(None) == {}


@pytest.mark.parametrize(("size", "gib"), [("32G", 32), ("512M", 0.5), ("1T", 1024), ("4M", 4 / 1024), ("x", 0)])
def test_size_to_gib(size, gib):
    assert p.size_to_gib(size) == pytest.approx(gib)


def test_permission_error_names_privilege_and_path():
    msg = p.explain(403, "Permission check failed (/vms/811, VM.Allocate)", "automation@pve!ansible", "POST",
                    "nodes/pve1/qemu")
    assert "403 Permission check failed (/vms/811, VM.Allocate)" in msg
    assert "'automation@pve!ansible' lacks VM.Allocate on /vms/811" in msg
    assert "pveum acl modify /vms/811 --tokens automation@pve!ansible" in msg


def test_auth_and_lock_errors_say_what_to_do():
    assert "check api_user, api_token_id" in p.explain(401, "authentication failure", "a@pve!t", "GET", "version")
    assert "qm unlock" in p.explain(500, "VM is locked (backup)", "a@pve", "PUT", "nodes/pve1/qemu/1/config")
    assert p.explain(500, "other", "a@pve", "GET", "x") == "Proxmox API GET x failed: 500 other"


def test_bare_permission_error_on_create_names_the_likely_privileges():
    msg = p.explain(403, "Permission check failed", "automation@pve!ansible", "POST", "nodes/pve1/qemu",
                    params={"vmid": 811, "scsi0": "local-lvm:32,ssd=1", "efidisk0": "local-lvm:1"})
    assert "lacks VM.Allocate on /vms/811" in msg and "/pool/" in msg
    assert "Datastore.AllocateSpace on /storage/local-lvm" in msg
    assert "pveum acl modify" in msg


def test_bare_permission_error_on_download_names_sys_accessnetwork():
    msg = p.explain(403, "Permission check failed", "a@pve!t", "POST", "nodes/pve2/storage/local/download-url")
    assert "Sys.AccessNetwork on /nodes/pve2" in msg and "Sys.Modify" in msg


class FakeTasks:
    """A ProxmoxClient whose API answers come from a script: each call pops the next answer for its path."""

    def __init__(self, script):
        self.script = script
        self.calls = []

    def __call__(self, method, path, **params):
        self.calls.append((method, path))
        for key, answers in self.script.items():
            if key in path:
                return answers.pop(0) if len(answers) > 1 else answers[0]
        raise AssertionError(path)


def client_with(monkeypatch, script):
    c = object.__new__(p.ProxmoxClient)
    c.warnings, c.task_timeout, c.principal = [], 5, "a@pve!t"
    fake = FakeTasks(script)
    monkeypatch.setattr(c, "call", fake)
    monkeypatch.setattr(p.time, "sleep", lambda s: None)
    return c, fake


UPID = "UPID:pve1:00001234:00ABCDEF:6B07E31F:qmstart:811:a@pve!t:"


def test_warnings_exit_status_is_success_and_the_warnings_are_kept(monkeypatch):
    c, _fake = client_with(monkeypatch, {
        "/status": [{"status": "stopped", "exitstatus": "WARNINGS: 1"}],
        "/log": [[{"n": 1, "t": "start VM 811"}, {"n": 2, "t": "WARN: no efidisk configured"},
                  {"n": 3, "t": "TASK WARNINGS: 1"}]]})
    status = c.wait("pve1", UPID, "starting VM 811")
    assert status["warnings"] == ["no efidisk configured"]
    assert c.warnings == [f"starting VM 811: no efidisk configured (task {UPID})"]


def test_failed_task_is_an_error(monkeypatch):
    c, _fake = client_with(monkeypatch, {"/status": [{"status": "stopped", "exitstatus": "WARNINGS maybe"}],
                                         "/log": [[{"n": 1, "t": "TASK ERROR: x"}]]})
    with pytest.raises(p.ProxmoxError) as e:
        c.wait("pve1", UPID, "starting VM 811")
    assert e.value.details["task_log"] == ["TASK ERROR: x"]


def test_lock_failing_inside_the_task_is_retried_then_succeeds(monkeypatch):
    c, fake = client_with(monkeypatch, {
        "/log": [[{"n": 1, "t": "TASK ERROR: VM is locked (backup)"}]],
        "/status/start": [UPID],
        "/tasks/": [{"status": "stopped", "exitstatus": "VM is locked (backup)"},
                    {"status": "stopped", "exitstatus": "OK"}]})
    assert c.run_task("pve1", "post", "nodes/pve1/qemu/811/status/start", "starting VM 811")["exitstatus"] == "OK"
    starts = [x for x in fake.calls if x[1].endswith("/status/start")]
    assert starts == [("post", "nodes/pve1/qemu/811/status/start")] * 2


def test_lock_held_past_the_wait_fails_with_the_unlock_hint(monkeypatch):
    c, _fake = client_with(monkeypatch, {
        "/log": [[{"n": 1, "t": "TASK ERROR: VM is locked (backup)"}]],
        "/status/start": [UPID],
        "/tasks/": [{"status": "stopped", "exitstatus": "VM is locked (backup)"}]})
    clock = iter(range(0, 1000, 10))
    monkeypatch.setattr(p.time, "monotonic", lambda: next(clock))
    with pytest.raises(p.ProxmoxError) as e:
        c.run_task("pve1", "post", "nodes/pve1/qemu/811/status/start", "starting VM 811")
    assert "starting VM 811 failed: VM is locked (backup)" in e.value.msg
    assert "qm unlock 811" in e.value.msg


def test_service_errors_and_full_storage_say_what_to_do():
    msg = p.explain(503, "Service Unavailable", "a@pve!t", "GET", "cluster/resources")
    assert "systemctl status pveproxy pvedaemon" in msg and "rerun" in msg
    exists = p.explain(500, "VM 811 already exists on node 'pve1'", "a@pve!t", "POST", "nodes/pve1/qemu")
    assert "pveproxy" not in exists
    hint = p.task_hint("lvcreate 'pve/vm-811-disk-1' error: Volume group \"pve\" has insufficient free space "
                       "(10 extents): 2560 required. (storage 'local-lvm')")
    assert "storage 'local-lvm' has no room" in hint and "disk.storage" in hint


class WarnModule:
    """Just what ProxmoxClient reads of an AnsibleModule."""

    def __init__(self, **params):
        self.params = {"api_host": "pve1.home.arpa", "api_port": 8006, "api_user": "automation@pve",
                       "api_token_id": "ansible", "api_token_secret": "x" * 36, "api_password": None,
                       "validate_certs": True, "ca_path": None, "api_timeout": 5, "task_timeout": 5, **params}
        self.warnings = []

    def warn(self, msg):
        self.warnings.append(msg)

    def fail_json(self, **kwargs):
        raise AssertionError(kwargs)


@pytest.mark.parametrize(("validate", "warned"), [(False, True), (True, False)])
def test_unverified_tls_warns_on_every_run(monkeypatch, validate, warned):
    seen = {}
    monkeypatch.setattr(p, "ProxmoxAPI", lambda host, **kw: seen.update(kw) or object())
    module = WarnModule(validate_certs=validate)
    p.ProxmoxClient(module)
    assert seen["verify_ssl"] is validate
    assert bool([w for w in module.warnings if "validate_certs is false" in w and "pve-root-ca.pem" in w]) is warned
