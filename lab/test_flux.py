# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: HomeCluster developers
"""Tests of lab/flux without a cluster: the smart-HTTP Git server and the programs' command lines.

    python -m pytest -q lab/test_flux.py
"""

from __future__ import annotations

import subprocess
import sys
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import flux  # lab/flux.py


def git(*args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-c", "credential.helper=", *args], cwd=cwd, capture_output=True, text=True,
                          check=check, env={"PATH": "/usr/bin:/bin", "HOME": str(cwd or "/tmp"),
                                            "GIT_TERMINAL_PROMPT": "0"})


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "root"
    work = tmp_path / "work"
    git("init", "-q", "--bare", "-b", "main", str(root / "gitops.git"))
    git("init", "-q", "-b", "main", str(work))
    (work / "a.yaml").write_text("kind: ConfigMap\n")
    git("add", "a.yaml", cwd=work)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one", cwd=work)
    git("push", "-q", str(root / "gitops.git"), "main", cwd=work)
    password = tmp_path / "token"
    password.write_text("s3cret\n")
    flux.GitHandler.root = root.resolve()
    flux.GitHandler.password_file = password
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), flux.GitHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{httpd.server_address[1]}", tmp_path
    httpd.shutdown()
    httpd.server_close()


def test_clone_over_smart_http_with_the_token(server):
    addr, tmp = server
    git("clone", "-q", f"http://git:s3cret@{addr}/gitops.git", str(tmp / "clone"))
    assert (tmp / "clone" / "a.yaml").read_text() == "kind: ConfigMap\n"
    # the smart protocol, not the dumb one: the server advertises git-upload-pack
    out = subprocess.run(["curl", "-s", "-u", "git:s3cret", f"http://{addr}/gitops.git/info/refs?service=git-upload-pack"],
                         capture_output=True, check=True).stdout
    assert b"# service=git-upload-pack" in out and b"refs/heads/main" in out


def test_wrong_or_missing_token_and_push_are_refused(server):
    addr, tmp = server
    bad = git("clone", "-q", f"http://git:wrong@{addr}/gitops.git", str(tmp / "bad"), check=False)
    assert bad.returncode != 0
    none = git("clone", "-q", f"http://{addr}/gitops.git", str(tmp / "none"), check=False)
    assert none.returncode != 0
    git("clone", "-q", f"http://git:s3cret@{addr}/gitops.git", str(tmp / "clone"))
    (tmp / "clone" / "b.yaml").write_text("kind: Secret\n")
    git("add", "b.yaml", cwd=tmp / "clone")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "two", cwd=tmp / "clone")
    push = git("push", "-q", "origin", "main", cwd=tmp / "clone", check=False)
    assert push.returncode != 0 and "403" in push.stderr


def test_every_listener_is_on_the_given_address_and_dependencies_requeue_fast(tmp_path):
    cfg = {"dir": str(tmp_path), "kubeconfig": "/nonexistent", "address": "127.0.32.9", "port_base": 18100,
           "namespace": "flux-system"}
    sup = flux.Supervisor(cfg)
    (tmp_path / "logs").mkdir()
    for name in flux.PROGRAMS:
        args = sup.args(name)
        addrs = [a.split("=", 1)[1] for a in args if a.split("=", 1)[0].endswith(("-addr", "Addr"))]
        assert addrs and all(a.removeprefix("http://").startswith("127.0.32.9:181") for a in addrs), (name, args)
        assert "--enable-leader-election=false" in args
        assert ("--requeue-dependency=2s" in args) == (name in ("kustomize-controller", "helm-controller"))
    assert {port for _, port in flux.listeners(cfg)} <= set(range(18100, 18150))
