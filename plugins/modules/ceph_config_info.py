#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: HomeCluster developers
from __future__ import annotations

DOCUMENTATION = r"""
module: ceph_config_info
short_description: Read options from the Ceph monitors' configuration database
version_added: 0.1.0
description:
  - Returns the entries stored in the monitors' database (C(ceph config dump)), optionally only
    those of one section and one option; for one option also the value that applies
    (C(ceph config get)), which is the default when nothing is stored, and its type and default.
options:
  who:
    description: Only entries of this section (C(osd), C(osd.3), C(osd/class:ssd), ...).
    type: str
  name:
    description:
      - Only entries of this option. With O(who), also RV(effective) and RV(option).
    type: str
extends_documentation_fragment:
  - homecluster.platform.ceph
attributes:
  check_mode:
    support: full
    description: Read-only; the same answer in check mode.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to show.
  idempotent:
    support: full
    description: Never changes anything.
author:
  - HomeCluster developers (@homecluster)
"""

EXAMPLES = r"""
- name: Read what the monitors hold for the OSDs
  homecluster.platform.ceph_config_info:
    who: osd
    transport: toolbox
  register: osd_config

- name: Read the value of one option that applies to the monitors
  homecluster.platform.ceph_config_info:
    who: mon
    name: mon_allow_pool_delete
    ceph_conf: /etc/ceph/ceph.conf
  register: allow_delete
"""

RETURN = r"""
entries:
  description: Stored entries that match.
  returned: always
  type: list
  elements: dict
  sample: [{section: osd, mask: "", name: osd_max_backfills, value: "2"}]
value:
  description: Value stored for O(who) and O(name); null when none is stored.
  returned: when who and name are given
  type: str
  sample: "2"
effective:
  description: Value that applies to O(who) (C(ceph config get)), the default when none is stored.
  returned: when who and name are given
  type: raw
  sample: 2
option:
  description: Type and default of the option, from C(ceph config help).
  returned: when who and name are given
  type: dict
  sample: {type: uint, default: 1, can_update_at_runtime: true}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.homecluster.platform.plugins.module_utils._ceph import (
    CephError,
    CephRunner,
    ceph_argument_spec,
    config_entry,
    fail_module,
    split_who,
)


def matching(dump: list[dict], who: str | None, name: str | None) -> list[dict]:
    section, mask = split_who(who) if who else (None, None)
    out = []
    for entry in dump:
        if section is not None and (entry.get("section"), entry.get("mask", "")) != (section, mask):
            continue
        if name is not None and entry.get("name") != name:
            continue
        out.append({k: entry.get(k, "") for k in ("section", "mask", "name", "value")})
    return out


def main() -> None:
    spec = ceph_argument_spec()
    spec.update(who={"type": "str"}, name={"type": "str"})
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    who, name = module.params["who"], module.params["name"]
    runner = CephRunner(module.params)
    result: dict = {"changed": False}
    try:
        dump = runner.json(["config", "dump"]) or []
        result["entries"] = matching(dump, who, name)
        if who and name:
            rc, option, _out, err = runner.run(["config", "help", name], allowed_rc=(0, 2))
            if rc == 2 or not isinstance(option, dict):
                module.fail_json(msg=f"{name!r} is not a Ceph configuration option (ceph config help: {err.strip()})")
            result["value"] = config_entry(dump, who, name)
            result["effective"] = runner.json(["config", "get", split_who(who)[0], name])
            result["option"] = {k: option.get(k) for k in ("type", "default", "can_update_at_runtime")}
    except CephError as exc:
        fail_module(module, exc)
        return
    module.exit_json(**result)


if __name__ == "__main__":
    main()
