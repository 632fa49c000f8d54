# Copyright: HomeCluster developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private runner for talosctl, shared by every talos_* module.

One place knows how talosctl is found, how its environment is cleaned, how the connection
options (talosconfig, endpoints, nodes, maintenance mode) become arguments, how its output is
parsed and how failures are reported. Modules describe *what* to run; day-2 commands
(upgrade, reset, etcd snapshot) are further thin methods on :class:`Talosctl`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile

try:
    import yaml

    HAS_YAML = True
except ImportError:  # pragma: no cover - PyYAML ships with ansible-core
    HAS_YAML = False


# Error classes recognised in talosctl's stderr (gRPC status codes and transport errors).
# Transport failures: the node did not answer at all (as opposed to answering with an error).
UNREACHABLE_PATTERNS = (
    "connection refused",
    "no route to host",
    "network is unreachable",
    "i/o timeout",
    "connection reset",
    "broken pipe",
    "error while dialing",
    "error reading from server",
    "transport is closing",
    "connection closed",
    "dial tcp",
)
TLS_PATTERNS = (
    "certificate required",
    "bad certificate",
    "remote error: tls",
    "tls: ",
    "authentication handshake failed",
    "x509:",
)
ALREADY_EXISTS_PATTERNS = ("code = alreadyexists", "already bootstrapped", "etcd data directory is not empty")

PER_NODE_ERROR_RE = re.compile(
    r"(?:on node|from node|for node) \"?(?P<node>[^\s:\"]+)\"?: (?P<error>.*)$", re.IGNORECASE
)
APPLY_ERROR_RE = re.compile(
    r"^(?P<node>[^\s:]+(?::\d+)?): error (?:applying configuration|getting server version|parsing server version): "
    r"(?P<error>.*)$"
)


def talosctl_argument_spec():
    """Connection options shared by every talos_* module (see the talosctl doc fragment)."""
    return {
        "talosctl_path": {"type": "path"},
        "talosconfig": {"type": "path"},
        "endpoints": {"type": "list", "elements": "str", "default": []},
        "talos_context": {"type": "str"},
        "command_timeout": {"type": "int", "default": 60},
    }


class TalosctlError(Exception):
    """A failed talosctl call, carrying everything needed to report it."""

    def __init__(self, msg, *, cmd=None, rc=None, stdout="", stderr="", kind=None):
        super().__init__(msg)
        self.msg = msg
        self.cmd = cmd or []
        self.rc = rc
        self.stdout = stdout or ""
        self.stderr = stderr or ""
        self.kind = kind or classify_error(self.stderr or msg)

    def as_fail_kwargs(self):
        return {"msg": self.msg, "cmd": " ".join(self.cmd), "rc": self.rc, "stdout": self.stdout,
                "stderr": self.stderr, "error_kind": self.kind}


class Result:
    """Outcome of one talosctl call."""

    def __init__(self, cmd, rc, stdout, stderr):
        self.cmd = cmd
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr

    @property
    def ok(self):
        return self.rc == 0

    def node_errors(self):
        return parse_node_errors(self.stderr)


def classify_error(text):
    """Classify talosctl's error text.

    Returns 'already_exists', 'unreachable' (transport failure: the node did not answer), 'tls'
    (handshake refused, e.g. a configured node asked without a client certificate), a gRPC code
    the node answered with ('unavailable', 'failed_precondition', 'not_found', ...), 'timeout' or
    'error'.
    """
    low = (text or "").lower()
    if any(p in low for p in ALREADY_EXISTS_PATTERNS):
        return "already_exists"
    if any(p in low for p in TLS_PATTERNS) and "connection refused" not in low:
        return "tls"
    if any(p in low for p in UNREACHABLE_PATTERNS):
        return "unreachable"
    names = {"failedprecondition": "failed_precondition", "notfound": "not_found",
             "permissiondenied": "permission_denied", "invalidargument": "invalid_argument",
             "deadlineexceeded": "timeout", "unavailable": "unavailable", "unimplemented": "unimplemented",
             "unauthenticated": "unauthenticated", "internal": "internal"}
    for code, name in names.items():
        if f"code = {code}" in low:
            return name
    if "context deadline exceeded" in low:
        return "timeout"
    return "error"


def parse_node_errors(stderr):
    """Map node -> error text from talosctl's per-node error lines (multi-node calls)."""
    errors = {}
    for raw in (stderr or "").splitlines():
        line = raw.strip()
        m = APPLY_ERROR_RE.match(line) or PER_NODE_ERROR_RE.search(line)
        if m and m.group("node") not in errors:
            errors[m.group("node")] = m.group("error")
    return errors


