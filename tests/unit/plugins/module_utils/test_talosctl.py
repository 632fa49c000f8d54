# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import os
import stat

import pytest
from ansible_collections.homecluster.platform.plugins.module_utils import _talosctl as t

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "modules", "talos", "fixtures", "talosctl")


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read()


def test_parse_json_stream_reads_concatenated_objects():
    text = '{\n    "node": "a",\n    "spec": {"x": 1}\n}\n{\n    "node": "b"\n}\n'
    assert [i["node"] for i in t.parse_json_stream(text)] == ["a", "b"]
    assert t.parse_json_stream("") == []


def test_parse_table_uses_header_columns():
    rows = t.parse_table(fixture("recorded_etcd_members.stdout"))
    assert rows[0]["hostname"] == "cp1"
    assert rows[1]["peer_urls"] == "https://127.0.20.12:2380"
    assert rows[1]["learner"] == "false"


def test_parse_table_empty_cell():
    text = "NODE   ID   HOSTNAME   LEARNER\nn1     1a              false\n"
    rows = t.parse_table(text)
    assert rows == [{"node": "n1", "id": "1a", "hostname": "", "learner": "false"}]


@pytest.mark.parametrize(
    ("name", "no_changes", "reboot", "diff_has"),
    [
        ("recorded_dry_run_no_changes.stderr", True, False, None),
        ("recorded_dry_run_label.stderr", False, False, "+    topology.kubernetes.io/zone: b"),
        ("handwritten_dry_run_reboot.stderr", False, True, "+        disk: /dev/sdb"),
    ],
)
def test_parse_apply_output(name, no_changes, reboot, diff_has):
    parsed = t.parse_apply_output(fixture(name))
    assert parsed["no_changes"] is no_changes
    assert parsed["reboot_required"] is reboot
    if diff_has:
        assert diff_has in parsed["diff"]
    else:
        assert parsed["diff"] == ""


def test_parse_apply_output_real_apply():
    parsed = t.parse_apply_output("Applied configuration without a reboot\n")
    assert parsed["mode_details"] == "Applied configuration without a reboot"
    staged = t.parse_apply_output("Staged configuration to be applied after the next reboot\n")
    assert staged["staged"] is True


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("rpc error: code = AlreadyExists desc = etcd data directory is not empty", "already_exists"),
        ('rpc error: code = Unavailable desc = connection error: desc = "transport: Error while dialing: dial tcp '
         '127.0.10.14:50000: connect: connection refused"', "unreachable"),
        ("rpc error: code = Unavailable desc = connection error: desc = \"error reading server preface: remote "
         "error: tls: certificate required\"", "tls"),
        ("rpc error: code = FailedPrecondition desc = bootstrap is not available yet", "failed_precondition"),
        ("something else", "error"),
    ],
)
def test_classify_error(text, kind):
    assert t.classify_error(text) == kind


def test_parse_node_errors_multi_node():
    stderr = ("error listing resources on node 127.0.10.14: rpc error: code = Unavailable desc = connection refused\n"
              "error getting version from node 127.0.10.15: rpc error: code = Unavailable desc = x\n"
              "127.0.10.16: error applying configuration: rpc error: code = InvalidArgument desc = bad\n")
    errors = t.parse_node_errors(stderr)
    assert set(errors) == {"127.0.10.14", "127.0.10.15", "127.0.10.16"}
    assert "InvalidArgument" in errors["127.0.10.16"]


def test_connection_args_secure_and_insecure():
    r = t.Talosctl("/bin/talosctl", talosconfig="/tc", endpoints=["e1", "e2"], context="home")
    expected = ["--talosconfig", "/tc", "--context", "home", "--endpoints", "e1,e2", "--nodes", "a,b"]
    assert r.connection_args(nodes=["a", "b"]) == expected
    assert r.connection_args(nodes="a", insecure=True) == ["--insecure", "--nodes", "a"]


def test_run_failure_carries_cmd_rc_output():
    r = t.Talosctl("/bin/talosctl", runner=lambda cmd, data, timeout: (1, "out", "boom\nlast line"))
    with pytest.raises(t.TalosctlError) as info:
        r.run(["version"], nodes=["a"])
    err = info.value
    assert err.rc == 1
    assert err.stdout == "out"
    assert "last line" in err.msg
    kwargs = err.as_fail_kwargs()
    assert kwargs["cmd"].startswith("/bin/talosctl version")


def test_environment_is_clean(monkeypatch):
    monkeypatch.setenv("TALOSCONFIG", "/elsewhere")
    monkeypatch.setenv("TAG", "v0.0.1")
    env = t.Talosctl.environment()
    assert env["LANG"] == "C"
    assert "TALOSCONFIG" not in env
    assert "TAG" not in env


def test_redact_and_redact_diff():
    doc = {"machine": {"token": "abc", "ca": {"crt": "CERT", "key": "KEY"}}, "cluster": {"id": "x"}}
    out = t.redact(doc)
    assert out["machine"]["token"].startswith("<redacted sha256:")
    assert out["machine"]["ca"]["key"] != "KEY"
    assert out["cluster"]["id"] == "x"
    diff = "-    token: abc\n+    token: def\n     name: x\n"
    masked = t.redact_diff(diff)
    assert "abc" not in masked
    assert "def" not in masked
    assert "name: x" in masked


