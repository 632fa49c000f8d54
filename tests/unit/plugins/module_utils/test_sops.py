# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import json

import pytest
from ansible_collections.homecluster.platform.plugins.module_utils import _sops

# Shape of a real `sops encrypt` output (sops 3.x with age), values shortened.
ENCRYPTED_YAML = """apiVersion: v1
kind: Secret
metadata:
    name: demo
stringData:
    token: ENC[AES256_GCM,data:Zm9v,iv:YmFy,tag:YmF6,type:str]
sops:
    age:
        - recipient: age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p
          enc: |
            -----BEGIN AGE ENCRYPTED FILE-----
            YWdl
            -----END AGE ENCRYPTED FILE-----
    lastmodified: "2026-11-26T07:00:00Z"
    mac: ENC[AES256_GCM,data:bWFj,iv:aXY=,tag:dGFn,type:str]
    encrypted_regex: ^(data|stringData)$
    version: 3.13.3
"""
ENCRYPTED_DOTENV = """TOKEN=ENC[AES256_GCM,data:Zm9v,iv:YmFy,tag:YmF6,type:str]
sops_age__list_0__map_recipient=age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p
sops_version=3.13.3
"""


FORMATS = [("a.sops.yaml", "yaml"), ("b.yml", "yaml"), ("c.json", "json"), ("d.env", "dotenv"), ("e.bin", "binary")]


@pytest.mark.parametrize(("path", "fmt"), FORMATS)
def test_detect_format(path, fmt):
    assert _sops.detect_format(path) == fmt
    assert _sops.detect_format(path, "json") == "json"


def test_detect_format_refuses_unknown():
    with pytest.raises(ValueError, match="unknown sops format"):
        _sops.detect_format("x.yaml", "toml")


def test_same_plaintext_compares_yaml_as_data():
    assert _sops.same_plaintext("a: 1\nb: [1, 2]\n", "b:\n    - 1\n    - 2\na: 1\n", "yaml")
    assert not _sops.same_plaintext("a: 1\n", "a: 2\n", "yaml")
    assert _sops.same_plaintext(b'{"a": 1}', '{ "a" : 1 }', "json")
    assert _sops.same_plaintext("A=1\n", "A=1", "dotenv")
    assert not _sops.same_plaintext("A=1\n", "A=2", "dotenv")
    assert _sops.same_plaintext(b"raw\n", "raw", "binary")


def test_metadata_yaml_and_dotenv():
    meta = _sops.metadata(ENCRYPTED_YAML, "yaml")
    assert meta == {"recipients": ["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"],
                    "encrypted_regex": "^(data|stringData)$"}
    assert _sops.metadata(ENCRYPTED_DOTENV, "dotenv")["recipients"] == meta["recipients"]
    assert _sops.metadata("a: 1\n", "yaml") is None
    assert _sops.metadata(json.dumps({"data": "x"}), "json") is None
    assert _sops.metadata("::: not yaml", "yaml") is None


def test_masked_hides_values_and_marks_changes():
    before = "kind: Secret\nstringData:\n  token: old-secret\n  user: admin\n"
    after = "kind: Secret\nstringData:\n  token: new-secret\n  user: admin\n  extra: x\n"
    b, a = _sops.masked(before, after, "yaml")
    assert "old-secret" not in b + a and "new-secret" not in b + a and "admin" not in b + a
    assert "kind: Secret" in a
    assert "token: <secret, changed>" in a and "user: <secret>" in a and "extra: <secret, changed>" in a
    b, a = _sops.masked(None, "x: secret\n", "yaml", encrypted_regex="")
    assert b == "" and "secret\n" not in a and "<secret, changed>" in a


def test_masked_binary():
    b, a = _sops.masked("abc", "abd", "binary")
    assert "abc" not in b and "abd" not in a and "changed" in a
    b, a = _sops.masked("abc", "abc", "binary")
    assert a == b


class FakeModule:
    def __init__(self, responses):
        self.responses = responses
        self.calls = []

    def get_bin_path(self, *_args, **_kwargs):
        return "/usr/bin/sops"

    def fail_json(self, **kwargs):
        raise AssertionError(kwargs)

    def run_command(self, cmd, **kwargs):
        self.calls.append((cmd, kwargs))
        return self.responses.pop(0)


