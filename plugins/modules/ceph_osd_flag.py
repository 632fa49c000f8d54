#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: HomeCluster developers
from __future__ import annotations

DOCUMENTATION = r"""
module: ceph_osd_flag
short_description: Set or unset cluster-wide OSD flags (noout, norebalance, ...) around maintenance
version_added: 0.1.0
description:
  - Reads the flags set in C(ceph osd dump) and runs C(ceph osd set) or C(ceph osd unset) only for
    the flags that differ, so a rerun reports no change and check mode reports what would change.
  - Typical use is an upgrade or a node reboot - set C(noout) (and C(norebalance)) before, unset after.
options:
  flags:
    description: Flags to set or unset.
    type: list
    elements: str
    required: true
    choices: [noout, noin, noup, nodown, nobackfill, norebalance, norecover, noscrub, nodeep-scrub,
              notieragent, nosnaptrim, pause]
  state:
    description: C(present) sets the flags, C(absent) unsets them.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - homecluster.platform.ceph
attributes:
  check_mode:
    support: full
    description: Reads the flags from C(ceph osd dump) and reports which would be set or unset.
  diff_mode:
    support: full
    description: The cluster-wide flags before and after.
  idempotent:
    support: full
    description: Only flags that differ are set or unset.
author:
  - HomeCluster developers (@homecluster)
"""

EXAMPLES = r"""
- name: Keep OSDs in while a node reboots
  homecluster.platform.ceph_osd_flag:
    flags: [noout, norebalance]
    transport: toolbox

- name: Let Ceph rebalance again
  homecluster.platform.ceph_osd_flag:
    flags: [noout, norebalance]
    state: absent
    transport: toolbox
"""

RETURN = r"""
flags:
  description: Every cluster-wide flag set after the task (predicted in check mode).
  returned: always
  type: list
  elements: str
  sample: [noout, sortbitwise]
commands:
  description: The ceph commands run (or, in check mode, that would run).
  returned: always
  type: list
  elements: str
  sample: ["ceph osd set noout"]
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.homecluster.platform.plugins.module_utils._ceph import (
    OSD_FLAGS,
    CephError,
    CephRunner,
    ceph_argument_spec,
    fail_module,
    osd_flags,
)


def main() -> None:
    spec = ceph_argument_spec()
    spec.update(
        flags={"type": "list", "elements": "str", "required": True, "choices": list(OSD_FLAGS)},
        state={"type": "str", "default": "present", "choices": ["present", "absent"]},
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    runner = CephRunner(module.params)
    wanted = sorted(set(module.params["flags"]))
    setting = module.params["state"] == "present"
    commands: list[list[str]] = []
    try:
        before = osd_flags(runner.json(["osd", "dump"]) or {})
        if setting:
            commands = [["osd", "set", f] for f in wanted if f not in before]
            after = sorted(set(before) | set(wanted))
        else:
            commands = [["osd", "unset", f] for f in wanted if f in before]
            after = sorted(set(before) - set(wanted))
        if commands and not module.check_mode:
            for cmd in commands:
                runner.run(cmd)
            after = osd_flags(runner.json(["osd", "dump"]) or {})
    except CephError as exc:
        fail_module(module, exc)
        return
    result = {"changed": bool(commands), "flags": after, "commands": [" ".join(["ceph", *c]) for c in commands]}
    if module._diff:
        result["diff"] = {"before": {"flags": before}, "after": {"flags": after}}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
