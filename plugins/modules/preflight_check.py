#!/usr/bin/python
# Copyright: HomeCluster developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
module: preflight_check
short_description: Check a layer's inventory inputs against the preflight rules, all hosts at once
version_added: 0.2.0
description:
  - Runs named rule sets (Proxmox VMs, the Proxmox cluster, Talos and cluster networking, Cilium,
    Rook-Ceph, Istio) and version pairs from the compatibility table over data the calling role
    collected from its variables and the hosts of the play, in one call for every host.
  - Every finding names the rule, the host (empty for cluster-wide rules), the variable to fix and
    what to do. Findings of severity C(error) refuse; C(warning) ones are reported only.
  - Pure computation on the controller; reads and changes nothing.
options:
  checks:
    description: Rule sets to run.
    type: list
    elements: str
    default: []
    choices: [cilium, istio, proxmox_cluster, proxmox_vms, rook, talos]
  data:
    description:
      - The described inputs, by rule set (see the role's C(tasks/preflight.yml)); C(compat) is a
        list of C({component, aspect, release, against, variable, against_variable, label}) pairs.
    type: dict
    default: {}
  table:
    description: The compatibility table (C(compat/compatibility.yml) of the collection).
    type: dict
    default: {}
  allow_unsupported:
    description: Components whose unsupported version pairs are reported as warnings, not refused.
    type: list
    elements: str
    default: []
  layer:
    description: Name of the layer, added to every finding.
    type: str
    default: ''
  fail_on_error:
    description: Fail with every error in the message (a layer run) instead of returning them (the whole-inventory run).
    type: bool
    default: true
  report:
    description:
      - Instead of checking, gather these findings (of every layer) into the report; C(checks) and
        C(data) are then ignored. Returns C(table) and writes O(report_path).
    type: list
    elements: dict
  report_path:
    description: Where to write C(preflight_report.json) with O(report); empty writes nothing.
    type: path
    default: ''
  layers:
    description:
      - With O(report), the layers that were checked, listed in the table and as C(layers_checked) in
        the report (a layer with findings is listed too). Default the six base layers.
    type: list
    elements: str
notes:
  - Runs on the controller as an action plugin (no module round trip); the module is its fallback.
extends_documentation_fragment:
  - homecluster.platform.attributes
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  idempotent:
    description: Reads and changes nothing.
    support: full
author:
  - HomeCluster developers (@homecluster)
"""

EXAMPLES = r"""
- name: Check the cluster networking
  homecluster.platform.preflight_check:
    checks: [talos]
    layer: talos
    data:
      nodes:
        - {host: cp1, address: 192.168.1.10, role: controlplane, install_disk: /dev/sda, groups: [controlplane]}
      cluster:
        name: home
        endpoint: https://192.168.1.10:6443
        pod_cidr: 10.42.0.0/16
        service_cidr: 10.43.0.0/16
        dns_domain: cluster.local
        schedulable_control_planes: true
  run_once: true
"""

RETURN = r"""
findings:
  description: Every finding, errors and warnings.
  returned: always
  type: list
  elements: dict
  sample:
    - rule: network.overlap
      host: ''
      variable: cilium_lb_pools[lan].blocks[0]
      severity: error
      layer: cilium
      message: LB pool 'lan' 192.168.1.10-192.168.1.20 contains the address of node(s) cp1; move the pool.
errors:
  description: The findings of severity error.
  returned: always
  type: list
  elements: dict
table:
  description: With O(report), the lines of the human table (per layer, then every finding).
  returned: with report
  type: list
  elements: str
report:
  description: With O(report), the document written to O(report_path).
  returned: with report
  type: dict
  sample: {result: refused, errors: 1, warnings: 0, layers_checked: [proxmox, talos], findings: []}
checked:
  description: The rule sets and compatibility pairs that ran.
  returned: always
  type: list
  elements: str
  sample: [talos, compat.talos_kubernetes]
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.homecluster.platform.plugins.module_utils import _preflight


def main():
    module = AnsibleModule(
        argument_spec={
            "checks": {"type": "list", "elements": "str", "default": [],
                       "choices": sorted(_preflight.RULE_SETS)},
            "data": {"type": "dict", "default": {}},
            "table": {"type": "dict", "default": {}},
            "allow_unsupported": {"type": "list", "elements": "str", "default": []},
            "layer": {"type": "str", "default": ""},
            "fail_on_error": {"type": "bool", "default": True},
            "report": {"type": "list", "elements": "dict"},
            "report_path": {"type": "path", "default": ""},
            "layers": {"type": "list", "elements": "str"},
        },
        supports_check_mode=True,
    )
    p = module.params
    if p["report"] is not None:
        doc = _preflight.report(p["report"], p["layers"])
        if p["report_path"]:
            _preflight.write_report(doc, p["report_path"])
        errors = [f for f in doc["findings"] if f["severity"] == "error"]
        module.exit_json(changed=False, report=doc, errors=errors, findings=doc["findings"], checked=[],
                         table=_preflight.table(doc["findings"], p["layers"]), report_path=p["report_path"])
    findings = _preflight.run(p["checks"], p["data"], p["table"], allow=p["allow_unsupported"])
    for f in findings:
        f["layer"] = p["layer"]
    errors = [f for f in findings if f["severity"] == "error"]
    checked = list(p["checks"]) + [f"compat.{c['component']}_{c['aspect']}" for c in p["data"].get("compat") or []]
    result = {"changed": False, "findings": findings, "errors": errors, "checked": checked}
    if errors and p["fail_on_error"]:
        module.fail_json(msg=f"{p['layer'] or 'preflight'}: {len(errors)} problem(s), nothing was changed:\n"
                         + _preflight.message(errors), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
