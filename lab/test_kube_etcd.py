# SPDX-License-Identifier: GPL-3.0-or-later
"""lab/kube_etcd.py: the refusals before any restore, and reading etcd's own command line."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("kube_etcd", Path(__file__).with_name("kube_etcd.py"))
ke = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ke)

ARGV = ["/bin/etcd", "--name", "lab", "--data-dir", "/s/etcd", "--initial-cluster=lab=http://127.0.0.1:2380",
        "--initial-advertise-peer-urls", "http://127.0.0.1:2380"]


def lab_state(tmp_path, argv=ARGV):
    (tmp_path / "config.json").write_text(json.dumps({"address": "127.0.0.1", "etcd_port": 2379, "port": 6443,
                                                      "server": "https://127.0.0.1:6443"}))
    (tmp_path / "pids.json").write_text("{}")
    if argv is not None:
        (tmp_path / "etcd.argv.json").write_text(json.dumps(argv))
    return tmp_path


def test_flag_reads_both_spellings():
    assert ke._flag(ARGV, "--data-dir") == "/s/etcd"
    assert ke._flag(ARGV, "--initial-cluster") == "lab=http://127.0.0.1:2380"
    with pytest.raises(ke.LabError, match="no --listen-client-urls"):
        ke._flag(ARGV, "--listen-client-urls")


def test_restore_refuses_etcd_data_that_is_still_there(tmp_path):
    data = tmp_path / "etcd"
    (data / "member").mkdir(parents=True)
    state = lab_state(tmp_path, [*ARGV[:3], "--data-dir", str(data), *ARGV[5:]])
    with pytest.raises(ke.LabError, match="etcd data directory is not empty"):
        ke.restore(state, tmp_path / "snap.db", skip_hash_check=False)


def test_restore_needs_the_command_line_saved_by_stop(tmp_path):
    with pytest.raises(ke.LabError, match="no saved etcd command line"):
        ke.restore(lab_state(tmp_path, None), tmp_path / "snap.db", skip_hash_check=False)
