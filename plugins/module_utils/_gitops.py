# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: HomeCluster developers
"""Render files into a GitOps repository clone: one commit and one push per real change.

Shared by homecluster.platform.gitops_repo and the Flux delivery of platform_components. Secrets
reach the repository only SOPS-encrypted; plaintext travels through pipes.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from ansible.module_utils.common.text.converters import to_bytes, to_text
from ansible_collections.homecluster.platform.plugins.module_utils._git import Git, GitError, PushRaced
from ansible_collections.homecluster.platform.plugins.module_utils._sops import Sops, SopsError, detect_format, masked

CHANGE_LETTER = {"added": "A", "modified": "M", "deleted": "D"}


def check_relpath(module, path, what):
    norm = os.path.normpath(path)
    if os.path.isabs(path) or norm.startswith("..") or norm in (".", "") or norm.split(os.sep)[0] == ".git":
        module.fail_json(msg=f"{what} {path!r} must be a relative path inside the repository (and not in .git)")
    return norm


def validate(module, p):
    seen = set()
    for item in p["files"]:
        item["path"] = check_relpath(module, item["path"], "files[].path")
        if item["state"] == "present" and item["content"] is None:
            module.fail_json(msg=f"files[].content is required for {item['path']} (or set state: absent)")
        if item["path"] in seen:
            module.fail_json(msg=f"{item['path']} is listed twice in files/sops_files")
        seen.add(item["path"])
    for item in p["sops_files"]:
        item["path"] = check_relpath(module, item["path"], "sops_files[].path")
        if item["path"] in seen:
            module.fail_json(msg=f"{item['path']} is listed twice in files/sops_files")
        seen.add(item["path"])
        item["format"] = detect_format(item["path"], item["format"])
    bad = [r for r in p["age_recipients"] if not r.startswith("age1")]
    if bad:
        module.fail_json(msg=f"age_recipients must be age public keys (age1...): {', '.join(bad)}")
    if p["sops_files"] and not module.check_mode:
        # Check mode may run before the key pair exists; a real run needs both.
        if not p["age_recipients"]:
            module.fail_json(msg="age_recipients is required when secrets are given")
        if not p["age_key_file"] or not os.path.isfile(p["age_key_file"]):
            module.fail_json(msg=f"age_key_file {p['age_key_file']!r} is required to compare committed secrets "
                                 "and must exist (generate it with homecluster.platform.age_keypair)")


def prepare_clone(module, p, git, workdir, check_mode=False):
    """Make sure workdir is a clone of url; return (base_rev, needs_ff, ahead).

    A clone whose own unpushed commits (all by this module's author) sit beside newer remote commits,
    because a push lost a race with another writer, is rebased onto the remote branch (check mode
    only plans against the remote branch). Commits by anyone else make it refuse.
    """
    branch = p["branch"]
    if not os.path.isdir(os.path.join(workdir, ".git")):
        if os.path.exists(workdir) and os.listdir(workdir):
            module.fail_json(msg=f"{workdir} exists and is not a git clone: remove it or choose another path")
        git.init(p["url"])
    elif git.remote_url() != p["url"]:
        git.set_remote_url(p["url"])
    remote_rev = None
    if git.remote_has_branch(branch):
        git.fetch(branch)
        remote_rev = git.rev(f"refs/remotes/origin/{branch}")
    local_rev = git.rev(f"refs/heads/{branch}")
    if local_rev is None or local_rev == remote_rev:
        return remote_rev, local_rev is None and remote_rev is not None, False
    if remote_rev is None:
        return local_rev, False, True
    if git.is_ancestor(local_rev, remote_rev):
        return remote_rev, True, False
    if git.is_ancestor(remote_rev, local_rev):
        return local_rev, False, True
    return diverged(module, p, git, workdir, remote_rev=remote_rev, local_rev=local_rev, check_mode=check_mode)


def diverged(module, p, git, workdir, *, remote_rev, local_rev, check_mode):
    """Local and remote both moved: rebase the module's own unpushed commits, refuse anyone else's."""
    branch = p["branch"]
    if set(git.authors(remote_rev, local_rev)) != {p["author_email"]}:
        module.fail_json(msg=f"the local clone {workdir} has diverged from origin/{branch}: push or drop its "
                             "commits (or remove the clone, it is re-created) and run again")
    if check_mode:
        return remote_rev, False, True
    dirty = git.dirty()
    if dirty:
        module.fail_json(msg=f"the local clone {workdir} has uncommitted changes ({', '.join(dirty[:5])}): "
                             "commit or discard them, or remove the clone (it is re-created)")
    rebase_or_fail(module, git, branch)
    return git.rev(f"refs/heads/{branch}"), False, True


def plan(module, p, git, sops, base):
    """Compare desired content with the base revision; return the list of changes."""
    paths = [i["path"] for i in p["files"]] + [i["path"] for i in p["sops_files"]]
    existing = git.tree_files(base, paths)
    changes = []
    for item in p["files"]:
        path = item["path"]
        current = to_text(git.blob(base, path), errors="surrogate_or_strict") if path in existing else None
        if item["state"] == "absent":
            if current is not None:
                changes.append({"path": path, "change": "deleted", "secret": False, "before": current, "after": ""})
            continue
        if current != item["content"]:
            changes.append({"path": path, "change": "modified" if current is not None else "added", "secret": False,
                            "before": current or "", "after": item["content"], "data": to_bytes(item["content"])})
    for item in p["sops_files"]:
        path = item["path"]
        ciphertext = git.blob(base, path) if path in existing else None
        if not p["age_key_file"] or not os.path.isfile(p["age_key_file"]):
            # Check mode before the key exists: nothing can be compared, everything will be encrypted anew.
            changes.append({"path": path, "change": "modified" if ciphertext is not None else "added", "secret": True,
                            "reason": "age key not generated yet", "before": "", "after": "<secret>\n", "item": item})
            continue
        try:
            changed, reason, current = sops.needs_update(ciphertext, item["content"], path, item["format"],
                                                         recipients=p["age_recipients"],
                                                         encrypted_regex=item["encrypted_regex"])
        except SopsError as e:
            e.msg = f"cannot decrypt the committed {path} with age_key_file: {e.msg}"
            e.fail(module)
        if not changed:
            continue
        before, after = masked(to_text(current) if current is not None else None, item["content"], item["format"],
                               item["encrypted_regex"])
        changes.append({"path": path, "change": "modified" if ciphertext is not None else "added", "secret": True,
                        "reason": reason, "before": before, "after": after, "item": item})
    return changes


def write_file(root, path, data, mode):
    full = os.path.join(root, path)
    os.makedirs(os.path.dirname(full) or root, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(full), prefix=".homecluster-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, full)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def rebase_or_fail(module, git, branch):
    try:
        git.rebase(branch, f"refs/remotes/origin/{branch}")
    except GitError as e:
        e.msg += (f": the remote branch {branch} changed the same files as this run. Resolve it in the GitOps "
                  "repository (or remove the local clone to take the remote as it is) and run again")
        e.fail(module)


def push_with_rebase(module, p, git, attempts=3):
    """Push; when another writer pushed first, fetch, rebase this run's commit on theirs and push again."""
    branch = p["branch"]
    for attempt in range(1, attempts + 1):
        try:
            git.push(branch)
            return attempt
        except PushRaced as e:
            if attempt == attempts:
                e.msg += f", {attempts} times in a row; run again when the other writer is done"
                raise
            git.fetch(branch)
            rebase_or_fail(module, git, branch)
    return attempts


def sync_branch(module, p, git, base, needs_ff):
    """Put the work tree on the branch at base (fast-forward or first checkout); refuse a dirty tree."""
    branch = p["branch"]
    dirty = git.dirty()
    if dirty:
        module.fail_json(msg=f"the local clone {p['path']} has uncommitted changes ({', '.join(dirty[:5])}): "
                             "commit or discard them, or remove the clone (it is re-created)")
    if git.current_branch() != branch or needs_ff:
        if base is None:
            git.run("symbolic-ref", "HEAD", f"refs/heads/{branch}")
        elif git.rev(f"refs/heads/{branch}") is None:
            git.checkout_branch(branch, base)
        else:
            if git.current_branch() != branch:
                git.run("checkout", "--quiet", branch)
            if needs_ff:
                git.fast_forward(base)


def apply(module, p, git, sops, changes):
    if not changes:
        return None
    added, removed = [], []
    for c in changes:
        if c["change"] == "deleted":
            full = os.path.join(p["path"], c["path"])
            if os.path.exists(full):
                os.unlink(full)
            removed.append(c["path"])
            continue
        if c["secret"]:
            item = c["item"]
            data = sops.encrypt(item["content"], c["path"], item["format"], recipients=p["age_recipients"],
                                encrypted_regex=item["encrypted_regex"])
            write_file(p["path"], c["path"], data, 0o600)
        else:
            write_file(p["path"], c["path"], c["data"], 0o644)
        added.append(c["path"])
    git.add(added)
    git.remove(removed)
    body = "\n".join(f"  {CHANGE_LETTER[c['change']]} {c['path']}" for c in changes)
    return git.commit(f"{p['commit_message']}\n\n{body}\n")


def summary(change):
    out = {k: change[k] for k in ("path", "change", "secret")}
    if change.get("reason"):
        out["reason"] = change["reason"]
    return out


def run(module, p, check_mode, want_diff):
    """Render p['files'] and p['sops_files'] into the repository: at most one commit and one push.

    p holds the options of homecluster.platform.gitops_repo. Returns the module result.
    """
    validate(module, p)
    ssh = None
    if p.get("ssh_key_file"):
        ssh = f"ssh -i {p['ssh_key_file']} -o IdentitiesOnly=yes -o BatchMode=yes"
    workdir = p["path"]
    scratch = None

    def git_in(path):
        return Git(module, path, binary=p.get("git_path"), author_name=p["author_name"],
                   author_email=p["author_email"], ssh_command=ssh)

    git = git_in(workdir)
    if check_mode and not (os.path.isdir(os.path.join(workdir, ".git")) and git.remote_url() == p["url"]):
        # Look at the remote without creating or re-pointing the clone: a throw-away clone elsewhere.
        scratch = tempfile.mkdtemp(prefix="homecluster-gitops-check-")
        workdir = os.path.join(scratch, "repo")
        git = git_in(workdir)
    sops = Sops(module, binary=p.get("sops_path"), age_key_file=p["age_key_file"]) if p["sops_files"] else None
    try:
        base, needs_ff, ahead = prepare_clone(module, p, git, workdir, check_mode)
        changes = plan(module, p, git, sops, base)
        committed = bool(changes)
        will_push = p["push"] and (committed or ahead)
        result = {
            "changed": committed or bool(will_push),
            "committed": committed,
            "pushed": bool(will_push),
            "files_changed": [summary(c) for c in changes],
        }
        if want_diff:
            result["diff"] = [{"before_header": c["path"], "after_header": c["path"], "before": c["before"],
                               "after": c["after"]} for c in changes]
        if check_mode:
            result["commit"] = base
            return result
        sync_branch(module, p, git, base, needs_ff)
        commit = apply(module, p, git, sops, changes)
        if will_push:
            result["push_attempts"] = push_with_rebase(module, p, git)
        result["commit"] = git.rev("HEAD") if will_push else (commit or git.rev("HEAD"))
        return result
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
