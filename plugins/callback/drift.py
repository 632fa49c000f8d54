# Copyright: HomeCluster developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
name: drift
type: aggregate
short_description: Write every predicted change of a run (by layer, host and task, with its diff) to drift_report.json
version_added: 0.2.0
description:
  - Meant for C(ansible-playbook playbooks/site.yml --check --diff) on a schedule - the plan of the
    lab. Every task that reports (or, in check mode, predicts) a change is recorded with its
    layer (the play's first tag, as site.yml tags each layer), host, task, action and the diff.
  - Secrets are masked. A task with C(no_log) is recorded without its diff; in diffs, values of
    keys that name secrets (password, secret, token, private key, age secret key) and PEM private
    key blocks are replaced by C(********).
  - With O(fail_on_drift), a run that drifted and had no failure otherwise exits with
    O(drift_exit_code), so a scheduled CI job can tell when the lab no longer matches the inventory.
  - Enable it with C(ANSIBLE_CALLBACKS_ENABLED=homecluster.platform.drift) (it adds to the
    C(callbacks_enabled) of ansible.cfg only through that list).
options:
  report_path:
    description: Where to write the report (JSON).
    type: path
    default: drift_report.json
    env:
      - name: HOMECLUSTER_DRIFT_REPORT
    ini:
      - section: homecluster_drift
        key: report_path
  fail_on_drift:
    description: Exit non-zero (O(drift_exit_code)) when anything drifted and nothing failed.
    type: bool
    default: false
    env:
      - name: HOMECLUSTER_DRIFT_FAIL
    ini:
      - section: homecluster_drift
        key: fail_on_drift
  drift_exit_code:
    description: Exit code of a run that drifted, with O(fail_on_drift).
    type: int
    default: 3
    env:
      - name: HOMECLUSTER_DRIFT_EXIT_CODE
    ini:
      - section: homecluster_drift
        key: drift_exit_code
requirements:
  - enable in the callbacks list
"""

import datetime
import json
import os
import re

from ansible import context
from ansible.plugins.callback import CallbackBase

ANSI = re.compile(r"\x1b\[[0-9;]*m")
MASK = "********"
# key: value / key=value / "key": "value" where the key names a secret.
SECRET_KEY = re.compile(
    r"""(?ix)
    (?P<key>["']?[\w.-]*(?:password|passwd|secret|token|private[_-]?key|api[_-]?key|sops[_-]?age[_-]?key|
    age\.agekey|identity)[\w.-]*["']?)
    (?P<sep>\s*[:=]\s*)
    (?P<value>"[^"\n]*"|'[^'\n]*'|[^\s,}\n]+)""")
PEM = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S)
AGE_KEY = re.compile(r"AGE-SECRET-KEY-1[0-9A-Z]+")


def mask(text):
    """Mask secret values in a piece of diff text."""
    if not isinstance(text, str):
        return text
    text = PEM.sub(MASK, text)
    text = AGE_KEY.sub(MASK, text)
    return SECRET_KEY.sub(lambda m: m.group("key") + m.group("sep") + MASK, text)


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "homecluster.platform.drift"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.changes = []
        self.layer = ""
        self.play = ""
        self.check_mode = False
        self.playbook = ""

    def v2_playbook_on_start(self, playbook):
        self.playbook = getattr(playbook, "_file_name", "")

    def v2_playbook_on_play_start(self, play):
        self.play = play.get_name()
        tags = [t for t in (play.tags or []) if t not in ("always", "never")]
        self.layer = tags[0] if tags else self.play
        self.check_mode = self.check_mode or bool(getattr(play, "check_mode", False))
        # The CLI's --check (a play can also set check_mode itself).
        self.check_mode = self.check_mode or bool((context.CLIARGS or {}).get("check"))

    def _diff_text(self, diff):
        if not diff:
            return ""
        try:
            text = self._get_diff(diff)
        except (TypeError, KeyError, AttributeError):
            text = json.dumps(diff, default=str, indent=1)
        return mask(ANSI.sub("", text or ""))

    def _record(self, result, item=None, res=None):
        res = res if res is not None else result._result
        hidden = bool(res.get("_ansible_no_log")) or "censored" in res or bool(getattr(result._task, "no_log", False))
        entry = {
            "layer": self.layer,
            "play": self.play,
            "host": result._host.get_name(),
            "task": result._task.get_name(),
            "action": result._task.action,
            "diff": "(hidden: the task has no_log)" if hidden else self._diff_text(res.get("diff")),
        }
        if item is not None and not hidden:
            entry["item"] = mask(self._get_item_label(res) if hasattr(self, "_get_item_label") else str(item))
        delegated = res.get("_ansible_delegated_vars", {}).get("ansible_host")
        if delegated:
            entry["delegated_to"] = delegated
        self.changes.append(entry)

    def v2_runner_on_ok(self, result):
        res = result._result
        if not res.get("changed"):
            return
        items = [r for r in res.get("results") or [] if isinstance(r, dict) and r.get("changed")]
        if items:
            for r in items:
                self._record(result, item=r.get(r.get("ansible_loop_var", "item")), res=r)
        else:
            self._record(result)

    def v2_playbook_on_stats(self, stats):
        hosts = sorted(stats.processed.keys())
        failed = any(stats.summarize(h)["failures"] or stats.summarize(h)["unreachable"] for h in hosts)
        layers = {}
        for c in self.changes:
            layers.setdefault(c["layer"], 0)
            layers[c["layer"]] += 1
        doc = {
            "generated": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "playbook": self.playbook,
            "check_mode": self.check_mode,
            "drifted": bool(self.changes),
            "run_failed": failed,
            "changes_by_layer": layers,
            "changes": self.changes,
        }
        path = self.get_option("report_path")
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        tmp_path = path + ".tmp"
        with open(tmp_path, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(doc, indent=2) + "\n")
        os.replace(tmp_path, path)
        summary = ", ".join(f"{k}: {v}" for k, v in layers.items()) or "none"
        self._display.display(f"DRIFT: {len(self.changes)} change(s) {'predicted' if self.check_mode else 'made'} "
                              f"({summary}); report {path}")
        if self.changes and self.get_option("fail_on_drift") and not failed:
            # The only way a callback can set the exit code; every stdout output is already written.
            raise SystemExit(int(self.get_option("drift_exit_code")))
