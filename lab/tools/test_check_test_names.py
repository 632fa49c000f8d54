# SPDX-License-Identifier: GPL-3.0-or-later
"""The unique-test-name check of `make lint` finds a planted clash and passes this tree."""
from __future__ import annotations

import importlib.util
from pathlib import Path

HERE = Path(__file__).parent
spec = importlib.util.spec_from_file_location("check_test_names", HERE / "check_test_names.py")
check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check)


def test_this_tree_has_unique_test_module_names():
    assert check.main([]) == 0


def test_two_files_of_one_basename_are_refused(tmp_path, capsys):
    for layer in ("identity", "observability"):
        (tmp_path / layer).mkdir()
        (tmp_path / layer / "test_talos_patch.py").write_text("")
    assert check.main([str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "'test_talos_patch'" in out and "identity" in out and "observability" in out


def test_files_inside_packages_do_not_clash(tmp_path):
    for layer in ("a", "b"):
        (tmp_path / layer).mkdir()
        (tmp_path / layer / "__init__.py").write_text("")
        (tmp_path / layer / "test_same.py").write_text("")
    assert check.clashes([tmp_path]) == {}
    assert check.main([str(tmp_path)]) == 0
