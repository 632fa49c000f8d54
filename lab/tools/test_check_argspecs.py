# SPDX-License-Identifier: GPL-3.0-or-later
"""The argument-spec check of `make lint` fails on each kind of planted mismatch."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import yaml

HERE = Path(__file__).parent
spec = importlib.util.spec_from_file_location("check_argspecs", HERE / "check_argspecs.py")
check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check)


def role(tmp_path, defaults, options):
    r = tmp_path / "roles" / "demo"
    (r / "defaults").mkdir(parents=True)
    (r / "meta").mkdir()
    (r / "defaults" / "main.yml").write_text(yaml.safe_dump(defaults))
    (r / "meta" / "argument_specs.yml").write_text(yaml.safe_dump({"argument_specs": {"main": {"options": options}}}))
    return tmp_path / "roles"


def test_roles_of_this_collection_are_in_step():
    assert check.main([str(HERE.parents[1] / "roles")]) == 0


def test_in_step_passes(tmp_path):
    roots = role(tmp_path, {"demo_port": 80, "demo_url": "{{ other }}/x", "_private": 1},
                 {"demo_port": {"type": "int", "default": 80}, "demo_url": {"type": "str"}})
    assert check.main([str(roots)]) == 0


def test_each_planted_mismatch_fails(tmp_path):
    cases = [
        ({"demo_port": 80, "demo_new": 1}, {"demo_port": {"type": "int", "default": 80}}, "not in meta/argument_specs"),
        ({"demo_port": 81}, {"demo_port": {"type": "int", "default": 80}}, "default differs"),
        ({"demo_port": "80"}, {"demo_port": {"type": "int", "default": "80"}}, "spec type int"),
        ({}, {"demo_port": {"type": "int", "default": 80}}, "missing from defaults"),
        ({"demo_port": 80}, {"demo_port": {"type": "int"}}, "none in meta/argument_specs"),
    ]
    for i, (defaults, options, said) in enumerate(cases):
        roots = role(tmp_path / str(i), defaults, options)
        found = [p for r in sorted(roots.iterdir()) for p in check.problems_of(r)]
        assert any(said in p for p in found), (said, found)
        assert check.main([str(roots)]) == 1
