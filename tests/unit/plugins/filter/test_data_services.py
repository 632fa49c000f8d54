# SPDX-License-Identifier: GPL-3.0-or-later
"""The data layer's plan: findings before any change, components, credentials kept."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml
from ansible_collections.homecluster.platform.plugins.filter.data_services import data_services_plan

DEFAULTS = Path(__file__).resolve().parents[4] / "roles" / "data_operators" / "defaults" / "main.yml"


@pytest.fixture
def settings():
    raw = yaml.safe_load(DEFAULTS.read_text())
    out = {k[len("data_operators_") :]: v for k, v in raw.items()}
    out.update(delivery="helm", cnpg=True, strimzi=True, arangodb=True, dragonfly=True, eck=True)
    out["postgres"] = [{"name": "app", "instances": 3, "roles": [{"name": "reader"}], "backup": {"enabled": True}}]
    out["kafka"] = [{"name": "events", "topics": [{"name": "orders"}], "users": [{"name": "shop"}]}]
    out["arangodb_deployments"] = [{"name": "graph", "mode": "Single"}]
    out["dragonfly_instances"] = [{"name": "cache"}]
    out["elasticsearch"] = [{"name": "search"}]
    return out


def errors(plan):
    return {f["variable"]: f["message"] for f in plan["findings"] if f["severity"] == "error"}


def component(plan, name):
    return next(c for c in plan["components"] if c["name"] == name)


def manifest(comp, kind):
    return next(m for m in comp["manifests"] if m["kind"] == kind)


def test_valid_inventory_has_no_findings_and_every_component(settings):
    plan = data_services_plan(settings)
    assert not errors(plan)
    names = [c["name"] for c in plan["components"]]
    assert names == [
        "cnpg",
        "strimzi",
        "arangodb",
        "dragonfly-operator",
        "eck",
        "barman-cloud",
        "pg-app",
        "kafka-events",
        "arango-graph",
        "dragonfly-cache",
        "es-search",
    ]
    barman = component(plan, "barman-cloud")
    assert barman["namespace"] == "cnpg-system" and barman["namespace_create"] is False
    assert barman["depends_on"] == ["cnpg"]
    pg = component(plan, "pg-app")
    assert pg["depends_on"] == ["cnpg", "barman-cloud"]
    assert pg["namespace"] == "app" and pg["pod_security"] == "restricted"
    cluster = manifest(pg, "Cluster")
    assert cluster["spec"]["plugins"][0]["name"] == "barman-cloud.cloudnative-pg.io"
    assert cluster["spec"]["storage"] == {"storageClass": "ceph-block", "size": "10Gi"}
    assert {r["kind"] for r in pg["ready"]} == {"Cluster", "ObjectBucketClaim"}
    kafka = component(plan, "kafka-events")
    assert manifest(kafka, "KafkaNodePool")["spec"]["storage"]["volumes"][0]["class"] == "openebs-hostpath"
    assert all(m["apiVersion"] == "kafka.strimzi.io/v1" for m in kafka["manifests"])


def test_credentials_are_generated_once_and_kept(settings):
    first = data_services_plan(settings)
    secrets = [m for c in first["components"] for m in c.get("manifests_before", []) if m["kind"] == "Secret"]
    assert len(secrets) == 5
    existing = {f"{s['metadata']['namespace']}/{s['metadata']['name']}": s["data"] for s in secrets}
    again = data_services_plan(settings, existing)
    kept = [m for c in again["components"] for m in c.get("manifests_before", []) if m["kind"] == "Secret"]
    assert [s["data"] for s in kept] == [s["data"] for s in secrets]
    fresh = data_services_plan(settings)
    regenerated = [m for c in fresh["components"] for m in c.get("manifests_before", []) if m["kind"] == "Secret"]
    assert regenerated[0]["data"]["password"] != secrets[0]["data"]["password"]
    assert base64.b64decode(secrets[0]["data"]["username"]) == b"app"


def test_missing_key_of_an_existing_secret_is_added_not_the_others(settings):
    existing = {"cache/cache-auth": {"other": "eA=="}}
    plan = data_services_plan(settings, existing)
    sec = component(plan, "dragonfly-cache")["manifests_before"][0]
    assert set(sec["data"]) == {"password"}


def test_removal_needs_the_opt_in_naming_the_instance(settings):
    settings["postgres"][0]["state"] = "absent"
    refused = errors(data_services_plan(settings))
    assert "add app to data_operators_remove_data" in refused["data_operators_postgres[0]"]
    settings["remove_data"] = ["app"]
    plan = data_services_plan(settings)
    assert not errors(plan)
    assert component(plan, "pg-app")["remove"] == {"data": True, "namespace": True}


def test_removal_refused_when_the_namespace_is_shared(settings):
    settings["postgres"][0].update(state="absent", namespace="shared")
    settings["dragonfly_instances"][0]["namespace"] = "shared"
    settings["remove_data"] = ["app"]
    refused = errors(data_services_plan(settings))
    assert "also holds data_operators_dragonfly_instances[0]" in refused["data_operators_postgres[0]"]


def test_local_class_for_a_single_replica_needs_the_opt_in(settings):
    settings["elasticsearch"][0]["nodes"] = 1
    refused = errors(data_services_plan(settings))
    assert "allow_local_single_replica" in refused["data_operators_elasticsearch[0].storage_class"]
    settings["elasticsearch"][0]["allow_local_single_replica"] = True
    assert not errors(data_services_plan(settings))


def test_bad_input_names_the_variable(settings):
    settings["postgres"][0].update(instancse=2, size="ten")
    settings["kafka"][0]["node_pools"] = [{"name": "p", "roles": ["zookeeper"]}]
    settings["arangodb_deployments"][0]["mode"] = "Multi"
    settings["strimzi"] = False
    refused = errors(data_services_plan(settings))
    assert refused["data_operators_postgres[0].instancse"].endswith("the nearest known field is instances")
    assert "volume size" in refused["data_operators_postgres[0].size"]
    assert "controller and/or broker" in refused["data_operators_kafka[0].node_pools[0].roles"]
    assert "Single or Cluster" in refused["data_operators_arangodb_deployments[0].mode"]
    assert "data_operators_strimzi: true" in refused["data_operators_kafka[0]"]


def test_backup_needs_the_plugin_and_monitors_are_optional(settings):
    settings["barman_cloud"] = False
    assert "data_operators_barman_cloud" in errors(data_services_plan(settings))["data_operators_postgres[0].backup"]
    settings["barman_cloud"] = True
    assert not any(m["kind"] == "PodMonitor" for m in component(data_services_plan(settings), "pg-app")["manifests"])
    settings["monitors"] = True
    settings["monitors_depends_on"] = ["prometheus-operator-crds"]
    pg = component(data_services_plan(settings), "pg-app")
    assert manifest(pg, "PodMonitor")["spec"]["selector"] == {"matchLabels": {"cnpg.io/cluster": "app"}}
    # Under helm a component of another layer cannot be named (one list is ordered); under flux it can.
    assert pg["depends_on"] == ["cnpg", "barman-cloud"]
    settings["delivery"] = "flux"
    assert component(data_services_plan(settings), "pg-app")["depends_on"][-1] == "prometheus-operator-crds"


def test_instances_sharing_a_namespace_render_the_same_namespace(settings):
    settings["postgres"][0]["namespace"] = "shared"
    settings["dragonfly_instances"][0]["namespace"] = "shared"
    plan = data_services_plan(settings)
    pg, cache = component(plan, "pg-app"), component(plan, "dragonfly-cache")
    assert pg["pod_security"] == cache["pod_security"] == "baseline"
    assert pg.get("namespace_labels") == cache.get("namespace_labels")
