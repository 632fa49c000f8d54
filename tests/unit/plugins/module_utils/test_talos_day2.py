# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Day-2 reads on talosctl output recorded from talosctl v1.14.1 against lab/talos_sim."""
from __future__ import annotations

import json
from pathlib import Path

from ansible_collections.homecluster.platform.plugins.module_utils import _talos_day2 as d
from ansible_collections.homecluster.platform.plugins.module_utils._talosctl import Talosctl, TalosctlError
from ansible_collections.homecluster.platform.plugins.modules import (
    talos_etcd_snapshot,
    talos_upgrade,
    talos_upgrade_preflight,
)

EMPTY = d.EMPTY_SCHEMATIC
AGENT = "ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515"

MEMBERS = """NODE          ID                 HOSTNAME   PEER URLS                  CLIENT URLS                LEARNER
127.0.60.12   c43d44d199fa9d99   cp1        https://127.0.60.11:2380   https://127.0.60.11:2379   false
127.0.60.12   e793e87680288073   cp2        https://127.0.60.12:2380   https://127.0.60.12:2379   false
127.0.60.11   c43d44d199fa9d99   cp1        https://127.0.60.11:2380   https://127.0.60.11:2379   false
127.0.60.11   e793e87680288073   cp2        https://127.0.60.12:2380   https://127.0.60.12:2379   false
"""
STATUS = (Path(__file__).parent / "fixtures" / "talos" / "etcd_status.txt").read_text()
ALARMS = """NODE          MEMBER             ALARM
127.0.60.11   e793e87680288073   NOSPACE
"""
VERSION = """Client:
\tTag:         v1.14.1
Server:
\tNODE:        127.0.60.15
\tTag:         v1.14.2
\tSHA:         simulated
\tNODE:        127.0.60.14
\tTag:         v1.14.1
\tSHA:         simulated
"""


def ext(node, name, version):
    return {"node": node, "metadata": {"type": "ExtensionStatuses.runtime.talos.dev"},
            "spec": {"image": name + ".sqsh", "metadata": {"name": name, "version": version}}}


EXTENSIONS = "\n".join(json.dumps(e) for e in [ext("127.0.60.15", "qemu-guest-agent", "sim"),
                                               ext("127.0.60.15", "schematic", AGENT),
                                               ext("127.0.60.14", "schematic", EMPTY)])


def fake(outputs):
    def runner(cmd, data, timeout):
        for key, answer in outputs.items():
            if " ".join(cmd[1:]).startswith(key):
                return answer
        raise AssertionError(f"unexpected call {cmd}")

    return Talosctl("/bin/talosctl", talosconfig="/tc", runner=runner)


def test_installer_parts_reads_factory_schematic_and_tag():
    assert d.installer_parts(f"factory.talos.dev/metal-installer/{EMPTY}:v1.14.2") == (EMPTY, "v1.14.2")
    assert d.installer_parts(f"factory.talos.dev/installer/{AGENT}:v1.13.9") == (AGENT, "v1.13.9")
    assert d.installer_parts("ghcr.io/siderolabs/installer:v1.13.0") == (None, "v1.13.0")
    assert d.installer_parts(f"factory.talos.dev/metal-installer/{EMPTY}") == (EMPTY, None)


def test_node_release_per_node_version_schematic_and_extensions():
    talos = fake({"version": (0, VERSION, ""), "get extensions": (0, EXTENSIONS, "")})
    out = d.node_release(talos, ["127.0.60.14", "127.0.60.15"])
    assert out["127.0.60.15"] == {"version": "v1.14.2", "schematic": AGENT, "extensions": ["qemu-guest-agent"],
                                  "error": None}
    assert out["127.0.60.14"]["schematic"] == EMPTY and out["127.0.60.14"]["extensions"] == []


