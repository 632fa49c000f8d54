#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: HomeCluster developers
from __future__ import annotations

DOCUMENTATION = r"""
module: ceph_pool
short_description: Create, tune and (with an explicit opt-in) delete a replicated Ceph pool
version_added: 0.1.0
description:
  - Reads the pool from C(ceph osd pool ls detail), compares it with the requested size, min_size,
    PG autoscale mode, placement-group count, CRUSH rule and application, and changes only what
    differs. Check mode reads the same state and reports the commands it would run.
  - Deleting a pool destroys its data; O(state=absent) refuses unless O(allow_delete=true), and the
    monitors must allow it too (C(mon_allow_pool_delete)).
options:
  name:
    description: Pool name.
    type: str
    required: true
  state:
    description: Whether the pool exists.
    type: str
    choices: [present, absent]
    default: present
  size:
    description: Number of replicas.
    type: int
  min_size:
    description: Replicas that must be available for I/O; at most O(size).
    type: int
  pg_num:
    description:
      - Placement groups at creation; later kept only when O(pg_autoscale_mode) is not C(on)
        (with the autoscaler on, Ceph owns the count).
    type: int
  pg_autoscale_mode:
    description: PG autoscaler mode of the pool.
    type: str
    choices: ['on', 'off', warn]
  crush_rule:
    description: Name of an existing CRUSH rule placing the pool's data.
    type: str
  application:
    description: Application enabled on the pool (C(rbd), C(cephfs), C(rgw) or a custom name). Others are left alone.
    type: str
  allow_delete:
    description: Required to be C(true) for O(state=absent) to delete an existing pool and all its data.
    type: bool
    default: false
extends_documentation_fragment:
  - homecluster.platform.ceph
attributes:
  check_mode:
    support: full
    description: Reads the pool and reports the commands it would run, changing nothing.
  diff_mode:
    support: full
    description: Before and after of size, min_size, pg_num, autoscale mode, CRUSH rule and applications.
  idempotent:
    support: full
    description: Compares with what Ceph reports before acting; a rerun runs no command.
author:
  - HomeCluster developers (@homecluster)
"""

EXAMPLES = r"""
- name: Create the RBD pool with three replicas
  homecluster.platform.ceph_pool:
    name: replicapool
    size: 3
    min_size: 2
    pg_autoscale_mode: "on"
    application: rbd
    transport: toolbox

- name: Delete a scratch pool (destroys its data)
  homecluster.platform.ceph_pool:
    name: scratch
    state: absent
    allow_delete: true
    ceph_conf: /etc/ceph/ceph.conf
"""

