#!/usr/bin/python
# Copyright: HomeCluster developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: harbor_projects
short_description: Ensure Harbor projects and the registries their proxy caches pull from
version_added: 0.3.0
description:
  - Through the Harbor API v2.0, ensures every registry endpoint of O(registries) (C(/api/v2.0/registries))
    and every project of O(projects) (C(/api/v2.0/projects)), a project with O(projects[].proxy_cache) as a
    proxy cache of that registry.
  - Registries first, so a new proxy-cache project finds its registry's id. A project that exists is
    updated only where its settings differ; a registry only where its URL, description, TLS check or
    access key differ (Harbor never returns the access secret, so it is sent on creation and
    afterwards only with O(update_secrets=true)).
  - Nothing is deleted. A project or registry missing from the lists is left alone; a registry's type
    or a project's proxy-cache registry cannot be changed through the API and is refused with what to
    do.
  - Bad input fails before any call, naming the field.
author:
  - HomeCluster developers (@homecluster)
extends_documentation_fragment:
  - homecluster.platform.attributes
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: reads every project and registry and predicts each creation and update; writes nothing.
  diff_mode:
    support: full
    details: the projects and registries that change, before and after; access secrets masked.
  idempotent:
    description: A second run with the same inputs reports no change (with O(update_secrets=false)).
    support: full
