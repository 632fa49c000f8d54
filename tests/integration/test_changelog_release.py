# SPDX-License-Identifier: GPL-3.0-or-later
"""A changelog release with antsibull-changelog works on a copy of the tree: every fragment lands
in changelogs/changelog.yaml and CHANGELOG.rst under the new version, and the fragments are used up."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def test_release_collects_every_fragment(tmp_path):
    tool = shutil.which("antsibull-changelog")
    assert tool, "antsibull-changelog not on PATH (make venv)"
    for part in ("changelogs", "plugins", "meta", "roles"):
        shutil.copytree(REPO / part, tmp_path / part)
    shutil.copy(REPO / "galaxy.yml", tmp_path / "galaxy.yml")
    fragments = sorted((tmp_path / "changelogs" / "fragments").glob("*.yml"))
    assert fragments, "no changelog fragment to release"
    items = [item for f in fragments for section in (yaml.safe_load(f.read_text()) or {}).values()
             for item in (section if isinstance(section, list) else [section])]
    lint = subprocess.run([tool, "lint"], cwd=REPO, capture_output=True, text=True, check=False)
    assert lint.returncode == 0 and not lint.stdout.strip(), lint.stdout + lint.stderr
    out = subprocess.run([tool, "release", "--version", "99.0.0", "--date", "2026-12-02"], cwd=tmp_path,
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    changelog = (tmp_path / "CHANGELOG.rst").read_text()
    assert "v99.0.0\n=======" in changelog
    released = yaml.safe_load((tmp_path / "changelogs" / "changelog.yaml").read_text())["releases"]["99.0.0"]
    assert released["release_date"] == "2026-12-02"
    assert not list((tmp_path / "changelogs" / "fragments").glob("*.yml")), "fragments were not used up"
    for item in items:
        words = " ".join(str(item).split()[:6])
        assert words in " ".join(changelog.split()), f"missing from CHANGELOG.rst: {item[:80]}"
