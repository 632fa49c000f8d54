# Copyright: HomeCluster developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private runner for talosctl, shared by every talos_* module.

One place knows how talosctl is found, how its environment is cleaned, how the connection
options (talosconfig, endpoints, nodes, maintenance mode) become arguments and how failures are
reported. Modules describe *what* to run. The output parsers live in ``_talosctl_parse`` and the
private files and redaction in ``_talosctl_private``; both are re-exported here, so modules import
everything talos from this one module.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from ansible_collections.homecluster.platform.plugins.module_utils._talosctl_parse import (
    classify_error,
    node_list,
    parse_apply_output,
    parse_json_stream,
    parse_node_errors,
    parse_table,
    parse_version_text,
    parse_yaml_stream,
)
from ansible_collections.homecluster.platform.plugins.module_utils._talosctl_private import (
    SECRET_KEYS,
    PrivateDir,
    dump_yaml_stream,
    file_mode,
    redact,
    redact_diff,
    write_private_file,
    write_yaml_credentials,
)

__all__ = [
    "SECRET_KEYS",
    "PrivateDir",
    "Result",
    "Talosctl",
    "TalosctlError",
    "classify_error",
    "dump_yaml_stream",
    "file_mode",
    "find_binary",
    "node_list",
    "parse_apply_output",
    "parse_json_stream",
    "parse_node_errors",
    "parse_table",
    "parse_version_text",
    "parse_yaml_stream",
    "redact",
    "redact_diff",
    "talosctl_argument_spec",
    "write_private_file",
    "write_yaml_credentials",
]


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

    def node_errors(self):
        return parse_node_errors(self.stderr)


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

    # -- day 2 --------------------------------------------------------------------------
    def etcd_snapshot(self, path, *, node, check=True):
        return self.run(["etcd", "snapshot", path], nodes=[node], check=check, timeout=max(self.timeout, 300))

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
