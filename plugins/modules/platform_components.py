#!/usr/bin/python
# Copyright: HomeCluster developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: platform_components
short_description: Deliver platform components described as data, with Helm or through Flux
version_added: 0.2.0
description:
  - Takes a list of platform components (a chart with its pinned version and values, a namespace and
    its Pod Security level, CRD sources, objects before the chart, custom resources after it,
    readiness conditions, C(depends_on), C(state)) and delivers all of them in one call. The data
    contract is docs/components.md of the collection.
  - Preflight, before anything changes, for every component at once - the data itself, the chart's
    default values (C(helm pull); subcharts included), every value key a role or a user sets checked
    against them with the nearest real key named, and C(helm template --kube-version) with the
    values (the chart's values.schema.json, when it has one).
  - Delivery C(helm) - namespace, CRDs, objects before the chart, C(helm upgrade --install --wait
    --atomic) only when the chart, status or user values differ, readiness, custom resources (each
    waits for its API to be served), readiness. Objects use server-side apply (field manager
    C(homecluster)); an object that exists is compared with a server-side dry run, so only objects
    that really differ are written and the diff is the API server's.
  - Delivery C(flux) - every Flux component of the call is rendered into the GitOps repository
    (namespace, CRDs, chart source, HelmRelease, custom resources, Flux Kustomizations with
    C(dependsOn)); Secrets and sensitive values only SOPS-encrypted; one commit and one push for the
    whole call, and only when content changed; then the HelmReleases are waited on for exactly what
    was rendered.
  - C(state=absent) removes custom resources, the release and the objects before the chart. CRDs,
    volume claims, kinds listed in C(data_kinds) and the namespace go only with the component's
    explicit C(remove) opt-ins.
  - Check mode changes nothing and reports every change it would make; C(--diff) shows them.
    Sensitive values and Secret data are masked everywhere the module reports.
author:
  - HomeCluster developers (@homecluster)
extends_documentation_fragment:
  - homecluster.platform.attributes
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: sensitive values and Secret data are masked.
  idempotent:
    description: A second run with the same inputs reports no change and writes nothing.
    support: full
options:
  components:
    description:
      - The components, in delivery order (moved only as far as C(depends_on) requires). Each is a
        dict with the fields of docs/components.md.
    type: list
    elements: dict
    required: true
  action:
    description:
      - V(preflight) checks every component (data, value keys, render) and changes nothing.
      - V(deliver) runs the preflight, then delivers.
    type: str
    choices: [preflight, deliver]
    default: deliver
  collect_problems:
    description: With O(action=preflight), return the problems in RV(problems) instead of failing.
    type: bool
    default: false
  delivery:
    description: Delivery of components that do not set their own.
    type: str
    choices: [helm, flux]
    default: helm
  layer:
    description: Name of the layer, for the GitOps layout (C(infrastructure/<layer>/<component>)) and messages.
    type: str
    default: platform
  kubeconfig:
    description: Kubeconfig path; empty uses KUBECONFIG or ~/.kube/config.
    type: path
  context:
    description: Kubeconfig context; empty uses the current one.
    type: str
    default: ''
  kube_version:
    description: Kubernetes version charts render against; empty reads it from the cluster.
    type: str
    default: ''
  helm_path:
    description: Path of helm; found on PATH when not set.
    type: path
  kubectl_path:
    description: Path of kubectl; found on PATH when not set.
    type: path
  chart_repo:
    description: One source for every chart (a mirror, an air-gapped repository); empty keeps each chart's.
    type: str
    default: ''
  chart_sources:
    description: Chart sources by chart name; they win over O(chart_repo).
    type: dict
    default: {}
  values_check:
    description: Check every value key against the chart's default values.
    type: bool
    default: true
  render_check:
    description: Render every chart with C(helm template) before anything changes.
    type: bool
    default: true
  timeout:
    description: Seconds per component when a component sets none.
    type: int
    default: 600
  poll_delay:
    description: Seconds between readiness polls.
    type: int
    default: 3
  flux:
    description: GitOps settings for delivery C(flux).
    type: dict
    default: {}
    suboptions:
      git_url:
        description: URL the controller pushes to.
        type: str
      branch:
        description: Branch Flux syncs.
        type: str
        default: main
      clone:
        description: Local clone of the GitOps repository on the controller.
        type: path
      cluster:
        description: Cluster name (C(clusters/<cluster>) in the repository).
        type: str
        default: homecluster
      age_key_file:
        description: The cluster's age private key (to compare committed secrets); its public key is a recipient.
        type: path
      age_recipients:
        description: Further age public keys every secret is encrypted for.
        type: list
        elements: str
        default: []
      sops_secret:
        description: Secret in flux-system holding the age key (Kustomization C(spec.decryption)).
        type: str
        default: sops-age
      ssh_key_file:
        description: SSH key for an C(ssh://) remote.
        type: path
      author_name:
        description: Commit author.
        type: str
        default: HomeCluster
      author_email:
        description: Commit author e-mail.
        type: str
        default: homecluster@localhost
      git_path:
        description: Path of git.
        type: path
      sops_path:
        description: Path of sops.
        type: path
notes:
  - Needs helm and kubectl on the controller (and git and sops for delivery C(flux)).
seealso:
  - module: homecluster.platform.gitops_repo
"""

EXAMPLES = r"""
- name: Deliver a chart and a custom resource with Helm
  homecluster.platform.platform_components:
    kubeconfig: ~/.config/homecluster/lab/kubeconfig
    components:
      - name: hello
        namespace: hello
        pod_security: baseline
        chart: {name: lab-hello, version: 0.1.0, repo: https://charts.example.org}
        values: {replicaCount: 2}
        manifests:
          - {apiVersion: v1, kind: ConfigMap, metadata: {name: hello-extra}, data: {greeting: hi}}
        ready:
          - {kind: Deployment, name: hello}
  delegate_to: localhost
  run_once: true

- name: Check the values of every layer without a cluster
  homecluster.platform.platform_components:
    action: preflight
    kube_version: v1.37.2
    collect_problems: true
    components: "{{ my_layer_components }}"
  register: preflight
"""

RETURN = r"""
components:
  description: The components in the order they were handled, each with its delivery and state.
  returned: always
  type: list
  elements: dict
  sample: [{"name": "cilium", "delivery": "helm", "state": "present"}]
changes:
  description: Every change made (or, in check mode, that would be made).
  returned: always
  type: list
  elements: dict
  sample: [{"component": "cilium", "object": "release cilium", "action": "upgrade"}]
problems:
  description: What the preflight refused, each with component, key, variable and message.
  returned: always
  type: list
  elements: dict
commit:
  description: The GitOps commit Flux was asked to reconcile (delivery flux).
  returned: when a Flux component was delivered
  type: str
calls:
  description: How many helm and kubectl commands ran.
  returned: always
  type: dict
  sample: {"helm": 4, "kubectl": 9}
"""

import copy
import os
import shutil
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.homecluster.platform.plugins.module_utils import _gitops as gitops
from ansible_collections.homecluster.platform.plugins.module_utils._cli import CliError, find_binary
from ansible_collections.homecluster.platform.plugins.module_utils._component_flux import render
from ansible_collections.homecluster.platform.plugins.module_utils._component_runtime import Delivery
from ansible_collections.homecluster.platform.plugins.module_utils._components import (
    ComponentError,
    digest,
    normalise,
)
from ansible_collections.homecluster.platform.plugins.module_utils._git import GitError
from ansible_collections.homecluster.platform.plugins.module_utils._kube_cli import Helm, Kubectl
from ansible_collections.homecluster.platform.plugins.module_utils._sops import SopsError

FLUX_NS = "flux-system"


def age_public_key(path: str) -> str:
    """The public key recorded in an age key file (age-keygen writes it as a comment)."""
    if not path or not os.path.isfile(path):
        return ""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("# public key:"):
                return line.split(":", 1)[1].strip()
    return ""


def deliver_flux(module, d: Delivery, comps: list, p: dict) -> str | None:
    """Render every Flux component, commit and push once, then wait for what was rendered."""
    f = p["flux"]
    if not f.get("git_url") or not f.get("clone"):
        raise CliError("delivery flux needs flux.git_url and flux.clone (the GitOps repository): bootstrap Flux "
                       "with homecluster.platform.flux_bootstrap first")
    files, secrets = [], []
    for c in comps:
        cf, cs = render(c, layer=p["layer"], cluster=f["cluster"], sops_secret=f["sops_secret"],
                        crd_docs=d.load_crds(c) if c["crds"] else [])
        files += cf
        secrets += cs
    recipients = sorted({r for r in [age_public_key(f.get("age_key_file")), *f.get("age_recipients", [])] if r})
    names = ", ".join(c["name"] for c in comps)
    params = {
        "path": f["clone"], "url": f["git_url"], "branch": f["branch"], "files": files, "sops_files": secrets,
        "age_recipients": recipients, "age_key_file": f.get("age_key_file"), "push": True,
        "commit_message": f"{p['layer']}: {names} (flux delivery)", "author_name": f["author_name"],
        "author_email": f["author_email"], "ssh_key_file": f.get("ssh_key_file"), "git_path": f.get("git_path"),
        "sops_path": f.get("sops_path"),
    }
    result = gitops.run(module, params, module.check_mode, module._diff or module.check_mode)
    for ch in result["files_changed"]:
        d.changes.append({"component": next((c["name"] for c in comps if f"/{c['name']}" in ch["path"]), "gitops"),
                          "object": ch["path"], "action": f"git {ch['change']}"})
    d.diffs += result.get("diff", [])
    if module.check_mode:
        return result.get("commit")
    commit = result.get("commit")
    if result["committed"] or result["pushed"]:
        # Ask Flux to fetch now instead of at its next interval.
        d.kubectl.run(["annotate", "--overwrite", "-n", FLUX_NS, "gitrepository/flux-system",
                       f"reconcile.fluxcd.io/requestedAt={commit or time.time()}"], check=False)
    for c in comps:
        wait_flux(d, c, commit if result["committed"] else None)
    return commit


def wait_flux(d: Delivery, c: dict, commit: str | None) -> None:
    deadline = d.clock() + c["timeout"]
    want = digest(c)
    while True:
        waiting = []
        if c["state"] == "absent":
            if c["chart"] and d.kubectl.get("helm.toolkit.fluxcd.io/v2", "HelmRelease", c["name"], c["namespace"]):
                waiting.append("HelmRelease still exists")
        else:
            if c["chart"]:
                hr = d.kubectl.get("helm.toolkit.fluxcd.io/v2", "HelmRelease", c["name"], c["namespace"])
                waiting += flux_waiting(hr, "HelmRelease", requested=want)
            if c["manifests"] and commit:
                ks = d.kubectl.get("kustomize.toolkit.fluxcd.io/v1", "Kustomization", f"{c['name']}-manifests",
                                   FLUX_NS)
                waiting += flux_waiting(ks, "Kustomization", revision=commit)
        if not waiting:
            break
        if d.clock() > deadline:
            raise CliError(f"component {c['name']}: Flux has not reconciled it after {c['timeout']} s - "
                           + "; ".join(waiting))
        d.sleep(d.p["poll_delay"])
    if c["state"] == "present":
        d.wait_ready(c, "chart")
        d.wait_ready(c, "manifests")


def flux_waiting(obj: dict | None, kind: str, requested: str = "", revision: str = "") -> list:
    """What is still missing before a Flux object is Ready for what was rendered."""
    if obj is None:
        return [f"{kind} not created yet"]
    st = obj.get("status") or {}
    if st.get("observedGeneration", -1) != obj["metadata"].get("generation"):
        return [f"{kind} {obj['metadata']['name']} not reconciled for generation {obj['metadata'].get('generation')}"]
    if requested and st.get("lastHandledReconcileAt", "") != requested:
        return [f"{kind} {obj['metadata']['name']} has not handled request {requested}"]
    if revision and "lastAppliedRevision" in st and not st["lastAppliedRevision"].endswith(revision):
        return [f"{kind} {obj['metadata']['name']} applied {st['lastAppliedRevision']}, not {revision[:12]}"]
    ready = next((x for x in st.get("conditions") or [] if x.get("type") == "Ready"), None)
    if not ready or ready.get("status") != "True":
        why = f"{ready.get('reason')}: {ready.get('message')}" if ready else "no Ready condition"
        return [f"{kind} {obj['metadata']['name']} not Ready ({why})"]
    return []


def censored_invocation(params: dict, comps_raw: list) -> dict:
    """The module arguments as they may be logged: sensitive values and Secret data masked."""
    shown = copy.deepcopy(params)
    out = []
    for raw in comps_raw:
        item = dict(raw) if isinstance(raw, dict) else raw
        if isinstance(item, dict):
            if str(item.get("sensitive", "")).lower() in ("true", "1", "yes"):
                item["values"] = "<secret>"
            for field in ("manifests_before", "manifests"):
                if isinstance(item.get(field), list):
                    item[field] = [{**m, **{k: "<secret>" for k in ("data", "stringData") if k in m}}
                                   if isinstance(m, dict) and m.get("kind") == "Secret" else m
                                   for m in item[field]]
        out.append(item)
    shown["components"] = out
    return {"module_args": shown}


def main():
    module = AnsibleModule(
        argument_spec={
            "components": {"type": "list", "elements": "dict", "required": True},
            "action": {"type": "str", "choices": ["preflight", "deliver"], "default": "deliver"},
            "collect_problems": {"type": "bool", "default": False},
            "delivery": {"type": "str", "choices": ["helm", "flux"], "default": "helm"},
            "layer": {"type": "str", "default": "platform"},
            "kubeconfig": {"type": "path"},
            "context": {"type": "str", "default": ""},
            "kube_version": {"type": "str", "default": ""},
            "helm_path": {"type": "path"},
            "kubectl_path": {"type": "path"},
            "chart_repo": {"type": "str", "default": ""},
            "chart_sources": {"type": "dict", "default": {}},
            "values_check": {"type": "bool", "default": True},
            "render_check": {"type": "bool", "default": True},
            "timeout": {"type": "int", "default": 600},
            "poll_delay": {"type": "int", "default": 3},
            "flux": {"type": "dict", "default": {}, "options": {
                "git_url": {"type": "str"},
                "branch": {"type": "str", "default": "main"},
                "clone": {"type": "path"},
                "cluster": {"type": "str", "default": "homecluster"},
                "age_key_file": {"type": "path", "no_log": False},
                "age_recipients": {"type": "list", "elements": "str", "default": []},
                "sops_secret": {"type": "str", "default": "sops-age", "no_log": False},
                "ssh_key_file": {"type": "path", "no_log": False},
                "author_name": {"type": "str", "default": "HomeCluster"},
                "author_email": {"type": "str", "default": "homecluster@localhost"},
                "git_path": {"type": "path"},
                "sops_path": {"type": "path"},
            }},
        },
        supports_check_mode=True,
        # Components may carry secrets: never log the invocation to the journal; results mask them.
        no_log=True,
    )
    p = module.params
    result = {"changed": False, "components": [], "changes": [], "problems": [], "calls": {},
              "invocation": censored_invocation(p, p["components"])}
    workdir = tempfile.mkdtemp(prefix="homecluster-components-")
    try:
        failure = run(module, p, result, workdir)
    except CliError as e:
        failure = e.fail_kwargs()
    except (GitError, SopsError) as e:
        failure = {"msg": e.msg, "cmd": e.cmd, "rc": e.rc, "stderr": e.stderr}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if failure:
        result.update(failure)
        module.fail_json(**result)
    module.exit_json(**result)


def run(module, p: dict, result: dict, workdir: str) -> dict | None:
    """Fill result; return the failure (msg and details) or None."""
    try:
        comps = normalise(p["components"], delivery=p["delivery"], chart_repo=p["chart_repo"],
                          chart_sources=p["chart_sources"], timeout=p["timeout"])
    except ComponentError as e:
        result["problems"] = e.problems
        if p["action"] == "preflight" and p["collect_problems"]:
            return None
        return {"msg": "; ".join(x["message"] for x in e.problems) + " - nothing was changed"}
    result["components"] = [{"name": c["name"], "delivery": c["delivery"], "state": c["state"]} for c in comps]
    kubectl = Kubectl(find_binary("kubectl", p["kubectl_path"]), kubeconfig=p["kubeconfig"] or "",
                      context=p["context"])
    helm = Helm(find_binary("helm", p["helm_path"]), kubeconfig=p["kubeconfig"] or "", context=p["context"],
                env={"HELM_CACHE_HOME": os.path.join(workdir, "helm-cache")})
    d = Delivery(module, p, kubectl, helm, workdir)
    result["problems"] = d.preflight(comps)
    result["calls"] = {"helm": helm.calls, "kubectl": kubectl.calls}
    if result["problems"] and not (p["action"] == "preflight" and p["collect_problems"]):
        return {"msg": "; ".join(x["message"] for x in result["problems"]) + " - nothing was changed"}
    if p["action"] == "preflight":
        return None
    try:
        d.prefetch(comps)
        for c in comps:
            if c["delivery"] == "helm":
                d.deliver(c)
        flux = [c for c in comps if c["delivery"] == "flux"]
        if flux:
            commit = deliver_flux(module, d, flux, p)
            if commit:
                result["commit"] = commit
    finally:
        # What was done before a failure is reported too.
        result["changes"] = d.changes
        result["changed"] = bool(d.changes)
        result["calls"] = {"helm": helm.calls, "kubectl": kubectl.calls}
        if d.diffs and (module._diff or module.check_mode):
            result["diff"] = d.diffs
    return None


if __name__ == "__main__":
    main()
