#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Build the lab's real tools from Go modules at the versions pinned in versions.json.

Programs whose go.mod carries replace directives (Kubernetes, etcd, talosctl) refuse
``go install pkg@version``. For every tool this script writes a small wrapper module that
requires the program's module at the pinned version, carries over the upstream non-local
replaces and turns local ones (``=> ./staging/...``) into the published module at the
matching version. Binaries land in ``$HOMECLUSTER_CACHE/bin`` (default
``~/.cache/homecluster/bin``); a stamp per tool records the recipe so that a second run
rebuilds nothing.

A tool may also give ``build_env`` (extra Go environment, e.g. GOFIPS140), ``writable_copy``
(build from a copy of the module with files its published zip lacks) and ``share_dirs``
(directories of the module copied to ``$HOMECLUSTER_CACHE/share/<tool>/``).

Usage: build.py [--list] [--only NAME ...]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
VERSIONS = HERE / "versions.json"


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "homecluster"
    return Path(os.environ.get("HOMECLUSTER_CACHE", default)).expanduser()


def go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("GOFLAGS", "-buildvcs=false")
    env["GOFLAGS"] = env["GOFLAGS"] + " -mod=mod"
    env["CGO_ENABLED"] = "0"
    env["LANG"] = "C"
    return env


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.stderr.write(f"FAILED ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}\n")
        raise SystemExit(proc.returncode)
    return proc.stdout


def go_version(env: dict[str, str]) -> str:
    return run(["go", "env", "GOVERSION"], Path.cwd(), env).strip()


