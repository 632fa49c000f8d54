# Copyright: HomeCluster developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The application platform (layer 7b) as platform components: Knative through its operator,
Harbor on Ceph with Trivy, Tekton through its operator.

``platform_apps_plan(settings, existing)`` turns the role's variables (without the prefix) into

- ``findings``: every input problem (rule, variable, message, severity), before anything changes;
- ``components``: the homecluster.platform.platform_component items;
- ``harbor``: what the Harbor API step needs (url, admin password, registries, projects), or {}.

``existing`` holds the base64 data of the Harbor Secrets already in the cluster
(``harbor-admin``, ``harbor-secret-key``): a secret that exists is reused, never generated again.
Call it once per run (set_fact).
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import string

from ansible_collections.homecluster.platform.plugins.module_utils._harbor import check_inputs

DNS_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$")
DURATION_RE = re.compile(r"^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$")
LEVELS = ("privileged", "baseline", "restricted")
# Names of the Secrets holding the admin password and the secret key.
ADMIN_OBJECT = "harbor-admin"
KEY_OBJECT = "harbor-secret-key"
ALNUM = string.ascii_letters + string.digits


def _gen(n):
    return "".join(secrets.choice(ALNUM) for i in range(n))


def _b64(existing, name, key):
    raw = (existing.get(name) or {}).get(key)
    return base64.b64decode(raw).decode() if raw else ""


