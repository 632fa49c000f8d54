# SPDX-License-Identifier: GPL-3.0-or-later
"""`ansible-galaxy collection build` publishes the collection without the lab, tests,
benchmarks, molecule scenarios or caches."""
from __future__ import annotations

import shutil
import subprocess
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXCLUDED_TOP = {"lab", "tests", "bench", "molecule", ".collections", ".ci", ".git", ".github", ".ansible", "Makefile"}


def test_tarball_holds_only_the_collection(tmp_path):
    galaxy = shutil.which("ansible-galaxy")
    assert galaxy, "ansible-galaxy not on PATH (make venv)"
    subprocess.run([galaxy, "collection", "build", "--force", "--output-path", str(tmp_path), str(REPO)],
                   check=True, capture_output=True, text=True)
    tarballs = list(tmp_path.glob("homecluster-platform-*.tar.gz"))
    assert len(tarballs) == 1
    with tarfile.open(tarballs[0]) as tar:
        names = tar.getnames()
    tops = {n.split("/")[0] for n in names}
    assert not tops & EXCLUDED_TOP, f"unexpected entries: {sorted(tops & EXCLUDED_TOP)}"
    assert "MANIFEST.json" in names and "FILES.json" in names
    assert "meta/runtime.yml" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert any(n.startswith("plugins/") for n in names)
