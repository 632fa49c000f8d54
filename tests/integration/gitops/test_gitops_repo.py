# SPDX-License-Identifier: GPL-3.0-or-later
"""gitops_repo against a real bare repository: one commit per real change, nothing otherwise."""

from __future__ import annotations

import subprocess

from modrun import git, run_module


def commits(remote, branch="main"):
    out = subprocess.run(["git", "--git-dir", remote.removeprefix("file://"), "rev-list", "--count", branch],
                         capture_output=True, text=True, check=False)
    return int(out.stdout.strip()) if out.returncode == 0 else 0


def args(tmp_path, remote, files, **extra):
    return {"path": str(tmp_path / "clone"), "url": remote, "branch": "main", "files": files,
            "commit_message": "test: render", **extra}


def test_check_apply_check_apply_on_empty_remote(tmp_path, remote):
    files = [{"path": "clusters/lab/a.yaml", "content": "a: 1\n"}, {"path": "apps/README.md", "content": "apps\n"}]
    first = run_module("gitops_repo", args(tmp_path, remote, files), check=True)
    assert first["changed"] and first["committed"]
    assert {f["path"] for f in first["files_changed"]} == {"clusters/lab/a.yaml", "apps/README.md"}
    assert first["diff"][0]["after"]
    assert not (tmp_path / "clone").exists(), "check mode must not create the clone"
    assert commits(remote) == 0

    applied = run_module("gitops_repo", args(tmp_path, remote, files))
    assert applied["changed"] and applied["pushed"]
    assert commits(remote) == 1
    log = git("--git-dir", remote.removeprefix("file://"), "log", "--format=%B", "main")
    assert "test: render" in log and "A clusters/lab/a.yaml" in log

    again = run_module("gitops_repo", args(tmp_path, remote, files), check=True)
    assert not again["changed"] and again["files_changed"] == []
    again = run_module("gitops_repo", args(tmp_path, remote, files))
    assert not again["changed"]
    assert commits(remote) == 1


def test_one_value_one_commit_and_absent(tmp_path, remote):
    files = [{"path": "a.yaml", "content": "a: 1\n"}, {"path": "b.yaml", "content": "b: 1\n"}]
    run_module("gitops_repo", args(tmp_path, remote, files))
    files[0]["content"] = "a: 2\n"
    files[1] = {"path": "b.yaml", "state": "absent"}
    predicted = run_module("gitops_repo", args(tmp_path, remote, files), check=True)
    expected = [("a.yaml", "modified"), ("b.yaml", "deleted")]
    assert [(f["path"], f["change"]) for f in predicted["files_changed"]] == expected
    run_module("gitops_repo", args(tmp_path, remote, files))
    assert commits(remote) == 2
    assert run_module("gitops_repo", args(tmp_path, remote, files))["changed"] is False
    assert commits(remote) == 2


def test_follows_remote_changes_and_refuses_dirty_clone(tmp_path, remote):
    files = [{"path": "a.yaml", "content": "a: 1\n"}]
    run_module("gitops_repo", args(tmp_path, remote, files))
    # Someone else pushes a commit touching another file: the module fast-forwards, then commits on top.
    other = tmp_path / "other"
    git("clone", "--quiet", "--branch", "main", remote, str(other))
    (other / "z.txt").write_text("z\n")
    git("add", "z.txt", cwd=other)
    git("commit", "--quiet", "-m", "other", cwd=other)
    git("push", "--quiet", "origin", "HEAD:main", cwd=other)
    assert run_module("gitops_repo", args(tmp_path, remote, files))["changed"] is False
    assert (tmp_path / "clone" / "z.txt").exists()
    files[0]["content"] = "a: 3\n"
    run_module("gitops_repo", args(tmp_path, remote, files))
    assert commits(remote) == 3
    (tmp_path / "clone" / "stray.txt").write_text("x\n")
    files[0]["content"] = "a: 4\n"
    failed = run_module("gitops_repo", args(tmp_path, remote, files), expect_fail=True)
    assert "uncommitted changes" in failed["msg"]


def test_bad_input_fails_before_anything(tmp_path, remote):
    failed = run_module("gitops_repo", args(tmp_path, remote, [{"path": "../x", "content": "x"}]), expect_fail=True)
    assert "relative path" in failed["msg"]
    failed = run_module("gitops_repo", args(tmp_path, remote, [{"path": "x"}]), expect_fail=True)
    assert "content is required" in failed["msg"]
    assert not (tmp_path / "clone").exists()