RETURN = r"""
pool:
  description: The pool after the task (predicted in check mode); null when absent.
  returned: always
  type: dict
  sample:
    name: replicapool
    size: 3
    min_size: 2
    pg_num: 32
    pg_autoscale_mode: "on"
    crush_rule: replicated_rule
    applications: [rbd]
commands:
  description: The ceph commands run (or, in check mode, that would run).
  returned: always
  type: list
  elements: str
  sample: ["ceph osd pool set replicapool size 3"]
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.homecluster.platform.plugins.module_utils._ceph import (
    CephError,
    CephRunner,
    ceph_argument_spec,
    fail_module,
    pool_state,
)

SHOWN = ("name", "size", "min_size", "pg_num", "pg_autoscale_mode", "crush_rule", "applications")


def read_pool(runner: CephRunner, name: str, rules: dict[int, str]) -> dict | None:
    state = pool_state(runner.json(["osd", "pool", "ls", "detail"]) or [], name)
    if state is not None:
        state["crush_rule"] = rules.get(state["crush_rule_id"], str(state["crush_rule_id"]))
    return state


def shown(state: dict | None) -> dict:
    return {k: state.get(k) for k in SHOWN} if state else {}


def plan(params: dict, current: dict | None) -> list[list[str]]:
    """Commands turning CURRENT (None: a pool about to be created with Ceph's defaults) into the request."""
    name = params["name"]
    cur = current or {}
    cmds = []

    def setter(key: str, value) -> list[str]:
        return ["osd", "pool", "set", name, key, str(value)]

    size, min_size = params["size"], params["min_size"]
    sizes = []
    if size is not None and cur.get("size") != size:
        sizes.append(setter("size", size))
    if min_size is not None and cur.get("min_size") != min_size:
        sizes.append(setter("min_size", min_size))
    # shrinking: lower min_size before size, so min_size <= size holds at every step
    if size is not None and cur.get("size") is not None and size < cur["size"]:
        sizes.reverse()
    cmds += sizes
    mode = params["pg_autoscale_mode"]
    if mode is not None and cur.get("pg_autoscale_mode") != mode:
        cmds.append(setter("pg_autoscale_mode", mode))
    effective_mode = mode or cur.get("pg_autoscale_mode")
    if current is not None and params["pg_num"] is not None and effective_mode != "on" \
            and cur.get("pg_num") != params["pg_num"]:
        cmds.append(setter("pg_num", params["pg_num"]))
    if params["crush_rule"] is not None and cur.get("crush_rule") != params["crush_rule"]:
        cmds.append(setter("crush_rule", params["crush_rule"]))
    app = params["application"]
    if app is not None and app not in cur.get("applications", []):
        cmds.append(["osd", "pool", "application", "enable", name, app])
    return cmds


def predict(params: dict, current: dict | None) -> dict:
    after = dict(shown(current)) or {"name": params["name"]}
    for key in ("size", "min_size", "pg_autoscale_mode", "crush_rule"):
        if params[key] is not None:
            after[key] = params[key]
    if params["pg_num"] is not None and (current is None or after.get("pg_autoscale_mode") != "on"):
        after["pg_num"] = params["pg_num"]
    if params["application"] is not None:
        after["applications"] = sorted(set(after.get("applications") or []) | {params["application"]})
    return after


def apply(runner: CephRunner, params: dict, current: dict | None, commands: list[list[str]],
          rules: dict[int, str]) -> tuple[list[list[str]], dict | None]:
    """Run the planned commands; return those run and the pool as Ceph reports it afterwards."""
    if params["state"] == "absent":
        runner.run(commands[0])
        return commands, None
    if current is None:
        # a new pool starts from Ceph's defaults: plan the settings again from what Ceph made
        runner.run(commands[0])
        created = read_pool(runner, params["name"], rules)
        commands = [commands[0], *plan(params, created)]
        rest = commands[1:]
    else:
        rest = commands
    for cmd in rest:
        runner.run(cmd)
    return commands, read_pool(runner, params["name"], rules)


def validate(module: AnsibleModule, current: dict | None, rules: dict[int, str]) -> None:
    p = module.params
    for key in ("size", "min_size", "pg_num"):
        if p[key] is not None and p[key] < 1:
            module.fail_json(msg=f"{key} must be at least 1, got {p[key]}")
    size = p["size"] if p["size"] is not None else (current or {}).get("size")
    if p["min_size"] is not None and size is not None and p["min_size"] > size:
        module.fail_json(msg=f"min_size ({p['min_size']}) must not exceed size ({size}) of pool {p['name']}")
    if p["crush_rule"] is not None and p["crush_rule"] not in rules.values():
        module.fail_json(msg=f"crush_rule {p['crush_rule']!r} does not exist; existing rules: {sorted(rules.values())}")


def main() -> None:
    spec = ceph_argument_spec()
    spec.update(
        name={"type": "str", "required": True},
        state={"type": "str", "default": "present", "choices": ["present", "absent"]},
        size={"type": "int"},
        min_size={"type": "int"},
        pg_num={"type": "int"},
        pg_autoscale_mode={"type": "str", "choices": ["on", "off", "warn"]},
        crush_rule={"type": "str"},
        application={"type": "str"},
        allow_delete={"type": "bool", "default": False},
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    p = module.params
    runner = CephRunner(p)
    commands: list[list[str]] = []
    try:
        rules = {r["rule_id"]: r["rule_name"] for r in runner.json(["osd", "crush", "rule", "dump"]) or []}
        current = read_pool(runner, p["name"], rules)
        if p["state"] == "absent":
            if current is not None:
                if not p["allow_delete"]:
                    module.fail_json(msg=f"state=absent would delete pool {p['name']} and all its data; "
                                         "set allow_delete: true to confirm")
                commands.append(["osd", "pool", "rm", p["name"], p["name"], "--yes-i-really-really-mean-it"])
            after = None
        else:
            validate(module, current, rules)
            if current is None:
                create = ["osd", "pool", "create", p["name"]]
                if p["pg_num"] is not None:
                    create.append(str(p["pg_num"]))
                commands.append(create)
            commands += plan(p, current)
            after = predict(p, current)
        if commands and not module.check_mode:
            commands, after = apply(runner, p, current, commands, rules)
    except CephError as exc:
        fail_module(module, exc, commands=[" ".join(["ceph", *c]) for c in commands])
        return
    result = {
        "changed": bool(commands),
        "pool": shown(after) or None,
        "commands": [" ".join(["ceph", *c]) for c in commands],
    }
    if module._diff:
        result["diff"] = {"before": shown(current), "after": shown(after)}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
