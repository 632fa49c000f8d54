# SPDX-License-Identifier: GPL-3.0-or-later
"""The platform_apps_plan filter: components from the role's defaults, findings naming variables,
Harbor's secrets generated once and reused from the cluster's Secrets."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import yaml
from ansible_collections.homecluster.platform.plugins.filter.platform_apps import platform_apps_plan

DEFAULTS = yaml.safe_load(
    (Path(__file__).resolve().parents[4] / "roles" / "platform_apps" / "defaults" / "main.yml").read_text()
)


def settings(**kw):
    s = {k[len("platform_apps_") :]: v for k, v in DEFAULTS.items()}
    s.update(
        delivery="helm",
        domain="apps.example.org",
        knative=True,
        harbor=True,
        tekton=True,
        knative_gateway={"class": "istio", "name": "edge", "namespace": "istio-ingress", "service": "edge-istio"},
        harbor_gateway={"name": "edge", "namespace": "istio-ingress", "section": ""},
        harbor_bucket_storage_class="ceph-bucket",
    )
    s.update(kw)
    return s


def comp(plan, name):
    return next(c for c in plan["components"] if c["name"] == name)


def test_components_and_knative_settings():
    plan = platform_apps_plan(settings())
    assert plan["findings"] == []
    assert [c["name"] for c in plan["components"]] == [
        "knative-operator",
        "knative-serving",
        "knative-eventing",
        "harbor",
        "tekton-operator",
        "tekton-config",
    ]
    spec = comp(plan, "knative-serving")["manifests"][0]["spec"]
    assert spec["ingress"] == {"gateway-api": {"enabled": True}}
    assert spec["config"]["domain"] == {"apps.example.org": ""}
    assert spec["config"]["autoscaler"]["enable-scale-to-zero"] == "true"
    gw = yaml.safe_load(spec["config"]["gateway"]["external-gateways"])
    assert gw[0]["gateway"] == "istio-ingress/edge" and gw[0]["service"] == "istio-ingress/edge-istio"
    tc = comp(plan, "tekton-config")["manifests"][0]
    assert tc["metadata"] == {"name": "config"} and tc["spec"]["profile"] == "basic"


def test_harbor_secrets_created_once_and_kept():
    first = platform_apps_plan(settings())
    before = {
        m["metadata"]["name"]: m["stringData"]
        for m in comp(first, "harbor")["manifests_before"]
        if m["kind"] == "Secret"
    }
    assert (
        len(before["harbor-admin"]["HARBOR_ADMIN_PASSWORD"]) == 32
        and len(before["harbor-secret-key"]["secretKey"]) == 16
    )
    existing = {n: {k: base64.b64encode(v.encode()).decode() for k, v in d.items()} for n, d in before.items()}
    again = platform_apps_plan(settings(), existing)
    after = {
        m["metadata"]["name"]: m["stringData"]
        for m in comp(again, "harbor")["manifests_before"]
        if m["kind"] == "Secret"
    }
    assert after == before
    assert again["harbor"]["password"] == before["harbor-admin"]["HARBOR_ADMIN_PASSWORD"]


def test_harbor_s3_on_the_bucket_claim_and_oidc_sensitive():
    plan = platform_apps_plan(
        settings(
            harbor_oidc_issuer="https://auth.example.org/application/o/harbor/",
            harbor_oidc_client_secret="from-identity",
        )
    )
    h = comp(plan, "harbor")
    obc = next(m for m in h["manifests_before"] if m["kind"] == "ObjectBucketClaim")
    assert obc["spec"] == {"bucketName": "harbor-registry", "storageClassName": "ceph-bucket"}
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in h["values"]["registry"]["registry"]["extraEnvVars"]}
    assert env["REGISTRY_STORAGE_S3_ACCESSKEY"] == {"name": "harbor-registry", "key": "AWS_ACCESS_KEY_ID"}
    assert h["sensitive"] is True
    oidc = json.loads(h["values"]["core"]["configureUserSettings"])
    assert oidc["auth_mode"] == "oidc_auth" and oidc["oidc_client_secret"] == "from-identity"
    assert oidc["oidc_endpoint"] == "https://auth.example.org/application/o/harbor"
    assert (
        platform_apps_plan(settings(harbor_storage="rbd"))["components"][3]["manifests_before"][-1]["kind"] == "Secret"
    )


def test_findings_name_the_variable():
    plan = platform_apps_plan(
        settings(
            domain="nodots",
            knative_networking="istio",
            tekton_profile="full",
            harbor_admin_password="short",
            harbor_oidc_issuer="http://auth",
            harbor_oidc_client_secret="",
            harbor_projects=[{"name": "x", "proxy_cache": "nope"}],
        )
    )
    got = {f["variable"] for f in plan["findings"]}
    assert plan["components"] == []
    for var in (
        "platform_apps_domain",
        "platform_apps_knative_networking",
        "platform_apps_tekton_profile",
        "platform_apps_harbor_admin_password",
        "platform_apps_harbor_oidc_issuer",
        "platform_apps_harbor_oidc_client_secret",
        "platform_apps_harbor_projects",
    ):
        assert var in got, var
    assert platform_apps_plan(settings(knative_networking="istio", istio_ambient=False))["findings"] == []