def parse_json_stream(text):
    """Parse talosctl's ``-o json`` output: a stream of JSON objects (not an array)."""
    decoder = json.JSONDecoder()
    items = []
    idx = 0
    text = text or ""
    while True:
        while idx < len(text) and text[idx].isspace():
            idx += 1
        if idx >= len(text):
            return items
        obj, idx = decoder.raw_decode(text, idx)
        items.append(obj)


def parse_yaml_stream(text):
    """Parse a multi-document YAML stream, dropping empty documents."""
    return [doc for doc in yaml.safe_load_all(text or "") if doc is not None]


def parse_table(text):
    """Parse a talosctl table (tabwriter, columns aligned) into a list of dicts keyed by lower-case header.

    Column boundaries are taken from where each header starts, so empty cells and headers
    with spaces ("PEER URLS") are handled.
    """
    lines = [line for line in (text or "").splitlines() if line.strip()]
    if not lines:
        return []
    header = lines[0]
    starts = [m.start() for m in re.finditer(r"(?:(?<=\s{2})|^)\S", header)]
    names = []
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(header)
        names.append(header[start:end].strip().lower().replace(" ", "_"))
    rows = []
    for line in lines[1:]:
        row = {}
        for i, start in enumerate(starts):
            end = starts[i + 1] if i + 1 < len(starts) else None
            row[names[i]] = line[start:end].strip() if end is not None else line[start:].strip()
        rows.append(row)
    return rows


def parse_version_text(text):
    """Parse ``talosctl version`` text: {node: {"tag", "sha", "go_version", "os_arch", ...}} for the servers."""
    out = {}
    current = None
    in_server = False
    for raw in (text or "").splitlines():
        line = raw.strip()
        if line == "Server:":
            in_server = True
            continue
        if not in_server or ":" not in line:
            continue
        key, value = line.split(":", 1)
        key = key.strip().lower().replace(" ", "_").replace("/", "_")
        value = value.strip()
        if key == "node":
            current = out.setdefault(value, {})
        elif current is not None:
            current[key] = value
    return out


def parse_apply_output(text):
    """Parse what apply-config prints (ModeDetails and warnings).

    Returns a dict: mode_details (first line of the summary), reboot_required, staged,
    no_changes, diff (unified diff text or ''), warnings (list).
    """
    text = text or ""
    warnings = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("WARNING:")]
    body = "\n".join(line for line in text.splitlines() if not line.startswith("WARNING:"))
    summary = ""
    m = re.search(r"Dry run summary:\s*\n(?P<summary>[^\n]*)", body)
    if m:
        summary = m.group("summary").strip()
    else:
        first = [line for line in body.splitlines() if line.strip()]
        summary = first[0].strip() if first else ""
    diff = ""
    no_changes = False
    m = re.search(r"Config diff:\s*\n\n?(?P<diff>.*)\Z", body, re.DOTALL)
    if m:
        diff = m.group("diff").rstrip("\n")
        if diff.strip() == "No changes.":
            no_changes = True
            diff = ""
    low = summary.lower()
    return {
        "mode_details": summary,
        "reboot_required": "with a reboot" in low or "reboot is required" in low,
        "staged": "staged" in low,
        "no_changes": no_changes,
        "diff": diff,
        "warnings": warnings,
    }


def node_list(value):
    """Normalise a node list or comma-separated string to a list of strings."""
    if not value:
        return []
    if isinstance(value, str):
        value = value.split(",")
    return [str(v).strip() for v in value if str(v).strip()]


