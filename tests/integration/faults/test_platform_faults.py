# SPDX-License-Identifier: GPL-3.0-or-later
"""Fault matrix, platform cases: each fault gives an error that names what failed and what to do,
a rerun (fault gone) converges, and nothing is duplicated or regenerated.

Real components only: the lab's control plane (etcd, kube-apiserver, kwok) on 127.0.64.x, the
real helm against the lab's chart repository on 127.0.0.1:8864, real git, sops and age. The
Proxmox cases are in tests/integration/proxmox/test_proxmox_faults.py.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
from modrun import git

REPO = Path(__file__).resolve().parents[3]
CACHE = Path(os.environ.get("HOMECLUSTER_CACHE", Path.home() / ".cache" / "homecluster"))
BIN = CACHE / "bin"
ADDRESS = "127.0.64.10"
CHART_REPO = "http://127.0.0.1:8864"


def need(*tools):
    for t in tools:
        if not (BIN / t).exists() and not shutil.which(t):
            pytest.skip(f"{t} is not built yet (make tools)")


def env(**extra):
    e = dict(os.environ)
    e["PATH"] = f"{BIN}:{CACHE / 'venv' / 'bin'}:{e['PATH']}"
    e.update(extra)
    return e


def sh(*cmd, check=True, **kw):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, check=check, env=env(), **kw)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    need("kube-apiserver", "etcd", "kwok", "helm", "kubectl")
    state = tmp_path_factory.mktemp("faults")
    up = [REPO / "lab" / "kube", "up", "--dir", state / "kube", "--address", ADDRESS,
          "--node", "f-cp1=127.0.64.11:controlplane", "--node", "f-w1=127.0.64.21"]
    sh(*up)
    repo_env = {"HOMECLUSTER_CHART_REPO": CHART_REPO, "HOMECLUSTER_CHARTREPO_DIR": str(state / "chartrepo")}
    chartrepo = [REPO / "lab" / "chartrepo"]
    subprocess.run([*map(str, chartrepo), "up"], env=env(**repo_env), check=True, capture_output=True)
    lab = {"dir": state, "kubeconfig": str(state / "kube" / "admin.kubeconfig"), "up": up,
           "repo": lambda action: subprocess.run([*map(str, chartrepo), action], env=env(**repo_env), check=False,
                                                 capture_output=True)}
    yield lab
    lab["repo"]("down")
    sh(REPO / "lab" / "kube", "down", "--dir", state / "kube", check=False)


def hello(name="hello", namespace="faults", **values):
    return {"name": name, "namespace": namespace,
            "chart": {"name": "lab-hello", "version": "0.1.0", "repo": CHART_REPO},
            "values": {"replicaCount": 1, **values}, "ready": [{"kind": "Deployment", "name": name}]}


def deliver(collection_module, lab, components, **kw):
    return collection_module("platform_components", {"components": components, "kubeconfig": lab["kubeconfig"],
                                                     "timeout": 90, "poll_delay": 1, **kw})


def history(lab, name, namespace="faults"):
    out = sh(BIN / "helm", "--kubeconfig", lab["kubeconfig"], "history", name, "-n", namespace, "-o", "json",
             check=False)
    return json.loads(out.stdout) if out.returncode == 0 else []


def kubectl(lab, *args, stdin=None, check=True):
    return subprocess.run([str(BIN / "kubectl"), "--kubeconfig", lab["kubeconfig"], *args], input=stdin,
                          capture_output=True, text=True, check=check, env=env())


def test_chart_repository_down_then_rerun(collection_module, lab):
    lab["repo"]("down")
    try:
        res = deliver(collection_module, lab, [hello("repo-down")])
    finally:
        lab["repo"]("up")
    assert res.get("failed")
    msg = res["msg"]
    assert "repo-down" in msg and "127.0.0.1:8864" in msg, msg
    assert history(lab, "repo-down") == [], "nothing may be installed while the repository is down"
    res = deliver(collection_module, lab, [hello("repo-down")])
    assert not res.get("failed"), res.get("msg")
    assert res["changed"]
    again = deliver(collection_module, lab, [hello("repo-down")])
    assert not again.get("failed") and not again["changed"], again.get("changes")
    assert [h["status"] for h in history(lab, "repo-down")] == ["deployed"]


POLICY = """
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: faults-max-replicas}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
      - apiGroups: [apps]
        apiVersions: [v1]
        operations: [UPDATE]
        resources: [deployments]
  validations:
    - expression: "object.spec.replicas <= 2"
      message: "fault injection: more than 2 replicas refused"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: faults-max-replicas}
spec:
  policyName: faults-max-replicas
  validationActions: [Deny]
  matchResources:
    namespaceSelector:
      matchLabels: {kubernetes.io/metadata.name: faults}