def test_needs_update_decides_on_plaintext_and_recipients():
    recipient = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"
    plain = b"apiVersion: v1\nkind: Secret\nmetadata:\n    name: demo\nstringData:\n    token: abc\n"
    module = FakeModule([(0, plain, b"")] * 3)
    sops = _sops.Sops(module, age_key_file="/k")
    desired = "apiVersion: v1\nkind: Secret\nmetadata: {name: demo}\nstringData: {token: abc}\n"
    assert sops.needs_update(ENCRYPTED_YAML, desired, "x.yaml", "yaml", recipients=[recipient],
                             encrypted_regex="^(data|stringData)$")[:2] == (False, "")
    assert sops.needs_update(ENCRYPTED_YAML, desired.replace("abc", "abd"), "x.yaml", "yaml",
                             recipients=[recipient], encrypted_regex="^(data|stringData)$")[:2] == (True, "content")
    other = "age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwj"
    assert sops.needs_update(ENCRYPTED_YAML, desired, "x.yaml", "yaml", recipients=[recipient, other],
                             encrypted_regex="^(data|stringData)$")[:2] == (True, "recipients")
    assert sops.needs_update(None, desired, "x.yaml", "yaml", recipients=[recipient],
                             encrypted_regex="")[:2] == (True, "absent")
    cmd, kwargs = module.calls[0]
    assert cmd[:2] == ["/usr/bin/sops", "decrypt"] and kwargs["environ_update"]["SOPS_AGE_KEY_FILE"] == "/k"
    assert kwargs["data"] == ENCRYPTED_YAML.encode(), "ciphertext goes through stdin"


def test_encrypt_passes_plaintext_on_stdin_only():
    module = FakeModule([(0, b"ENCRYPTED", b"")])
    sops = _sops.Sops(module, age_key_file="/k")
    out = sops.encrypt("token: s3cret\n", "a/b.sops.yaml", "yaml", recipients=["age1abc"], encrypted_regex="")
    assert out == b"ENCRYPTED"
    cmd, kwargs = module.calls[0]
    assert "s3cret" not in " ".join(cmd)
    assert kwargs["data"] == b"token: s3cret\n"
    assert cmd[cmd.index("--filename-override") + 1] == "a/b.sops.yaml"
    assert "--encrypted-regex" not in cmd


def test_sops_error_never_carries_stdout():
    module = FakeModule([(1, b"plaintext-leak", b"boom")])
    sops = _sops.Sops(module, age_key_file="/k")
    with pytest.raises(_sops.SopsError) as err:
        sops.decrypt("x", "a.yaml", "yaml")
    assert "plaintext-leak" not in repr(vars(err.value))


def test_default_age_key_file_order(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("SOPS_AGE_KEY_FILE", raising=False)
    assert _sops.default_age_key_file() == str(tmp_path / ".config" / "sops" / "age" / "keys.txt")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert _sops.default_age_key_file() == str(tmp_path / "xdg" / "sops" / "age" / "keys.txt")
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", "/keys/env.txt")
    assert _sops.default_age_key_file() == "/keys/env.txt"
    assert _sops.default_age_key_file("/keys/option.txt") == "/keys/option.txt"


class RecordingModule:
    """Enough of AnsibleModule for Sops: records the command and fails like fail_json."""

    def __init__(self, rc=0, out=b"plain: text\n", err=b""):
        self.calls, self.result = [], (rc, out, err)

    def get_bin_path(self, name, required=False):
        return "/usr/bin/" + name

    def run_command(self, cmd, **kwargs):
        self.calls.append((cmd, kwargs["environ_update"]["SOPS_AGE_KEY_FILE"]))
        return self.result

    def fail_json(self, **kwargs):
        raise RuntimeError(kwargs["msg"])


def test_decrypt_yaml_if_sops_leaves_plain_files_alone():
    module = RecordingModule()
    assert _sops.decrypt_yaml_if_sops(module, "cluster:\n  id: x\n", "secrets.yaml") is None
    assert _sops.decrypt_yaml_if_sops(module, "{not: [yaml", "secrets.yaml") is None
    assert module.calls == []


def test_decrypt_yaml_if_sops_decrypts_with_the_named_key():
    module = RecordingModule()
    assert _sops.decrypt_yaml_if_sops(module, ENCRYPTED_YAML, "s.yaml", age_key_file="/k.txt") == "plain: text\n"
    cmd, key = module.calls[0]
    assert cmd[1] == "decrypt" and key == "/k.txt"


def test_decrypt_yaml_if_sops_failure_names_the_option():
    module = RecordingModule(rc=128, out=b"", err=b"Error getting data key: 0 successful groups required")
    with pytest.raises(RuntimeError, match=r"with the age key /k.txt.*set my_key_option \(or SOPS_AGE_KEY_FILE\)"):
        _sops.decrypt_yaml_if_sops(module, ENCRYPTED_YAML, "s.yaml", age_key_file="/k.txt", key_option="my_key_option")
