# Copyright: HomeCluster developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Action plugin of homecluster.platform.preflight_check: the rules are pure computation, so they
run in the controller process (no module round trip per call); see the module for the docs."""
from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.validation import check_type_bool
from ansible.plugins.action import ActionBase
from ansible_collections.homecluster.platform.plugins.module_utils import _preflight

_ARGS = {"checks", "data", "table", "allow_unsupported", "layer", "fail_on_error", "report", "report_path", "layers"}


class ActionModule(ActionBase):
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = self._task.args
        unknown = sorted(set(args) - _ARGS)
        if unknown:
            raise AnsibleActionFail(f"preflight_check: unsupported option(s) {', '.join(unknown)}")
        checks = list(args.get("checks") or [])
        bad = sorted(set(checks) - set(_preflight.RULE_SETS))
        if bad:
            raise AnsibleActionFail(f"preflight_check: unknown rule set(s) {', '.join(bad)}; "
                                    f"choose from {', '.join(sorted(_preflight.RULE_SETS))}")
        if args.get("report") is not None:
            return self._report(result, args)
        data = args.get("data") or {}
        if not isinstance(data, dict):
            raise AnsibleActionFail("preflight_check: data must be a mapping")
        layer = str(args.get("layer") or "")
        allow = list(args.get("allow_unsupported") or [])
        findings = _preflight.run(checks, data, args.get("table") or {}, allow=allow)
        for f in findings:
            f["layer"] = layer
        errors = [f for f in findings if f["severity"] == "error"]
        checked = checks + [f"compat.{c['component']}_{c['aspect']}" for c in data.get("compat") or []]
        result.update(changed=False, findings=findings, errors=errors, checked=checked)
        if errors and check_type_bool(args.get("fail_on_error", True)):
            result["failed"] = True
            result["msg"] = (f"{layer or 'preflight'}: {len(errors)} problem(s), nothing was changed:\n"
                             + _preflight.message(errors))
        return result

    def _report(self, result, args):
        """Gather every layer's findings: a table for people, preflight_report.json for CI."""
        layers = args.get("layers")
        doc = _preflight.report(list(args.get("report") or []), layers)
        path = str(args.get("report_path") or "")
        if path:
            # A report, not a change to the lab: written in check mode too, never counted as a change.
            _preflight.write_report(doc, path)
        errors = [f for f in doc["findings"] if f["severity"] == "error"]
        result.update(changed=False, report=doc, errors=errors, findings=doc["findings"], report_path=path,
                      checked=[], table=_preflight.table(doc["findings"], layers))
        return result
