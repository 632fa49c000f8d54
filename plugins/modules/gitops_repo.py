#!/usr/bin/python
# Copyright: HomeCluster developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: gitops_repo
short_description: Render files into a GitOps repository, commit and push only when content changed
version_added: 0.1.0
description:
  - Keeps a local clone of a GitOps repository (created when missing), brings it up to date with the
    remote branch, writes the given files, and makes B(one) commit and push when, and only when, the
    content of the repository changes.
  - Secrets are given in clear text through O(sops_files) and reach the repository only encrypted with
    C(sops) for age recipients. sops output differs on every run, so a committed secret is decrypted
    and its plaintext compared; it is re-encrypted only when the plaintext, the recipients or the
    encrypted_regex changed. Plaintext travels through pipes and is never written to disk.
  - Check mode looks at the remote branch (cloning into a temporary directory when the local clone does
    not exist yet) and reports which files would change; C(--diff) shows them, with secret values masked.
  - Files not listed are left alone; list a file with O(files[].state=absent) to remove it.
author:
  - HomeCluster developers (@homecluster)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: secret values are masked; the diff tells which keys change, never their values.
  idempotent:
    description: A second run with the same inputs reports no change.
    support: full
  platform:
    platforms: posix
options:
  path:
    description: Local clone of the repository. Created when missing. Owned by this module; local
      changes that are not committed make the module fail rather than lose them.
    type: path
    required: true
  url:
    description: URL of the remote repository (C(file://), C(https://), C(ssh://) or scp-like).
    type: str
    required: true
  branch:
    description: Branch to render into. Created on the remote by the first push when it does not exist.
    type: str
    default: main
  files:
    description: Files to render, relative to the repository root.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Path relative to the repository root.
        type: str
        required: true
      content:
        description: Full content of the file. Required when O(files[].state=present).
        type: str
      state:
        description: Whether the file should exist.
        type: str
        choices: [present, absent]
        default: present
  sops_files:
    description: Files to store SOPS-encrypted (secrets). The content is the plaintext; only ciphertext is written.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Path relative to the repository root (by convention ending in C(.sops.yaml)).
        type: str
        required: true
      content:
        description: Plaintext content.
        type: str
        required: true
      format:
        description: sops input/output type; V(auto) picks it from the file name.
        type: str
        choices: [auto, yaml, json, dotenv, binary]
        default: auto
      encrypted_regex:
        description: Keys whose values sops encrypts. The default encrypts the C(data) and C(stringData) of
          Kubernetes Secrets and leaves the rest readable; an empty string encrypts every value.
        type: str
        default: ^(data|stringData)$
  age_recipients:
    description: age public keys the secrets are encrypted for. Required when O(sops_files) is given.
    type: list
    elements: str
    default: []
  age_key_file:
    description: age private key file used to decrypt committed secrets for comparison. Required when
      O(sops_files) is given.
    type: path
  commit_message:
    description: Subject of the commit. The body lists the files added, modified and deleted.
    type: str
    default: "homecluster: render GitOps repository"
  author_name:
    description: Author and committer name of the commit.
    type: str
    default: HomeCluster
  author_email:
    description: Author and committer e-mail of the commit.
    type: str
    default: homecluster@localhost
  push:
    description: Push the branch to the remote. With V(false) commits stay in the local clone.
    type: bool
    default: true
  ssh_key_file:
    description: Private SSH key used to reach an C(ssh://) remote (sets C(GIT_SSH_COMMAND)).
    type: path
  git_path:
    description: Path of the git binary; found on PATH when not set.
    type: path
  sops_path:
    description: Path of the sops binary; found on PATH or in C(~/.cache/homecluster/bin) when not set.
    type: path
notes:
  - One call makes at most one commit, so a role that renders everything it owns in one call leaves
    exactly one commit per real change in the repository's history.
  - YAML and JSON secrets are compared as data, so a change only to comments or formatting of a secret
    does not re-encrypt it.
seealso:
  - module: homecluster.platform.sops_file
  - module: homecluster.platform.age_keypair
"""

EXAMPLES = r"""
- name: Render the cluster layout and the age key Secret into the GitOps repository
  homecluster.platform.gitops_repo:
    path: "{{ playbook_dir }}/.gitops/lab"
    url: ssh://git@git.example.org/home/fleet.git
    branch: main
    commit_message: "flux_bootstrap: cluster lab layout"
    files:
      - path: clusters/lab/infrastructure.yaml
        content: "{{ lookup('ansible.builtin.template', 'infrastructure.yaml.j2') }}"
      - path: clusters/lab/old.yaml
        state: absent
    sops_files:
      - path: clusters/lab/secrets/cloudflare.sops.yaml
        content: "{{ cloudflare_secret | to_nice_yaml }}"
    age_recipients: ["{{ age_public_key }}"]
    age_key_file: ~/.config/homecluster/lab/age.key
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
commit:
  description: Commit the branch points to after the run (the new commit when one was made).
  returned: success and the branch exists
  type: str
  sample: 3f1c2e9d0b6a4c8e9f00112233445566778899aa
committed:
  description: Whether a commit was made (or would be, in check mode).
  returned: always
  type: bool
pushed:
  description: Whether the branch was pushed (or would be, in check mode).
  returned: always
  type: bool
files_changed:
  description: Files that change, each with its change (added, modified, deleted) and the reason.
  returned: always
  type: list
  elements: dict
  sample: [{"path": "clusters/lab/infrastructure.yaml", "change": "modified", "secret": false}]
"""

import os
import shutil
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes, to_text
from ansible_collections.homecluster.platform.plugins.module_utils._git import Git, GitError
from ansible_collections.homecluster.platform.plugins.module_utils._sops import Sops, SopsError, detect_format, masked

CHANGE_LETTER = {"added": "A", "modified": "M", "deleted": "D"}


def check_relpath(module, path, what):
    norm = os.path.normpath(path)
    if os.path.isabs(path) or norm.startswith("..") or norm in (".", "") or norm.split(os.sep)[0] == ".git":
        module.fail_json(msg=f"{what} {path!r} must be a relative path inside the repository (and not in .git)")
    return norm


def validate(module):
    p = module.params
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


def prepare_clone(module, git, workdir):
    """Make sure workdir is a clone of url; return (base_rev, needs_ff, ahead)."""
    p = module.params
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
    module.fail_json(msg=f"the local clone {workdir} has diverged from origin/{branch}: push or drop its commits "
                         f"(or remove the clone, it is re-created) and run again")
    return None


def plan(module, git, sops, base):
    """Compare desired content with the base revision; return the list of changes."""
    p = module.params
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


def sync_branch(module, git, base, needs_ff):
    """Put the work tree on the branch at base (fast-forward or first checkout); refuse a dirty tree."""
    p = module.params
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


def apply(module, git, sops, changes):
    p = module.params
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


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "url": {"type": "str", "required": True},
            "branch": {"type": "str", "default": "main"},
            "files": {"type": "list", "elements": "dict", "default": [], "options": {
                "path": {"type": "str", "required": True},
                "content": {"type": "str"},
                "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            }},
            "sops_files": {"type": "list", "elements": "dict", "default": [], "options": {
                "path": {"type": "str", "required": True},
                "content": {"type": "str", "required": True, "no_log": True},
                "format": {"type": "str", "choices": ["auto", "yaml", "json", "dotenv", "binary"], "default": "auto"},
                "encrypted_regex": {"type": "str", "default": "^(data|stringData)$"},
            }},
            "age_recipients": {"type": "list", "elements": "str", "default": []},
            "age_key_file": {"type": "path", "no_log": False},
            "commit_message": {"type": "str", "default": "homecluster: render GitOps repository"},
            "author_name": {"type": "str", "default": "HomeCluster"},
            "author_email": {"type": "str", "default": "homecluster@localhost"},
            "push": {"type": "bool", "default": True},
            "ssh_key_file": {"type": "path", "no_log": False},
            "git_path": {"type": "path"},
            "sops_path": {"type": "path"},
        },
        supports_check_mode=True,
    )
    p = module.params
    validate(module)
    ssh = None
    if p["ssh_key_file"]:
        ssh = f"ssh -i {p['ssh_key_file']} -o IdentitiesOnly=yes -o BatchMode=yes"
    workdir = p["path"]
    scratch = None

    def git_in(path):
        return Git(module, path, binary=p["git_path"], author_name=p["author_name"], author_email=p["author_email"],
                   ssh_command=ssh)

    git = git_in(workdir)
    if module.check_mode and not (os.path.isdir(os.path.join(workdir, ".git")) and git.remote_url() == p["url"]):
        # Look at the remote without creating or re-pointing the clone: a throw-away clone elsewhere.
        scratch = tempfile.mkdtemp(prefix="homecluster-gitops-check-")
        workdir = os.path.join(scratch, "repo")
        git = git_in(workdir)
    sops = Sops(module, binary=p["sops_path"], age_key_file=p["age_key_file"]) if p["sops_files"] else None
    try:
        base, needs_ff, ahead = prepare_clone(module, git, workdir)
        changes = plan(module, git, sops, base)
        committed = bool(changes)
        will_push = p["push"] and (committed or ahead)
        result = {
            "changed": committed or will_push,
            "committed": committed,
            "pushed": bool(will_push),
            "files_changed": [summary(c) for c in changes],
        }
        if module._diff:
            result["diff"] = [{"before_header": c["path"], "after_header": c["path"], "before": c["before"],
                               "after": c["after"]} for c in changes]
        if module.check_mode:
            result["commit"] = base
            module.exit_json(**result)
        sync_branch(module, git, base, needs_ff)
        commit = apply(module, git, sops, changes)
        if will_push:
            git.push(p["branch"])
        result["commit"] = commit or git.rev("HEAD")
        module.exit_json(**result)
    except GitError as e:
        e.fail(module)
    except SopsError as e:
        e.fail(module)
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
