# SPDX-License-Identifier: GPL-3.0-or-later
"""The values-key check of platform_components with the real helm, on the lab's stand-in charts.

A misspelt key is refused before any change with the stand-in as it is and with a copy of it that
has no values.schema.json (as most upstream charts ship), so the refusal does not depend on the
lab's schemas. No cluster is needed: the preflight renders with an explicit Kubernetes version.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
CHARTS = REPO / "lab" / "charts"


def cilium(chart_dir: Path, values: dict) -> dict:
    version = next(line.split(":", 1)[1].strip() for line in (chart_dir / "cilium" / "Chart.yaml").read_text()
                   .splitlines() if line.startswith("version:"))
    return {"name": "cilium", "namespace": "kube-system", "values_variable": "cilium_values",
            "chart": {"name": "cilium", "version": version, "repo": str(chart_dir)}, "values": values}


@pytest.fixture(params=["stand-in", "without-schema"])
def chart_dir(request, tmp_path):
    if not shutil.which("helm") and not (REPO / ".collections").exists():
        pytest.skip("helm is not built yet (make tools)")
    if request.param == "stand-in":
        return CHARTS
    shutil.copytree(CHARTS / "cilium", tmp_path / "cilium")
    (tmp_path / "cilium" / "values.schema.json").unlink(missing_ok=True)
    return tmp_path


def preflight(collection_module, components):
    return collection_module("platform_components", {"components": components, "action": "preflight",
                                                     "kube_version": "v1.37.2"})


def test_known_keys_pass(collection_module, chart_dir):
    res = preflight(collection_module, [cilium(chart_dir, {"ipam": {"mode": "kubernetes"},
                                                           "cgroup": {"autoMount": {"enabled": False}}})])
    assert not res.get("failed"), res.get("msg")
    assert res["problems"] == []


def test_misspelt_key_is_refused_naming_variable_key_and_nearest(collection_module, chart_dir):
    res = preflight(collection_module, [cilium(chart_dir, {"cgroup": {"automount": {"enabled": False}}})])
    assert res.get("failed")
    assert "cilium_values: key cgroup.automount is not in the chart's default values" in res["msg"]
    assert "the nearest real key is cgroup.autoMount" in res["msg"]
    assert "nothing was changed" in res["msg"]
    assert [p["variable"] for p in res["problems"]] == ["cilium_values"]


def test_every_problem_of_every_component_is_reported(collection_module, chart_dir):
    bad = cilium(chart_dir, {"hubble": {"rellay": {"enabled": True}}, "relay": {"enabled": True}})
    other = dict(cilium(chart_dir, {"kubeProxyReplacment": True}), name="cilium-two")
    res = collection_module("platform_components", {"components": [bad, other], "action": "preflight",
                                                    "kube_version": "v1.37.2", "collect_problems": True})
    assert not res.get("failed"), res.get("msg")
    keys = {(p["component"], p["key"]) for p in res["problems"]}
    assert keys == {("cilium", "hubble.rellay"), ("cilium", "relay"),
                    ("cilium-two", "kubeProxyReplacment")}
    msgs = " ".join(p["message"] for p in res["problems"])
    # A key at the wrong level points to where it lives; a misspelt one to its nearest spelling.
    assert "key relay is not in the chart's default values" in msgs and "real key is hubble.relay" in msgs
    assert "real key is kubeProxyReplacement" in msgs