"""


def test_helm_upgrade_refused_mid_layer_rolls_back_then_rerun(collection_module, lab):
    first = deliver(collection_module, lab, [hello("upgrade")])
    assert not first.get("failed"), first.get("msg")
    kubectl(lab, "apply", "-f", "-", stdin=POLICY)
    time.sleep(2)  # the API server's policy informer picks the binding up
    try:
        res = deliver(collection_module, lab, [hello("upgrade", replicaCount=3)])
        assert res.get("failed")
        msg = res["msg"]
        assert "upgrade" in msg and "more than 2 replicas refused" in msg, msg
        # --atomic: the failed upgrade was rolled back, the release serves the last good values
        statuses = [h["status"] for h in history(lab, "upgrade")]
        assert statuses[-1] == "deployed" and "failed" in statuses, statuses
        dep = json.loads(kubectl(lab, "-n", "faults", "get", "deployment", "upgrade", "-o", "json").stdout)
        assert dep["spec"]["replicas"] == 1
    finally:
        kubectl(lab, "delete", "-f", "-", "--ignore-not-found", stdin=POLICY)
    time.sleep(2)
    res = deliver(collection_module, lab, [hello("upgrade", replicaCount=3)])
    assert not res.get("failed"), res.get("msg")
    again = deliver(collection_module, lab, [hello("upgrade", replicaCount=3)])
    assert not again.get("failed") and not again["changed"], again.get("changes")
    deployed = [h for h in history(lab, "upgrade") if h["status"] == "deployed"]
    assert len(deployed) == 1, history(lab, "upgrade")


def test_api_server_restart_during_an_install_then_rerun(collection_module, lab):
    results = {}
    worker = threading.Thread(target=lambda: results.update(
        first=deliver(collection_module, lab, [hello("restart", replicaCount=2)])))
    worker.start()
    time.sleep(1.5)
    sh(REPO / "lab" / "kube", "down", "--keep-data", "--dir", lab["dir"] / "kube")
    sh(*lab["up"])
    worker.join(timeout=300)
    first = results["first"]
    if first.get("failed"):
        # a clear failure, naming the component; never a traceback or a silent success
        assert "restart" in first["msg"], first["msg"]
    res = deliver(collection_module, lab, [hello("restart", replicaCount=2)])
    if res.get("failed"):
        # The restart cut helm off mid-install: the release is left pending, which helm refuses to touch.
        # The rerun must say so and name the command that settles it; after it, the rerun converges.
        msg = res["msg"]
        assert "stuck in pending-" in msg, msg
        assert "helm uninstall restart -n faults" in msg or "helm rollback restart -n faults" in msg, msg
        fix = msg.split("run `", 1)[1].split("`", 1)[0].split()
        sh(BIN / "helm", "--kubeconfig", lab["kubeconfig"], *fix[1:])
        res = deliver(collection_module, lab, [hello("restart", replicaCount=2)])
    assert not res.get("failed"), res.get("msg")
    again = deliver(collection_module, lab, [hello("restart", replicaCount=2)])
    assert not again.get("failed") and not again["changed"], again.get("changes")
    assert [h["status"] for h in history(lab, "restart")][-1] == "deployed"
    pods = json.loads(kubectl(lab, "-n", "faults", "get", "pods", "-l", "app.kubernetes.io/instance=restart",
                              "-o", "json").stdout)["items"]
    assert len([p for p in pods if "deletionTimestamp" not in p["metadata"]]) == 2


REJECT_ONCE = """#!/bin/sh
# fault injection: refuse the first push only
if [ ! -f "$GIT_DIR/rejected-once" ]; then
  touch "$GIT_DIR/rejected-once"
  echo "fault injection: push refused" >&2
  exit 1
