# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import os
import stat

from ansible_collections.homecluster.platform.plugins.modules import talos_secrets

BUNDLE = "cluster:\n  id: x\nsecrets:\n  bootstraptoken: t\ntrustdinfo:\n  token: y\ncerts:\n  os: {}\n"


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_generates_once_with_0600(talosctl, run_module, tmp_path):
    path = tmp_path / "talos" / "secrets.yaml"
    talosctl.on("gen", "secrets", stdout=BUNDLE)
    res = run_module(talos_secrets.main, {"path": str(path), "talos_version": "v1.14"}, diff=True)
    assert res.result["changed"] is True and res.result["generated"] is True
    assert mode(path) == 0o600
    assert "bootstraptoken" not in str(res.result)
    again = run_module(talos_secrets.main, {"path": str(path)})
    assert again.result["changed"] is False
    assert len(talosctl.called("gen", "secrets")) == 1


def test_check_mode_writes_nothing(talosctl, run_module, tmp_path):
    path = tmp_path / "secrets.yaml"
    res = run_module(talos_secrets.main, {"path": str(path)}, check_mode=True)
    assert res.result["changed"] is True
    assert not path.exists()
    assert talosctl.calls == []


def test_existing_bundle_is_never_regenerated_only_mode_fixed(talosctl, run_module, tmp_path):
    path = tmp_path / "secrets.yaml"
    path.write_text(BUNDLE)
    os.chmod(path, 0o644)
    res = run_module(talos_secrets.main, {"path": str(path)})
    assert res.result["changed"] is True and res.result["generated"] is False
    assert mode(path) == 0o600
    assert path.read_text() == BUNDLE
    assert talosctl.calls == []


def test_sops_encrypted_bundle_is_left_alone(talosctl, run_module, tmp_path):
    path = tmp_path / "secrets.yaml"
    path.write_text("cluster: ENC[AES256_GCM,data:x]\nsops:\n  age: []\n")
    os.chmod(path, 0o600)
    res = run_module(talos_secrets.main, {"path": str(path)})
    assert res.result["changed"] is False and res.result["encrypted"] is True


def test_foreign_file_fails_before_anything(talosctl, run_module, tmp_path):
    path = tmp_path / "secrets.yaml"
    path.write_text("hello: world\n")
    res = run_module(talos_secrets.main, {"path": str(path)})
    assert res.failed and "not a Talos secrets bundle" in res.result["msg"]


def test_world_readable_mode_is_refused(talosctl, run_module, tmp_path):
    res = run_module(talos_secrets.main, {"path": str(tmp_path / "s.yaml"), "mode": "0644"})
    assert res.failed and "0600" in res.result["msg"]
