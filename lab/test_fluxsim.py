# SPDX-License-Identifier: GPL-3.0-or-later
"""fluxsim against the real lab control plane: Git sync, nested Flux Kustomizations, SOPS decryption,
and the kwok stages that move Flux objects to Ready."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

LAB = Path(__file__).resolve().parent
BIN = Path(os.environ.get("HOMECLUSTER_CACHE", Path.home() / ".cache/homecluster")) / "bin"
ENV = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
ADDRESS = "127.0.78.10"


def need(*tools):
    for t in tools:
        if not shutil.which(t, path=ENV["PATH"]):
            pytest.skip(f"{t} is not built yet (make tools)")


def run(*cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, check=True, env=kw.pop("env", ENV), **kw)


@pytest.fixture(scope="module")
def kube(tmp_path_factory):
    need("kube-apiserver", "etcd", "kwok", "kubectl", "git", "sops", "age-keygen")
    state = tmp_path_factory.mktemp("fluxsim-kube")
    run(sys.executable, str(LAB / "kube.py"), "up", "--dir", str(state), "--address", ADDRESS, "--etcd-port", "23790")
    yield str(state / "admin.kubeconfig")
    subprocess.run([sys.executable, str(LAB / "kube.py"), "down", "--dir", str(state)], env=ENV, check=False)


def kubectl(kubeconfig, *args, stdin=None):
    return run("kubectl", "--kubeconfig", kubeconfig, *args, input=stdin).stdout


def test_sync_decrypts_and_applies(kube, tmp_path):
    need("git", "sops", "age-keygen")
    kubectl(kube, "apply", "-f", str(LAB / "charts/flux-operator/crds"))
    kubectl(kube, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    kubectl(kube, "create", "namespace", "flux-system")
    key = tmp_path / "age.key"
    run("age-keygen", "-o", str(key))
    public = run("age-keygen", "-y", str(key)).stdout.strip()
    kubectl(kube, "create", "secret", "generic", "sops-age", "-n", "flux-system",
            f"--from-file=age.agekey={key}")

    work = tmp_path / "work"
    (work / "clusters/t").mkdir(parents=True)
    (work / "infra/x").mkdir(parents=True)
    (work / "clusters/t/infra.yaml").write_text(
        "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\n"
        "metadata: {name: infra-x, namespace: flux-system}\n"
        "spec:\n  path: ./infra/x\n  sourceRef: {kind: GitRepository, name: flux-system}\n"
        "  decryption: {provider: sops, secretRef: {name: sops-age}}\n")
    (work / "infra/x/ns.yaml").write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: xns}\n")
    secret = ("apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: xns}\n"
              "stringData: {token: fluxsim-secret-1}\n")
    encrypted = run("sops", "encrypt", "--filename-override", "s.sops.yaml", "--age", public,
                    "--encrypted-regex", "^(data|stringData)$", input=secret, cwd=tmp_path).stdout
    assert "fluxsim-secret-1" not in encrypted
    (work / "infra/x/s.sops.yaml").write_text(encrypted)
    bare = tmp_path / "remote.git"
    run("git", "init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    git_env = {**ENV, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
               "GIT_COMMITTER_EMAIL": "t@t"}
    run("git", "init", "--quiet", "--initial-branch=main", cwd=work)
    run("git", "add", ".", cwd=work)
    run("git", "commit", "--quiet", "-m", "init", cwd=work, env=git_env)
    run("git", "push", "--quiet", f"file://{bare}", "main", cwd=work)

    kubectl(kube, "apply", "-f", "-", stdin=json.dumps({
        "apiVersion": "fluxcd.controlplane.io/v1", "kind": "FluxInstance",
        "metadata": {"name": "flux", "namespace": "flux-system"},
        "spec": {"distribution": {"version": "2.10.x", "registry": "ghcr.io/fluxcd"},
                 "sync": {"kind": "GitRepository", "url": f"file://{bare}", "ref": "refs/heads/main",
                          "path": "clusters/t"}}}))
    out = run(sys.executable, str(LAB / "fluxsim.py"), "once", "--kubeconfig", kube, "--dir", str(tmp_path / "sim"))
    assert "applied Kustomization infra-x" in out.stdout, out
    token = kubectl(kube, "get", "secret", "s", "-n", "xns", "-o", "jsonpath={.data.token}")
    assert base64.b64decode(token).decode() == "fluxsim-secret-1"
    deadline = time.time() + 30
    while time.time() < deadline:
        ready = kubectl(kube, "get", "fluxinstance", "flux", "-n", "flux-system", "-o",
                        "jsonpath={.status.conditions[?(@.type=='Ready')].status}")
        ks = kubectl(kube, "get", "kustomization", "infra-x", "-n", "flux-system", "-o",
                     "jsonpath={.status.observedGeneration}")
        if ready == "True" and ks == "1":
            break
        time.sleep(0.5)
    assert ready == "True" and ks == "1"
