# SPDX-License-Identifier: GPL-3.0-or-later
"""The Talos host firewall the example inventory renders (platform_security's template, applied by
talos_bootstrap) is accepted by the real talosctl: patched into a generated control-plane config
and validated in metal mode. And it opens what Prometheus scrapes on the hosts to the pod CIDR,
which Talos's block mode would otherwise drop (only pod-to-pod traffic passes it)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
TALOSCTL = shutil.which("talosctl") or str(Path.home() / ".cache" / "homecluster" / "bin" / "talosctl")


def rendered(*extra: str) -> list[dict]:
    """talos_bootstrap_firewall_patches as cp1 of inventories/example sees it."""
    env = {**os.environ, "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json", "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
           "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")}
    proc = subprocess.run(["ansible", "cp1", "-i", str(REPO / "inventories" / "example" / "hosts.yml"),
                           "--playbook-dir", str(REPO / "playbooks"), "-m", "ansible.builtin.debug",
                           "-a", "var=talos_bootstrap_firewall_patches", *extra],
                          cwd=REPO, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # other callbacks (the task timer) may print before the JSON document
    doc = json.JSONDecoder().raw_decode(proc.stdout[proc.stdout.index("{\n"):])[0]
    return doc["plays"][0]["tasks"][0]["hosts"]["cp1"]["talos_bootstrap_firewall_patches"]


def rules(docs: list[dict]) -> dict[str, dict]:
    return {d["name"]: d for d in docs if d["kind"] == "NetworkRuleConfig"}


def test_example_firewall_opens_the_scraped_host_ports_to_the_pod_cidr():
    docs = rendered()
    assert docs[0] == {"apiVersion": "v1alpha1", "kind": "NetworkDefaultActionConfig", "ingress": "block"}
    metrics = rules(docs)["homecluster-metrics"]
    assert metrics["portSelector"] == {"ports": [2381, 9100, "9962-9965", 10250, 10257, 10259], "protocol": "tcp"}
    assert {"subnet": "10.42.0.0/16"} in metrics["ingress"]  # the example's talos_bootstrap_pod_cidr
    assert {"subnet": "192.168.1.0/24"} in metrics["ingress"]
    # the admin network reaches none of them
    assert {"subnet": "192.168.20.0/24"} not in metrics["ingress"]
    assert {"subnet": "10.42.0.0/16"} not in rules(docs)["homecluster-etcd"]["ingress"]


def test_metrics_rule_left_out_when_no_port_is_asked_for():
    docs = rendered("-e", '{"platform_security_talos_metrics_ports": []}')
    assert "homecluster-metrics" not in rules(docs)
    assert "homecluster-kubelet" in rules(docs)


@pytest.mark.skipif(not Path(TALOSCTL).exists(), reason="talosctl is built by make tools")
def test_talosctl_validates_the_rendered_firewall(tmp_path):
    patch = tmp_path / "firewall.yaml"
    patch.write_text("---\n".join(yaml.safe_dump(d, sort_keys=False) for d in rendered()))
    gen = subprocess.run([TALOSCTL, "gen", "config", "home", "https://192.168.1.9:6443", "--output-types",
                          "controlplane", "--output", str(tmp_path / "controlplane.yaml"),
                          "--config-patch", f"@{patch}", "--with-docs=false", "--with-examples=false"],
                         capture_output=True, text=True, check=False)
    assert gen.returncode == 0, gen.stderr
    config = (tmp_path / "controlplane.yaml").read_text()
    assert "name: homecluster-metrics" in config
    check = subprocess.run([TALOSCTL, "validate", "--config", str(tmp_path / "controlplane.yaml"), "--mode", "metal"],
                           capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    # and a malformed port range in the same document is refused by talosctl
    patch.write_text(patch.read_text().replace("9962-9965", "9965-9962"))
    bad = subprocess.run([TALOSCTL, "gen", "config", "home", "https://192.168.1.9:6443", "--output-types",
                          "controlplane", "--output", str(tmp_path / "bad.yaml"), "--config-patch", f"@{patch}"],
                         capture_output=True, text=True, check=False)
    if bad.returncode == 0:
        bad = subprocess.run([TALOSCTL, "validate", "--config", str(tmp_path / "bad.yaml"), "--mode", "metal"],
                             capture_output=True, text=True, check=False)
    assert bad.returncode != 0, "a reversed port range was accepted"
