# Copyright: HomeCluster developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The data services layer as platform components: operators and instances from the inventory.

``data_services_plan(settings, existing)`` turns the role's variables into

- ``findings``: every input problem (rule, variable, message, severity), before anything changes;
- ``components``: the platform components (homecluster.platform.platform_component items);
- ``credentials``: the Secrets this layer owns (namespace, name), for the verify step.

``existing`` maps ``namespace/name`` of the credential Secrets already in the cluster to their
``data`` (base64, as read): a credential that exists is reused as it is, never generated again.
Call it once per run (set_fact): a missing credential is generated with ``secrets``.
"""

from __future__ import annotations

import base64
import difflib
import re
import secrets

LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
QUANTITY_RE = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|K|M|G|T|P)?$")
CRED_LABEL = "homecluster.io/credential"
LEVELS = ["privileged", "baseline", "restricted"]
BARMAN = "barman-cloud.cloudnative-pg.io"

# Instance kinds: settings key, component prefix, operator switch, fields with their defaults.
COMMON = {
    "name": None,
    "namespace": "",
    "state": "present",
    "storage_class": "",
    "size": "10Gi",
    "allow_local_single_replica": False,
    "pod_security": "",
}
KINDS = {
    "postgres": {
        "prefix": "pg",
        "operator": "cnpg",
        "pod_security": "restricted",
        "local": False,
        "fields": dict(
            COMMON,
            instances=3,
            version="18",
            image="",
            database="app",
            owner="app",
            databases=[],
            roles=[],
            parameters={},
            backup={},
            monitor=None,
        ),
    },
    "kafka": {
        "prefix": "kafka",
        "operator": "strimzi",
        "pod_security": "baseline",
        "local": True,
        "fields": dict(COMMON, version="4.3.1", node_pools=[], topics=[], users=[], config={}),
    },
    "arangodb_deployments": {
        "prefix": "arango",
        "operator": "arangodb",
        "pod_security": "baseline",
        "local": False,
        "fields": dict(COMMON, mode="Cluster", version="3.12.2", image="", agents=3, dbservers=3, coordinators=2),
    },
    "dragonfly_instances": {
        "prefix": "dragonfly",
        "operator": "dragonfly",
        "pod_security": "baseline",
        "local": False,
        "fields": dict(COMMON, replicas=2, version="v1.39.0", image="", snapshot={}, args=[]),
    },
    "elasticsearch": {
        "prefix": "es",
        "operator": "eck",
        "pod_security": "baseline",
        "local": True,
        "fields": dict(COMMON, version="9.4.3", nodes=3, kibana=True, kibana_count=1, config={}),
    },
}
POOL_FIELDS = {"name": "pool", "roles": ["controller", "broker"], "replicas": 3, "size": "", "storage_class": ""}
TOPIC_FIELDS = {"name": None, "partitions": 3, "replicas": 0, "config": {}}
USER_FIELDS = {"name": None, "acls": []}
ROLE_FIELDS = {"name": None, "login": True, "superuser": False, "createdb": False, "in_roles": []}
DB_FIELDS = {"name": None, "owner": ""}
BACKUP_FIELDS = {"enabled": True, "schedule": "0 0 2 * * *", "retention": "30d", "bucket_storage_class": ""}
# Component (and Helm release) name of each operator.
OPERATOR_COMPONENTS = {
    "cnpg": "cnpg",
    "barman_cloud": "barman-cloud",
    "strimzi": "strimzi",
    "arangodb": "arangodb",
    "dragonfly": "dragonfly-operator",
    "eck": "eck",
}
SNAPSHOT_FIELDS = {"cron": "0 */6 * * *", "size": "", "storage_class": ""}


def _nearest(key, known):
    m = difflib.get_close_matches(str(key), list(known), n=1)
    return f"; the nearest known field is {m[0]}" if m else f" (known: {', '.join(sorted(known))})"


class _Plan:
    def __init__(self, s: dict, existing: dict):
        self.s = s
        self.existing = existing or {}
        self.findings: list = []
        self.components: list = []
        self.credentials: list = []

    # ---------------------------------------------------------------- findings
    def add(self, rule, variable, message, severity="error"):
        self.findings.append(
            {
                "rule": "data." + rule,
                "host": "",
                "severity": severity,
                "layer": "data",
                "variable": variable,
                "message": message,
            }
        )

    def fields(self, raw, defaults, where, rule):
        if not isinstance(raw, dict):
            self.add(rule, where, f"must be a mapping, not {raw!r}")
            return None
        for k in raw:
            if k not in defaults:
                self.add(rule, f"{where}.{k}", f"unknown field {k}{_nearest(k, defaults)}")
        out = {k: (raw[k] if k in raw and raw[k] is not None else v) for k, v in defaults.items()}
        for k in defaults:
            if k == "name" and not raw.get(k):
                self.add(rule, f"{where}.{k}", "is required")
        return out

    def count(self, value, where, rule, minimum=1):
        try:
            n = int(value)
        except (TypeError, ValueError):
            n = -1
        if isinstance(value, bool) or n < minimum:
            self.add(rule, where, f"must be a whole number of at least {minimum}, not {value!r}")
            return minimum
        return n

    def label(self, value, where, rule):
        if not isinstance(value, str) or not LABEL_RE.match(value):
            self.add(rule, where, f"must be a Kubernetes name (a DNS label: lower case, digits, -), not {value!r}")
            return False
        return True

    def storage(self, inst, where, rule, replicas, kind_local, *, size_key="size", class_key="storage_class"):
        cls = inst.get(class_key) or (
            self.s["local_storage_class"] if kind_local else self.s["replicated_storage_class"]
        )
        size = inst.get(size_key) or inst.get("size")
        if not isinstance(cls, str) or not LABEL_RE.match(cls.replace(".", "-")):
            self.add(rule, f"{where}.{class_key}", f"must be a StorageClass name, not {cls!r}")
        if not isinstance(size, str) or not QUANTITY_RE.match(size):
            self.add(rule, f"{where}.{size_key}", f"must be a volume size such as 10Gi, not {size!r}")
        if cls in self.s["local_storage_classes"] and replicas < 2 and not inst["allow_local_single_replica"]:
            self.add(
                "storage.local",
                f"{where}.{class_key}",
                f"{cls} is a local (node-bound) class and this instance has a single replica: its data lives on one "
                f"node's disk and is lost with it. Use {self.s['replicated_storage_class']} (replicated by Ceph), "
                "more replicas, or set allow_local_single_replica: true to accept it",
            )
        return cls, size

    # ---------------------------------------------------------------- credentials
    def secret(self, ns, name, values: dict, type_="Opaque", generate=()):
        """A credential Secret: existing values are kept; keys in ``generate`` missing from it are generated."""
        old = self.existing.get(f"{ns}/{name}") or {}
        data = {}
        for k, v in values.items():
            if k in old:
                data[k] = old[k]
            elif k in generate:
                data[k] = base64.b64encode(secrets.token_urlsafe(24).encode()).decode()
            else:
                data[k] = base64.b64encode(str(v).encode()).decode()
        self.credentials.append({"namespace": ns, "name": name})
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": type_,
            "metadata": {
                "name": name,
                "namespace": ns,
                "labels": {CRED_LABEL: "true", "app.kubernetes.io/managed-by": "homecluster"},
            },
            "data": data,
        }

    # ---------------------------------------------------------------- operators
    def operators(self):
        s = self.s
        ops = [
            ("cnpg", "cloudnative-pg", "cnpg_namespace", [{"kind": "Deployment", "name": "cnpg-cloudnative-pg"}]),
            (
                "strimzi",
                "strimzi-kafka-operator",
                "strimzi_namespace",
                [{"kind": "Deployment", "name": "strimzi-cluster-operator"}],
            ),
            (
                "arangodb",
                "kube-arangodb",
                "arangodb_namespace",
                [{"kind": "Deployment", "name": "arango-arangodb-operator"}],
            ),
            (
                "dragonfly",
                "dragonfly-operator",
                "dragonfly_namespace",
                [{"kind": "Deployment", "name": "dragonfly-operator"}],
            ),
            ("eck", "eck-operator", "eck_namespace", [{"kind": "StatefulSet", "name": "elastic-operator"}]),
        ]
        for key, chart, ns_key, ready in ops:
            enabled = bool(s[key])
            self.label(s[ns_key], f"data_operators_{ns_key}", "operator.namespace")
            level = s[f"{key}_pod_security"]
            if level not in LEVELS:
                self.add(
                    "operator.pod_security",
                    f"data_operators_{key}_pod_security",
                    f"must be privileged, baseline or restricted, not {level!r}",
                )
            values = dict(s[f"{key}_values"] or {})
            if key == "strimzi":
                # Watch every namespace: instances live in namespaces of their own.
                values = dict({"watchAnyNamespace": True}, **values)
            self.components.append(
                {
                    "name": OPERATOR_COMPONENTS[key],
                    "enabled": enabled,
                    "namespace": s[ns_key],
                    "pod_security": level,
                    "delivery": s["delivery"],
                    "chart": {"name": chart, "version": str(s[f"{key}_version"]), "repo": s[f"{key}_chart_repo"]},
                    "values": values,
                    "values_variable": f"data_operators_{key}_values",
                    "ready": ready,
                    "timeout": s["timeout"],
                }
            )
        # The Barman Cloud plugin runs next to the CloudNativePG operator (its namespace), with cert-manager's mTLS.
        self.components.append(
            {
                "name": "barman-cloud",
                "enabled": bool(s["cnpg"]) and bool(s["barman_cloud"]),
                "namespace": s["cnpg_namespace"],
                # The operator's component creates and labels the namespace; one owner (under flux, one
                # Kustomization) per Namespace object.
                "namespace_create": False,
                "delivery": s["delivery"],
                "depends_on": ["cnpg"],
                "chart": {
                    "name": "plugin-barman-cloud",
                    "version": str(s["barman_cloud_version"]),
                    "repo": s["cnpg_chart_repo"],
                },
                "values": dict(s["barman_cloud_values"] or {}),
                "values_variable": "data_operators_barman_cloud_values",
                "ready": [{"kind": "Deployment", "name": "barman-cloud-plugin-barman-cloud"}],
                "timeout": s["timeout"],
            }
        )

    # ---------------------------------------------------------------- instances
    def instances(self):  # noqa: PLR0912 - one flat list of rules reads best
        seen_ns: dict = {}
        planned = []
        remove = self.s["remove_data"]
        if not isinstance(remove, list) or not all(isinstance(x, str) for x in remove):
            self.add("remove", "data_operators_remove_data", "must be a list of instance names")
            remove = []
        names = set()
        for key, kind in KINDS.items():
            items = self.s[key]
            var = f"data_operators_{key}"
            if not isinstance(items, list):
                self.add("instance", var, "must be a list of instances")
                continue
            for i, raw in enumerate(items):
                where = f"{var}[{i}]"
                inst = self.fields(raw, kind["fields"], where, "instance")
                if inst is None or not self.label(inst["name"], f"{where}.name", "instance.name"):
                    continue
                inst["namespace"] = inst["namespace"] or inst["name"]
                self.label(inst["namespace"], f"{where}.namespace", "instance.namespace")
                cname = f"{kind['prefix']}-{inst['name']}"
                if cname in names:
                    self.add("instance.name", f"{where}.name", f"{inst['name']} is listed more than once")
                names.add(cname)
                if inst["state"] not in ("present", "absent"):
                    self.add("instance.state", f"{where}.state", f"must be present or absent, not {inst['state']!r}")
                level = inst["pod_security"] or self.s["instance_pod_security"].get(key, kind["pod_security"])
                if level not in LEVELS:
                    self.add(
                        "instance.pod_security",
                        f"{where}.pod_security",
                        f"must be privileged, baseline or restricted, not {level!r}",
                    )
                    level = "baseline"
                inst["pod_security"] = level
                if inst["state"] == "present" and not self.s[kind["operator"]]:
                    self.add(
                        "instance.operator",
                        where,
                        f"{inst['name']} needs its operator: set data_operators_{kind['operator']}: true",
                    )
                if inst["state"] == "present":
                    seen_ns.setdefault(inst["namespace"], []).append((where, level))
                planned.append((key, kind, inst, where, cname))
        # A namespace shared by instances takes the least strict level any of them needs (one label per namespace).
        ns_level = {ns: min((lv for _where, lv in users), key=LEVELS.index) for ns, users in seen_ns.items()}
        for key, kind, inst, where, cname in planned:
            inst["pod_security"] = ns_level.get(inst["namespace"], inst["pod_security"])
            getattr(self, "_" + key)(inst, where, cname, kind)
            comp = self.components[-1] if self.components and self.components[-1]["name"] == cname else None
            if comp is None:
                continue
            if inst["state"] == "absent":
                if inst["name"] not in remove:
                    self.add(
                        "remove.data",
                        where,
                        f"state absent on {inst['name']} would delete its data (the {kind['prefix']} instance, its "
                        f"volume claims{' and its backup bucket' if key == 'postgres' else ''} in namespace "
                        f"{inst['namespace']}): add {inst['name']} to data_operators_remove_data to delete them, "
                        "or keep state: present",
                    )
                others = [w for w, _level in seen_ns.get(inst["namespace"], [])]
                if others:
                    self.add(
                        "remove.shared",
                        where,
                        f"namespace {inst['namespace']} also holds {', '.join(others)}: "
                        f"removing {inst['name']} deletes "
                        "every volume claim in it; give each instance its own namespace before removing one",
                    )
                comp["remove"] = {"data": inst["name"] in remove, "namespace": inst["name"] in remove and not others}
        for n in remove:
            if not any(p[2]["name"] == n and p[2]["state"] == "absent" for p in planned):
                self.add(
                    "remove",
                    "data_operators_remove_data",
                    f"{n} is not an instance with state: absent; it is ignored",
                    "warning",
                )

    def _component(self, inst, cname, kind, manifests, ready, data_kinds, depends_on, before=()):  # noqa: PLR0917
        self.components.append(
            {
                "name": cname,
                "state": inst["state"],
                "namespace": inst["namespace"],
                "pod_security": inst["pod_security"],
                "delivery": self.s["delivery"],
                "depends_on": [OPERATOR_COMPONENTS.get(d, d) for d in depends_on if self.s.get(d, True)],
                "manifests_before": list(before),
                "manifests": manifests,
                "ready": ready,
                "data_kinds": data_kinds,
                "timeout": self.s["timeout"],
            }
        )

    def _meta(self, inst, name, labels=None):
        m = {
            "name": name,
            "namespace": inst["namespace"],
            "labels": {"app.kubernetes.io/managed-by": "homecluster", "homecluster.io/data-instance": inst["name"]},
        }
        if labels:
            m["labels"].update(labels)
        return m

    def _postgres(self, inst, where, cname, kind):
        n = inst["name"]
        replicas = self.count(inst["instances"], f"{where}.instances", "postgres")
        cls, size = self.storage(inst, where, "postgres", replicas, kind["local"])
        backup = (
            self.fields(inst["backup"] or {"enabled": False}, BACKUP_FIELDS, f"{where}.backup", "postgres.backup") or {}
        )
        if backup.get("enabled") and not (self.s["cnpg"] and self.s["barman_cloud"]):
            self.add(
                "postgres.backup",
                f"{where}.backup",
                "backups go through the Barman Cloud plugin: set data_operators_barman_cloud: true, "
                "or backup.enabled: false",
            )
        ns = inst["namespace"]
        for k in ("database", "owner"):
            self.label(str(inst[k]).replace("_", "-"), f"{where}.{k}", "postgres")
        before = [
            self.secret(
                ns,
                f"{n}-app",
                {"username": inst["owner"], "password": ""},
                "kubernetes.io/basic-auth",
                generate=("password",),
            )
        ]
        roles = []
        for j, raw_r in enumerate(inst["roles"] if isinstance(inst["roles"], list) else []):
            r = self.fields(raw_r, ROLE_FIELDS, f"{where}.roles[{j}]", "postgres.roles")
            if not r or not self.label(str(r["name"]).replace("_", "-"), f"{where}.roles[{j}].name", "postgres.roles"):
                continue
            sec = f"{n}-role-{str(r['name']).replace('_', '-')}"
            before.append(
                self.secret(
                    ns, sec, {"username": r["name"], "password": ""}, "kubernetes.io/basic-auth", generate=("password",)
                )
            )
            roles.append(
                {
                    "name": r["name"],
                    "ensure": "present",
                    "login": bool(r["login"]),
                    "superuser": bool(r["superuser"]),
                    "createdb": bool(r["createdb"]),
                    "inRoles": list(r["in_roles"]),
                    "passwordSecret": {"name": sec},
                }
            )
        spec = {
            "instances": replicas,
            "imageName": inst["image"] or f"ghcr.io/cloudnative-pg/postgresql:{inst['version']}",
            "primaryUpdateStrategy": "unsupervised",
            "enablePDB": True,
            "storage": {"storageClass": cls, "size": size},
            "bootstrap": {
                "initdb": {"database": inst["database"], "owner": inst["owner"], "secret": {"name": f"{n}-app"}}
            },
        }
        if roles:
            spec["managed"] = {"roles": roles}
        if inst["parameters"]:
            spec["postgresql"] = {"parameters": {k: str(v) for k, v in inst["parameters"].items()}}
        manifests = []
        data_kinds = ["Cluster", "Backup", "ScheduledBackup"]
        if backup.get("enabled"):
            store = f"{n}-backup"
            spec["plugins"] = [{"name": BARMAN, "isWALArchiver": True, "parameters": {"barmanObjectName": store}}]
            manifests += [
                {
                    "apiVersion": "objectbucket.io/v1alpha1",
                    "kind": "ObjectBucketClaim",
                    "metadata": self._meta(inst, store),
                    "spec": {
                        "bucketName": f"{ns}-{store}"[:63],
                        "storageClassName": backup["bucket_storage_class"] or self.s["object_storage_class"],
                    },
                },
                {
                    "apiVersion": "barmancloud.cnpg.io/v1",
                    "kind": "ObjectStore",
                    "metadata": self._meta(inst, store),
                    "spec": {
                        "retentionPolicy": backup["retention"],
                        "configuration": {
                            "destinationPath": f"s3://{ns}-{store}"[:68] + "/",
                            "endpointURL": self.s["s3_endpoint"],
                            "s3Credentials": {
                                "accessKeyId": {"name": store, "key": "AWS_ACCESS_KEY_ID"},
                                "secretAccessKey": {"name": store, "key": "AWS_SECRET_ACCESS_KEY"},
                            },
                            "wal": {"compression": "gzip"},
                            "data": {"compression": "gzip"},
                        },
                    },
                },
            ]
            data_kinds += ["ObjectBucketClaim", "ObjectStore"]
        manifests.append(
            {"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster", "metadata": self._meta(inst, n), "spec": spec}
        )
        for j, raw_d in enumerate(inst["databases"] if isinstance(inst["databases"], list) else []):
            d = self.fields(raw_d, DB_FIELDS, f"{where}.databases[{j}]", "postgres.databases")
            if not d or not self.label(
                str(d["name"]).replace("_", "-"), f"{where}.databases[{j}].name", "postgres.databases"
            ):
                continue
            manifests.append(
                {
                    "apiVersion": "postgresql.cnpg.io/v1",
                    "kind": "Database",
                    "metadata": self._meta(inst, f"{n}-{str(d['name']).replace('_', '-')}"),
                    "spec": {
                        "name": d["name"],
                        "owner": d["owner"] or inst["owner"],
                        "ensure": "present",
                        "cluster": {"name": n},
                    },
                }
            )
        if backup.get("enabled"):
            manifests.append(
                {
                    "apiVersion": "postgresql.cnpg.io/v1",
                    "kind": "ScheduledBackup",
                    "metadata": self._meta(inst, f"{n}-nightly"),
                    "spec": {
                        "schedule": backup["schedule"],
                        "backupOwnerReference": "self",
                        "cluster": {"name": n},
                        "method": "plugin",
                        "immediate": False,
                        "pluginConfiguration": {"name": BARMAN},
                    },
                }
            )
        monitor = self.s["monitors"] if inst["monitor"] is None else bool(inst["monitor"])
        if monitor:
            manifests.append(
                {
                    "apiVersion": "monitoring.coreos.com/v1",
                    "kind": "PodMonitor",
                    "metadata": self._meta(inst, n),
                    "spec": {
                        "selector": {"matchLabels": {"cnpg.io/cluster": n}},
                        "podMetricsEndpoints": [{"port": "metrics"}],
                    },
                }
            )
        ready = [
            {
                "api_version": "postgresql.cnpg.io/v1",
                "kind": "Cluster",
                "name": n,
                "after": "manifests",
                "condition": {"type": "Ready", "status": "True"},
            }
        ]
        if backup.get("enabled"):
            ready.insert(
                0,
                {
                    "api_version": "objectbucket.io/v1alpha1",
                    "kind": "ObjectBucketClaim",
                    "name": f"{n}-backup",
                    "after": "manifests",
                    "path": "status.phase",
                    "value": "Bound",
                },
            )
        deps = (
            ["cnpg"]
            + (["barman_cloud"] if backup.get("enabled") else [])
            + (list(self.s["monitors_depends_on"]) if monitor and self.s["delivery"] == "flux" else [])
        )
        self._component(inst, cname, kind, manifests, ready, data_kinds, deps, before)

    def _kafka(self, inst, where, cname, kind):
        n = inst["name"]
        pools_raw = inst["node_pools"] or [{"name": "dual"}]
        pools, brokers = [], 0
        for j, raw_p in enumerate(pools_raw if isinstance(pools_raw, list) else []):
            w = f"{where}.node_pools[{j}]"
            p = self.fields(raw_p, POOL_FIELDS, w, "kafka.node_pools")
            if not p or not self.label(p["name"], f"{w}.name", "kafka.node_pools"):
                continue
            bad = (
                [r for r in p["roles"] if r not in ("controller", "broker")]
                if isinstance(p["roles"], list)
                else [p["roles"]]
            )
            if bad or not p["roles"]:
                self.add("kafka.node_pools", f"{w}.roles", f"must list controller and/or broker, not {p['roles']!r}")
            replicas = self.count(p["replicas"], f"{w}.replicas", "kafka.node_pools")
            if "broker" in (p["roles"] or []):
                brokers += replicas
            pinst = dict(
                inst, size=p["size"] or inst["size"], storage_class=p["storage_class"] or inst["storage_class"]
            )
            cls, size = self.storage(pinst, w, "kafka", replicas, kind["local"])
            pools.append(
                {
                    "apiVersion": "kafka.strimzi.io/v1",
                    "kind": "KafkaNodePool",
                    "metadata": self._meta(inst, f"{n}-{p['name']}", {"strimzi.io/cluster": n}),
                    "spec": {
                        "replicas": replicas,
                        "roles": list(p["roles"]),
                        "storage": {
                            "type": "jbod",
                            "volumes": [
                                {
                                    "id": 0,
                                    "type": "persistent-claim",
                                    "size": size,
                                    "class": cls,
                                    "deleteClaim": False,
                                    "kraftMetadata": "shared",
                                }
                            ],
                        },
                    },
                }
            )
        if pools and brokers == 0:
            self.add("kafka.node_pools", f"{where}.node_pools", "no pool has the broker role")
        rf = max(1, min(3, brokers))
        users = []
        for j, raw_u in enumerate(inst["users"] if isinstance(inst["users"], list) else []):
            u = self.fields(raw_u, USER_FIELDS, f"{where}.users[{j}]", "kafka.users")
            if u and self.label(u["name"], f"{where}.users[{j}].name", "kafka.users"):
                users.append(u)
        listener = {"name": "plain", "port": 9092, "type": "internal", "tls": False}
        if users:
            listener["authentication"] = {"type": "scram-sha-512"}
        config = {
            "offsets.topic.replication.factor": rf,
            "transaction.state.log.replication.factor": rf,
            "transaction.state.log.min.isr": max(1, rf - 1),
            "default.replication.factor": rf,
            "min.insync.replicas": max(1, rf - 1),
        }
        config.update(inst["config"] or {})
        manifests = [
            *pools,
            {
                "apiVersion": "kafka.strimzi.io/v1",
                "kind": "Kafka",
                "metadata": self._meta(inst, n),
                "spec": {
                    "kafka": {
                        "version": str(inst["version"]),
                        "listeners": [listener],
                        "config": config,
                        "template": {"podDisruptionBudget": {"maxUnavailable": 1}},
                    },
                    "entityOperator": {"topicOperator": {}, "userOperator": {}},
                },
            },
        ]
        ready = [
            {
                "api_version": "kafka.strimzi.io/v1",
                "kind": "Kafka",
                "name": n,
                "after": "manifests",
                "condition": {"type": "Ready", "status": "True"},
            }
        ]
        for j, raw_t in enumerate(inst["topics"] if isinstance(inst["topics"], list) else []):
            t = self.fields(raw_t, TOPIC_FIELDS, f"{where}.topics[{j}]", "kafka.topics")
            if not t or not self.label(t["name"], f"{where}.topics[{j}].name", "kafka.topics"):
                continue
            manifests.append(
                {
                    "apiVersion": "kafka.strimzi.io/v1",
                    "kind": "KafkaTopic",
                    "metadata": self._meta(inst, t["name"], {"strimzi.io/cluster": n}),
                    "spec": {
                        "partitions": self.count(t["partitions"], f"{where}.topics[{j}].partitions", "kafka.topics"),
                        "replicas": int(t["replicas"]) or rf,
                        "config": t["config"],
                    },
                }
            )
            ready.append(
                {
                    "api_version": "kafka.strimzi.io/v1",
                    "kind": "KafkaTopic",
                    "name": t["name"],
                    "after": "manifests",
                    "condition": {"type": "Ready", "status": "True"},
                }
            )
        before = []
        for u in users:
            sec = f"{n}-user-{u['name']}"
            before.append(self.secret(inst["namespace"], sec, {"password": ""}, generate=("password",)))
            spec = {
                "authentication": {
                    "type": "scram-sha-512",
                    "password": {"valueFrom": {"secretKeyRef": {"name": sec, "key": "password"}}},
                }
            }
            if u["acls"]:
                spec["authorization"] = {"type": "simple", "acls": u["acls"]}
            manifests.append(
                {
                    "apiVersion": "kafka.strimzi.io/v1",
                    "kind": "KafkaUser",
                    "metadata": self._meta(inst, u["name"], {"strimzi.io/cluster": n}),
                    "spec": spec,
                }
            )
            ready.append(
                {
                    "api_version": "kafka.strimzi.io/v1",
                    "kind": "KafkaUser",
                    "name": u["name"],
                    "after": "manifests",
                    "condition": {"type": "Ready", "status": "True"},
                }
            )
        self._component(
            inst, cname, kind, manifests, ready, ["Kafka", "KafkaNodePool", "KafkaTopic"], ["strimzi"], before
        )

    def _arangodb_deployments(self, inst, where, cname, kind):
        n = inst["name"]
        if inst["mode"] not in ("Single", "Cluster"):
            self.add("arangodb.mode", f"{where}.mode", f"must be Single or Cluster, not {inst['mode']!r}")
        single = inst["mode"] == "Single"
        replicas = 1 if single else self.count(inst["dbservers"], f"{where}.dbservers", "arangodb")
        cls, size = self.storage(inst, where, "arangodb", replicas, kind["local"])
        vct = {
            "spec": {
                "storageClassName": cls,
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": size}},
            }
        }
        spec = {
            "mode": inst["mode"],
            "environment": "Production",
            "image": inst["image"] or f"arangodb/arangodb:{inst['version']}",
            "bootstrap": {"passwordSecretNames": {"root": f"{n}-root"}},
        }
        if single:
            spec["single"] = {"volumeClaimTemplate": vct}
        else:
            spec["agents"] = {
                "count": self.count(inst["agents"], f"{where}.agents", "arangodb"),
                "volumeClaimTemplate": vct,
            }
            spec["dbservers"] = {"count": replicas, "volumeClaimTemplate": vct}
            spec["coordinators"] = {"count": self.count(inst["coordinators"], f"{where}.coordinators", "arangodb")}
        before = [
            self.secret(inst["namespace"], f"{n}-root", {"username": "root", "password": ""}, generate=("password",))
        ]
        manifests = [
            {
                "apiVersion": "database.arangodb.com/v1",
                "kind": "ArangoDeployment",
                "metadata": self._meta(inst, n),
                "spec": spec,
            }
        ]
        ready = [
            {
                "api_version": "database.arangodb.com/v1",
                "kind": "ArangoDeployment",
                "name": n,
                "after": "manifests",
                "path": "status.phase",
                "value": "Running",
            }
        ]
        self._component(inst, cname, kind, manifests, ready, ["ArangoDeployment", "ArangoBackup"], ["arangodb"], before)

    def _dragonfly_instances(self, inst, where, cname, kind):
        n = inst["name"]
        replicas = self.count(inst["replicas"], f"{where}.replicas", "dragonfly")
        spec = {
            "replicas": replicas,
            "image": inst["image"] or f"docker.dragonflydb.io/dragonflydb/dragonfly:{inst['version']}",
            "authentication": {"passwordFromSecret": {"name": f"{n}-auth", "key": "password"}},
        }
        if inst["args"]:
            spec["args"] = list(inst["args"])
        if replicas > 1:
            spec["pdb"] = {"maxUnavailable": 1}
        if inst["snapshot"]:
            snap = self.fields(inst["snapshot"], SNAPSHOT_FIELDS, f"{where}.snapshot", "dragonfly.snapshot") or {}
            sinst = dict(
                inst,
                size=snap.get("size") or inst["size"],
                storage_class=snap.get("storage_class") or inst["storage_class"],
            )
            cls, size = self.storage(sinst, f"{where}.snapshot", "dragonfly", replicas, kind["local"])
            spec["snapshot"] = {
                "cron": snap.get("cron"),
                "persistentVolumeClaimSpec": {
                    "storageClassName": cls,
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": size}},
                },
            }
        before = [self.secret(inst["namespace"], f"{n}-auth", {"password": ""}, generate=("password",))]
        manifests = [
            {
                "apiVersion": "dragonflydb.io/v1alpha1",
                "kind": "Dragonfly",
                "metadata": self._meta(inst, n),
                "spec": spec,
            }
        ]
        ready = [
            {
                "api_version": "dragonflydb.io/v1alpha1",
                "kind": "Dragonfly",
                "name": n,
                "after": "manifests",
                "path": "status.phase",
                "value": "Ready",
            }
        ]
        self._component(inst, cname, kind, manifests, ready, ["Dragonfly"], ["dragonfly"], before)

    def _elasticsearch(self, inst, where, cname, kind):
        n = inst["name"]
        nodes = self.count(inst["nodes"], f"{where}.nodes", "elasticsearch")
        cls, size = self.storage(inst, where, "elasticsearch", nodes, kind["local"])
        config = {"node.store.allow_mmap": False}
        config.update(inst["config"] or {})
        es = {
            "apiVersion": "elasticsearch.k8s.elastic.co/v1",
            "kind": "Elasticsearch",
            "metadata": self._meta(inst, n),
            "spec": {
                "version": str(inst["version"]),
                "podDisruptionBudget": {
                    "spec": {
                        "maxUnavailable": 1,
                        "selector": {"matchLabels": {"elasticsearch.k8s.elastic.co/cluster-name": n}},
                    }
                },
                "nodeSets": [
                    {
                        "name": "default",
                        "count": nodes,
                        "config": config,
                        "volumeClaimTemplates": [
                            {
                                "metadata": {"name": "elasticsearch-data"},
                                "spec": {
                                    "accessModes": ["ReadWriteOnce"],
                                    "storageClassName": cls,
                                    "resources": {"requests": {"storage": size}},
                                },
                            }
                        ],
                    }
                ],
            },
        }
        manifests = [es]
        ready = [
            {
                "api_version": "elasticsearch.k8s.elastic.co/v1",
                "kind": "Elasticsearch",
                "name": n,
                "after": "manifests",
                "path": "status.health",
                "value": "green",
            },
            {
                "api_version": "elasticsearch.k8s.elastic.co/v1",
                "kind": "Elasticsearch",
                "name": n,
                "after": "manifests",
                "path": "status.phase",
                "value": "Ready",
            },
        ]
        if inst["kibana"]:
            manifests.append(
                {
                    "apiVersion": "kibana.k8s.elastic.co/v1",
                    "kind": "Kibana",
                    "metadata": self._meta(inst, n),
                    "spec": {
                        "version": str(inst["version"]),
                        "count": self.count(inst["kibana_count"], f"{where}.kibana_count", "elasticsearch"),
                        "elasticsearchRef": {"name": n},
                    },
                }
            )
            ready.append(
                {
                    "api_version": "kibana.k8s.elastic.co/v1",
                    "kind": "Kibana",
                    "name": n,
                    "after": "manifests",
                    "path": "status.health",
                    "value": "green",
                }
            )
        self._component(inst, cname, kind, manifests, ready, ["Elasticsearch"], ["eck"])


def data_services_plan(settings, existing=None):
    """See the module docstring."""
    plan = _Plan(dict(settings), existing or {})
    plan.operators()
    plan.instances()
    return {"findings": plan.findings, "components": plan.components, "credentials": plan.credentials}


class FilterModule:
    """The data services layer's plan."""

    def filters(self):
        return {"data_services_plan": data_services_plan}
