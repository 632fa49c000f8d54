# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: HomeCluster developers
"""Private runner for sops with age keys.

Plaintext only travels through pipes: it is given to sops on stdin and read back from stdout, so it
never touches a disk.  sops output is not deterministic (fresh data keys and IVs every time), so
whether a committed file is up to date is decided by decrypting it and comparing the plaintext, plus
the recipients and the encrypted_regex recorded in its metadata.
"""

from __future__ import annotations

import json
import os
import re
import tempfile

from ansible.module_utils.common.yaml import HAS_YAML, yaml_dump_all, yaml_load_all

FORMATS = ("yaml", "json", "dotenv", "binary")
DEFAULT_ENCRYPTED_REGEX = "^(data|stringData)$"
MASK = "<secret>"
MASK_CHANGED = "<secret, changed>"


class SopsError(Exception):
    """sops failed; stdout is never kept because it may hold plaintext."""

    def __init__(self, msg, cmd=None, rc=None, stderr=""):
        super().__init__(msg)
        self.msg = msg
        self.cmd = cmd
        self.rc = rc
        self.stderr = stderr

    def fail(self, module, **extra):
        module.fail_json(msg=self.msg, cmd=self.cmd, rc=self.rc, stderr=self.stderr, **extra)


def detect_format(path, fmt="auto"):
    if fmt and fmt != "auto":
        if fmt not in FORMATS:
            raise ValueError(f"unknown sops format {fmt!r}: use one of {', '.join(FORMATS)}")
        return fmt
    lower = path.lower()
    if lower.endswith((".yaml", ".yml")):
        return "yaml"
    if lower.endswith(".json"):
        return "json"
    if lower.endswith(".env"):
        return "dotenv"
    return "binary"


def _load(text, fmt):
    """Parse plaintext into a comparable value (None when it does not parse)."""
    try:
        if fmt == "yaml":
            return list(yaml_load_all(text))
        if fmt == "json":
            return json.loads(text)
        if fmt == "dotenv":
            pairs = []
            for raw in text.splitlines():
                line = raw.strip()
                if line and not line.startswith("#") and "=" in line:
                    key, value = line.split("=", 1)
                    pairs.append((key.strip(), value))
            return pairs
    except Exception:  # any parse error means 'not comparable as data'
        return None
    return None


def same_plaintext(current, desired, fmt):
    """sops re-serialises YAML/JSON, so compare data for those formats and bytes otherwise."""
    if isinstance(current, bytes):
        current = current.decode("utf-8", "surrogateescape")
    if isinstance(desired, bytes):
        desired = desired.decode("utf-8", "surrogateescape")
    if fmt in ("yaml", "json", "dotenv"):
        a, b = _load(current, fmt), _load(desired, fmt)
        if a is not None and b is not None:
            return a == b
    return current.rstrip("\n") == desired.rstrip("\n")


def metadata(ciphertext, fmt):
    """Recipients and encrypted_regex recorded in an encrypted file, or None when it is not sops."""
    text = ciphertext.decode("utf-8", "replace") if isinstance(ciphertext, bytes) else ciphertext
    meta = None
    try:
        if fmt == "yaml":
            docs = [d for d in yaml_load_all(text) if isinstance(d, dict)]
            meta = docs[0].get("sops") if docs else None
        elif fmt in ("json", "binary"):
            data = json.loads(text)
            meta = data.get("sops") if isinstance(data, dict) else None
        elif fmt == "dotenv":
            flat = dict(line.split("=", 1) for line in text.splitlines() if line.startswith("sops_") and "=" in line)
            if flat:
                ages = sorted(k for k in flat if re.match(r"^sops_age__list_\d+__map_recipient$", k))
                meta = {"age": [{"recipient": flat[k]} for k in ages],
                        "encrypted_regex": flat.get("sops_encrypted_regex")}
    except Exception:  # not parseable means not a sops file
        return None
    if not isinstance(meta, dict):
        return None
    recipients = sorted({a.get("recipient") for a in meta.get("age") or [] if isinstance(a, dict)} - {None})
    return {"recipients": recipients, "encrypted_regex": meta.get("encrypted_regex") or ""}


def masked(current, desired, fmt, encrypted_regex=DEFAULT_ENCRYPTED_REGEX):
    """Diff-safe renderings of two plaintexts: structure kept, secret values masked.

    Top-level keys that sops leaves in clear text (not matched by encrypted_regex) are shown as they
    are; everything else is masked. A value that differs is shown as MASK_CHANGED on the desired
    side, so a diff tells which key changes without telling anything about the value.
    """
    clear = re.compile(encrypted_regex) if encrypted_regex else None

    def top(doc, other):
        if clear is None or not isinstance(doc, dict):
            return walk(doc, other)
        other = other if isinstance(other, dict) else {}
        return {k: (v if not clear.search(str(k)) else walk(v, other.get(k))) for k, v in doc.items()}

    def walk(node, other):
        if isinstance(node, dict):
            return {k: walk(v, other.get(k) if isinstance(other, dict) else None) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, other[i] if isinstance(other, list) and i < len(other) else None)
                    for i, v in enumerate(node)]
        return MASK if node == other else MASK_CHANGED

    def render(value):
        if fmt == "yaml":
            return yaml_dump_all(value, sort_keys=False, default_flow_style=False)
        return json.dumps(value, indent=2) + "\n"

    if fmt in ("yaml", "json"):
        cur = _load(current, fmt) if current is not None else None
        des = _load(desired, fmt) if desired is not None else None
        if (current is None or cur is not None) and (desired is None or des is not None):
            if fmt == "yaml":
                before = render([top(d, d) for d in cur]) if cur is not None else ""
                after = render([top(d, cur[i] if cur and i < len(cur) else None) for i, d in enumerate(des)]) \
                    if des is not None else ""
            else:
                before = render(top(cur, cur)) if cur is not None else ""
                after = render(top(des, cur)) if des is not None else ""
            return before, after
    before = "" if current is None else f"{MASK} ({len(current)} bytes)\n"
    if desired is None:
        after = ""
    elif current is not None and same_plaintext(current, desired, fmt):
        after = before
    else:
        after = f"{MASK_CHANGED} ({len(desired)} bytes)\n"
    return before, after


