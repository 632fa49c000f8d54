# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: HomeCluster developers
"""One base for the command-line runners: find the binary, run it with a clean environment, parse JSON.

The binary comes from an explicit path option, else from PATH; product code never looks in a lab
directory. Every failure is one error type carrying cmd, rc, stdout and stderr, so a module fails
with everything a person needs to see what went wrong.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from typing import Any

# LANG=C keeps messages parseable; the rest keeps a user's shell setup out of what runs.
CLEAN_ENV = {"LANG": "C", "LC_ALL": "C"}
KEEP_ENV = ("HOME", "PATH", "TMPDIR", "USER", "SSL_CERT_FILE", "SSL_CERT_DIR", "HTTPS_PROXY", "HTTP_PROXY",
            "NO_PROXY", "https_proxy", "http_proxy", "no_proxy")


class CliError(Exception):
    """A command failed (or could not be found). stdout is dropped when it may hold secrets."""

    def __init__(self, msg: str, *, cmd: Sequence[str] | None = None, rc: int | None = None,
                 stdout: str = "", stderr: str = "") -> None:
        super().__init__(msg)
        self.msg = msg
        self.cmd = list(cmd) if cmd else None
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr

    def fail_kwargs(self) -> dict:
        return {"msg": self.msg, "cmd": self.cmd, "rc": self.rc, "stdout": self.stdout, "stderr": self.stderr}


def find_binary(name: str, path: str | None = None) -> str:
    """The binary at path (when given) or on PATH; a CliError that says how to fix it otherwise."""
    if path:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
        raise CliError(f"{name} not found at {path!r}: install {name} there or fix the path option")
    found = shutil.which(name)
    if not found:
        raise CliError(f"{name} not found on PATH: install {name} on the controller or set its path option")
    return found


class Completed:
    """What one command returned."""

    def __init__(self, cmd: Sequence[str], rc: int, stdout: str, stderr: str) -> None:
        self.cmd = list(cmd)
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr

    def json(self) -> Any:
        try:
            return json.loads(self.stdout) if self.stdout.strip() else None
        except ValueError as e:
            raise CliError(f"{os.path.basename(self.cmd[0])} printed no valid JSON: {e}", cmd=self.cmd, rc=self.rc,
                           stdout=self.stdout[:2000], stderr=self.stderr) from None


# runner(cmd, stdin data, environment, timeout) -> Completed
Runner = Callable[..., Completed]


def subprocess_runner(cmd: Sequence[str], data: str | None, env: dict | None,
                      timeout: float | None) -> Completed:
    try:
        proc = subprocess.run(list(cmd), input=data, capture_output=True, text=True, env=env, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired:
        raise CliError(f"{os.path.basename(cmd[0])} did not finish within {timeout:.0f} s", cmd=cmd) from None
    except OSError as e:
        raise CliError(f"cannot run {cmd[0]}: {e}", cmd=cmd) from None
    return Completed(cmd, proc.returncode, proc.stdout, proc.stderr)


class Cli:
    """A command-line tool with fixed leading arguments and a clean environment."""

    name = "tool"

    def __init__(self, binary: str, *, base_args: Sequence[str] = (), env: dict | None = None,
                 runner: Runner | None = None, timeout: float | None = None) -> None:
        self.binary = binary
        self.base_args = list(base_args)
        self.env = {k: v for k, v in os.environ.items() if k in KEEP_ENV}
        self.env.update(CLEAN_ENV)
        self.env.update(env or {})
        self.runner = runner or subprocess_runner
        self.timeout = timeout
        self.calls = 0

    def run(self, args: Sequence[str], *, data: str | None = None, check: bool = True,
            timeout: float | None = None, secret_output: bool = False) -> Completed:
        cmd = [self.binary, *self.base_args, *args]
        self.calls += 1
        res = self.runner(cmd, data, self.env, timeout or self.timeout)
        if check and res.rc != 0:
            raise CliError(f"{self.name} {' '.join(args[:2])} failed (rc={res.rc}): {first_line(res.stderr)}",
                           cmd=cmd, rc=res.rc, stdout="" if secret_output else res.stdout[-4000:],
                           stderr=res.stderr[-4000:])
        return res


def first_line(text: str) -> str:
    """The error a program printed, on one line: its first non-empty line, and when that line only
    announces what follows (helm's "1 error occurred:", kubectl's "Error from server ...:"), the
    next few lines too, so the cause reaches the task's msg."""
    lines = [line.strip().lstrip("* ").strip() for line in (text or "").splitlines() if line.strip()]
    if not lines:
        return "(no message)"
    out = [lines[0]]
    for line in lines[1:4]:
        if not out[-1].endswith(":"):
            break
        out.append(line)
    return " ".join(out)
