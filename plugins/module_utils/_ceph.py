# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: HomeCluster developers
"""Private runner for the ``ceph`` command line, shared by the ceph_* modules.

Two transports:

* ``local``: the ``ceph`` CLI on the controller with a ceph.conf and a keyring;
* ``toolbox``: ``kubectl exec`` into the Rook toolbox deployment, whose ceph.conf and keyring
  the toolbox carries itself.

Every command asks for JSON (``--format json``), runs with ``LANG=C`` and a clean environment,
carries ``--connect-timeout`` (the CLI otherwise waits for a monitor quorum forever) and a
subprocess timeout (for commands that reach the monitors but wait on a manager or OSDs).
Failures raise :class:`CephError` with the command, return code, stdout and stderr.

The parsers below are pure functions so they can be unit-tested on recorded output.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

__all__ = [
    "OSD_FLAGS",
    "CephError",
    "CephRunner",
    "ceph_argument_spec",
    "config_entry",
    "fail_module",
    "health_checks",
    "normalize_config_value",
    "osd_flags",
    "pool_state",
    "split_who",
]

# Cluster-wide OSD flags that `ceph osd set/unset` accept and that operators toggle.
OSD_FLAGS = (
    "noout", "noin", "noup", "nodown", "nobackfill", "norebalance", "norecover",
    "noscrub", "nodeep-scrub", "notieragent", "nosnaptrim", "pause",
)

# Environment variables passed through to the CLI; everything else is dropped.
_PASS_ENV = ("PATH", "HOME", "CEPH_CONF", "CEPH_KEYRING", "CEPH_ARGS", "KUBECONFIG")


def ceph_argument_spec() -> dict:
    """Connection options shared by every ceph_* module (documented in the ceph doc fragment)."""
    return {
        "transport": {"type": "str", "default": "local", "choices": ["local", "toolbox"]},
        "ceph_binary": {"type": "str", "default": "ceph"},
        "ceph_conf": {"type": "path"},
        "keyring": {"type": "path", "no_log": False},
        "client_name": {"type": "str"},
        "connect_timeout": {"type": "int", "default": 10},
        "command_timeout": {"type": "int", "default": 60},
        "kubectl_binary": {"type": "str", "default": "kubectl"},
        "kubeconfig": {"type": "path"},
        "kube_context": {"type": "str"},
        "toolbox_namespace": {"type": "str", "default": "rook-ceph"},
        "toolbox_deployment": {"type": "str", "default": "rook-ceph-tools"},
    }


class CephError(Exception):
    """A ceph command failed; carries what a user needs to see."""

    def __init__(self, msg: str, cmd: list[str] | None = None, rc: int | None = None,
                 stdout: str = "", stderr: str = "") -> None:
        super().__init__(msg)
        self.msg = msg
        self.cmd = cmd or []
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr

    def as_dict(self) -> dict:
        return {"msg": self.msg, "cmd": self.cmd, "rc": self.rc, "stdout": self.stdout, "stderr": self.stderr}


class CephRunner:
    """Build and run ceph commands over the chosen transport."""

    def __init__(self, params: dict, runner=None) -> None:
        self.params = params
        self._run = runner or _subprocess_run
        self._binary: str | None = None

    # -- command construction ------------------------------------------------------------
    def _locate(self, name: str, what: str) -> str:
        found = name if os.path.isabs(name) else shutil.which(name)
        if not found or not os.access(found, os.X_OK):
            hint = ("install ceph-common (the ceph CLI) on the controller or set ceph_binary"
                    if what == "ceph_binary" else "install kubectl or set kubectl_binary")
            raise CephError(f"{name!r} not found or not executable: {hint}")
        return found

    def argv(self, args: list[str], json_output: bool = True) -> list[str]:
        p = self.params
        ceph = ["--connect-timeout", str(p["connect_timeout"])]
        if p["transport"] == "local":
            if self._binary is None:
                self._binary = self._locate(p["ceph_binary"], "ceph_binary")
            prefix = [self._binary]
            if p.get("ceph_conf"):
                prefix += ["--conf", p["ceph_conf"]]
            if p.get("keyring"):
                prefix += ["--keyring", p["keyring"]]
            if p.get("client_name"):
                prefix += ["--name", p["client_name"]]
        else:
            if self._binary is None:
                self._binary = self._locate(p["kubectl_binary"], "kubectl_binary")
            prefix = [self._binary]
            if p.get("kubeconfig"):
                prefix += ["--kubeconfig", p["kubeconfig"]]
            if p.get("kube_context"):
                prefix += ["--context", p["kube_context"]]
            prefix += ["--namespace", p["toolbox_namespace"], "exec", f"deployment/{p['toolbox_deployment']}",
                       "--", "ceph"]
            if p.get("client_name"):
                prefix += ["--name", p["client_name"]]
        tail = ["--format", "json"] if json_output else []
        return [*prefix, *ceph, *args, *tail]

    def environment(self) -> dict:
        env = {k: os.environ[k] for k in _PASS_ENV if k in os.environ}
        env.update({"LANG": "C", "LC_ALL": "C"})
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        return env

    # -- execution -------------------------------------------------------------------------
    def run(self, args: list[str], json_output: bool = True, allowed_rc: tuple[int, ...] = (0,)):
        """Run ``ceph ARGS``; return (rc, parsed JSON or None, stdout, stderr)."""
        cmd = self.argv(args, json_output)
        timeout = self.params["command_timeout"]
        try:
            proc = self._run(cmd, capture_output=True, text=True, timeout=timeout, env=self.environment(),
                             stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise CephError(
                f"ceph did not answer within command_timeout={timeout}s: the monitors may have no quorum, or "
                f"the command waits on a manager or OSDs that are down (command: ceph {' '.join(args)})",
                cmd=cmd, stdout=_text(exc.stdout), stderr=_text(exc.stderr)) from exc
        except OSError as exc:
            raise CephError(f"could not run {cmd[0]}: {exc}", cmd=cmd) from exc
        stdout, stderr, rc = proc.stdout or "", proc.stderr or "", proc.returncode
        if rc not in allowed_rc:
            raise CephError(_failure_message(args, rc, stderr, self.params), cmd=cmd, rc=rc,
                            stdout=stdout, stderr=stderr)
        data = None
        if json_output and stdout.strip():
            try:
                data = json.loads(stdout)
            except ValueError as exc:
                raise CephError(f"ceph {' '.join(args)} printed output that is not JSON", cmd=cmd, rc=rc,
                                stdout=stdout, stderr=stderr) from exc
        return rc, data, stdout, stderr

    def json(self, args: list[str]):
        return self.run(args)[1]


def _subprocess_run(cmd: list[str], **kwargs):
    """The one place a process starts (unit tests replace it)."""
    return subprocess.run(cmd, check=False, **kwargs)


def _text(value) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _failure_message(args: list[str], rc: int, stderr: str, params: dict) -> str:
    last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
    if "timed out" in stderr.lower() and rc in (1, 110):
        return (f"no answer from the Ceph monitors within connect_timeout={params['connect_timeout']}s "
                f"(no quorum, wrong mon host in ceph.conf, or unreachable): {last}")
    if params["transport"] == "toolbox" and ("NotFound" in stderr or "not found" in stderr):
        return (f"the Rook toolbox {params['toolbox_namespace']}/{params['toolbox_deployment']} is not reachable "
                f"(deploy it or set toolbox_namespace/toolbox_deployment): {last}")
    return f"ceph {' '.join(args)} failed (rc={rc}): {last}"


# -- parsers --------------------------------------------------------------------------------
def health_checks(health: dict) -> list[dict]:
    """Flatten ``ceph health detail -f json`` into one entry per check, detail messages included."""
    checks = []
    for name, check in sorted((health or {}).get("checks", {}).items()):
        summary = check.get("summary", {})
        checks.append({
            "name": name,
            "severity": check.get("severity", ""),
            "summary": summary.get("message", ""),
            "count": summary.get("count", 0),
            "detail": [d.get("message", "") for d in check.get("detail", [])],
            "muted": bool(check.get("muted", False)),
        })
    return checks


def pool_state(pools: list[dict], name: str) -> dict | None:
    """The managed properties of pool NAME from ``ceph osd pool ls detail -f json``, or None."""
    for pool in pools or []:
        if pool.get("pool_name") == name:
            return {
                "name": name,
                "id": pool.get("pool_id"),
                "type": "replicated" if pool.get("type") == 1 else "erasure",
                "size": pool.get("size"),
                "min_size": pool.get("min_size"),
                "pg_num": pool.get("pg_num_target", pool.get("pg_num")),
                "pg_autoscale_mode": pool.get("pg_autoscale_mode"),
                "crush_rule_id": pool.get("crush_rule"),
                "applications": sorted((pool.get("application_metadata") or {}).keys()),
            }
    return None


def osd_flags(osd_dump: dict) -> list[str]:
    """Cluster-wide flags set in ``ceph osd dump -f json``."""
    flags = osd_dump.get("flags_set")
    if flags is None:
        flags = [f for f in osd_dump.get("flags", "").split(",") if f]
    return sorted(flags)


def split_who(who: str) -> tuple[str, str]:
    """'osd/class:ssd' -> ('osd', 'class:ssd'); 'osd.1' -> ('osd.1', '')."""
    section, _sep, mask = who.partition("/")
    return section, mask


def config_entry(dump: list[dict], who: str, name: str) -> str | None:
    """The value stored in the monitors' database for WHO and NAME (``ceph config dump -f json``)."""
    section, mask = split_who(who)
    for entry in dump or []:
        if entry.get("section") == section and entry.get("name") == name and entry.get("mask", "") == mask:
            return entry.get("value")
    return None