class Talosctl:
    """Runs talosctl with a clean environment and the connection options of one module call."""

    def __init__(self, binary, *, talosconfig=None, endpoints=None, context=None, timeout=60, runner=None):
        self.binary = binary
        self.talosconfig = talosconfig
        self.endpoints = node_list(endpoints)
        self.context = context
        self.timeout = timeout
        self._runner = runner or self._subprocess_run

    @classmethod
    def from_module(cls, module, runner=None):
        """Build a runner from the shared connection options of an AnsibleModule."""
        params = module.params
        binary = find_binary(module, params.get("talosctl_path"))
        return cls(binary, talosconfig=params.get("talosconfig"), endpoints=params.get("endpoints"),
                   context=params.get("talos_context"), timeout=params.get("command_timeout") or 60,
                   runner=runner)

    # -- low level -----------------------------------------------------------------------
    @staticmethod
    def environment():
        """A clean environment: C locale, no inherited TALOSCONFIG or proxies."""
        env = {"LANG": "C", "LC_ALL": "C", "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "HOME": os.environ.get("HOME", "/root")}
        for key in ("TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR"):
            if key in os.environ:
                env[key] = os.environ[key]
        return env

    def _subprocess_run(self, cmd, data, timeout):
        try:
            proc = subprocess.run(cmd, input=data, capture_output=True, text=True, env=self.environment(),
                                  timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
            raise TalosctlError(f"talosctl timed out after {timeout}s: {' '.join(cmd)}", cmd=cmd, rc=None,
                                stdout=out, stderr=err, kind="timeout") from exc
        except OSError as exc:
            raise TalosctlError(f"cannot run talosctl: {exc}", cmd=cmd, kind="error") from exc
        return proc.returncode, proc.stdout, proc.stderr

    def connection_args(self, nodes=None, insecure=False, endpoints=None):
        """Arguments selecting talosconfig, endpoints and nodes (or maintenance mode)."""
        args = []
        nodes = node_list(nodes)
        if insecure:
            args.append("--insecure")
        else:
            if self.talosconfig:
                args += ["--talosconfig", self.talosconfig]
            if self.context:
                args += ["--context", self.context]
            eps = node_list(endpoints) or self.endpoints
            if eps:
                args += ["--endpoints", ",".join(eps)]
        if nodes:
            args += ["--nodes", ",".join(nodes)]
        return args

    def run(self, args, *, nodes=None, insecure=False, endpoints=None, connect=True, data=None, timeout=None,
            check=True, msg=None):
        """Run ``talosctl <args>`` and return a :class:`Result`; raise :class:`TalosctlError` on failure."""
        cmd = [self.binary, *args]
        if connect:
            cmd += self.connection_args(nodes=nodes, insecure=insecure, endpoints=endpoints)
        rc, out, err = self._runner(cmd, data, timeout or self.timeout)
        result = Result(cmd, rc, out, err)
        if check and rc != 0:
            first = (err or out or "").strip().splitlines()
            detail = first[-1] if first else f"rc={rc}"
            raise TalosctlError(f"{msg or 'talosctl ' + args[0] + ' failed'}: {detail}", cmd=cmd, rc=rc, stdout=out,
                                stderr=err)
        return result

    # -- read ----------------------------------------------------------------------------
    def get(self, resource, resource_id=None, *, nodes=None, insecure=False, namespace=None, check=True,
            timeout=None):
        """``talosctl get <resource> [id] -o json`` on many nodes; returns (items, per-node errors, last result).

        talosctl resolves the resource type on the first node and gives up on the whole call when that
        node fails; then that node gets the error and the call is repeated for the others, so one
        node that is down does not hide the answers of the rest.
        """
        args = ["get", resource]
        if resource_id:
            args.append(resource_id)
        if namespace:
            args += ["--namespace", namespace]
        args += ["--output", "json"]
        pending = node_list(nodes)
        items, errors = [], {}
        while True:
            res = self.run(args, nodes=pending, insecure=insecure, check=False, timeout=timeout)
            try:
                found = parse_json_stream(res.stdout)
            except ValueError as exc:
                raise TalosctlError(f"cannot parse talosctl get {resource} output: {exc}", cmd=res.cmd, rc=res.rc,
                                    stdout=res.stdout, stderr=res.stderr) from exc
            items += found
            node_errors = res.node_errors()
            errors.update(node_errors)
            if res.rc == 0 or found:
                break
            if node_errors:
                # the version check that precedes `get` failed on some nodes: ask the others again
                pending = [n for n in pending if n not in node_errors]
            else:
                whole = res.stderr.strip() or res.stdout.strip() or f"rc={res.rc}"
                if not pending:
                    errors["*"] = whole
                    break
                errors[pending[0]] = whole
                pending = pending[1:]
            if not pending:
                break
        if check and errors:
            raise TalosctlError(f"talosctl get {resource} failed: {res.stderr.strip()}", cmd=res.cmd, rc=res.rc,
                                stdout=res.stdout, stderr=res.stderr)
        return items, errors, res

    def version(self, *, nodes=None, insecure=False, check=True):
        """Server versions keyed by node; from the text output, the only one that names each node."""
        res = self.run(["version"], nodes=nodes, insecure=insecure, check=check)
        return parse_version_text(res.stdout), res.node_errors(), res

    def etcd_members(self, *, nodes=None, check=True):
        """``etcd members`` parsed from its table; returns (rows, per-node errors, result)."""
        res = self.run(["etcd", "members"], nodes=nodes, check=check)
        return parse_table(res.stdout), res.node_errors(), res

    def kubeconfig(self, *, node, check=True):
        """The admin kubeconfig as text (``kubeconfig - --merge=false``)."""
        res = self.run(["kubeconfig", "-", "--merge=false"], nodes=[node], check=check,
                       msg=f"fetching the kubeconfig from {node} failed")
        return res.stdout

    # -- change --------------------------------------------------------------------------
    def apply_config(self, config_file, *, node, mode="auto", insecure=False, dry_run=False, try_timeout=None,
                     check=True):
        args = ["apply-config", "--file", config_file, "--mode", mode]
        if dry_run:
            args.append("--dry-run")
        if try_timeout and mode == "try":
            args += ["--timeout", try_timeout]
        res = self.run(args, nodes=[node], insecure=insecure, endpoints=[node] if insecure else None, check=check,
                       msg=f"apply-config{' --dry-run' if dry_run else ''} to {node} failed")
        parsed = parse_apply_output(res.stderr + "\n" + res.stdout)
        return parsed, res

    def bootstrap(self, *, node, recover_from=None, check=True):
        args = ["bootstrap"]
        if recover_from:
            args += ["--recover-from", recover_from]
        return self.run(args, nodes=[node], check=check, msg=f"bootstrap on {node} failed")

    # -- day 2 (thin wrappers, same shape) ------------------------------------------------
    def etcd_snapshot(self, path, *, node, check=True):
        return self.run(["etcd", "snapshot", path], nodes=[node], check=check, timeout=max(self.timeout, 300))

    def upgrade(self, image, *, node, stage=False, wait=True, extra=None, check=True):
        args = ["upgrade", "--image", image]
        if stage:
            args.append("--stage")
        args.append(f"--wait={'true' if wait else 'false'}")
        return self.run(args + list(extra or []), nodes=[node], check=check, timeout=max(self.timeout, 900))

    def reset(self, *, node, graceful=True, reboot=False, wipe_mode="all", extra=None, check=True):
        args = ["reset", f"--graceful={'true' if graceful else 'false'}", f"--reboot={'true' if reboot else 'false'}",
                "--wipe-mode", wipe_mode]
        return self.run(args + list(extra or []), nodes=[node], check=check, timeout=max(self.timeout, 600))

    # -- local (no API) -----------------------------------------------------------------
    def gen_secrets(self, talos_version=None):
        args = ["gen", "secrets", "--output-file", "-"]
        if talos_version:
            args += ["--talos-version", talos_version]
        return self.run(args, connect=False, msg="talosctl gen secrets failed").stdout

    def gen_config(self, cluster_name, endpoint, *, secrets_file, output_type, talos_version=None,
                   kubernetes_version=None, install_disk=None, install_image=None, additional_sans=None,
                   dns_domain=None, patches=None, patches_controlplane=None, patches_worker=None,
                   with_docs=False, with_examples=False, extra_args=None):
        """``gen config`` for one output type (controlplane, worker or talosconfig), on stdout."""
        args = ["gen", "config", cluster_name, endpoint, "--with-secrets", secrets_file,
                "--output-types", output_type, "--output", "-",
                f"--with-docs={'true' if with_docs else 'false'}",
                f"--with-examples={'true' if with_examples else 'false'}"]
        if talos_version:
            args += ["--talos-version", talos_version]
        if kubernetes_version:
            args += ["--kubernetes-version", kubernetes_version]
        if install_disk:
            args += ["--install-disk", install_disk]
        if install_image:
            args += ["--install-image", install_image]
        if additional_sans:
            args += ["--additional-sans", ",".join(additional_sans)]
        if dns_domain:
            args += ["--dns-domain", dns_domain]
        for flag, items in (("--config-patch", patches), ("--config-patch-control-plane", patches_controlplane),
                            ("--config-patch-worker", patches_worker)):
            for item in items or []:
                args += [flag, item]
        args += list(extra_args or [])
        return self.run(args, connect=False, msg=f"talosctl gen config ({output_type}) failed").stdout

    def machineconfig_patch(self, config_file, patches):
        args = ["machineconfig", "patch", config_file]
        for item in patches:
            args += ["--patch", item]
        return self.run(args, connect=False, msg="talosctl machineconfig patch failed").stdout

    def validate(self, config_file, mode="metal", strict=False):
        args = ["validate", "--config", config_file, "--mode", mode]
        if strict:
            args.append("--strict")
        res = self.run(args, connect=False, check=False)
        return res


def find_binary(module, path=None):
    """Locate talosctl: the explicit path, then PATH."""
    if path:
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            module.fail_json(msg=f"talosctl_path {path!r} is not an executable file")
        return path
    found = shutil.which("talosctl")
    if found:
        return found
    module.fail_json(msg="talosctl not found on PATH: install it on the controller or set talosctl_path")
    return None


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
