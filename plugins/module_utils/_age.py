# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: HomeCluster developers
"""Private runner for age-keygen (age key pairs for SOPS)."""

from __future__ import annotations

import re

SECRET_KEY_RE = re.compile(r"^AGE-SECRET-KEY-1[0-9A-Z]+$", re.MULTILINE)
PUBLIC_KEY_RE = re.compile(r"^age1[0-9a-z]{58}$")


class AgeError(Exception):
    """age-keygen failed; carries what is needed to report it."""

    def __init__(self, msg, cmd=None, rc=None, stdout="", stderr=""):
        super().__init__(msg)
        self.msg = msg
        self.cmd = cmd
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr

    def fail(self, module):
        module.fail_json(msg=self.msg, cmd=self.cmd, rc=self.rc, stdout=self.stdout, stderr=self.stderr)


def is_public_key(value):
    return bool(PUBLIC_KEY_RE.match(value or ""))


def has_secret_key(text):
    return bool(SECRET_KEY_RE.search(text or ""))


class AgeKeygen:
    """Runs age-keygen with a clean environment."""

    def __init__(self, module, binary=None):
        self.module = module
        self.binary = binary or module.get_bin_path("age-keygen", required=False)
        if not self.binary:
            module.fail_json(msg="age-keygen not found on PATH: install age on the controller or set age_keygen_path")

    def _run(self, args):
        cmd = [self.binary, *args]
        env = {"LANG": "C", "LC_ALL": "C"}
        rc, out, err = self.module.run_command(cmd, environ_update=env)
        if rc != 0:
            raise AgeError("age-keygen failed", cmd=cmd, rc=rc, stdout="", stderr=err)
        return out

    def generate(self, path):
        """Write a new key pair to path (age-keygen creates it 0600 and refuses to overwrite)."""
        self._run(["-o", path])
        return self.public_key(path)

    def public_key(self, path):
        out = self._run(["-y", path]).strip()
        if not is_public_key(out.splitlines()[0] if out else ""):
            raise AgeError(f"age-keygen -y {path} did not print an age public key", cmd=[self.binary, "-y", path])
        return out.splitlines()[0]
