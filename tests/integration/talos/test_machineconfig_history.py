# SPDX-License-Identifier: GPL-3.0-or-later
"""talos_machineconfig's history: the config a changed rendering replaces is kept, 0600, newest first.

Real talosctl renders each config. A rerun keeps nothing new, check mode keeps nothing and leaves
the config as it was, and history_keep bounds the entries per node.
"""
from __future__ import annotations

import os
import subprocess

import pytest
import yaml
from modrun import tool


@pytest.fixture
def lab(tmp_path):
    talosctl = tool("talosctl")
    secrets = tmp_path / "secrets.yaml"
    subprocess.run([talosctl, "gen", "secrets", "-o", str(secrets)], check=True, capture_output=True)
    return {"talosctl": talosctl, "secrets": secrets, "dir": tmp_path}


def render(collection_module, lab, value, check=False, **kw):
    args = {"dest": str(lab["dir"] / "nodes" / "w1.yaml"), "cluster_name": "lab",
            "cluster_endpoint": "https://127.0.0.1:6443", "secrets_file": str(lab["secrets"]),
            "machine_type": "worker", "talos_version": "v1.14", "talosctl_path": lab["talosctl"],
            "history_dir": str(lab["dir"] / "history"),
            "node_patches": [{"machine": {"sysctls": {"net.core.somaxconn": value}}}]}
    args.update(kw)
    res = collection_module("talos_machineconfig", args, check=check)
    assert not res.get("failed"), res
    return res


def somaxconn(path):
    doc = next(d for d in yaml.safe_load_all(open(path)) if d and "machine" in d)
    return doc["machine"]["sysctls"]["net.core.somaxconn"]


def test_a_changed_config_keeps_the_one_it_replaces_and_a_rerun_keeps_nothing_new(collection_module, lab):
    (lab["dir"] / "nodes").mkdir()
    first = render(collection_module, lab, "1024")
    assert first["changed"] and first["history_saved"] == "" and first["history"] == []

    second = render(collection_module, lab, "2048")
    assert second["changed"]
    assert second["history"] == [second["history_saved"]]
    assert somaxconn(second["history_saved"]) == "1024"
    assert somaxconn(second["dest"]) == "2048"
    assert oct((lab["dir"] / "history").stat().st_mode & 0o777) == "0o700"
    assert oct(os.stat(second["history_saved"]).st_mode & 0o777) == "0o600"

    again = render(collection_module, lab, "2048")
    assert not again["changed"] and again["history_saved"] == "" and again["history"] == second["history"]

    checked = render(collection_module, lab, "4096", check=True)
    assert checked["changed"] and checked["history_saved"] == "" and checked["history"] == second["history"]
    assert somaxconn(second["dest"]) == "2048"


def test_history_keep_bounds_the_entries_newest_first(collection_module, lab):
    (lab["dir"] / "nodes").mkdir()
    for value in ("1024", "2048", "4096", "8192"):
        last = render(collection_module, lab, value, history_keep=2)
    assert len(last["history"]) == 2
    assert [somaxconn(p) for p in last["history"]] == ["4096", "2048"]
    assert sorted(p.name for p in (lab["dir"] / "history").iterdir()) == sorted(
        p.rsplit("/", 1)[1] for p in last["history"])


def test_history_keep_below_one_is_refused_before_anything_is_written(collection_module, lab):
    (lab["dir"] / "nodes").mkdir()
    res = collection_module("talos_machineconfig", {
        "dest": str(lab["dir"] / "nodes" / "w1.yaml"), "cluster_name": "lab",
        "cluster_endpoint": "https://127.0.0.1:6443", "secrets_file": str(lab["secrets"]),
        "machine_type": "worker", "talosctl_path": lab["talosctl"],
        "history_dir": str(lab["dir"] / "history"), "history_keep": 0})
    assert res.get("failed") and "history_keep" in res["msg"], res
    assert not (lab["dir"] / "nodes" / "w1.yaml").exists()
