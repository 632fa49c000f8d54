# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""talos_etcd_recover: the snapshot integrity rule and the etcd service read.

The snapshot layout (database, then its SHA-256; size a multiple of 512 plus 32) was checked on a
file written by etcdctl v3.7.3 `snapshot save` from the lab's etcd (20512 bytes, tail matched);
the files here are built to that layout. The service JSON is hand-written in the shape of
`talosctl get services etcd -o json` (one object per node)."""
from __future__ import annotations

import hashlib
import json

from ansible_collections.homecluster.platform.plugins.module_utils._talosctl import Talosctl
from ansible_collections.homecluster.platform.plugins.modules import talos_etcd_recover as m


def snapshot(tmp_path, body=b"b" * 1024, tail=None):
    path = tmp_path / "etcd-20261202T000000.000000Z.db"
    path.write_bytes(body + (tail if tail is not None else hashlib.sha256(body).digest()))
    return str(path)


def test_a_snapshot_with_its_hash_passes(tmp_path):
    assert m.snapshot_problem(snapshot(tmp_path)) is None


def test_a_corrupt_snapshot_is_refused(tmp_path):
    path = snapshot(tmp_path, tail=b"\0" * 32)
    assert "fails its integrity check" in m.snapshot_problem(path)


def test_a_truncated_or_foreign_file_is_refused_unless_the_hash_check_is_skipped(tmp_path):
    path = snapshot(tmp_path, body=b"b" * 1000, tail=b"")
    assert "carries no integrity hash" in m.snapshot_problem(path)
    assert "skip_hash_check" in m.snapshot_problem(path)
    assert m.snapshot_problem(path, skip_hash_check=True) is None


def test_a_missing_or_empty_snapshot_is_refused(tmp_path):
    assert "does not exist" in m.snapshot_problem(str(tmp_path / "nope.db"))
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    assert "is empty" in m.snapshot_problem(str(empty), skip_hash_check=True)


def test_etcd_running_per_node_and_silent_nodes_are_unknown():
    items = [{"node": "10.0.0.1", "metadata": {"id": "etcd"}, "spec": {"running": True, "healthy": True}},
             {"node": "10.0.0.2", "metadata": {"id": "etcd"}, "spec": {"running": False, "unknown": True}}]

    def runner(cmd, data, timeout):
        assert cmd[1:4] == ["get", "services", "etcd"]
        return 0, "\n".join(json.dumps(i) for i in items), ""

    talos = Talosctl("/bin/talosctl", talosconfig="/tc", runner=runner)
    assert m.etcd_running(talos, ["10.0.0.1", "10.0.0.2", "10.0.0.3"]) == {
        "10.0.0.1": True, "10.0.0.2": False, "10.0.0.3": None}


def test_the_restore_record_is_read_or_empty(tmp_path):
    assert m.read_state(str(tmp_path / "none.json")) == {}
    (tmp_path / "bad.json").write_text("{")
    assert m.read_state(str(tmp_path / "bad.json")) == {}
