# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

from ansible_collections.homecluster.platform.plugins.modules import proxmox_talos_image as m

ARGS = {"node": "pve1", "storage": "local", "talos_version": "v1.14.1",
        "extensions": ["siderolabs/qemu-guest-agent"]}
VOLID = "local:iso/talos-v1.14.1-ce4c980550dd-nocloud-amd64.iso"
URL = ("https://factory.talos.dev/image/ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515/"
       "v1.14.1/nocloud-amd64.iso")


def test_missing_image_is_downloaded_once(fake, run_module):
    res = run_module(m.main, ARGS)
    assert res.result["changed"] and res.result["volid"] == VOLID and res.result["url"] == URL
    (_method, path, params), = fake.writes()
    assert path == "nodes/pve1/storage/local/download-url"
    assert params == {"url": URL, "content": "iso", "filename": VOLID.split("/", 1)[1]}


def test_present_image_is_not_fetched_again(fake, run_module):
    fake.iso.append(VOLID)
    res = run_module(m.main, ARGS)
    assert res.result["changed"] is False and fake.writes() == []


def test_check_mode_looks_but_does_not_download(fake, run_module):
    res = run_module(m.main, ARGS, check_mode=True)
    assert res.result["changed"] and res.result["downloaded"] and fake.writes() == []
    assert [c[1] for c in fake.calls] == ["nodes/pve1/storage/local/content"]
