#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: HomeCluster developers
from __future__ import annotations

DOCUMENTATION = r"""
module: ceph_status
short_description: Report a Ceph cluster's status and health, with the detail of every health check
version_added: 0.1.0
description:
  - Runs C(ceph status) and C(ceph health detail) (JSON output) and returns the overall health,
    each health check with its severity, summary and detail messages, the monitor quorum, the OSD
    counts, the OSD flags and the placement-group states.
  - Read-only; never reports a change.
options:
  fail_on_unhealthy:
    description:
      - Fail the task when the health is not one of O(healthy_statuses), listing every check.
      - Use with C(retries)/C(until) to wait for C(HEALTH_OK).
    type: bool
    default: false
  healthy_statuses:
    description: Health statuses counted as healthy (return value RV(healthy)).
    type: list
    elements: str
    choices: [HEALTH_OK, HEALTH_WARN, HEALTH_ERR]
    default: [HEALTH_OK]
extends_documentation_fragment:
  - homecluster.platform.ceph
attributes:
  check_mode:
    support: full
    description: Read-only; reports the state in check mode as in a normal run.
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
- name: Read the health of the cluster through the Rook toolbox
  homecluster.platform.ceph_status:
    transport: toolbox
    kubeconfig: "{{ inventory_dir }}/kubeconfig"
  register: ceph

- name: Wait until Ceph reports HEALTH_OK after a node reboot
  homecluster.platform.ceph_status:
    ceph_conf: /etc/ceph/ceph.conf
    fail_on_unhealthy: true
  register: ceph
  retries: 30
  delay: 10
  until: ceph is succeeded
"""

RETURN = r"""
health:
  description: Overall health status.
  returned: always
  type: str
  sample: HEALTH_WARN
healthy:
  description: Whether RV(health) is one of O(healthy_statuses).
  returned: always
  type: bool
  sample: false
checks:
  description: One entry per health check, with the detail messages of C(ceph health detail).
  returned: always
  type: list
  elements: dict
  sample:
    - name: OSDMAP_FLAGS
      severity: HEALTH_WARN
      summary: noout flag(s) set
      count: 1
      detail: []
      muted: false
fsid:
  description: Cluster id.
  returned: always
  type: str
  sample: c0c3b936-a036-4a87-9f07-a96f2fd78f7e
quorum_names:
  description: Monitors in quorum.
  returned: always
  type: list
  elements: str
  sample: [a]
osds:
  description: OSD counts.
  returned: always
  type: dict
  sample: {num_osds: 3, num_up_osds: 3, num_in_osds: 3}
osd_flags:
  description: Cluster-wide OSD flags that are set.
  returned: always
  type: list
  elements: str
  sample: [noout, sortbitwise]
pgs_by_state:
  description: Placement groups per state.
  returned: always
  type: dict
  sample: {active+clean: 33}
status:
  description: The full C(ceph status) document.
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.homecluster.platform.plugins.module_utils._ceph import (
    CephError,
    CephRunner,
    ceph_argument_spec,
    fail_module,
    health_checks,
    osd_flags,
)


def summarize(status: dict, health: dict, osd_dump: dict, healthy_statuses: list[str]) -> dict:
    osdmap = status.get("osdmap", {})
    osdmap = osdmap.get("osdmap", osdmap)  # older releases nest it once more
    pgmap = status.get("pgmap", {})
    state = health.get("status", status.get("health", {}).get("status", "UNKNOWN"))
    return {
        "health": state,
        "healthy": state in healthy_statuses,
        "checks": health_checks(health),
        "fsid": status.get("fsid", ""),
        "quorum_names": status.get("quorum_names", []),
        "osds": {k: osdmap.get(k, 0) for k in ("num_osds", "num_up_osds", "num_in_osds")},
        "osd_flags": osd_flags(osd_dump),
        "pgs_by_state": {s["state_name"]: s["count"] for s in pgmap.get("pgs_by_state", [])},
        "status": status,
    }


def main() -> None:
    spec = ceph_argument_spec()
    spec.update(
        fail_on_unhealthy={"type": "bool", "default": False},
        healthy_statuses={"type": "list", "elements": "str", "default": ["HEALTH_OK"],
                          "choices": ["HEALTH_OK", "HEALTH_WARN", "HEALTH_ERR"]},
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    runner = CephRunner(module.params)
    try:
        status = runner.json(["status"]) or {}
        health = runner.json(["health", "detail"]) or {}
        osd_dump = runner.json(["osd", "dump"]) or {}
    except CephError as exc:
        fail_module(module, exc)
        return
    result = summarize(status, health, osd_dump, module.params["healthy_statuses"])
    if module.params["fail_on_unhealthy"] and not result["healthy"]:
        lines = [f"{c['name']} ({c['severity']}): {c['summary']}" for c in result["checks"]]
        module.fail_json(msg=f"Ceph reports {result['health']}: " + "; ".join(lines), changed=False, **result)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
