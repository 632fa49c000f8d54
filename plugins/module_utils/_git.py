# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: HomeCluster developers
"""Private runner for git: a local clone of a GitOps repository that HomeCluster renders into."""

from __future__ import annotations

import os


class GitError(Exception):
    def __init__(self, msg, cmd=None, rc=None, stdout="", stderr=""):
        super().__init__(msg)
        self.msg = msg
        self.cmd = cmd
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr

    def fail(self, module, **extra):
        module.fail_json(msg=self.msg, cmd=self.cmd, rc=self.rc, stdout=self.stdout, stderr=self.stderr, **extra)


RACE_MARKERS = ("non-fast-forward", "fetch first", "failed to update ref", "cannot lock ref", "stale info")


class PushRaced(GitError):
    """The remote branch moved between our fetch and our push (another writer pushed first)."""


class Git:
    """Runs git in one work tree with a clean, predictable environment."""

    def __init__(self, module, path, *, binary=None, author_name="HomeCluster", author_email="homecluster@localhost",
                 ssh_command=None):
        self.module = module
        self.path = path
        self.binary = binary or module.get_bin_path("git", required=False)
        if not self.binary:
            module.fail_json(msg="git not found: install git on the controller or set git_path")
        self.env = {
            "LANG": "C", "LC_ALL": "C",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_AUTHOR_NAME": author_name, "GIT_AUTHOR_EMAIL": author_email,
            "GIT_COMMITTER_NAME": author_name, "GIT_COMMITTER_EMAIL": author_email,
            "GIT_CONFIG_NOSYSTEM": "1",
        }
        if ssh_command:
            self.env["GIT_SSH_COMMAND"] = ssh_command

    def run(self, *args, check=True, cwd=None, binary=False, data=None):
        cmd = [self.binary, *args]
        rc, out, err = self.module.run_command(cmd, cwd=cwd or self.path, environ_update=self.env,
                                               encoding=None if binary else "utf-8", data=data,
                                               binary_data=data is not None)
        if check and rc != 0:
            if binary:
                out, err = "", err.decode("utf-8", "replace")
            raise GitError(f"git {args[0]} failed in {cwd or self.path}", cmd=cmd, rc=rc, stdout=out, stderr=err)
        return rc, out, err

    def out(self, *args):
        return self.run(*args)[1].strip()

    # ----------------------------------------------------------------- clone and remote state
    def init(self, url):
        os.makedirs(self.path, mode=0o700, exist_ok=True)
        self.run("init", "--quiet")
        self.run("remote", "add", "origin", url)

    def remote_url(self):
        rc, out = self.run("config", "--get", "remote.origin.url", check=False)[:2]
        return out.strip() if rc == 0 else None

    def set_remote_url(self, url):
        if self.remote_url() is None:
            self.run("remote", "add", "origin", url)
        else:
            self.run("remote", "set-url", "origin", url)

    def remote_has_branch(self, branch):
        out = self.out("ls-remote", "--heads", "origin", f"refs/heads/{branch}")
        return bool(out)

    def fetch(self, branch):
        self.run("fetch", "--quiet", "--prune", "origin", f"+refs/heads/{branch}:refs/remotes/origin/{branch}")

    def rev(self, ref):
        rc, out = self.run("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)[:2]
        return out.strip() if rc == 0 else None

    def is_ancestor(self, older, newer):
        rc = self.run("merge-base", "--is-ancestor", older, newer, check=False)[0]
        return rc == 0

    def current_branch(self):
        rc, out = self.run("symbolic-ref", "--quiet", "--short", "HEAD", check=False)[:2]
        return out.strip() if rc == 0 else None

    def dirty(self):
        out = self.run("status", "--porcelain", "--untracked-files=all")[1]
        return [line[3:] for line in out.splitlines() if line.strip()]

    # ----------------------------------------------------------------- content at a revision
    def tree_files(self, rev, paths=None):
        if rev is None:
            return set()
        out = self.out("ls-tree", "-r", "--name-only", rev, "--", *(paths or []))
        return set(out.splitlines()) if out else set()

    def blob(self, rev, path):
        return self.run("cat-file", "blob", f"{rev}:{path}", binary=True)[1]

    # ----------------------------------------------------------------- changes
    def checkout_branch(self, branch, start=None):
        if start:
            self.run("checkout", "--quiet", "-B", branch, start)
        else:
            self.run("checkout", "--quiet", "--orphan", branch)

    def fast_forward(self, target):
        self.run("merge", "--quiet", "--ff-only", target)

    def add(self, paths):
        if paths:
            self.run("add", "--", *paths)

    def remove(self, paths):
        if paths:
            self.run("rm", "--quiet", "--cached", "--ignore-unmatch", "--", *paths)

    def commit(self, message):
        self.run("commit", "--quiet", "--no-verify", "--file", "-", data=message.encode())
        return self.rev("HEAD")

    def push(self, branch):
        try:
            self.run("push", "--quiet", "origin", f"HEAD:refs/heads/{branch}")
        except GitError as e:
            text = f"{e.stdout}\n{e.stderr}"
            if any(marker in text for marker in RACE_MARKERS):
                raise PushRaced(f"git push to origin/{branch} was rejected: the remote branch moved since it was "
                                "fetched (another writer pushed first)", cmd=e.cmd, rc=e.rc, stdout=e.stdout,
                                stderr=e.stderr) from None
            raise

    def authors(self, base, tip):
        """Author e-mail of each commit reachable from tip but not from base."""
        out = self.out("log", "--format=%ae", f"{base}..{tip}")
        return out.splitlines() if out else []

    def rebase(self, branch, onto):
        """Replay branch's own commits on onto; on a conflict the rebase is undone and the files named."""
        rc, out, err = self.run("rebase", "--quiet", onto, branch, check=False)
        if rc == 0:
            return
        conflicts = self.run("diff", "--name-only", "--diff-filter=U", check=False)[1].split()
        self.run("rebase", "--abort", check=False)
        raise GitError(f"git rebase of {branch} onto {onto} stopped on a conflict"
                       + (f" in {', '.join(conflicts)}" if conflicts else ""),
                       cmd=[self.binary, "rebase", onto, branch], rc=rc, stdout=out, stderr=err)
