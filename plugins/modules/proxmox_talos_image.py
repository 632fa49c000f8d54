#!/usr/bin/python
# Copyright: HomeCluster developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
module: proxmox_talos_image
short_description: Put a Talos Image Factory ISO onto Proxmox VE storage, once
version_added: 0.1.0
description:
  - Computes the Image Factory schematic ID of a list of official system extensions (the SHA-256
    of the schematic, as the factory computes it), builds the image URL
    C(<factory>/image/<schematic>/<version>/<platform>-<arch>.iso) and a file name that carries
    the version and the schematic, looks at the storage's ISO content and, only when the file is not
    there yet, has the Proxmox node download it (C(POST .../download-url)) and waits for the task.
  - A file already on the storage is never fetched again; on shared storage one node's download
    serves every node.
  - Why not C(community.proxmox.proxmox_storage_contents_info) + C(proxmox_template) - the latter
    uploads from the controller or downloads without check mode; this module looks first, so check
    mode predicts honestly, and never downloads twice.
options:
  node:
    description: Node that downloads the image (and whose storage is checked).
    type: str
    required: true
  storage:
    description: Storage with the C(iso) content type.
    type: str
    required: true
  talos_version:
    description: Talos version of the image (C(v1.14.1)); this is what gets installed, not a config format.
    type: str
    required: true
  extensions:
    description: Official system extensions baked into the image (C(siderolabs/qemu-guest-agent)).
    type: list
    elements: str
    default: []
  schematic_id:
    description: Use this schematic ID instead of computing one from O(extensions).
    type: str
  platform:
    description: Image Factory platform; C(nocloud) reads the static address from the cloud-init drive.
    type: str
    default: nocloud
  arch:
    description: CPU architecture.
    type: str
    default: amd64
    choices: [amd64, arm64]
  factory_url:
    description: Base URL of the Image Factory (or of a mirror serving the same paths).
    type: str
    default: https://factory.talos.dev
  filename:
    description: File name on the storage; defaults to C(talos-<version>-<schematic[:12]>-<platform>-<arch>.iso).
    type: str
extends_documentation_fragment:
  - homecluster.platform.attributes
  - ansible.builtin.action_common_attributes
  - homecluster.platform.proxmox
attributes:
  check_mode:
    support: full
    details: Lists the storage content and reports whether a download would happen.
  diff_mode:
    support: full
  idempotent:
    description: A second run with the same inputs reports no change and makes no write call.
    support: full
author:
  - HomeCluster developers (@homecluster)
"""

EXAMPLES = r"""
- name: Put the Talos ISO on the local storage of every node
  homecluster.platform.proxmox_talos_image:
    api_host: pve1.home.arpa
    api_user: automation@pve
    api_token_id: ansible
    api_token_secret: "{{ vault_proxmox_token_secret }}"
    node: "{{ item }}"
    storage: local
    talos_version: v1.14.1
    extensions: [siderolabs/qemu-guest-agent]
  loop: [pve1, pve2, pve3]
  run_once: true
  delegate_to: localhost
"""

RETURN = r"""
volid:
  description: Volume id of the ISO, to attach to VMs.
  returned: always
  type: str
  sample: local:iso/talos-v1.14.1-ce4c980550dd-nocloud-amd64.iso
url:
  description: Image Factory URL of the image.
  returned: always
  type: str
  sample: https://factory.talos.dev/image/ce4c98.../v1.14.1/nocloud-amd64.iso
schematic_id:
  description: Schematic ID.
  returned: always
  type: str
  sample: ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515
schematic:
  description: The schematic (YAML) the ID was computed from; post it to the factory to register it.
  returned: always
  type: str
  sample: "customization: {}\n"
downloaded:
  description: Whether the image was (or would be) downloaded by this run.
  returned: always
  type: bool
task_warnings:
  description: Warnings of the download task when it ended with the exit status C(WARNINGS), a success in Proxmox.
  returned: when downloaded
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.homecluster.platform.plugins.module_utils._proxmox import (
    PROXMOX_MUTUALLY_EXCLUSIVE,
    PROXMOX_REQUIRED_ONE_OF,
    PROXMOX_REQUIRED_TOGETHER,
    ProxmoxClient,
    ProxmoxError,
    proxmox_argument_spec,
    schematic_id,
    schematic_yaml,
)


def main() -> None:
    spec = proxmox_argument_spec()
    spec.update(
        node={"type": "str", "required": True},
        storage={"type": "str", "required": True},
        talos_version={"type": "str", "required": True},
        extensions={"type": "list", "elements": "str", "default": []},
        schematic_id={"type": "str"},
        platform={"type": "str", "default": "nocloud"},
        arch={"type": "str", "default": "amd64", "choices": ["amd64", "arm64"]},
        factory_url={"type": "str", "default": "https://factory.talos.dev"},
        filename={"type": "str"},
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True,
                           mutually_exclusive=PROXMOX_MUTUALLY_EXCLUSIVE, required_one_of=PROXMOX_REQUIRED_ONE_OF,
                           required_together=PROXMOX_REQUIRED_TOGETHER)
    p = module.params
    version = p["talos_version"] if p["talos_version"].startswith("v") else f"v{p['talos_version']}"
    sid = p["schematic_id"] or schematic_id(p["extensions"])
    url = f"{p['factory_url'].rstrip('/')}/image/{sid}/{version}/{p['platform']}-{p['arch']}.iso"
    filename = p["filename"] or f"talos-{version}-{sid[:12]}-{p['platform']}-{p['arch']}.iso"
    volid = f"{p['storage']}:iso/{filename}"
    result = {"changed": False, "volid": volid, "url": url, "schematic_id": sid,
              "schematic": schematic_yaml(p["extensions"]), "downloaded": False}
    try:
        client = ProxmoxClient(module)
        content = client.call("get", f"nodes/{p['node']}/storage/{p['storage']}/content", content="iso")
        if any(e.get("volid") == volid for e in content):
            module.exit_json(**result)
        result.update(changed=True, downloaded=True)
        if module._diff:
            result["diff"] = {"before": {"volid": None}, "after": {"volid": volid, "url": url}}
        if not module.check_mode:
            upid = client.call("post", f"nodes/{p['node']}/storage/{p['storage']}/download-url",
                               url=url, content="iso", filename=filename)
            client.wait(p["node"], upid, f"downloading {url} to {volid} on {p['node']}")
            for warning in client.warnings:
                module.warn(warning)
            result["task_warnings"] = client.warnings
    except ProxmoxError as e:
        e.fail(module, url=url, volid=volid)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
