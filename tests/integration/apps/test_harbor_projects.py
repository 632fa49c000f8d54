# SPDX-License-Identifier: GPL-3.0-or-later
"""harbor_projects against the lab's Harbor API simulator (lab/harbor_sim), in this process on
loopback HTTPS: check mode predicts and writes nothing, apply creates, a rerun changes nothing,
a changed setting is updated, refusals carry Harbor's status and what to do."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

# An integration test (it needs the lab's simulator, which ansible-test units does not copy):
# the collection is imported from the repository's .collections link (make collection-link).
REPO = Path(__file__).resolve().parents[3]
LAB = REPO / "lab"
sys.path[:0] = [str(REPO / ".collections"), str(LAB / "harbor_sim"), str(LAB)]
import simkit
from ansible_collections.homecluster.platform.plugins.module_utils import _harbor as hu
from ansible_collections.homecluster.platform.plugins.modules import harbor_projects as mod
from hsim_server import make_server

ADMIN = "Lab-Harbor-Admin-0000"
CONFIG = {
    "users": [
        {"username": "admin", "password": ADMIN, "sysadmin": True},
        {"username": "dev", "password": "Dev-Password-000", "sysadmin": False},
    ]
}
REGISTRIES = [
    {
        "name": "docker-hub",
        "type": "docker-hub",
        "url": "https://hub.docker.com",
        "description": "",
        "insecure": False,
        "access_key": "",
        "access_secret": "",
    }
]


def project(name, **kw):
    out = {
        "name": name,
        "public": False,
        "proxy_cache": None,
        "auto_scan": True,
        "prevent_vul": False,
        "severity": "high",
        "auto_sbom_generation": False,
    }
    out.update(kw)
    return out


class Failed(Exception):
    pass


class FakeModule:
    def __init__(self, check_mode=False, update_secrets=False):
        self.check_mode = check_mode
        self.params = {"update_secrets": update_secrets}

    def fail_json(self, msg, **_):
        raise Failed(msg)


@pytest.fixture()
def sim(tmp_path):
    simkit.make_certs(str(tmp_path), "127.0.0.1", ca_name=[("CN", "test CA")], server_name="harbor")
    srv = make_server(CONFIG, "127.0.0.1", 0, str(tmp_path / "server.pem"), str(tmp_path / "server.key"))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv, f"https://127.0.0.1:{srv.server_address[1]}", str(tmp_path / "ca.pem")
    srv.shutdown()


def run(url, ca, registries, projects, *, check=False, user="admin", password=ADMIN):
    client = hu.HarborClient(url, user, password, ca_path=ca)
    result = {"created": [], "updated": [], "diff": {"before": {}, "after": {}}}
    module = FakeModule(check_mode=check)
    ids = mod.ensure_registries(module, client, registries, result) if registries else {}
    mod.ensure_projects(module, client, projects, ids, result)
    return result, client


def test_check_apply_rerun(sim):
    srv, url, ca = sim
    projects = [project("dockerhub", public=True, proxy_cache="docker-hub"), project("apps", prevent_vul=True)]
    result = run(url, ca, REGISTRIES, projects, check=True)[0]
    assert result["created"] == ["registry/docker-hub", "project/dockerhub", "project/apps"]
    assert len(srv.sim.state["projects"]) == 1 and not srv.sim.state["registries"]
    result = run(url, ca, REGISTRIES, projects)[0]
    assert result["created"] == ["registry/docker-hub", "project/dockerhub", "project/apps"]
    by_name = {p["name"]: p for p in srv.sim.state["projects"].values()}
    assert by_name["dockerhub"]["registry_id"] == 1 and by_name["dockerhub"]["metadata"]["public"] == "true"
    assert by_name["apps"]["metadata"] == {
        "public": "false",
        "auto_scan": "true",
        "prevent_vul": "true",
        "auto_sbom_generation": "false",
        "severity": "high",
    }
    result, client = run(url, ca, REGISTRIES, projects)
    assert result["created"] == [] and result["updated"] == []
    assert not [c for c in client.calls if c.startswith(("POST", "PUT"))]


def test_changed_setting_is_updated_and_diffed(sim):
    url, ca = sim[1:]
    run(url, ca, [], [project("apps")])
    result = run(url, ca, [], [project("apps", severity="critical")], check=True)[0]
    assert result["updated"] == ["project/apps"]
    assert result["diff"]["before"]["project/apps"]["metadata"]["severity"] == "high"
    assert result["diff"]["after"]["project/apps"]["metadata"]["severity"] == "critical"
    run(url, ca, [], [project("apps", severity="critical")])
    assert run(url, ca, [], [project("apps", severity="critical")])[0]["updated"] == []


def test_registry_secret_is_masked_and_not_compared(sim):
    srv, url, ca = sim
    reg = [dict(REGISTRIES[0], access_key="bot", access_secret="s3cr3t-token")]
    result = run(url, ca, reg, [])[0]
    assert result["diff"]["after"]["registry/docker-hub"]["access_secret"] == hu.SECRET_MASK
    assert srv.sim.state["registries"]["1"]["credential"]["access_secret"] == "s3cr3t-token"
    assert run(url, ca, reg, [])[0]["updated"] == []


def test_proxy_cache_cannot_change(sim):
    url, ca = sim[1:]
    run(url, ca, REGISTRIES, [project("apps")])
    with pytest.raises(Failed, match="cannot change a project's proxy cache"):
        run(url, ca, REGISTRIES, [project("apps", proxy_cache="docker-hub")])


def test_refusals_name_the_cause(sim):
    srv, url, ca = sim
    assert srv.sim.state["next_project"] == 2
    with pytest.raises(hu.HarborError, match=r"HTTP 401 .*check the Harbor username and password"):
        run(url, ca, [], [project("apps")], password="wrong")
    with pytest.raises(hu.HarborError, match=r"HTTP 403 .*system administrator"):
        run(url, ca, REGISTRIES, [], user="dev", password="Dev-Password-000")
    client = hu.HarborClient(url, "admin", ADMIN, ca_path=ca)
    client.request("POST", "/projects", body={"project_name": "x"})
    with pytest.raises(hu.HarborError, match="HTTP 409 CONFLICT"):
        client.request("POST", "/projects", body={"project_name": "x"})
    with pytest.raises(hu.HarborError, match="unknown field"):
        client.request("POST", "/projects", body={"project_name": "y", "metdata": {}})


def test_pagination_reads_every_page(sim):
    url, ca = sim[1:]
    client = hu.HarborClient(url, "admin", ADMIN, ca_path=ca)
    for i in range(130):
        client.request("POST", "/projects", body={"project_name": f"p{i}"})
    assert len(client.list_all("/projects")) == 131


def test_check_inputs():
    assert hu.check_inputs(REGISTRIES, [project("apps")]) == []
    problems = hu.check_inputs(
        [*REGISTRIES, dict(REGISTRIES[0], type="gitlab", url="ftp://x", access_key="k")],
        [project("Apps"), project("a", proxy_cache="quay")],
    )
    text = "; ".join(problems)
    assert "registries[1].name docker-hub is listed twice" in text
    assert "registries[1].type gitlab cannot back a proxy cache" in text
    assert "registries[1].url 'ftp://x' must be an http(s) URL" in text
    assert "give both access_key and access_secret" in text
    assert "projects[0].name 'Apps' is not a Harbor project name" in text
    assert "projects[1].proxy_cache quay is not one of the registries" in text
