# SPDX-License-Identifier: GPL-3.0-or-later
"""The identity layer's Talos patch (roles/platform_identity/templates/talos_oidc.yml.j2), rendered
as an inventory renders it and applied with the real talosctl to a generated v1.14 control-plane
config, which talosctl's validator accepts; the API server's configuration inside is the one
molecule/platform_identity hands the real kube-apiserver."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import jinja2
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
TEMPLATE = ROOT / "roles" / "platform_identity" / "templates" / "talos_oidc.yml.j2"
CACHE = Path(os.environ.get("HOMECLUSTER_CACHE", Path.home() / ".cache" / "homecluster"))
TALOSCTL = shutil.which("talosctl", path=str(CACHE / "bin")) or shutil.which("talosctl")
CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def render(**variables) -> list:
    env = jinja2.Environment(autoescape=False)  # noqa: S701 - YAML, not HTML
    env.filters["to_json"] = json.dumps
    env.filters["regex_replace"] = lambda s, pat, rep: re.sub(pat, rep, s)
    env.filters["combine"] = lambda a, b: {**a, **b}
    return yaml.safe_load(env.from_string(TEMPLATE.read_text()).render(**variables))


def test_defaults_render_authentik_issuer() -> None:
    doc = render(platform_edge_domain="example.org")[0]
    assert doc["apiVersion"] == "v1alpha1" and doc["kind"] == "KubeAuthenticationConfig"
    cfg = doc["configuration"]
    assert cfg["apiVersion"] == "apiserver.config.k8s.io/v1" and cfg["kind"] == "AuthenticationConfiguration"
    assert [c["path"] for c in cfg["anonymous"]["conditions"]] == ["/livez", "/readyz", "/healthz"]
    jwt = cfg["jwt"][0]
    assert jwt["issuer"] == {"url": "https://auth.example.org/application/o/kubernetes/", "audiences": ["kubernetes"]}
    assert jwt["claimMappings"] == {"username": {"claim": "email", "prefix": "oidc:"},
                                    "groups": {"claim": "groups", "prefix": "oidc:"}}


def test_inventory_values_are_used() -> None:
    cfg = render(platform_identity_url="https://127.0.72.5:9443/", platform_identity_kubernetes_app="kube",
                 platform_identity_applications=[{"slug": "kube", "client_id": "k8s-cli"}],
                 platform_identity_issuer_ca=CA, platform_identity_claim_prefix="sso:",
                 platform_identity_username_claim="preferred_username")[0]["configuration"]
    issuer = cfg["jwt"][0]["issuer"]
    assert issuer == {"url": "https://127.0.72.5:9443/application/o/kube/", "audiences": ["k8s-cli"],
                      "certificateAuthority": CA}
    assert cfg["jwt"][0]["claimMappings"]["username"] == {"claim": "preferred_username", "prefix": "sso:"}


@pytest.mark.skipif(TALOSCTL is None, reason="talosctl is built by make tools")
def test_patch_is_valid_talos_config(tmp_path: Path) -> None:
    subprocess.run([TALOSCTL, "gen", "config", "lab", "https://192.0.2.10:6443", "--output-types", "controlplane",
                    "--talos-version", "v1.14", "-o", str(tmp_path / "base.yaml")], check=True, capture_output=True)
    docs = render(platform_edge_domain="example.org", platform_identity_issuer_ca=CA)
    (tmp_path / "patch.yaml").write_text(yaml.safe_dump_all(docs))
    subprocess.run([TALOSCTL, "machineconfig", "patch", str(tmp_path / "base.yaml"),
                    "--patch", "@" + str(tmp_path / "patch.yaml"), "-o", str(tmp_path / "out.yaml")],
                   check=True, capture_output=True)
    result = subprocess.run([TALOSCTL, "validate", "--mode", "metal", "--config", str(tmp_path / "out.yaml")],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    out = [d for d in yaml.safe_load_all((tmp_path / "out.yaml").read_text()) if d]
    auth = [d for d in out if d.get("kind") == "KubeAuthenticationConfig"]
    assert len(auth) == 1
    assert auth[0]["configuration"]["jwt"] == docs[0]["configuration"]["jwt"]
    assert auth[0]["configuration"]["anonymous"] == docs[0]["configuration"]["anonymous"]


@pytest.mark.skipif(TALOSCTL is None, reason="talosctl is built by make tools")
def test_legacy_oidc_flags_are_refused_by_talos(tmp_path: Path) -> None:
    """Why the structured configuration: Talos 1.14 refuses the --oidc-* flags."""
    subprocess.run([TALOSCTL, "gen", "config", "lab", "https://192.0.2.10:6443", "--output-types", "controlplane",
                    "--talos-version", "v1.14", "-o", str(tmp_path / "base.yaml")], check=True, capture_output=True)
    legacy = {"apiVersion": "v1alpha1", "kind": "KubeAPIServerConfig", "extraArgs": {"oidc-issuer-url": "https://x/"}}
    (tmp_path / "patch.yaml").write_text(yaml.safe_dump(legacy))
    subprocess.run([TALOSCTL, "machineconfig", "patch", str(tmp_path / "base.yaml"),
                    "--patch", "@" + str(tmp_path / "patch.yaml"), "-o", str(tmp_path / "out.yaml")],
                   check=True, capture_output=True)
    result = subprocess.run([TALOSCTL, "validate", "--mode", "metal", "--config", str(tmp_path / "out.yaml")],
                            capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "use KubeAuthenticationConfig" in result.stderr + result.stdout
