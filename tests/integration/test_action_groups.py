# SPDX-License-Identifier: GPL-3.0-or-later
"""meta/runtime.yml's action groups: every module of a family is in its group, and module_defaults
on the group reach the module (the connection options said once per play)."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
FAMILIES = {"talos": "talos_", "ceph": "ceph_", "proxmox": "proxmox_"}

PLAY = """
- hosts: localhost
  gather_facts: false
  {defaults}
  tasks:
    - name: Read the cluster
      homecluster.platform.proxmox_talos_cluster_info: {{}}
      register: out
      ignore_errors: true
    - name: Show the message
      ansible.builtin.debug:
        msg: "RESULT {{{{ out.msg }}}}"
"""
DEFAULTS = """module_defaults:
    group/homecluster.platform.proxmox:
      api_host: 127.0.0.1
      api_port: 9
      api_user: probe@pve
      api_token_id: group-defaults-probe
      api_token_secret: a-token-secret-for-this-test-only
      api_timeout: 2"""


def test_every_module_of_a_family_is_in_its_group():
    groups = yaml.safe_load((REPO / "meta" / "runtime.yml").read_text())["action_groups"]
    modules = sorted(p.stem for p in (REPO / "plugins" / "modules").glob("*.py"))
    for group, prefix in FAMILIES.items():
        assert sorted(groups[group]) == [m for m in modules if m.startswith(prefix)], group


def run(tmp_path, defaults):
    play = tmp_path / "play.yml"
    play.write_text(PLAY.format(defaults=defaults))
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    out = subprocess.run([shutil.which("ansible-playbook"), str(play)], env=env, capture_output=True, text=True,
                         check=True, cwd=REPO)
    return next(line for line in out.stdout.splitlines() if "RESULT" in line)


def test_module_defaults_on_the_group_reach_the_module(tmp_path):
    without = run(tmp_path, "")
    assert "missing required arguments" in without and "api_host" in without
    with_group = run(tmp_path, DEFAULTS)
    # the module took the group's host and port: it tried 127.0.0.1:9 and nothing answered there
    assert "missing required arguments" not in with_group
    assert "127.0.0.1" in with_group and "port=9" in with_group, with_group