def recipe_hash(name: str, spec: dict, gover: str) -> str:
    blob = json.dumps({"name": name, "spec": spec, "go": gover, "builder": 2}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def upstream_replaces(module: str, version: str, workdir: Path, env: dict[str, str], *,
                      local_version: str | None, drop: dict[str, str]) -> list[str]:
    """Return replace lines for the wrapper, derived from the upstream go.mod."""
    info = json.loads(run(["go", "mod", "download", "-json", f"{module}@{version}"], workdir, env))
    mod = json.loads(run(["go", "mod", "edit", "-json", info["GoMod"]], workdir, env))
    lines = []
    for rep in mod.get("Replace") or []:
        old, new = rep["Old"], rep["New"]
        old_s = old["Path"] + (f" {old['Version']}" if old.get("Version") else "")
        if old["Path"] in drop:
            continue
        if new["Path"].startswith(("./", "../")):
            if old["Path"].endswith("FORBIDDEN_DEPENDENCY") or "FORBIDDEN" in new["Path"]:
                continue
            if not local_version:
                raise SystemExit(f"{module} has a local replace of {old['Path']} but versions.json "
                                 "gives no local_replace_version")
            lines.append(f"{old_s} => {old['Path']} {local_version}")
        else:
            lines.append(f"{old_s} => {new['Path']} {new['Version']}")
    return lines


def module_dir(module: str, version: str, workdir: Path, env: dict[str, str]) -> Path:
    """The read-only directory of a downloaded module in Go's module cache."""
    info = json.loads(run(["go", "mod", "download", "-json", f"{module}@{version}"], workdir, env))
    return Path(info["Dir"])


def writable_copy(spec: dict, workdir: Path, env: dict[str, str]) -> str:
    """Copy the program's module next to the wrapper and add the files its published zip lacks
    (flux-operator embeds web/dist, a build output not in the module); return the copy's name."""
    src = module_dir(spec["module"], spec["version"], workdir, env)
    dest = workdir / "module"
    shutil.copytree(src, dest)
    for path in [dest, *dest.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    for rel, text in spec["writable_copy"]["files"].items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_text(text)
    return dest.name


def copy_share_dirs(name: str, spec: dict, share: Path, workdir: Path, env: dict[str, str]) -> None:
    """Copy data directories of the module (flux-operator's Flux manifests) to share/<tool>/."""
    moddir = module_dir(spec["module"], spec["version"], workdir, env)
    if share.exists():
        shutil.rmtree(share)
    for dest, src in spec["share_dirs"].items():
        if not (moddir / src).is_dir():
            raise SystemExit(f"{name}: {src} is not a directory of {spec['module']}@{spec['version']}")
        shutil.copytree(moddir / src, share / dest)
        for path in (share / dest).rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)


def go_binary_name(pkg: str) -> str:
    """The file name `go build -o dir/` gives a main package: its last path element, skipping a
    major-version suffix (go.etcd.io/etcd/server/v3 -> server)."""
    parts = pkg.split("/")
    if len(parts) > 1 and re.fullmatch(r"v[0-9]+", parts[-1]):
        return parts[-2]
    return parts[-1]


def ldflags(spec: dict) -> str:
    version = spec["version"]
    parts = version.lstrip("v").split(".")
    commit = spec.get("commit", "")
    fields = {"version": version, "major": parts[0], "minor": parts[1], "commit": commit,
              "commit_short": commit[:8]}
    return " ".join(["-s", "-w"] + [flag.format(**fields) for flag in spec.get("ldflags", [])])


def build_tool(name: str, spec: dict, root: Path, env: dict[str, str], gover: str) -> str:
    bindir = root / "bin"
    stampdir = root / "stamps"
    bindir.mkdir(parents=True, exist_ok=True)
    stampdir.mkdir(parents=True, exist_ok=True)
    packages = dict(spec["packages"])
    packages.update(spec.get("extra_packages", {}))
    digest = recipe_hash(name, spec, gover)
    stamp = stampdir / f"{name}.json"
    shared = not spec.get("share_dirs") or (root / "share" / name).is_dir()
    if stamp.exists() and shared and all((bindir / b).exists() for b in packages):
        if json.loads(stamp.read_text()).get("digest") == digest:
            return "up to date"

    started = time.monotonic()
    workdir = root / "src" / f"{name}-{spec['version']}"
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    (workdir / "go.mod").write_text(f"module homecluster.local/tools/{name}\n\ngo 1.26\n")
    modules = {spec["module"]: spec["version"], **spec.get("extra_modules", {})}
    replaces: list[str] = []
    for module, version in modules.items():
        for line in upstream_replaces(module, version, workdir, env,
                                       local_version=spec.get("local_replace_version"),
                                       drop=spec.get("drop_replaces", {})):
            if line not in replaces:
                replaces.append(line)
    # Modules the Go module proxy reachable here does not serve at the pinned version: replaced
    # by the nearest served release, each with its reason in versions.json.
    for module, (version, _reason) in spec.get("substitute_modules", {}).items():
        replaces = [r for r in replaces if not r.startswith(module + " ")]
        replaces.append(f"{module} => {module} {version}")
    imports = "\n".join(f'\t_ "{p}"' for p in packages.values())
    (workdir / "tools.go").write_text(
        f"//go:build tools\n\n// Package tools pins the programs this wrapper builds.\npackage tools\n\n"
        f"import (\n{imports}\n)\n")
    if spec.get("writable_copy"):
        replaces.append(f"{spec['module']} => ./{writable_copy(spec, workdir, env)}")
    gomod = [f"module homecluster.local/tools/{name}", "", "go 1.26", "", "require ("]
    gomod += [f"\t{m} {v}" for m, v in modules.items()] + [")", ""]
    if replaces:
        gomod += ["replace ("] + [f"\t{r}" for r in replaces] + [")", ""]
    (workdir / "go.mod").write_text("\n".join(gomod))
    build_env = {**env, **spec.get("build_env", {})}
    run(["go", "mod", "tidy"], workdir, build_env)
    out = workdir / "out"
    out.mkdir()
    run(["go", "build", "-trimpath", "-ldflags", ldflags(spec), "-o", str(out) + "/",
         *packages.values()], workdir, build_env)
    if spec.get("share_dirs"):
        copy_share_dirs(name, spec, root / "share" / name, workdir, env)
    for binary, pkg in packages.items():
        built = out / go_binary_name(pkg)
        if not built.exists():
            raise SystemExit(f"{name}: go build left no {built.name} for {pkg} in {out}")
        shutil.move(str(built), bindir / binary)
    shutil.rmtree(out)
    stamp.write_text(json.dumps({"digest": digest, "version": spec["version"],
                                 "binaries": sorted(packages)}, indent=2))
    return f"built in {time.monotonic() - started:.0f}s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", help="build only these tools")
    parser.add_argument("--list", action="store_true", help="print tool names and versions")
    args = parser.parse_args()
    spec = json.loads(VERSIONS.read_text())
    tools = spec["go_tools"]
    if args.list:
        for name, tool in tools.items():
            print(f"{name} {tool['version']}")
        return 0
    root = cache_dir()
    env = go_env()
    gover = go_version(env)
    for name, tool in tools.items():
        if args.only and name not in args.only:
            continue
        print(f"{name} {tool['version']}: ", end="", flush=True)
        print(build_tool(name, tool, root, env, gover), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