class Sops:
    """Runs sops with age keys, with a clean environment and no configuration file lookup."""

    def __init__(self, module, binary=None, age_key_file=None):
        self.module = module
        if not HAS_YAML:
            module.fail_json(msg="PyYAML is required on the controller to compare SOPS files")
        self.binary = binary or module.get_bin_path("sops", required=False)
        if not self.binary:
            module.fail_json(msg="sops not found on PATH: install sops on the controller or set sops_path")
        self.age_key_file = age_key_file

    def _run(self, args, data, filename):
        cmd = [self.binary, *args]
        env = {"LANG": "C", "LC_ALL": "C", "SOPS_AGE_KEY_FILE": self.age_key_file or "/nonexistent"}
        for name in list(os.environ):
            if name.startswith("SOPS_") and name not in env:
                env[name] = ""
        # An empty working directory: sops must not pick up a .sops.yaml from wherever Ansible runs;
        # keys and rules are passed explicitly.
        with tempfile.TemporaryDirectory(prefix="homecluster-sops-") as cwd:
            rc, out, err = self.module.run_command(cmd, data=data, binary_data=True, cwd=cwd,
                                                   environ_update=env, encoding=None)
        if rc != 0:
            raise SopsError(f"sops failed on {filename}", cmd=cmd, rc=rc,
                            stderr=err.decode("utf-8", "replace") if isinstance(err, bytes) else err)
        return out

    def encrypt(self, plaintext, filename, fmt, *, recipients, encrypted_regex=DEFAULT_ENCRYPTED_REGEX):
        if not recipients:
            raise SopsError(f"no age recipients to encrypt {filename} for")
        args = ["encrypt", "--filename-override", filename, "--input-type", fmt, "--output-type", fmt,
                "--age", ",".join(recipients)]
        if encrypted_regex:
            args += ["--encrypted-regex", encrypted_regex]
        data = plaintext.encode() if isinstance(plaintext, str) else plaintext
        return self._run(args, data, filename)

    def decrypt(self, ciphertext, filename, fmt):
        args = ["decrypt", "--filename-override", filename, "--input-type", fmt, "--output-type", fmt]
        data = ciphertext.encode() if isinstance(ciphertext, str) else ciphertext
        try:
            return self._run(args, data, filename)
        except SopsError as e:
            if "data key" not in (e.stderr or ""):
                raise
            # The usual cause: the file was encrypted for other recipients than this key.
            raise SopsError(
                f"sops could not decrypt {filename} with the age key {self.age_key_file}: none of the file's "
                "recipients matches it. Point age_key_file (or SOPS_AGE_KEY_FILE) at the key the file was "
                "encrypted for; nothing was changed", cmd=e.cmd, rc=e.rc, stderr=e.stderr) from None

    def needs_update(self, ciphertext, plaintext, filename, fmt, *, recipients, encrypted_regex):
        """Return (changed, reason, current_plaintext) for an existing encrypted file or None."""
        if ciphertext is None:
            return True, "absent", None
        meta = metadata(ciphertext, fmt)
        if meta is None:
            return True, "not encrypted with sops", None
        current = self.decrypt(ciphertext, filename, fmt)
        if not same_plaintext(current, plaintext, fmt):
            return True, "content", current
        if meta["recipients"] != sorted(set(recipients)):
            return True, "recipients", current
        if (meta["encrypted_regex"] or "") != (encrypted_regex or ""):
            return True, "encrypted_regex", current
        return False, "", current


def default_age_key_file(explicit=None):
    """The age key sops itself would use: the option, then SOPS_AGE_KEY_FILE, then ~/.config/sops/age/keys.txt."""
    config_home = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.environ.get("HOME", "/"), ".config")
    return explicit or os.environ.get("SOPS_AGE_KEY_FILE") or os.path.join(config_home, "sops", "age", "keys.txt")


def decrypt_yaml_if_sops(module, text, path, *, sops_path=None, age_key_file=None, key_option="sops_age_key_file"):
    """Plaintext of a YAML file that may be SOPS-encrypted, or None when it is not encrypted.

    A file that sops cannot open fails the module with a message naming the key file and the
    option (key_option) that chooses it. The plaintext stays in memory.
    """
    try:
        data = yaml_load_all(text)
        first = next(iter(data), None)
    except Exception:  # not YAML at all: not a SOPS YAML file either
        return None
    if not isinstance(first, dict) or "sops" not in first:
        return None
    key_file = default_age_key_file(age_key_file)
    try:
        plain = Sops(module, sops_path, age_key_file=key_file).decrypt(text, path, "yaml")
    except SopsError as e:
        module.fail_json(msg=f"sops could not decrypt {path} with the age key {key_file}: {(e.stderr or '').strip()}"
                             f" - set {key_option} (or SOPS_AGE_KEY_FILE) to the key it was encrypted for",
                         rc=e.rc)
    return plain.decode() if isinstance(plain, bytes) else plain
