# SPDX-License-Identifier: GPL-3.0-or-later
"""The application platform's Talos mirror patch (roles/platform_apps/templates/talos_mirrors.yml.j2),
rendered as the example inventory renders it and applied with the real talosctl to a generated
machine config, which talosctl's own validator accepts: RegistryMirrorConfig documents for config
format v1.14, machine.registries.mirrors for v1.13."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import jinja2
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
CACHE = Path(os.environ.get("HOMECLUSTER_CACHE", Path.home() / ".cache" / "homecluster"))
TALOSCTL = shutil.which("talosctl", path=str(CACHE / "bin")) or shutil.which("talosctl")
MIRRORS = {"docker.io": "dockerhub", "ghcr.io": "ghcr"}


def render(version: str) -> list:
    template = jinja2.Template((ROOT / "roles" / "platform_apps" / "templates" / "talos_mirrors.yml.j2").read_text())
    return yaml.safe_load(
        template.render(
            platform_apps_harbor_talos_mirrors=MIRRORS,
            platform_apps_domain="example.org",
            platform_apps_harbor_hostname="",
            talos_bootstrap_talos_version=version,
        )
    )


@pytest.mark.skipif(TALOSCTL is None, reason="talosctl is built by make tools")
@pytest.mark.parametrize("version", ["v1.14", "v1.13"])
def test_patch_is_valid_talos_config(tmp_path: Path, version: str) -> None:
    subprocess.run(
        [
            TALOSCTL,
            "gen",
            "config",
            "lab",
            "https://192.0.2.10:6443",
            "--output-types",
            "worker",
            "--talos-version",
            version,
            "-o",
            str(tmp_path / "base.yaml"),
        ],
        check=True,
        capture_output=True,
    )
    (tmp_path / "patch.yaml").write_text(yaml.safe_dump_all(render(version)))
    subprocess.run(
        [
            TALOSCTL,
            "machineconfig",
            "patch",
            str(tmp_path / "base.yaml"),
            "--patch",
            "@" + str(tmp_path / "patch.yaml"),
            "-o",
            str(tmp_path / "out.yaml"),
        ],
        check=True,
        capture_output=True,
    )
    result = subprocess.run(
        [TALOSCTL, "validate", "--mode", "metal", "--config", str(tmp_path / "out.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = [d for d in yaml.safe_load_all((tmp_path / "out.yaml").read_text()) if d]
    if version == "v1.14":
        mirrors = {d["name"]: d["endpoints"] for d in out if d.get("kind") == "RegistryMirrorConfig"}
        assert mirrors == {
            "docker.io": [{"url": "https://harbor.example.org/v2/dockerhub", "overridePath": True}],
            "ghcr.io": [{"url": "https://harbor.example.org/v2/ghcr", "overridePath": True}],
        }
    else:
        main = next(d for d in out if "machine" in d)
        assert main["machine"]["registries"]["mirrors"]["docker.io"] == {
            "endpoints": ["https://harbor.example.org/v2/dockerhub"],
            "overridePath": True,
        }


@pytest.mark.skipif(TALOSCTL is None, reason="talosctl is built by make tools")
def test_validator_refuses_a_bad_mirror(tmp_path: Path) -> None:
    """The check can fail: an endpoint that is no URL is refused by talosctl validate."""
    subprocess.run(
        [
            TALOSCTL,
            "gen",
            "config",
            "lab",
            "https://192.0.2.10:6443",
            "--output-types",
            "worker",
            "--talos-version",
            "v1.14",
            "-o",
            str(tmp_path / "base.yaml"),
        ],
        check=True,
        capture_output=True,
    )
    bad = render("v1.14")
    bad[0]["endpoints"][0]["url"] = "not a url"
    (tmp_path / "patch.yaml").write_text(yaml.safe_dump_all(bad))
    patched = subprocess.run(
        [
            TALOSCTL,
            "machineconfig",
            "patch",
            str(tmp_path / "base.yaml"),
            "--patch",
            "@" + str(tmp_path / "patch.yaml"),
            "-o",
            str(tmp_path / "out.yaml"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if patched.returncode == 0:
        patched = subprocess.run(
            [TALOSCTL, "validate", "--mode", "metal", "--config", str(tmp_path / "out.yaml")],
            capture_output=True,
            text=True,
            check=False,
        )
    assert patched.returncode != 0
