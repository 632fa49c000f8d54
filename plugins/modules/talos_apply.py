#!/usr/bin/python
# Copyright: HomeCluster developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
module: talos_apply
short_description: Apply a machine config to a Talos node, without surprise reboots
version_added: 0.1.0
description:
  - Finds out first whether the node is in maintenance mode (it answers an insecure call) or
    configured (it requires mutual TLS), with one probe.
  - A node in maintenance mode gets the config with C(apply-config --insecure).
  - A configured node is asked with C(apply-config --dry-run) over mutual TLS what would change.
    C(No changes.) means nothing is applied and the task reports no change; otherwise the config
    diff is shown under C(--diff) and the config applied in O(mode).
  - Never a surprise reboot. When the dry run reports that the change needs a reboot, O(mode=auto)
    stages the config for the next boot instead, unless O(allow_reboot=true); O(mode=no-reboot)
    fails before applying anything.
options:
  node:
    description: Address of the node.
    type: str
    required: true
  config_file:
    description: Machine config to apply (from M(homecluster.platform.talos_machineconfig)).
    type: path
    required: true
  mode:
    description:
      - C(auto) applies without reboot when the change allows it (staged otherwise, see O(allow_reboot)).
      - C(no-reboot) fails when the change needs a reboot.
      - C(staged) stores the config for the next boot.
      - C(try) applies and reverts after O(try_timeout) unless applied again.
    type: str
    default: auto
    choices: [auto, no-reboot, staged, try]
  allow_reboot:
    description: Let O(mode=auto) reboot the node when the change needs it, instead of staging.
    type: bool
    default: false
  try_timeout:
    description: How long a C(try) config stays before it is reverted (Go duration, C(1m)).
    type: str
    default: 1m
  insecure:
    description:
      - C(auto) probes the node; C(always) forces maintenance-mode apply; C(never) requires mutual TLS.
    type: str
    default: auto
    choices: [auto, always, never]
extends_documentation_fragment:
  - homecluster.platform.attributes
  - ansible.builtin.action_common_attributes
  - homecluster.platform.talosctl
attributes:
  check_mode:
    support: full
    details: Check mode runs the probe and the dry run, so the prediction comes from the node itself.
  diff_mode:
    support: full
    details: The diff is the one Talos computes against its running config, with secrets masked.
author:
  - HomeCluster developers (@homecluster)
"""

EXAMPLES = r"""
- name: Apply the machine config
  homecluster.platform.talos_apply:
    node: 192.168.1.11
    config_file: "{{ inventory_dir }}/talos/nodes/cp1.yaml"
    talosconfig: "{{ inventory_dir }}/talos/talosconfig"
    endpoints: [192.168.1.11]
"""

RETURN = r"""
node_state:
  description: State of the node before the run (C(maintenance) or C(configured)).
  returned: always
  type: str
  sample: configured
applied_mode:
  description: Mode the config was (or in check mode would be) applied in; null when nothing changes.
  returned: always
  type: str
  sample: staged
reboot_required:
  description: Whether Talos reports that the change needs a reboot.
  returned: always
  type: bool
  sample: false
dry_run:
  description: The dry-run summary line reported by Talos.
  returned: always
  type: str
  sample: Applied configuration without a reboot (skipped in dry-run).
mode_details:
  description: What Talos reported for the real apply.
  returned: when changed and not in check mode
  type: str
  sample: Applied configuration without a reboot
