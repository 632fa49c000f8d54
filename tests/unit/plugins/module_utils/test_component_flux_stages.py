# SPDX-License-Identifier: GPL-3.0-or-later
"""Deployment stages: each layer's component Kustomizations land in its stage's directory."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ansible_collections.homecluster.platform.plugins.module_utils import _component_flux as flux
from ansible_collections.homecluster.platform.plugins.module_utils import _components as comp

ROLE_VARS = Path(flux.__file__).resolve().parents[2] / "roles" / "flux_bootstrap" / "vars" / "main.yml"


@pytest.mark.parametrize(("layer", "stage"), [
    ("cilium", "infrastructure"), ("storage", "infrastructure"), ("platform", "infrastructure"),
    ("istio", "core"), ("apps", "applications"),
])
def test_each_layer_renders_into_its_stage_directory(layer, stage):
    (c,) = comp.normalise([{"name": "hello", "namespace": "hello", "delivery": "flux",
                            "chart": {"name": "lab-hello", "version": "0.1.0", "repo": "https://charts.example.org"}}])
    files, _secrets = flux.render(c, layer=layer, cluster="lab", sops_secret="sops-age", crd_docs=[])
    ks = [f["path"] for f in files if f["path"].startswith("clusters/")]
    assert ks == [f"clusters/lab/{stage}/hello.yaml"]
    # The release itself stays under its layer, whatever the stage.
    assert f"infrastructure/{layer}/hello/release/release.yaml" in {f["path"] for f in files}


def test_the_stages_are_the_ones_flux_bootstrap_renders():
    stages = yaml.safe_load(ROLE_VARS.read_text())["_flux_bootstrap_stages"]
    assert tuple(stages) == flux.STAGES
    assert {flux.stage(layer) for layer in ("cilium", "istio", "apps")} == set(flux.STAGES)