def test_etcd_view_consistent_then_alarm_and_differing_lists_are_problems():
    talos = fake({"etcd members": (0, MEMBERS, ""), "etcd status": (0, STATUS, ""),
                  "etcd alarm list": (0, "", "")})
    view = d.etcd_view(talos, ["127.0.60.11", "127.0.60.12"])
    assert view["consistent"] and view["leader"] == "e793e87680288073"
    assert view["members"]["127.0.60.11"] == ["cp1", "cp2"]
    assert d.etcd_problems(view, expected_members=2) == []
    assert "the inventory has 3 control planes" in d.etcd_problems(view, expected_members=3)[0]

    talos = fake({"etcd members": (0, MEMBERS.rsplit("\n", 2)[0] + "\n", ""), "etcd status": (0, STATUS, ""),
                  "etcd alarm list": (0, ALARMS, "")})
    problems = d.etcd_problems(d.etcd_view(talos, ["127.0.60.11", "127.0.60.12"]))
    assert any(p.startswith("etcd member lists differ") for p in problems)
    assert "etcd alarm NOSPACE on member e793e87680288073" in problems


def test_etcd_view_names_a_control_plane_that_does_not_answer():
    err = "error from node 127.0.60.12: rpc error: code = Unavailable desc = etcdserver: no leader"
    talos = fake({"etcd members": (1, MEMBERS.split("\n", 1)[0] + "\n" + MEMBERS.split("\n")[3] + "\n", err),
                  "etcd status": (0, STATUS, ""), "etcd alarm list": (0, "", "")})
    view = d.etcd_view(talos, ["127.0.60.11", "127.0.60.12"])
    assert not view["consistent"]
    assert "no leader" in " ".join(d.etcd_problems(view))


def test_schematic_refusal_only_for_nodes_with_extensions():
    with_ext = {"schematic": AGENT, "extensions": ["qemu-guest-agent"]}
    assert "would be lost" in talos_upgrade.schematic_refusal(with_ext, EMPTY, False)
    assert talos_upgrade.schematic_refusal(with_ext, AGENT, False) is None
    assert talos_upgrade.schematic_refusal(with_ext, EMPTY, True) is None
    assert talos_upgrade.schematic_refusal({"schematic": EMPTY, "extensions": []}, AGENT, False) is None
    assert "not an Image Factory image" in talos_upgrade.schematic_refusal(with_ext, None, False)


def test_supported_path_one_minor_at_a_time_no_downgrade():
    assert talos_upgrade_preflight.path_problem("v1.13.9", "v1.14.2") is None
    assert talos_upgrade_preflight.path_problem("v1.14.1", "v1.14.2") is None
    assert "skips a minor" in talos_upgrade_preflight.path_problem("v1.12.6", "v1.14.2")
    assert "older" in talos_upgrade_preflight.path_problem("v1.14.2", "v1.14.1")


def test_snapshot_retention_keeps_the_newest(tmp_path):
    names = [f"etcd-2026120{i}T000000.000000Z.db" for i in range(1, 5)]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "other-20260101T000000.000000Z.db").write_bytes(b"x")
    assert [p.rsplit("/", 1)[1] for p in talos_etcd_snapshot.expired(str(tmp_path), "etcd", 2)] == names[:2]
    # check mode: one more snapshot is about to be written
    assert len(talos_etcd_snapshot.expired(str(tmp_path), "etcd", 2, extra=1)) == 3
    assert talos_etcd_snapshot.expired(str(tmp_path), "etcd", 0) == []


def test_failure_keeps_the_talosctl_details_with_our_message():
    exc = TalosctlError("talosctl upgrade of n1 failed: boom", cmd=["talosctl", "upgrade"], rc=1, stderr="boom")
    kwargs = talos_upgrade.failure(exc, "custom", actions=["talosctl upgrade"])
    assert kwargs["msg"] == "custom" and kwargs["cmd"] == "talosctl upgrade" and kwargs["rc"] == 1
    assert kwargs["actions"] == ["talosctl upgrade"] and kwargs["stderr"] == "boom"
