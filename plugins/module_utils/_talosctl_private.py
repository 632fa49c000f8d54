# Copyright: HomeCluster developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Files holding Talos secrets and what may be shown of them.

A 0700 scratch directory for configs and patches, the atomic 0600 write of a file a module owns,
fingerprint redaction of secret-bearing fields and diff lines, and YAML dumps for diffs.
Re-exported by ``_talosctl``, which modules import.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile

try:
    import yaml

    HAS_YAML = True
except ImportError:  # pragma: no cover - PyYAML ships with ansible-core
    HAS_YAML = False


class PrivateDir:
    """A 0700 temporary directory for files holding secrets (configs, patches); removed on exit."""

    def __enter__(self):
        self.path = tempfile.mkdtemp(prefix="talos-")
        os.chmod(self.path, 0o700)
        return self

    def write(self, name, content):
        path = os.path.join(self.path, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
        return path

    def __exit__(self, *exc):
        shutil.rmtree(self.path, ignore_errors=True)
        return False


def write_private_file(path, content, mode=0o600, module=None):
    """Atomically write *content* to *path* with *mode* (never briefly world-readable).

    A failed write (disk full, no permission) leaves the previous file as it was; with *module*
    it fails the task with a message naming the file and the cause instead of a traceback.
    """
    directory = os.path.dirname(os.path.abspath(path)) or "."
    tmp = None
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
        os.replace(tmp, path)
    except BaseException as e:
        if tmp and os.path.exists(tmp):
            os.unlink(tmp)
        if module is not None and isinstance(e, OSError):
            module.fail_json(msg=f"could not write {path}: {e.strerror or e}. The previous file (if any) is "
                                 "unchanged; free space or fix the directory's permissions, then rerun")
        raise


def file_mode(path):
    return os.stat(path).st_mode & 0o7777 if os.path.exists(path) else None


SECRET_KEYS = frozenset({
    "key", "token", "secret", "bootstraptoken", "aescbcencryptionsecret", "secretboxencryptionsecret",
    "client-key-data", "privatekey", "crt", "client-certificate-data", "cert",
})


def redact(value, keys=SECRET_KEYS):
    """Deep copy of *value* with secret-bearing fields replaced by a short fingerprint.

    The fingerprint changes when the secret changes, so a redacted diff still shows *that* it
    changed without showing the value.
    """
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if str(k).lower() in keys and isinstance(v, str) and v:
                out[k] = "<redacted sha256:" + hashlib.sha256(v.encode()).hexdigest()[:12] + ">"
            else:
                out[k] = redact(v, keys)
        return out
    if isinstance(value, list):
        return [redact(v, keys) for v in value]
    return value


SECRET_LINE_RE = re.compile(
    r"^(?P<prefix>[-+ ]\s*(?:-\s+)?(?:key|token|secret|crt|cert|bootstrapToken|aescbcEncryptionSecret|"
    r"secretboxEncryptionSecret|privateKey)\s*:\s*)(?P<value>\S.*)$"
)


def redact_diff(text):
    """Mask secret values in a unified diff of machine configs, block scalars (PEM keys) included."""
    out = []
    block_indent = None
    for line in (text or "").splitlines():
        body = line[1:] if line[:1] in "+- " else line
        indent = len(body) - len(body.lstrip())
        if block_indent is not None:
            if body.strip() and indent > block_indent:
                out.append(line[:1] + " " * indent + "<redacted>")
                continue
            block_indent = None
        m = SECRET_LINE_RE.match(line)
        if m and m.group("value").strip() in ("|", ">", "|-", ">-"):
            block_indent = indent
            out.append(line)
        elif m and m.group("value") not in ('""', "''", "{}", "[]"):
            digest = hashlib.sha256(m.group("value").encode()).hexdigest()[:12]
            out.append(f"{m.group('prefix')}<redacted sha256:{digest}>")
        else:
            out.append(line)
    return "\n".join(out)


if HAS_YAML:

    class _DiffDumper(yaml.SafeDumper):
        """Safe dumper writing multi-line strings (PEM certificates) as block literals."""

    def _str_presenter(dumper, data):
        style = "|" if "\n" in data else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)

    _DiffDumper.add_representer(str, _str_presenter)


def dump_yaml_stream(docs, sort_keys=False):
    """YAML text of *docs* (one document each) for diffs: block literals for multi-line strings."""
    texts = [yaml.dump(doc, Dumper=_DiffDumper, sort_keys=sort_keys, default_flow_style=False) for doc in docs]
    return "---\n".join(texts)


def write_yaml_credentials(module, result, dest, existing, desired, *, changed):
    """The tail shared by the modules that own a YAML file of credentials (kubeconfig, talosconfig).

    *changed* says whether *desired* differs from *existing* (the parsed file, ``{}`` when absent);
    an existing file whose mode is not 0600 counts as a change too. Sets ``result["changed"]``, adds
    the redacted before/after under ``--diff`` and, outside check mode, writes *desired* atomically
    with mode 0600. Returns the change.
    """
    changed = changed or (os.path.exists(dest) and file_mode(dest) != 0o600)
    result["changed"] = changed
    if module._diff and changed:
        result["diff"] = {
            "before": yaml.safe_dump(redact(existing), sort_keys=True) if existing else "",
            "after": yaml.safe_dump(redact(desired), sort_keys=True),
            "before_header": dest, "after_header": dest,
        }
    if changed and not module.check_mode:
        write_private_file(dest, yaml.safe_dump(desired, sort_keys=False), 0o600, module=module)
    return changed