def test_write_private_file_mode(tmp_path):
    path = tmp_path / "sub" / "secret.yaml"
    t.write_private_file(str(path), "x: 1\n")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.read_text() == "x: 1\n"


def test_gen_config_arguments():
    seen = {}

    def runner(cmd, data, timeout):
        seen["cmd"] = cmd
        return 0, "version: v1alpha1\n", ""

    r = t.Talosctl("/bin/talosctl", talosconfig="/tc", runner=runner)
    r.gen_config("home", "https://1.2.3.4:6443", secrets_file="/s.yaml", output_type="worker", talos_version="v1.14",
                 patches=["@a.yaml"], patches_worker=["@w.yaml"])
    cmd = seen["cmd"]
    assert cmd[:5] == ["/bin/talosctl", "gen", "config", "home", "https://1.2.3.4:6443"]
    assert "--talosconfig" not in cmd  # local command: no connection flags
    assert cmd[cmd.index("--with-secrets") + 1] == "/s.yaml"
    assert cmd[cmd.index("--config-patch") + 1] == "@a.yaml"
    assert cmd[cmd.index("--config-patch-worker") + 1] == "@w.yaml"
    assert "--output" in cmd and cmd[cmd.index("--output") + 1] == "-"


def test_get_retries_without_a_first_node_that_fails_the_whole_call():
    calls = []

    def runner(cmd, data, timeout):
        nodes = cmd[cmd.index("--nodes") + 1]
        calls.append(nodes)
        if nodes.startswith("a,"):
            # talosctl resolves the resource on the first node and gives up on the whole call
            return 1, "", "rpc error: code = Unavailable desc = remote error: tls: certificate required\n"
        return 0, '{"node": "b", "spec": {"stage": "maintenance"}}\n{"node": "c", "spec": {}}\n', ""

    r = t.Talosctl("/bin/talosctl", runner=runner)
    items, errors, _res = r.get("machinestatus", nodes=["a", "b", "c"], insecure=True, check=False)
    assert calls == ["a,b,c", "b,c"]
    assert [i["node"] for i in items] == ["b", "c"]
    assert t.classify_error(errors["a"]) == "tls"


def test_redact_diff_masks_pem_block_scalars():
    diff = ("     key: |\n"
            "-        -----BEGIN EC PRIVATE KEY-----\n"
            "-        MHcCAQEEIBtz9vbL\n"
            "+        MHcCAQEEIXXXXXXX\n"
            "     cert: plain\n"
            " kind: KubeProxyConfig\n")
    masked = t.redact_diff(diff)
    assert "MHcCAQEE" not in masked
    assert "BEGIN EC" not in masked
    assert " kind: KubeProxyConfig" in masked


def test_parse_version_text_recorded():
    versions = t.parse_version_text(fixture("recorded_version_mtls_text.stdout"))
    assert set(versions) == {"127.0.20.11", "127.0.20.14"}
    assert versions["127.0.20.11"]["tag"] == "v1.14.1"
    assert versions["127.0.20.14"]["os_arch"] == "linux/amd64"


def test_recorded_dry_runs():
    same = t.parse_apply_output(fixture("recorded_dry_run_no_changes.stderr"))
    assert same["no_changes"] is True and same["reboot_required"] is False
    label = t.parse_apply_output(fixture("recorded_dry_run_label.stderr"))
    assert label["no_changes"] is False
    assert "+    topology.kubernetes.io/zone: b" in label["diff"]
    assert label["mode_details"] == "Applied configuration without a reboot (skipped in dry-run)."


def test_recorded_etcd_members():
    rows = t.parse_table(fixture("recorded_etcd_members.stdout"))
    assert len(rows) == 9
    assert {r["hostname"] for r in rows} == {"cp1", "cp2", "cp3"}
    assert rows[0]["client_urls"].startswith("https://127.0.20.")


class FakeModule:
    def __init__(self, *, diff=False, check_mode=False):
        self._diff = diff
        self.check_mode = check_mode


def test_write_yaml_credentials_writes_0600_and_shows_only_fingerprints(tmp_path):
    dest = str(tmp_path / "kubeconfig")
    result = {}
    desired = {"users": [{"name": "admin", "user": {"client-key-data": "S0VZ"}}]}
    assert t.write_yaml_credentials(FakeModule(diff=True), result, dest, {}, desired, changed=True) is True
    assert result["changed"] is True
    assert result["diff"]["before"] == ""
    assert "S0VZ" not in result["diff"]["after"] and "redacted sha256:" in result["diff"]["after"]
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o600
    assert "S0VZ" in (tmp_path / "kubeconfig").read_text()


def test_write_yaml_credentials_same_content_wrong_mode_is_a_change(tmp_path):
    path = tmp_path / "talosconfig"
    path.write_text("context: a\n")
    os.chmod(path, 0o644)
    check = {}
    assert t.write_yaml_credentials(FakeModule(check_mode=True), check, str(path), {"context": "a"},
                                    {"context": "a"}, changed=False) is True
    assert check == {"changed": True}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644  # check mode touches nothing
    applied = {}
    t.write_yaml_credentials(FakeModule(), applied, str(path), {"context": "a"}, {"context": "a"}, changed=False)
    assert applied["changed"] is True and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = {}
    assert t.write_yaml_credentials(FakeModule(diff=True), again, str(path), {"context": "a"}, {"context": "a"},
                                    changed=False) is False
    assert again == {"changed": False}