class Plan:
    def __init__(self, s, existing):
        self.s = s
        self.existing = existing or {}
        self.findings = []

    def add(self, rule, variable, message, severity="error"):
        self.findings.append(
            {
                "rule": f"platform_apps.{rule}",
                "host": "",
                "severity": severity,
                "layer": "platform_apps",
                "variable": f"platform_apps_{variable}",
                "message": message,
            }
        )

    # ------------------------------------------------------------------ checks
    def check(self):  # noqa: PLR0912 - one branch per input rule, each naming its variable
        s = self.s
        if s["delivery"] not in ("helm", "flux"):
            self.add("delivery", "delivery", f"must be helm or flux, not {s['delivery']}")
        for comp in ("knative", "harbor", "tekton"):
            if s[comp] and s[f"{comp}_pod_security"] not in LEVELS:
                self.add("pod_security", f"{comp}_pod_security", f"must be one of {', '.join(LEVELS)}")
        if s["knative"] or s["harbor"]:
            if not DNS_RE.match(str(s["domain"])):
                self.add(
                    "domain",
                    "domain",
                    f"{s['domain']!r} is not a DNS domain such as apps.example.org: Knative "
                    "Services get <name>.<namespace>.<domain>, Harbor harbor.<domain>",
                )
        if s["knative"]:
            for v in ("knative_scale_to_zero_grace_period", "knative_scale_to_zero_retention"):
                if not DURATION_RE.match(str(s[v])):
                    self.add("knative", v, f"{s[v]!r} is not a duration such as 30s or 1m30s")
            if s["knative_networking"] not in ("gateway-api", "kourier", "istio"):
                self.add(
                    "knative",
                    "knative_networking",
                    "must be gateway-api (the default, with Istio ambient), "
                    "kourier or istio (net-istio: sidecar mode only, not with ambient)",
                )
            elif s["knative_networking"] == "istio" and s["istio_ambient"]:
                self.add(
                    "knative",
                    "knative_networking",
                    "net-istio does not support Istio's ambient mode "
                    "(knative-extensions/net-istio#1360): use gateway-api, or set platform_apps_istio_ambient: false",
                )
            if not s["knative_gateway"].get("name") or not s["knative_gateway"].get("namespace"):
                self.add("knative", "knative_gateway", "needs name and namespace of the Gateway Knative routes through")
        if s["harbor"]:
            self.check_harbor()
        if s["tekton"] and s["tekton_profile"] not in ("all", "basic", "lite"):
            self.add("tekton", "tekton_profile", "must be all, basic or lite (TektonConfig spec.profile)")
        for i, w in enumerate(s["workloads"]):
            if (
                not isinstance(w, dict)
                or not w.get("apiVersion")
                or not w.get("kind")
                or not (w.get("metadata") or {}).get("name")
            ):
                self.add("workloads", "workloads", f"item {i} needs apiVersion, kind and metadata.name")
        return self

    def check_harbor(self):
        s = self.s
        if s["harbor_storage"] not in ("s3", "rbd"):
            self.add(
                "harbor", "harbor_storage", "must be s3 (an ObjectBucketClaim on Ceph RGW) or rbd (a Ceph block volume)"
            )
        if s["harbor_admin_password"] and len(s["harbor_admin_password"]) < 12:
            self.add(
                "harbor",
                "harbor_admin_password",
                "is shorter than 12 characters; leave it empty to have one generated once",
            )
        for v in ("harbor_registries", "harbor_projects"):
            if not isinstance(s[v], list) or not all(isinstance(x, dict) for x in s[v]):
                self.add("harbor", v, "must be a list of mappings")
                return
        for problem in check_inputs(s["harbor_registries"], s["harbor_projects"]):
            var = "harbor_registries" if problem.startswith("registries") else "harbor_projects"
            self.add("harbor", var, problem)
        sec = str(s.get("harbor_oidc_secret") or "")
        if sec and not re.match(r"^[a-z0-9-]+/[a-z0-9.-]+$", sec):
            self.add(
                "harbor_oidc",
                "harbor_oidc_secret",
                f"{sec!r} must be namespace/name of the identity layer's Secret, such as authentik/oidc-harbor",
            )
        if s["harbor_oidc_issuer"]:
            if not str(s["harbor_oidc_issuer"]).startswith("https://"):
                self.add(
                    "harbor_oidc",
                    "harbor_oidc_issuer",
                    "must be the https:// issuer URL of the Authentik "
                    "application (https://<authentik>/application/o/harbor/)",
                )
            for v in ("harbor_oidc_client_id", "harbor_oidc_client_secret"):
                if not s[v] and not sec:
                    self.add(
                        "harbor_oidc",
                        v,
                        "is required with platform_apps_harbor_oidc_issuer (the identity "
                        "layer's Harbor client), or name its Secret in platform_apps_harbor_oidc_secret",
                    )

    # ------------------------------------------------------------------ components
    def components(self):
        out = []
        if self.s["knative"]:
            out += self.knative()
        if self.s["harbor"]:
            out += self.harbor()
        if self.s["tekton"]:
            out += self.tekton()
        if self.s["workloads"]:
            deps = [c["name"] for c in out if c["name"] in ("knative-serving", "tekton-config")]
            out.append(
                {
                    "name": "apps-workloads",
                    "namespace": self.s["workloads_namespace"],
                    "pod_security": "restricted",
                    "depends_on": deps,
                    "manifests": self.s["workloads"],
                    "timeout": self.s["timeout"],
                }
            )
        return out

    def _base(self, name, comp, **kw):
        s = self.s
        return dict(
            {
                "name": name,
                "namespace": s[f"{comp}_namespace"],
                "pod_security": s[f"{comp}_pod_security"],
                "timeout": s["timeout"],
            },
            **kw,
        )

    def knative(self):
        s = self.s
        gw = s["knative_gateway"]
        net = s["knative_networking"]
        classes = {
            "gateway-api": "gateway-api.ingress.networking.knative.dev",
            "kourier": "kourier.ingress.networking.knative.dev",
            "istio": "istio.ingress.networking.knative.dev",
        }
        config = {
            "domain": {s["domain"]: ""},
            "network": {"ingress-class": classes.get(net, "")},
            "autoscaler": {
                "enable-scale-to-zero": "true" if s["knative_scale_to_zero"] else "false",
                "scale-to-zero-grace-period": s["knative_scale_to_zero_grace_period"],
                "scale-to-zero-pod-retention-period": s["knative_scale_to_zero_retention"],
            },
        }
        if net == "gateway-api":
            config["gateway"] = {
                "external-gateways": json.dumps(
                    [
                        {
                            "class": gw.get("class", "istio"),
                            "gateway": f"{gw.get('namespace')}/{gw.get('name')}",
                            "service": f"{gw.get('namespace')}/{gw.get('service', gw.get('name'))}",
                            "supported-features": ["HTTPRouteRequestTimeout"],
                        }
                    ]
                ),
            }
        for k, v in s["knative_serving_config"].items():
            config[k] = dict(config.get(k, {}), **v)
        spec = {"config": config, "ingress": {net: {"enabled": True}}}
        if s["knative_serving_version"]:
            spec["version"] = s["knative_serving_version"]
        operator = self._base(
            "knative-operator",
            "knative",
            chart={
                "name": "knative-operator",
                "version": s["knative_operator_version"],
                "repo": s["knative_chart_repo"],
            },
            values=s["knative_operator_values"],
            values_variable="platform_apps_knative_operator_values",
        )
        serving = {
            "name": "knative-serving",
            "namespace": "knative-serving",
            "pod_security": s["knative_pod_security"],
            "namespace_labels": ({"istio.io/dataplane-mode": "ambient"} if s["istio_ambient"] else {}),
            "depends_on": ["knative-operator"],
            "timeout": s["timeout"],
            "manifests": [
                {
                    "apiVersion": "operator.knative.dev/v1beta1",
                    "kind": "KnativeServing",
                    "metadata": {"name": "knative-serving", "namespace": "knative-serving"},
                    "spec": spec,
                }
            ],
            "ready": [
                {
                    "api_version": "operator.knative.dev/v1beta1",
                    "kind": "KnativeServing",
                    "name": "knative-serving",
                    "condition": {"type": "Ready", "status": "True"},
                    "after": "manifests",
                }
            ],
        }
        out = [operator, serving]
        if s["knative_eventing"]:
            espec = {"config": s["knative_eventing_config"]} if s["knative_eventing_config"] else {}
            if s["knative_eventing_version"]:
                espec["version"] = s["knative_eventing_version"]
            out.append(
                {
                    "name": "knative-eventing",
                    "namespace": "knative-eventing",
                    "pod_security": s["knative_pod_security"],
                    "depends_on": ["knative-operator"],
                    "timeout": s["timeout"],
                    "manifests": [
                        {
                            "apiVersion": "operator.knative.dev/v1beta1",
                            "kind": "KnativeEventing",
                            "metadata": {"name": "knative-eventing", "namespace": "knative-eventing"},
                            "spec": espec,
                        }
                    ],
                    "ready": [
                        {
                            "api_version": "operator.knative.dev/v1beta1",
                            "kind": "KnativeEventing",
                            "name": "knative-eventing",
                            "condition": {"type": "Ready", "status": "True"},
                            "after": "manifests",
                        }
                    ],
                }
            )
        return out

    def harbor_secrets(self):
        s = self.s
        admin = s["harbor_admin_password"] or _b64(self.existing, ADMIN_OBJECT, "HARBOR_ADMIN_PASSWORD") or _gen(32)
        key = _b64(self.existing, KEY_OBJECT, "secretKey") or _gen(16)
        return admin, key

    def harbor(self):
        s = self.s
        ns = s["harbor_namespace"]
        host = s["harbor_hostname"] or f"harbor.{s['domain']}"
        admin, key = self.harbor_secrets()
        secret_meta = {"namespace": ns, "labels": {"homecluster.io/credential": "true"}}
        before = [
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": dict(secret_meta, name=ADMIN_OBJECT),
                "type": "Opaque",
                "stringData": {"HARBOR_ADMIN_PASSWORD": admin},
            },
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": dict(secret_meta, name=KEY_OBJECT),
                "type": "Opaque",
                "stringData": {"secretKey": key},
            },
        ]
        pvc = {"storageClass": s["harbor_block_storage_class"]}
        values = {
            "expose": {
                "type": "route",
                "tls": {"enabled": False},
                "route": {
                    "parentRefs": [
                        {
                            "name": s["harbor_gateway"].get("name"),
                            "namespace": s["harbor_gateway"].get("namespace"),
                            **(
                                {"sectionName": s["harbor_gateway"]["section"]}
                                if s["harbor_gateway"].get("section")
                                else {}
                            ),
                        }
                    ],
                    "hosts": [host],
                },
            },
            "externalURL": f"https://{host}",
            "existingSecretAdminPassword": ADMIN_OBJECT,
            "existingSecretAdminPasswordKey": "HARBOR_ADMIN_PASSWORD",
            "existingSecretSecretKey": KEY_OBJECT,
            "trivy": {"enabled": bool(s["harbor_trivy"])},
            "persistence": {
                "persistentVolumeClaim": {
                    "database": dict(pvc),
                    "redis": dict(pvc),
                    "trivy": dict(pvc),
                    "jobservice": {"jobLog": dict(pvc)},
                }
            },
        }
        extra_keys = []
        if s["harbor_storage"] == "s3":
            obc = s["harbor_bucket_name"]
            before.append(
                {
                    "apiVersion": "objectbucket.io/v1alpha1",
                    "kind": "ObjectBucketClaim",
                    "metadata": {"name": obc, "namespace": ns},
                    "spec": {"bucketName": obc, "storageClassName": s["harbor_bucket_storage_class"]},
                }
            )
            values["persistence"]["imageChartStorage"] = {
                "type": "s3",
                "disableredirect": True,
                "s3": {
                    "bucket": obc,
                    "region": "us-east-1",
                    "regionendpoint": s["harbor_s3_endpoint"],
                    "secure": s["harbor_s3_endpoint"].startswith("https://"),
                    "v4auth": True,
                },
            }
            # Rook's bucket Secret holds AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY; the registry reads
            # REGISTRY_STORAGE_S3_*: mapped here, so no copy of the keys exists.
            values["registry"] = {
                "registry": {
                    "extraEnvVars": [
                        {
                            "name": "REGISTRY_STORAGE_S3_ACCESSKEY",
                            "valueFrom": {"secretKeyRef": {"name": obc, "key": "AWS_ACCESS_KEY_ID"}},
                        },
                        {
                            "name": "REGISTRY_STORAGE_S3_SECRETKEY",
                            "valueFrom": {"secretKeyRef": {"name": obc, "key": "AWS_SECRET_ACCESS_KEY"}},
                        },
                    ]
                }
            }
            extra_keys = [
                "persistence.imageChartStorage.s3.regionendpoint",
                "persistence.imageChartStorage.s3.secure",
                "persistence.imageChartStorage.s3.v4auth",
            ]
        else:
            values["persistence"]["persistentVolumeClaim"]["registry"] = dict(pvc, size=s["harbor_registry_size"])
        sensitive = False
        if s["harbor_oidc_issuer"]:
            sensitive = True
            values["core"] = {
                "configureUserSettings": json.dumps(
                    {
                        "auth_mode": "oidc_auth",
                        "oidc_name": s["harbor_oidc_name"],
                        "oidc_endpoint": str(s["harbor_oidc_issuer"]).rstrip("/"),
                        "oidc_client_id": s["harbor_oidc_client_id"],
                        "oidc_client_secret": s["harbor_oidc_client_secret"],
                        "oidc_scope": "openid,profile,email,groups,offline_access",
                        "oidc_groups_claim": "groups",
                        "oidc_admin_group": s["harbor_oidc_admin_group"],
                        "oidc_user_claim": "preferred_username",
                        "oidc_auto_onboard": True,
                        "oidc_verify_cert": True,
                    },
                    sort_keys=True,
                )
            }
        values = _merge(values, s["harbor_values"])
        ready = [{"kind": "Deployment", "name": f"harbor-{n}"} for n in ("core", "portal", "registry", "jobservice")]
        ready += [{"kind": "StatefulSet", "name": f"harbor-{n}"} for n in ("database", "redis")]
        if s["harbor_trivy"]:
            ready.append({"kind": "StatefulSet", "name": "harbor-trivy"})
        comp = self._base(
            "harbor",
            "harbor",
            chart={"name": "harbor", "version": s["harbor_version"], "repo": s["harbor_chart_repo"]},
            values=values,
            values_variable="platform_apps_harbor_values",
            values_extra_keys=extra_keys,
            sensitive=sensitive,
            manifests_before=before,
            ready=ready,
            data_kinds=["ObjectBucketClaim"],
        )
        self.harbor_api = {
            "url": s["harbor_api_url"] or f"https://{host}",
            "password": admin,
            "registries": s["harbor_registries"],
            "projects": s["harbor_projects"],
        }
        return [comp]

    def tekton(self):
        s = self.s
        values = _merge({"installCRDs": True}, s["tekton_operator_values"])
        spec = {
            "profile": s["tekton_profile"],
            "targetNamespace": s["tekton_target_namespace"],
            "pruner": {
                "disabled": False,
                "keep": s["tekton_prune_keep"],
                "resources": ["pipelinerun", "taskrun"],
                "schedule": "0 3 * * *",
            },
        }
        spec = _merge(spec, s["tekton_config"])
        return [
            self._base(
                "tekton-operator",
                "tekton",
                chart={
                    "name": "tekton-operator",
                    "version": s["tekton_operator_version"],
                    "repo": s["tekton_chart_repo"],
                },
                values=values,
                values_variable="platform_apps_tekton_operator_values",
                ready=[
                    {"kind": "Deployment", "name": "tekton-operator"},
                    {"kind": "Deployment", "name": "tekton-operator-webhook"},
                ],
            ),
            {
                "name": "tekton-config",
                "namespace": s["tekton_namespace"],
                "namespace_create": False,
                "depends_on": ["tekton-operator"],
                "timeout": s["timeout"],
                "manifests": [
                    {
                        "apiVersion": "operator.tekton.dev/v1alpha1",
                        "kind": "TektonConfig",
                        "metadata": {"name": "config"},
                        "spec": spec,
                    }
                ],
                "ready": [
                    {
                        "api_version": "operator.tekton.dev/v1alpha1",
                        "kind": "TektonConfig",
                        "name": "config",
                        "namespace": "",
                        "condition": {"type": "Ready", "status": "True"},
                        "after": "manifests",
                    }
                ],
            },
        ]


def _merge(a, b):
    out = dict(a)
    for k, v in (b or {}).items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def platform_apps_plan(settings, existing=None):
    plan = Plan(settings, existing).check()
    plan.harbor_api = {}
    components = plan.components() if not any(f["severity"] == "error" for f in plan.findings) else []
    return {"findings": plan.findings, "components": components, "harbor": plan.harbor_api}


class FilterModule:
    """The application platform's plan."""

    def filters(self):
        return {"platform_apps_plan": platform_apps_plan}
