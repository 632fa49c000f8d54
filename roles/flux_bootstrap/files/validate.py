# SPDX-License-Identifier: GPL-3.0-or-later
# Rendered by HomeCluster (homecluster.platform.flux_bootstrap); `make validate` runs it.
"""Validate this GitOps repository the way Flux will read it.

1. Build every Flux Kustomization path: each `spec.path` of a kustomize.toolkit.fluxcd.io
   Kustomization under clusters/, and each clusters/<cluster> directory (the sync path). A path
   with a kustomization.yaml is built with `kustomize build`; a path without one is built the way
   kustomize-controller does, from a kustomization.yaml generated over every manifest below it.
2. Validate every resulting manifest against a schema:
   --server       `kubectl apply --dry-run=server --validate=strict` against the cluster of
                  $KUBECONFIG: the API server's OpenAPI and the CRDs installed there;
   --kubeconform  `kubeconform -strict` against the Kubernetes JSON schemas and the CRD schemas
                  given with --schema-location (the CI workflow's way, no cluster needed).
   SOPS-encrypted manifests are validated without their `sops` metadata, each encrypted value
   replaced by an empty value of its type.

Exit status 1 names each path and manifest that failed.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")


def flux_paths() -> list[str]:
    paths = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "clusters").glob("*")) if p.is_dir()]
    for file in sorted((ROOT / "clusters").rglob("*.y*ml")):
        for doc in yaml.safe_load_all(file.read_text()):
            if (isinstance(doc, dict) and doc.get("kind") == "Kustomization"
                    and str(doc.get("apiVersion", "")).startswith("kustomize.toolkit.fluxcd.io/")):
                path = str(doc.get("spec", {}).get("path", "")).removeprefix("./").rstrip("/") or "."
                if path not in paths:
                    paths.append(path)
    return paths


def build(path: str) -> str:
    src = ROOT / path
    if not src.is_dir():
        raise RuntimeError(f"{path}: no such directory")
    if any((src / name).exists() for name in KUSTOMIZATION_FILES):
        return run(["kustomize", "build", str(src)])
    if not any(p.is_file() for ext in ("*.yaml", "*.yml", "*.json") for p in src.rglob(ext)):
        return ""  # kustomize-controller applies nothing (a stage with no component yet, apps/)
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "src"
        shutil.copytree(src, copy)
        run(["kustomize", "create", "--autodetect", "--recursive"], cwd=copy)
        return run(["kustomize", "build", str(copy)])


def run(cmd: list[str], cwd: Path | None = None, stdin: str | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, input=stdin, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])}: {(proc.stderr or proc.stdout).strip()}")
    return proc.stdout


def placeholder(value):
    """An encrypted value (ENC[AES256_GCM,data:...,type:T]) as a valid value of its type."""
    if isinstance(value, dict):
        return {k: placeholder(v) for k, v in value.items()}
    if isinstance(value, list):
        return [placeholder(v) for v in value]
    if isinstance(value, str) and value.startswith("ENC[") and value.endswith("]"):
        kind = value.rpartition("type:")[2].rstrip("]")
        return {"int": 0, "float": 0.0, "bool": False}.get(kind, "")
    return value


def strip_sops(text: str) -> str:
    docs = [d for d in yaml.safe_load_all(text) if d]
    for i, doc in enumerate(docs):
        if "sops" in doc:
            doc.pop("sops")
            docs[i] = placeholder(doc)
    return yaml.safe_dump_all(docs, sort_keys=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--server", action="store_true", help="validate against the cluster of $KUBECONFIG")
    mode.add_argument("--kubeconform", action="store_true", help="validate with kubeconform")
    parser.add_argument("--schema-location", action="append", default=[],
                        help="extra kubeconform schema location (the CRDs in use)")
    args = parser.parse_args()
    failed = 0
    for path in flux_paths():
        try:
            manifests = strip_sops(build(path))
            if not manifests.strip():
                print(f"ok   {path} (no manifests)")
                continue
            if args.server:
                run(["kubectl", "apply", "--dry-run=server", "--validate=strict", "-f", "-"], stdin=manifests)
            elif args.kubeconform:
                locations = [arg for loc in ["default", *args.schema_location] for arg in ("-schema-location", loc)]
                run(["kubeconform", "-strict", "-summary", *locations, "-"], stdin=manifests)
        except RuntimeError as exc:
            failed += 1
            print(f"FAIL {path}: {exc}")
            continue
        count = sum(1 for d in yaml.safe_load_all(manifests) if d)
        print(f"ok   {path} ({count} manifests{', validated' if args.server or args.kubeconform else ', built'})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
