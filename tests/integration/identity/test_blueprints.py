# SPDX-License-Identifier: GPL-3.0-or-later
"""The role's Authentik blueprints (templates/blueprint_*.yaml.j2) for the default groups and
applications: YAML that a loader knowing Authentik's tags (!Find, !KeyOf, !Env) reads, format
version 1, entries of the models the role means, every !KeyOf pointing at an entry id, a client
secret only for confidential clients and only through !Env."""

from __future__ import annotations

import json
from pathlib import Path

import jinja2
import pytest
import yaml

ROLE = Path(__file__).resolve().parents[3] / "roles" / "platform_identity"
MODELS = {"authentik_core.group", "authentik_providers_oauth2.oauth2provider", "authentik_core.application",
          "authentik_policies.policybinding"}


class Tag:
    def __init__(self, tag: str, value):
        self.tag, self.value = tag, value


class BlueprintLoader(yaml.SafeLoader):
    """Authentik's blueprint tags, kept as Tag objects."""


def construct_tag(loader: BlueprintLoader, node: yaml.Node) -> Tag:
    if isinstance(node, yaml.SequenceNode):
        return Tag(node.tag, loader.construct_sequence(node))
    return Tag(node.tag, loader.construct_scalar(node))


for tag in ("!Find", "!KeyOf", "!Env"):
    BlueprintLoader.add_constructor(tag, construct_tag)


def render(name: str, **variables) -> dict:
    env = jinja2.Environment(autoescape=False)  # noqa: S701 - YAML, not HTML
    env.filters["to_json"] = json.dumps
    env.filters["bool"] = bool
    text = env.from_string((ROLE / "templates" / name).read_text()).render(**variables)
    return yaml.load(text, Loader=BlueprintLoader)  # noqa: S506 - a SafeLoader with three tag constructors


def defaults() -> dict:
    d = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    apps = json.loads(json.dumps(d["platform_identity_applications"]).replace(
        "{{ platform_edge_domain | default('home.arpa', true) }}", "example.org"))
    return {"groups": d["platform_identity_groups"], "apps": apps}


def test_groups_blueprint() -> None:
    bp = render("blueprint_groups.yaml.j2", platform_identity_groups=defaults()["groups"])
    assert bp["version"] == 1
    entries = bp["entries"]
    assert [e["identifiers"]["name"] for e in entries] == ["admins", "read-only", "developers"]
    assert all(e["model"] == "authentik_core.group" and e["state"] == "present" for e in entries)
    assert [e["attrs"]["is_superuser"] for e in entries] == [True, False, False]


@pytest.mark.parametrize("slug", ["kubernetes", "grafana", "harbor"])
def test_application_blueprint(slug: str) -> None:
    app = next(a for a in defaults()["apps"] if a["slug"] == slug)
    bp = render("blueprint_application.yaml.j2", app=app | {"groups": ["admins"]})
    assert bp["version"] == 1 and bp["metadata"]["name"] == f"homecluster-oidc-{slug}"
    entries = bp["entries"]
    assert {e["model"] for e in entries} <= MODELS
    ids = {e["id"] for e in entries if "id" in e}
    provider = next(e for e in entries if e["model"] == "authentik_providers_oauth2.oauth2provider")
    application = next(e for e in entries if e["model"] == "authentik_core.application")
    assert application["identifiers"] == {"slug": slug}
    key_of = application["attrs"]["provider"]
    assert isinstance(key_of, Tag) and key_of.tag == "!KeyOf" and key_of.value in ids
    attrs = provider["attrs"]
    assert attrs["client_id"] == slug and attrs["client_type"] == app["client_type"]
    assert attrs["redirect_uris"] == [{"matching_mode": "strict", "url": u} for u in app["redirect_uris"]]
    assert all(isinstance(attrs[k], Tag) and attrs[k].tag == "!Find"
               for k in ("authorization_flow", "invalidation_flow", "signing_key"))
    assert [m.value[1][1] for m in attrs["property_mappings"]] == ["openid", "email", "profile", "offline_access"]
    if app["client_type"] == "confidential":
        assert isinstance(attrs["client_secret"], Tag) and attrs["client_secret"].tag == "!Env"
        assert attrs["client_secret"].value == f"OIDC_CLIENT_SECRET_{slug.upper()}"
    else:
        assert "client_secret" not in attrs
    binding = next(e for e in entries if e["model"] == "authentik_policies.policybinding")
    assert binding["identifiers"]["group"].value == ["authentik_core.group", ["name", "admins"]]
