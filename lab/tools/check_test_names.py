#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Refuse two pytest modules (or conftest-less helpers imported as tests) with one basename.

pytest's default "prepend" import mode imports each test file under its basename when its
directory is not a package, so tests/integration/a/test_x.py and tests/integration/b/test_x.py
stop the whole run at collection ("import file mismatch"). This check finds such pairs in the
directories `make test` collects before pytest runs, and names both files.

    lab/tools/check_test_names.py [ROOT ...]     (default: tests/integration tests/preflight lab)
"""
from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_ROOTS = ("tests/integration", "tests/preflight", "lab")
SKIP_PARTS = {".git", "__pycache__", "node_modules", ".venv", "vendor"}


def module_name(path: Path) -> str:
    """The name pytest imports the file as: its basename, prefixed by every enclosing package."""
    parts = [path.stem]
    parent = path.parent
    while (parent / "__init__.py").exists():
        parts.insert(0, parent.name)
        parent = parent.parent
    return ".".join(parts)


def clashes(roots):
    seen = defaultdict(list)
    for root in roots:
        for path in sorted(Path(root).rglob("test_*.py")):
            if SKIP_PARTS.intersection(path.parts):
                continue
            seen[module_name(path)].append(path)
    return {name: paths for name, paths in seen.items() if len(paths) > 1}


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    roots = [Path(a) for a in args] or [REPO / r for r in DEFAULT_ROOTS]
    found = clashes(roots)
    for name, paths in sorted(found.items()):
        print(f"test module name {name!r} is used by {len(paths)} files: "
              + ", ".join(str(p.relative_to(REPO) if p.is_relative_to(REPO) else p) for p in paths)
              + " - pytest would stop at collection; rename all but one (e.g. prefix with the layer)")
    if not found:
        print(f"test module names unique in {', '.join(str(r) for r in roots)}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