fi
"""


def test_git_push_rejected_then_rerun_pushes_one_commit(collection_module, tmp_path):
    bare = tmp_path / "remote.git"
    git("init", "--quiet", "--bare", "-b", "main", str(bare))
    hook = bare / "hooks" / "pre-receive"
    hook.write_text(REJECT_ONCE)
    hook.chmod(0o755)
    args = {"path": str(tmp_path / "clone"), "url": f"file://{bare}", "branch": "main",
            "files": [{"path": "clusters/lab/a.yaml", "content": "a: 1\n"}], "commit_message": "test: render"}
    res = collection_module("gitops_repo", args)
    assert res.get("failed")
    assert "push" in res["msg"].lower() and "fault injection: push refused" in res["msg"] + res.get("stderr", ""), res
    res = collection_module("gitops_repo", args)
    assert not res.get("failed"), res.get("msg")
    assert git("--git-dir", str(bare), "rev-list", "--count", "main").strip() == "1"
    again = collection_module("gitops_repo", args)
    assert not again.get("failed") and not again["changed"]
    assert git("--git-dir", str(bare), "rev-list", "--count", "main").strip() == "1"


def test_wrong_age_key_is_named_then_the_right_one_converges(collection_module, tmp_path):
    need("sops", "age-keygen")
    keys = {}
    for name in ("right", "wrong"):
        keys[name] = tmp_path / f"{name}.agekey"
        sh(BIN / "age-keygen", "-o", keys[name])
    recipient = next(line.split(": ", 1)[1] for line in keys["right"].read_text().splitlines()
                     if line.startswith("# public key"))
    dest = tmp_path / "secret.sops.yaml"
    base = {"dest": str(dest), "content": "stringData:\n  token: s3cr3t-fault-matrix\n", "age_recipients": [recipient]}
    first = collection_module("sops_file", {**base, "age_key_file": str(keys["right"])})
    assert not first.get("failed"), first.get("msg")
    before = dest.read_text()
    res = collection_module("sops_file", {**base, "age_key_file": str(keys["wrong"])})
    assert res.get("failed")
    assert str(keys["wrong"]) in res["msg"] or "age_key_file" in res["msg"], res["msg"]
    assert "s3cr3t-fault-matrix" not in json.dumps(res)
    assert dest.read_text() == before, "a failed decryption must leave the file alone"
    again = collection_module("sops_file", {**base, "age_key_file": str(keys["right"])})
    assert not again.get("failed") and not again["changed"], again
    assert dest.read_text() == before, "nothing re-encrypted on a rerun"


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs (root only): the controller's disk running full."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_while_writing_the_talosconfig_then_rerun(collection_module, tmp_path, small_disk):
    need("talosctl")
    secrets = tmp_path / "secrets.yaml"
    sh(BIN / "talosctl", "gen", "secrets", "-o", secrets)
    dest = small_disk / "talosconfig"
    args = {"dest": str(dest), "cluster_name": "lab", "cluster_endpoint": "https://127.0.64.10:6443",
            "secrets_file": str(secrets), "talos_endpoints": ["127.0.64.11"], "talosctl_path": str(BIN / "talosctl")}
    first = collection_module("talos_talosconfig", args)
    assert not first.get("failed"), first.get("msg")
    before = dest.read_text()
    filler = small_disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    res = collection_module("talos_talosconfig", {**args, "talos_endpoints": ["127.0.64.11", "127.0.64.12"]})
    assert res.get("failed")
    assert str(dest) in res["msg"] and "space" in res["msg"].lower(), res["msg"]
    assert dest.read_text() == before, "the old talosconfig must survive a failed write"
    assert (dest.stat().st_mode & 0o777) == 0o600
    filler.unlink()
    res = collection_module("talos_talosconfig", {**args, "talos_endpoints": ["127.0.64.11", "127.0.64.12"]})
    assert not res.get("failed") and res["changed"], res.get("msg")
    assert not res["renewed"], "the client certificate is kept: only the endpoints changed"
    again = collection_module("talos_talosconfig", {**args, "talos_endpoints": ["127.0.64.11", "127.0.64.12"]})
    assert not again["changed"]


# Another writer pushes while our push is in flight: the hook commits to the branch from a second
# clone (outside the push's quarantine), so receive-pack's compare-and-swap of refs/heads/main fails
# exactly as when two pushes race. Only the first push meets it.
RACE_ONCE = """#!/bin/sh
if [ ! -f "$GIT_DIR/raced-once" ]; then
  touch "$GIT_DIR/raced-once"
  bare="$(cd "$GIT_DIR" && pwd)"
  unset GIT_DIR GIT_QUARANTINE_PATH GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES GIT_PUSH_OPTION_COUNT
  other="$bare.other"
  rm -rf "$other" && git clone --quiet "$bare" "$other" >&2 && cd "$other" &&
    mkdir -p clusters/lab && echo "b: 2" > clusters/lab/other-writer.yaml &&
    git add clusters/lab/other-writer.yaml &&
    git -c user.name=other -c user.email=other@lab commit --quiet -m "other writer" &&
    git push --quiet origin HEAD:main >&2