_SIZE_UNITS = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4, "P": 5, "E": 6}
_NUM_RE = re.compile(r"^\s*(-?\d+)\s*([KMGTPE]?)(i?B?)\s*$", re.IGNORECASE)


def _normalize_bool(text: str) -> str:
    lowered = text.lower()
    if lowered in ("true", "1"):
        return "true"
    if lowered in ("false", "0"):
        return "false"
    return text


def _normalize_number(text: str, base: int) -> str:
    match = _NUM_RE.match(text)
    if not match:
        return text
    number, unit, _suffix = match.groups()
    return str(int(number) * base ** _SIZE_UNITS[unit.upper()])


def _normalize_float(text: str) -> str:
    try:
        return f"{float(text):f}"
    except ValueError:
        return text


def normalize_config_value(value, option: dict | None, name: str = "") -> str:
    """The string Ceph stores for VALUE, given the option's ``ceph config help -f json`` entry.

    Ceph canonicalises what ``config set`` receives (``True`` -> ``true``, ``1G`` -> ``1073741824``
    for sizes, ``1K`` -> ``1000`` for integers, ``0.1`` -> ``0.100000``, debug ``5`` -> ``5/5``); comparing
    canonical forms keeps reruns and check mode honest. Unknown forms are returned unchanged.
    """
    if isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = str(value).strip()
    kind = (option or {}).get("type", "str")
    normalizers = {
        "bool": _normalize_bool,
        "size": lambda t: _normalize_number(t, 1024),
        "int": lambda t: _normalize_number(t, 1000),
        "uint": lambda t: _normalize_number(t, 1000),
        "float": _normalize_float,
    }
    if kind in normalizers:
        return normalizers[kind](text)
    if name.startswith("debug_") and re.fullmatch(r"\d+", text):
        return f"{text}/{text}"
    return text


def fail_module(module, exc: CephError, **extra) -> None:
    """fail_json with the command, return code, stdout and stderr of a failed ceph call."""
    result = exc.as_dict()
    result.update(extra)
    module.fail_json(**result)
