# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

from ansible_collections.homecluster.platform.plugins.module_utils import _age

# Layout of a key file written by age-keygen 1.3 (the key itself is a made-up value of the right shape).
KEY_FILE = """# created: 2026-11-26T07:00:00Z
# public key: age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p
AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ
"""


def test_key_file_shapes():
    assert _age.has_secret_key(KEY_FILE)
    assert not _age.has_secret_key("# public key: age1...\n")
    assert _age.is_public_key("age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p")
    assert not _age.is_public_key("age1short")
    assert not _age.is_public_key("AGE-SECRET-KEY-1QQQ")


class FakeModule:
    def __init__(self, out):
        self.out = out
        self.cmds = []

    def get_bin_path(self, *_a, **_k):
        return "/bin/age-keygen"

    def fail_json(self, **kwargs):
        raise AssertionError(kwargs)

    def run_command(self, cmd, **_kwargs):
        self.cmds.append(cmd)
        return 0, self.out, ""


def test_public_key_reads_y_output():
    module = FakeModule("age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\n")
    keygen = _age.AgeKeygen(module)
    assert keygen.public_key("/k").startswith("age1ql3z")
    assert module.cmds == [["/bin/age-keygen", "-y", "/k"]]
