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
