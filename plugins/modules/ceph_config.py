#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: HomeCluster developers
from __future__ import annotations

DOCUMENTATION = r"""
module: ceph_config
short_description: Set or remove an option in the Ceph monitors' configuration database
version_added: 0.1.0
description:
  - Works on the centralised configuration (C(ceph config set/rm)), not on ceph.conf files.
  - To read values, use M(homecluster.platform.ceph_config_info).
  - The option name is checked with C(ceph config help) before anything changes, and the requested
    value is compared in the form Ceph stores it (C(True) is stored as C(true), a size C(1G) as
    C(1073741824), a debug level C(5) as C(5/5)), so a rerun reports no change and check mode
    predicts honestly.
options:
  who:
    description:
      - Section the option applies to - C(global), C(mon), C(mgr), C(osd), C(mds), C(client), a daemon
        such as C(osd.3), or a section with a mask such as C(osd/class:ssd) or C(osd/host:node1).
    type: str
    required: true
  name:
    description: Option name, for example C(osd_max_backfills).
    type: str
    required: true
  value:
    description: Value to store; required with O(state=present).
    type: raw
  state:
    description: C(present) stores O(value); C(absent) removes the entry from the database (the default applies again).
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - homecluster.platform.ceph
attributes:
  check_mode:
    support: full
    description: Reads the monitors' database and compares in Ceph's stored form.
  diff_mode:
    support: full
    description: The stored value before and after.
  idempotent:
    support: full
    description: Values are compared in the form Ceph stores them; a rerun reports no change.
author:
  - HomeCluster developers (@homecluster)
"""

EXAMPLES = r"""
- name: Recover faster after a node comes back
  homecluster.platform.ceph_config:
    who: osd
    name: osd_max_backfills
    value: 2
    transport: toolbox

- name: Let the default apply again
  homecluster.platform.ceph_config:
    who: osd
    name: osd_max_backfills
    state: absent
    transport: toolbox
"""

RETURN = r"""
value:
  description: Value stored in the monitors' database after the task (predicted in check mode); null when none.
  returned: always
  type: str
  sample: "2"
option:
  description: Type and default of the option, from C(ceph config help).
  returned: always
  type: dict
  sample: {type: uint, default: 1, can_update_at_runtime: true}
commands:
  description: The ceph commands run (or, in check mode, that would run).
  returned: always
  type: list
  elements: str
  sample: ["ceph config set osd osd_max_backfills 2"]
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.homecluster.platform.plugins.module_utils._ceph import (
    CephError,
    CephRunner,
    ceph_argument_spec,
    config_entry,
    fail_module,
    normalize_config_value,
)


def describe(runner: CephRunner, module: AnsibleModule, name: str) -> dict:
    rc, option, _out, err = runner.run(["config", "help", name], allowed_rc=(0, 2))
    if rc == 2 or not isinstance(option, dict):
        module.fail_json(msg=f"{name!r} is not a Ceph configuration option (ceph config help: {err.strip()})")
    return option


def main() -> None:
    spec = ceph_argument_spec()
    spec.update(
        who={"type": "str", "required": True},
        name={"type": "str", "required": True},
        value={"type": "raw"},
        state={"type": "str", "default": "present", "choices": ["present", "absent"]},
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True,
                           required_if=[("state", "present", ["value"])])
    p = module.params
    who, name = p["who"], p["name"]
    runner = CephRunner(p)
    commands: list[list[str]] = []
    try:
        option = describe(runner, module, name)
        before = config_entry(runner.json(["config", "dump"]) or [], who, name)
        after = before
        if p["state"] == "present":
            if isinstance(p["value"], (dict, list)):
                module.fail_json(msg=f"value of {name} must be a scalar, got {type(p['value']).__name__}")
            wanted = normalize_config_value(p["value"], option, name)
            if before != wanted:
                raw = "true" if p["value"] is True else "false" if p["value"] is False else str(p["value"])
                commands.append(["config", "set", who, name, raw])
                after = wanted
        elif before is not None:
            commands.append(["config", "rm", who, name])
            after = None
        if commands and not module.check_mode:
            for cmd in commands:
                runner.run(cmd, json_output=False)
            after = config_entry(runner.json(["config", "dump"]) or [], who, name)
    except CephError as exc:
        fail_module(module, exc)
        return
    result = dict(
        changed=bool(commands),
        value=after,
        option={k: option.get(k) for k in ("type", "default", "can_update_at_runtime")},
        commands=[" ".join(["ceph", *c]) for c in commands],
    )
    if module._diff:
        result["diff"] = {"before": {who: {name: before}} if before is not None else {},
                          "after": {who: {name: after}} if after is not None else {}}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
