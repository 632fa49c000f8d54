# SPDX-License-Identifier: GPL-3.0-or-later
"""The observability layer's alert rules and dashboard queries, checked by Prometheus's own rule
loader (rulefmt and the PromQL parser of github.com/prometheus/prometheus v0.316.0, the code
`promtool check rules` runs), built from rulecheck/ into the tools cache."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
ROLE = ROOT / "roles" / "observability"
RULES = ROLE / "files" / "rules" / "homelab.yaml"
CACHE = Path(os.environ.get("HOMECLUSTER_CACHE", Path.home() / ".cache" / "homecluster"))
BINARY = CACHE / "rulecheck" / "rulecheck"
STAMP = CACHE / "rulecheck" / "source.sha"


def source_digest() -> str:
    data = b"".join((HERE / "rulecheck" / n).read_bytes() for n in ("go.mod", "go.sum", "main.go"))
    return __import__("hashlib").sha256(data).hexdigest()


@pytest.fixture(scope="module")
def rulecheck() -> Path:
    """The checker, built once per source version (a rebuild only when rulecheck/ changes)."""
    digest = source_digest()
    if BINARY.exists() and STAMP.exists() and STAMP.read_text() == digest:
        return BINARY
    if shutil.which("go") is None:
        pytest.fail("go is needed to build the rule checker (tests/integration/observability/rulecheck)")
    BINARY.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["go", "build", "-trimpath", "-o", str(BINARY), "."], cwd=HERE / "rulecheck", check=True)
    STAMP.write_text(digest)
    return BINARY


def run(checker: Path, path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(checker), str(path)], capture_output=True, text=True, check=False)


def test_the_rules_pass(rulecheck: Path) -> None:
    result = run(rulecheck, RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    count = sum(len(g["rules"]) for g in yaml.safe_load(RULES.read_text())["groups"])
    assert f"{count} rules found" in result.stdout


def test_the_rules_cover_a_home_lab() -> None:
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    for needed in ("HomeclusterNodeNotReady", "HomeclusterEtcdQuorumAtRisk", "HomeclusterCephHealthError",
                   "HomeclusterCephOSDDown", "HomeclusterPersistentVolumeFilling", "HomeclusterCertificateExpiringSoon",
                   "HomeclusterFluxReconcileFailing", "HomeclusterKubernetesVersionSkew",
                   "HomeclusterTalosVersionSkew"):
        assert needed in alerts


@pytest.mark.parametrize("old,new,message", [
    ("etcd_server_has_leader == 0", "etcd_server_has_leader == (0", "unclosed left parenthesis"),
    ("for: 5m", "for: 5 minutes", "unknown unit"),
    ("summary: Node {{ $labels.node }} is not Ready",
     "summary: Node {{ $labels.node is not Ready", "annotation"),
    ("        labels: {severity: critical}", "        lables: {severity: critical}", "field lables not found"),
    ("      - alert: HomeclusterNodeUnschedulable", "      - record: HomeclusterNodeUnschedulable",
     "invalid field 'for' in recording rule"),
])
def test_a_planted_mistake_fails(rulecheck: Path, tmp_path: Path,
                                 old: str, new: str, message: str) -> None:
    text = RULES.read_text()
    assert old in text
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace(old, new, 1))
    result = run(rulecheck, bad)
    assert result.returncode == 1
    assert message in result.stdout


def test_the_dashboard_queries_parse(rulecheck: Path, tmp_path: Path) -> None:
    """Every dashboard query, as a recording rule, through the same PromQL parser."""
    rules = []
    for board in sorted((ROLE / "files" / "dashboards").glob("*.json")):
        for panel in json.loads(board.read_text())["panels"]:
            for target in panel["targets"]:
                name = f"dashboard:{board.stem.replace('-', '_')}:{panel['id']}"
                rules.append({"record": name, "expr": target["expr"]})
    assert rules
    path = tmp_path / "dashboards.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = run(rulecheck, path)
    assert result.returncode == 0, result.stdout
