# SPDX-License-Identifier: GPL-3.0-or-later
"""execution-environment.yml renders with ansible-builder and stays in step with what the project
pins: the tools of lab/tools/versions.json, the Python packages of requirements.txt and the
collections of galaxy.yml. (No image is built here: no container registry is reachable.)"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
EE = yaml.safe_load((REPO / "execution-environment.yml").read_text())
TOOLS = {"TALOSCTL_VERSION": "talosctl", "HELM_VERSION": "helm", "KUBECTL_VERSION": "kubernetes",
         "SOPS_VERSION": "sops"}


def test_ansible_builder_renders_the_build_context(tmp_path):
    builder = shutil.which("ansible-builder")
    assert builder, "ansible-builder not on PATH (make venv)"
    out = subprocess.run([builder, "create", "-f", str(REPO / "execution-environment.yml"), "-c", str(tmp_path)],
                         capture_output=True, text=True, check=False, cwd=REPO)
    assert out.returncode == 0, out.stdout + out.stderr
    dockerfile = (tmp_path / "Dockerfile").read_text()
    assert "FROM $EE_BASE_IMAGE AS base" in dockerfile
    assert "install -m 0755 talosctl-linux-amd64 /usr/local/bin/talosctl" in dockerfile
    assert (tmp_path / "_build" / "requirements.txt").read_text().split() == EE["dependencies"]["python"]


def test_tool_versions_are_the_lab_pins():
    pins = json.loads((REPO / "lab" / "tools" / "versions.json").read_text())["go_tools"]
    args = dict(re.match(r"ARG (\w+)=(\S+)$", step).groups()
                for step in EE["additional_build_steps"]["append_final"] if step.startswith("ARG "))
    assert set(args) == set(TOOLS)
    for arg, tool in TOOLS.items():
        pinned = pins[tool]["version"]
        assert args[arg] == pinned, f"{arg}={args[arg]}, lab/tools/versions.json {tool} {pinned}"


def test_python_and_collections_match_the_project():
    reqs = dict(line.split("==") for line in (REPO / "requirements.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    deps = EE["dependencies"]
    assert deps["ansible_core"]["package_pip"] == f"ansible-core=={reqs['ansible-core']}"
    for pin in deps["python"]:
        name, version = pin.split("==")
        assert reqs.get(name) == version, f"{pin} vs requirements.txt {name}=={reqs.get(name)}"
    galaxy = yaml.safe_load((REPO / "galaxy.yml").read_text())["dependencies"]
    assert {c["name"]: c["version"] for c in deps["galaxy"]["collections"]} == galaxy