"""

import os
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.homecluster.platform.plugins.module_utils._talos_state import (
    CONFIGURED,
    MAINTENANCE,
    UNREACHABLE,
    probe_maintenance,
)
from ansible_collections.homecluster.platform.plugins.module_utils._talosctl import (
    Talosctl,
    TalosctlError,
    dump_yaml_stream,
    parse_yaml_stream,
    redact,
    redact_diff,
    talosctl_argument_spec,
)


def fail(module, exc, node):
    kwargs = exc.as_fail_kwargs()
    if exc.kind in ("unreachable", "timeout"):
        kwargs["msg"] = (f"node {node} is unreachable on the Talos API (port 50000): {exc.msg}. "
                         "Check that it is powered on and reachable, then rerun; the run converges from here.")
    module.fail_json(**kwargs)


def confirm_applied(talos, p, node, wait=30):
    """After a maintenance apply whose answer was lost: did the node take the config?

    A node that took it leaves maintenance mode and answers mutual TLS; a dry run with the same
    config then reports no changes.
    """
    if not (p["talosconfig"] and os.path.exists(p["talosconfig"])):
        return False
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        state = probe_maintenance(talos, [node])[node]
        if state["state"] == CONFIGURED:
            try:
                dry, _res = talos.apply_config(p["config_file"], node=node, mode="auto", dry_run=True)
            except TalosctlError:
                return False
            return dry["no_changes"]
        time.sleep(1)
    return False


def detect_state(module, talos, node):
    p = module.params
    if p["insecure"] != "auto":
        return MAINTENANCE if p["insecure"] == "always" else CONFIGURED
    try:
        state = probe_maintenance(talos, [node])[node]
    except TalosctlError as exc:
        fail(module, exc, node)
    if state["state"] == UNREACHABLE:
        module.fail_json(msg=f"node {node} is unreachable on the Talos API (port 50000): {state['error']}. "
                             "Check that it is powered on and reachable, then rerun.", error_kind="unreachable",
                         node=node, changed=False)
    return MAINTENANCE if state["state"] == MAINTENANCE else CONFIGURED


def plan_maintenance(module, result):
    p = module.params
    result.update(changed=True, applied_mode=p["mode"], dry_run="node in maintenance mode: full config applied")
    if module._diff:
        with open(p["config_file"]) as handle:
            after = dump_yaml_stream([redact(d) for d in parse_yaml_stream(handle.read())])
        result["diff"] = {"before": "", "after": after, "before_header": f"{result['node']} (maintenance)",
                          "after_header": p["config_file"]}
    return p["mode"]


def plan_configured(module, talos, result):
    """Dry run over mTLS; returns the mode to apply in, or None when nothing changes."""
    p = module.params
    node = result["node"]
    mode = p["mode"]
    try:
        dry, _res = talos.apply_config(p["config_file"], node=node, mode=mode, dry_run=True,
                                       try_timeout=p["try_timeout"])
    except TalosctlError as exc:
        fail(module, exc, node)
    result["dry_run"] = dry["mode_details"]
    result["reboot_required"] = dry["reboot_required"]
    for warning in dry["warnings"]:
        module.warn(f"{node}: {warning}")
    if dry["no_changes"]:
        return None
    if dry["reboot_required"] and mode == "no-reboot":
        module.fail_json(msg=f"the change to {node} needs a reboot and mode is no-reboot; use mode staged, "
                             "or auto with allow_reboot=true", **result)
    if dry["reboot_required"] and mode == "auto" and not p["allow_reboot"]:
        mode = "staged"
        module.warn(f"{node}: the change needs a reboot; staged for the next boot instead (allow_reboot=false)")
    result.update(changed=True, applied_mode=mode)
    if module._diff:
        result["diff"] = {"prepared": redact_diff(dry["diff"]) or "(Talos reported a change without a diff)"}
    return mode


def main():
    spec = talosctl_argument_spec()
    spec.update(
        node={"type": "str", "required": True},
        config_file={"type": "path", "required": True},
        mode={"type": "str", "default": "auto", "choices": ["auto", "no-reboot", "staged", "try"]},
        allow_reboot={"type": "bool", "default": False},
        try_timeout={"type": "str", "default": "1m"},
        insecure={"type": "str", "default": "auto", "choices": ["auto", "always", "never"]},
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    p = module.params
    node = p["node"]
    if not os.path.isfile(p["config_file"]):
        module.fail_json(msg=f"config_file {p['config_file']} does not exist; render it with talos_machineconfig")
    talos = Talosctl.from_module(module)
    result = {"changed": False, "node": node, "applied_mode": None, "reboot_required": False, "dry_run": ""}
    node_state = detect_state(module, talos, node)
    result["node_state"] = node_state
    if node_state == CONFIGURED and not p["talosconfig"]:
        module.fail_json(msg=f"node {node} is configured and needs mutual TLS: set talosconfig", **result)
    insecure = node_state == MAINTENANCE
    mode = plan_maintenance(module, result) if insecure else plan_configured(module, talos, result)
    if mode is None or module.check_mode:
        module.exit_json(**result)
    try:
        applied, _res = talos.apply_config(p["config_file"], node=node, mode=mode, insecure=insecure,
                                           try_timeout=p["try_timeout"])
    except TalosctlError as exc:
        if not (insecure and exc.kind == "unreachable" and confirm_applied(talos, p, node)):
            fail(module, exc, node)
        applied = {"mode_details": "Applied configuration (the node left maintenance mode before answering)"}
    result["mode_details"] = applied["mode_details"]
    module.exit_json(**result)


if __name__ == "__main__":
    main()
