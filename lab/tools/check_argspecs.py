#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Keep every role's meta/argument_specs.yml and defaults/main.yml in step (run by `make lint`).

For each role with an argument spec (entry point main), it fails on:
- a variable in defaults/main.yml that the spec does not declare (undocumented, unchecked input);
- an option the spec declares with a default that defaults/main.yml lacks, or the other way round
  (a plain default in defaults/ whose spec entry has none; a templated one, derived from other
  variables, is described rather than repeated);
- a spec default that differs from defaults/main.yml (templated defaults, `{{ ... }}`, are compared
  as text only when the spec gives one);
- a default whose Python type does not fit the spec's type.
Private variables (leading underscore) are ignored. Exit 1 with one line per problem.
"""
from __future__ import annotations

import sys
from pathlib import Path

import yaml

TYPES = {"str": (str,), "bool": (bool,), "int": (int,), "float": (int, float), "list": (list,),
         "dict": (dict,), "path": (str,), "raw": (object,)}


def templated(value) -> bool:
    if isinstance(value, str):
        return "{{" in value
    if isinstance(value, list):
        return any(templated(v) for v in value)
    if isinstance(value, dict):
        return any(templated(v) for v in value.values())
    return False


def default_problems(name: str, var: str, value, opt: dict) -> list[str]:
    """What is wrong with one variable of defaults/main.yml against its spec entry."""
    is_templated = templated(value)
    if "default" not in opt:
        # A templated default (derived from other variables) is described, not repeated.
        if opt.get("required") or is_templated:
            return []
        return [f"{name}: {var} has a default in defaults/main.yml but none in meta/argument_specs.yml"]
    if is_templated:
        if templated(opt["default"]) and opt["default"] != value:
            return [f"{name}: {var} default differs: spec {opt['default']!r}, defaults {value!r}"]
        return []
    out = []
    if opt["default"] != value:
        out.append(f"{name}: {var} default differs: spec {opt['default']!r}, defaults {value!r}")
    kind = opt.get("type", "str")
    wrong_type = value is not None and kind in TYPES and not isinstance(value, TYPES[kind])
    if wrong_type or (kind in ("int", "float") and isinstance(value, bool)):
        out.append(f"{name}: {var} is {type(value).__name__} in defaults/main.yml, spec type {kind}")
    return out


def problems_of(role: Path) -> list[str]:
    spec_file, defaults_file = role / "meta" / "argument_specs.yml", role / "defaults" / "main.yml"
    if not spec_file.exists():
        return []
    spec = (yaml.safe_load(spec_file.read_text()) or {}).get("argument_specs", {}).get("main", {}).get("options", {})
    defaults = (yaml.safe_load(defaults_file.read_text()) or {}) if defaults_file.exists() else {}
    name, out = role.name, []
    for var, value in defaults.items():
        if var.startswith("_"):
            continue
        if var not in spec:
            out.append(f"{name}: {var} is in defaults/main.yml but not in meta/argument_specs.yml")
        else:
            out += default_problems(name, var, value, spec[var] or {})
    out += [f"{name}: {var} has a spec default but is missing from defaults/main.yml" for var, opt in spec.items()
            if not var.startswith("_") and isinstance(opt, dict) and "default" in opt and var not in defaults]
    return out


def main(argv: list[str]) -> int:
    roots = [Path(a) for a in argv] or [Path(__file__).resolve().parents[2] / "roles"]
    problems = [p for root in roots for role in sorted(root.iterdir()) if role.is_dir() for p in problems_of(role)]
    for p in problems:
        print(p)
    if problems:
        print(f"{len(problems)} argument spec problem(s): keep meta/argument_specs.yml and defaults/main.yml in step")
        return 1
    print(f"argument specs and defaults in step ({sum(1 for r in roots for _ in r.iterdir())} roles)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