options:
  url:
    description: Harbor's external URL (C(https://harbor.example.org)); the API is under C(/api/v2.0).
    type: str
    required: true
  username:
    description: A Harbor system administrator (registries need that role).
    type: str
    default: admin
  password:
    description: Its password (never logged).
    type: str
    required: true
  validate_certs:
    description: Verify Harbor's TLS certificate; give O(ca_path) for a private CA instead of turning it off.
    type: bool
    default: true
  ca_path:
    description: CA bundle Harbor's certificate is verified against (system CAs when not set).
    type: path
  timeout:
    description: Seconds per HTTP request.
    type: int
    default: 30
  registries:
    description: Registry endpoints for proxy caches.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Endpoint name, unique in Harbor.
        type: str
        required: true
      type:
        description: Harbor adapter type that can back a proxy cache.
        type: str
        required: true
        choices:
          - docker-hub
          - docker-registry
          - harbor
          - aws-ecr
          - azure-acr
          - google-gcr
          - github-ghcr
          - quay
          - jfrog-artifactory
      url:
        description: The registry's URL (C(https://registry-1.docker.io), C(https://ghcr.io)).
        type: str
        required: true
      description:
        description: Free text shown in Harbor.
        type: str
        default: ''
      insecure:
        description: Do not verify the registry's certificate.
        type: bool
        default: false
      access_key:
        description: User name or access key for authenticated pulls (Docker Hub's rate limit); empty pulls anonymously.
        type: str
        default: ''
      access_secret:
        description: Password or token of O(registries[].access_key) (never logged).
        type: str
        default: ''
  projects:
    description: Projects.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Project name (lower-case letters and digits separated by single C(.), C(_) or C(-)).
        type: str
        required: true
      public:
        description: Anyone may pull from it.
        type: bool
        default: false
      proxy_cache:
        description: Name of a registry of O(registries) this project caches; set only at creation.
        type: str
      auto_scan:
        description: Trivy scans every pushed image.
        type: bool
        default: true
      prevent_vul:
        description: Refuse pulls of images with vulnerabilities of O(projects[].severity) or worse.
        type: bool
        default: false
      severity:
        description: Severity O(projects[].prevent_vul) blocks from.
        type: str
        choices: [none, low, medium, high, critical]
        default: high
      auto_sbom_generation:
        description: Generate an SBOM for every pushed image.
        type: bool
        default: false
  update_secrets:
    description: Send every registry's access secret again (reports a change each run, since Harbor never returns it).
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Proxy caches for Docker Hub and GHCR, and a private project
  homecluster.platform.harbor_projects:
    url: https://harbor.example.org
    password: "{{ vault_harbor_admin_password }}"
    registries:
      - {name: docker-hub, type: docker-hub, url: https://hub.docker.com}
      - {name: ghcr, type: github-ghcr, url: https://ghcr.io}
    projects:
      - {name: dockerhub, public: true, proxy_cache: docker-hub}
      - {name: ghcr, public: true, proxy_cache: ghcr}
      - {name: apps, auto_scan: true, prevent_vul: true, severity: critical}
  no_log: true
"""

RETURN = r"""
created:
  description: Projects and registries created (C(project/NAME), C(registry/NAME)).
  returned: always
  type: list
  elements: str
  sample: [registry/docker-hub, project/dockerhub]
updated:
  description: Projects and registries updated.
  returned: always
  type: list
  elements: str
  sample: [project/apps]
projects:
  description: Every project of O(projects) with its id (null in check mode for one not created yet).
  returned: always
  type: dict
  sample: {apps: 3}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.homecluster.platform.plugins.module_utils._harbor import (
    PROXY_TYPES,
    SECRET_MASK,
    SEVERITIES,
    HarborClient,
    HarborError,
    check_inputs,
    desired_metadata,
    harbor_argument_spec,
    registry_view,
    registry_want,
)

REGISTRY_SPEC = {
    "name": {"type": "str", "required": True},
    "type": {
        "type": "str",
        "required": True,
        "choices": list(PROXY_TYPES),
    },
    "url": {"type": "str", "required": True},
    "description": {"type": "str", "default": ""},
    "insecure": {"type": "bool", "default": False},
    "access_key": {"type": "str", "default": "", "no_log": False},
    "access_secret": {"type": "str", "default": "", "no_log": True},
}
PROJECT_SPEC = {
    "name": {"type": "str", "required": True},
    "public": {"type": "bool", "default": False},
    "proxy_cache": {"type": "str"},
    "auto_scan": {"type": "bool", "default": True},
    "prevent_vul": {"type": "bool", "default": False},
    "severity": {"type": "str", "default": "high", "choices": list(SEVERITIES)},
    "auto_sbom_generation": {"type": "bool", "default": False},
}


def ensure_registries(module, client, wanted, result):
    current = {r["name"]: r for r in client.list_all("/registries")}
    ids = {}
    for r in wanted:
        want = registry_want(r)
        have = current.get(r["name"])
        if have is None:
            result["created"].append(f"registry/{r['name']}")
            result["diff"]["after"][f"registry/{r['name']}"] = dict(
                want, access_secret=SECRET_MASK if r["access_secret"] else ""
            )
            result["diff"]["before"][f"registry/{r['name']}"] = None
            ids[r["name"]] = None
            if not module.check_mode:
                body = {
                    "name": want["name"],
                    "type": want["type"],
                    "url": want["url"],
                    "insecure": want["insecure"],
                    "description": want["description"],
                }
                if r["access_key"]:
                    body["credential"] = {
                        "type": "basic",
                        "access_key": r["access_key"],
                        "access_secret": r["access_secret"],
                    }
                headers = client.request("POST", "/registries", body=body)[1]
                ids[r["name"]] = client.created_id(headers)
            continue
        ids[r["name"]] = have["id"]
        before = registry_view(have)
        if before["type"] != want["type"]:
            module.fail_json(
                msg=f"registries: {r['name']} is a {before['type']} endpoint in Harbor, not {want['type']}; "
                "Harbor cannot change an endpoint's type: give the new one another name",
                **result,
            )
        changed = {k: want[k] for k in ("url", "insecure", "description", "access_key") if before[k] != want[k]}
        if r["access_secret"] and module.params["update_secrets"]:
            changed["access_secret"] = r["access_secret"]
        if not changed:
            continue
        result["updated"].append(f"registry/{r['name']}")
        result["diff"]["before"][f"registry/{r['name']}"] = before
        result["diff"]["after"][f"registry/{r['name']}"] = dict(
            before, **{k: (SECRET_MASK if k == "access_secret" else v) for k, v in changed.items()}
        )
        if not module.check_mode:
            body = {k: v for k, v in changed.items() if k != "access_key"}
            if "access_key" in changed or "access_secret" in changed:
                body.update(credential_type="basic", access_key=want["access_key"], access_secret=r["access_secret"])
            client.request("PUT", f"/registries/{have['id']}", body=body)
    return ids


def ensure_projects(module, client, wanted, registry_ids, result):
    ids = {}
    for p in wanted:
        md = desired_metadata(p)
        key = f"project/{p['name']}"
        if not client.project_exists(p["name"]):
            result["created"].append(key)
            after = {"name": p["name"], "metadata": md}
            if p.get("proxy_cache"):
                after["proxy_cache"] = p["proxy_cache"]
            result["diff"]["before"][key] = None
            result["diff"]["after"][key] = after
            ids[p["name"]] = None
            if not module.check_mode:
                body = {"project_name": p["name"], "metadata": md}
                if p.get("proxy_cache"):
                    body["registry_id"] = registry_ids[p["proxy_cache"]]
                headers = client.request("POST", "/projects", body=body)[1]
                ids[p["name"]] = client.created_id(headers)
            continue
        have = client.get_project(p["name"])
        ids[p["name"]] = have["project_id"]
        want_reg = registry_ids.get(p["proxy_cache"]) if p.get("proxy_cache") else None
        if (have.get("registry_id") or None) != (want_reg or None):
            module.fail_json(
                msg=f"projects: {p['name']} exists with registry_id {have.get('registry_id')}, the inventory "
                f"asks for {p.get('proxy_cache') or 'no proxy cache'}; Harbor cannot change a project's "
                "proxy cache: give the project another name",
                **result,
            )
        current = {k: v for k, v in (have.get("metadata") or {}).items() if k in md}
        if current == md:
            continue
        result["updated"].append(key)
        result["diff"]["before"][key] = {"name": p["name"], "metadata": current}
        result["diff"]["after"][key] = {"name": p["name"], "metadata": md}
        if not module.check_mode:
            client.request("PUT", f"/projects/{have['project_id']}", body={"metadata": md})
    return ids


def main():
    spec = harbor_argument_spec()
    spec.update(
        registries={"type": "list", "elements": "dict", "default": [], "options": REGISTRY_SPEC},
        projects={"type": "list", "elements": "dict", "default": [], "options": PROJECT_SPEC},
        update_secrets={"type": "bool", "default": False},
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    p = module.params
    problems = check_inputs(p["registries"], p["projects"])
    if problems:
        module.fail_json(msg="; ".join(problems) + ". Nothing was changed.")
    result = {"changed": False, "created": [], "updated": [], "projects": {}, "diff": {"before": {}, "after": {}}}
    client = HarborClient(
        p["url"],
        p["username"],
        p["password"],
        validate_certs=p["validate_certs"],
        ca_path=p["ca_path"],
        timeout=p["timeout"],
    )
    try:
        registry_ids = ensure_registries(module, client, p["registries"], result) if p["registries"] else {}
        result["projects"] = ensure_projects(module, client, p["projects"], registry_ids, result)
    except HarborError as e:
        if not (module.check_mode and e.status is None):
            module.fail_json(msg=str(e), status=e.status, **result)
        # Check mode before Harbor answers (not installed yet): every object is predicted as created.
        module.warn(f"{e}; check mode predicts every registry and project as created")
        result["created"] = [f"registry/{r['name']}" for r in p["registries"]] + [
            f"project/{x['name']}" for x in p["projects"]
        ]
        result["updated"] = []
        result["diff"] = {
            "before": {k: None for k in result["created"]},
            "after": {k: "created" for k in result["created"]},
        }
    result["changed"] = bool(result["created"] or result["updated"])
    if not module._diff:
        result.pop("diff")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