fi
"""


def test_remote_moved_between_fetch_and_push_is_rebased_and_keeps_both_commits(collection_module, tmp_path):
    bare = tmp_path / "remote.git"
    git("init", "--quiet", "--bare", "-b", "main", str(bare))
    seed = tmp_path / "seed"
    git("clone", "--quiet", str(bare), str(seed))
    (seed / "README.md").write_text("gitops\n")
    git("add", "README.md", cwd=seed)
    git("commit", "--quiet", "-m", "seed", cwd=seed)
    git("push", "--quiet", "origin", "HEAD:main", cwd=seed)
    hook = bare / "hooks" / "pre-receive"
    hook.write_text(RACE_ONCE)
    hook.chmod(0o755)
    args = {"path": str(tmp_path / "clone"), "url": f"file://{bare}", "branch": "main",
            "files": [{"path": "clusters/lab/a.yaml", "content": "a: 1\n"}], "commit_message": "test: render"}
    res = collection_module("gitops_repo", args)
    assert not res.get("failed"), res
    assert (bare / "raced-once").exists(), "the race was not injected"
    assert res["push_attempts"] == 2, res
    log = git("--git-dir", str(bare), "log", "--format=%an %s", "main").splitlines()
    assert log == ["HomeCluster test: render", "other other writer", "t seed"] or \
        [line.split(" ", 1)[1] for line in log] == ["test: render", "other writer", "seed"], log
    tree = git("--git-dir", str(bare), "ls-tree", "-r", "--name-only", "main").split()
    assert {"clusters/lab/a.yaml", "clusters/lab/other-writer.yaml", "README.md"} <= set(tree)
    again = collection_module("gitops_repo", args)
    assert not again.get("failed") and not again["changed"], again
    assert git("--git-dir", str(bare), "rev-list", "--count", "main").strip() == "3"


def test_a_clone_left_behind_by_a_lost_race_is_rebased_on_the_rerun(collection_module, tmp_path):
    """A push refused for good (the remote moved, then the hook refused the retry too): the commit stays
    local; the rerun rebases it on the remote's new commit and pushes it, one commit."""
    bare = tmp_path / "remote.git"
    git("init", "--quiet", "--bare", "-b", "main", str(bare))
    args = {"path": str(tmp_path / "clone"), "url": f"file://{bare}", "branch": "main",
            "files": [{"path": "clusters/lab/a.yaml", "content": "a: 1\n"}], "commit_message": "test: render"}
    assert not collection_module("gitops_repo", args).get("failed")
    hook = bare / "hooks" / "pre-receive"
    hook.write_text(REJECT_ONCE)
    hook.chmod(0o755)
    args["files"] = [{"path": "clusters/lab/a.yaml", "content": "a: 2\n"}]
    refused = collection_module("gitops_repo", args)
    assert refused.get("failed") and "fault injection: push refused" in refused["msg"] + refused.get("stderr", "")
    other = tmp_path / "other"
    git("clone", "--quiet", str(bare), str(other))
    (other / "clusters" / "lab" / "b.yaml").write_text("b: 1\n")
    git("add", ".", cwd=other)
    git("-c", "user.email=other@lab", "commit", "--quiet", "-m", "other writer", cwd=other)
    git("push", "--quiet", "origin", "HEAD:main", cwd=other)
    check = collection_module("gitops_repo", args, check=True)
    assert not check.get("failed") and check["changed"] and check["pushed"], check
    assert git("--git-dir", str(bare), "rev-list", "--count", "main").strip() == "2", "check mode pushed"
    res = collection_module("gitops_repo", args)
    assert not res.get("failed"), res
    assert git("--git-dir", str(bare), "rev-list", "--count", "main").strip() == "3"
    assert git("--git-dir", str(bare), "show", "main:clusters/lab/a.yaml") == "a: 2\n"
    assert git("--git-dir", str(bare), "show", "main:clusters/lab/b.yaml") == "b: 1\n"
    assert not collection_module("gitops_repo", args)["changed"]


def test_both_writers_changing_one_file_is_named_and_nothing_is_rewritten(collection_module, tmp_path):
    bare = tmp_path / "remote.git"
    git("init", "--quiet", "--bare", "-b", "main", str(bare))
    args = {"path": str(tmp_path / "clone"), "url": f"file://{bare}", "branch": "main",
            "files": [{"path": "clusters/lab/a.yaml", "content": "a: 1\n"}], "commit_message": "test: render"}
    assert not collection_module("gitops_repo", args).get("failed")
    hook = bare / "hooks" / "pre-receive"
    hook.write_text(REJECT_ONCE)
    hook.chmod(0o755)
    args["files"] = [{"path": "clusters/lab/a.yaml", "content": "a: 2\n"}]
    assert collection_module("gitops_repo", args).get("failed")
    other = tmp_path / "other"
    git("clone", "--quiet", str(bare), str(other))
    (other / "clusters" / "lab" / "a.yaml").write_text("a: 3\n")
    git("commit", "--quiet", "-am", "other writer", cwd=other)
    git("push", "--quiet", "origin", "HEAD:main", cwd=other)
    res = collection_module("gitops_repo", args)
    assert res.get("failed"), res
    assert "conflict in clusters/lab/a.yaml" in res["msg"] and "run again" in res["msg"], res["msg"]
    assert git("--git-dir", str(bare), "show", "main:clusters/lab/a.yaml") == "a: 3\n", "the other writer's commit kept"
    assert not (tmp_path / "clone" / ".git" / "rebase-merge").exists(), "the rebase was not undone"
