# SPDX-License-Identifier: GPL-3.0-or-later
"""site.yml end to end on the lab (inventories/lab): a cold run from bare (simulated) Proxmox
hosts to the platform, a rerun that changes nothing, and `--check --diff` with one input changed
per layer that shows every change and leaves everything as it was.

The lab runs in a private state directory, from a copy of inventories/lab moved to its own
loopback block (127.0.12.x) and ports, so it never meets a lab started by `make demo`.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

BLOCK = "127.0.12."

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("HOMECLUSTER_CACHE", Path.home() / ".cache" / "homecluster"))
BIN = CACHE / "bin"
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)

# One input changed per layer, for the --check --diff run.
CHANGES = {
    "proxmox_vm_memory": 20480,
    "talos_bootstrap_patches": [{"machine": {"sysctls": {"net.core.somaxconn": "65535"}}}],
    "cilium_lb_pools": [{"name": "lab-pool", "blocks": [{"start": BLOCK + "200", "stop": BLOCK + "240"}]}],
    "rook_ceph_block_replicas": 2,
    # layer 9: the PostgreSQL cluster from three instances to two (the diff shows it; the Cluster keeps 3)
    "data_operators_postgres": [{"name": "app-db", "instances": 2, "size": "5Gi", "database": "app", "owner": "app",
                                 "roles": [{"name": "reporting"}],
                                 "backup": {"schedule": "0 0 2 * * *", "retention": "14d"}}],
    # layer 7b: a new RBAC group (its ClusterRoleBinding and its Authentik group) and a new Harbor project
    "platform_identity_groups": [{"name": "admins", "superuser": True, "cluster_role": "cluster-admin"},
                                 {"name": "read-only", "cluster_role": "view"},
                                 {"name": "developers", "namespaces": ["demo"], "namespace_role": "edit"},
                                 {"name": "auditors", "cluster_role": "view"}],
    "platform_apps_harbor_projects": [{"name": "dockerhub", "public": True, "proxy_cache": "docker-hub"},
                                      {"name": "ghcr", "public": True, "proxy_cache": "ghcr"},
                                      {"name": "apps", "prevent_vul": True, "severity": "critical"},
                                      {"name": "e2e-new", "public": False}],
    "homecluster_apps": [{"name": "hello", "namespace": "demo", "pod_security": "baseline",
                          "namespace_labels": {"istio.io/dataplane-mode": "ambient"},
                          "chart": {"name": "lab-hello", "version": "0.1.0", "repo": "http://127.0.0.1:8812"},
                          "values": {"replicaCount": 2, "message": "changed under --check"},
                          "ready": [{"kind": "Deployment", "name": "hello"}]}],
}


def env(state: Path) -> dict[str, str]:
    e = dict(os.environ)
    e["PATH"] = f"{BIN}:{CACHE / 'venv' / 'bin'}:{e['PATH']}"
    e["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
    e["HOMECLUSTER_LAB_STATE"] = str(state)
    e["ANSIBLE_FORCE_COLOR"] = "0"
    e["ANSIBLE_NOCOLOR"] = "1"
    e["HOMECLUSTER_LAB_INVENTORY"] = str(state / "inventory")
    e["HOMECLUSTER_TALOS_ADMIN"] = "127.0.0.1:52080"
    e["HOMECLUSTER_PVE_PORT"] = "28012"
    e["HOMECLUSTER_CHART_REPO"] = "http://127.0.0.1:8812"
    e["HOMECLUSTER_CHARTREPO_DIR"] = str(state / "chartrepo")
    e["HOMECLUSTER_FLUX_ADDRESS"] = BLOCK + "9"
    return e


def copy_inventory(state: Path) -> None:
    """inventories/lab, moved from 127.0.10.x to this test's block."""
    src = REPO / "inventories" / "lab"
    for path in src.rglob("*"):
        dest = state / "inventory" / path.relative_to(src)
        if path.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            # the lab's internal DNS listens on 127.0.0.1: this test takes its own port
            dest.write_text(path.read_text().replace("127.0.10.", BLOCK)
                            .replace("platform_edge_rfc2136_port: 5379", "platform_edge_rfc2136_port: 5312"))


def site(state: Path, *extra: str, log: str, extra_env: dict[str, str] | None = None) -> tuple[str, float]:
    started = time.monotonic()
    proc = subprocess.run(["ansible-playbook", "-i", str(state / "inventory"), "playbooks/site.yml", *extra],
                          cwd=REPO, env={**env(state), **(extra_env or {})}, capture_output=True, text=True,
                          check=False)
    elapsed = time.monotonic() - started
    (state / log).write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, f"site.yml failed (log {state / log}):\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}"
    return proc.stdout, elapsed


def recap(out: str) -> dict[str, int]:
    """changed= per host, summed over the PLAY RECAP blocks (the callback prints it once)."""
    changed: dict[str, int] = {}
    for host, _ok, ch, unreachable, failed in RECAP.findall(out):
        assert int(unreachable) == 0 and int(failed) == 0, f"{host} unreachable/failed"
        changed[host] = int(ch)
    return changed


def fingerprint(state: Path) -> dict[str, str]:
    """Everything the check run must leave alone, read back from each layer."""
    e = env(state)
    kubeconfig = str(state / "cluster" / "kubeconfig")
    talosconfig = str(state / "cluster" / "talosconfig")

    def out(*cmd: str) -> str:
        return subprocess.run(cmd, env=e, capture_output=True, text=True, check=True).stdout

    def digest(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    pve = json.loads((state / "proxmox" / "state.json").read_text())
    vms = pve.get("vms", pve)
    kubectl = [str(BIN / "kubectl"), "--kubeconfig", kubeconfig]
    return {
        "proxmox": digest(json.dumps(vms, sort_keys=True, default=str)),
        "talos": digest(out(str(BIN / "talosctl"), "--talosconfig", talosconfig, "-n",
                            f"{BLOCK}11,{BLOCK}21", "get", "machineconfig", "-o", "yaml")),
        "helm": digest(out(str(BIN / "helm"), "--kubeconfig", kubeconfig, "list", "-A", "-o", "json")),
        "lbpools": digest(out(*kubectl, "get", "ciliumloadbalancerippools", "-o", "jsonpath={.items[*].spec}")),
        "cephpools": digest(out(*kubectl, "get", "cephblockpools", "-A", "-o", "jsonpath={.items[*].spec}")),
        "postgres": digest(out(*kubectl, "get", "clusters.postgresql.cnpg.io", "-A", "-o",
                               "jsonpath={.items[*].spec.instances}")),
        # layer 7b: the identity layer's bindings and blueprints, Harbor's projects and registries
        "rbac": digest(out(*kubectl, "get", "clusterrolebindings,rolebindings", "-A", "-l",
                           "app.kubernetes.io/part-of=homecluster-identity", "-o",
                           "jsonpath={range .items[*]}{.metadata.name} {.subjects} {.roleRef}{'\\n'}{end}")),
        "blueprints": digest(out(*kubectl, "-n", "authentik", "get", "configmaps", "-o",
                                 "jsonpath={range .items[*]}{.metadata.name} {.data}{'\\n'}{end}")),
        "harbor": digest(json.dumps({k: harbor_state(state)[k] for k in ("projects", "registries")}, sort_keys=True)),
        "gitops": out("git", "--git-dir", str(state / "git" / "gitops.git"), "rev-parse", "main").strip(),
    }


def harbor_state(state: Path) -> dict:
    """What the Harbor API simulator holds (projects, registries), read from its own endpoint."""
    import ssl  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415
    ep = json.loads((state / "harbor_sim" / "endpoint.json").read_text())
    ctx = ssl.create_default_context(cafile=ep["ca"])
    with urllib.request.urlopen(ep["url"] + "/_sim/state", context=ctx, timeout=10) as r:  # noqa: S310
        return json.load(r)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    state = tmp_path_factory.mktemp("lab")
    copy_inventory(state)
    up = subprocess.run([str(REPO / "lab" / "up")], env=env(state), capture_output=True, text=True, check=False)
    assert up.returncode == 0, up.stdout + up.stderr
    yield state
    down = subprocess.run([str(REPO / "lab" / "down")], env=env(state), capture_output=True, text=True,
                          check=False)
    assert down.returncode == 0, down.stdout + down.stderr
    # lab/down leaves nothing listening in the block (the Git server, the Flux controllers, the API...)
    listening = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True, check=True).stdout
    left = [line.split()[3] for line in listening.splitlines() if line.split()[3].startswith(BLOCK)]
    assert not left, f"still listening after lab/down: {left}"


@pytest.fixture(scope="module")
def cold(lab):
    # -vvv: the secrets audit (test_no_secret_leaks) reads everything the modules return
    out, elapsed = site(lab, "-vvv", log="cold.log")
    return out, elapsed


def test_cold_run_reaches_every_layer(lab, cold):
    out, elapsed = cold
    changed = recap(out)
    assert set(changed) >= {"cp1", "cp2", "cp3", "w1", "w2", "w3", "localhost"}
    assert all(changed[h] > 0 for h in ("cp1", "w1", "localhost"))
    nodes = json.loads(subprocess.run([str(BIN / "kubectl"), "--kubeconfig", str(lab / "cluster" / "kubeconfig"),
                                       "get", "nodes", "-o", "json"], capture_output=True, text=True,
                                      check=True).stdout)["items"]
    assert sorted(n["metadata"]["name"] for n in nodes) == ["cp1", "cp2", "cp3", "w1", "w2", "w3"]
    (lab / "timings.json").write_text(json.dumps({"cold_seconds": round(elapsed, 1)}))


def test_identity_and_apps_after_the_cold_run(lab, cold):
    """Layer 7b as the cold run left it: the groups' bindings, the Harbor client the identity layer
    wrote (naming lab/oidc_sim's issuer) and Harbor's login through it, Knative and Tekton Ready,
    Harbor's proxy-cache projects in the Harbor API simulator."""
    kubectl = [str(BIN / "kubectl"), "--kubeconfig", str(lab / "cluster" / "kubeconfig")]

    def get(*args: str) -> dict:
        return json.loads(subprocess.run([*kubectl, "get", *args, "-o", "json"], capture_output=True, text=True,
                                         check=True).stdout)

    bindings = get("clusterrolebindings,rolebindings", "-A", "-l", "app.kubernetes.io/part-of=homecluster-identity")
    subjects = sorted((b["subjects"][0]["name"], b["roleRef"]["name"], b["metadata"].get("namespace", ""))
                      for b in bindings["items"])
    assert subjects == [("oidc:admins", "cluster-admin", ""), ("oidc:developers", "edit", "demo"),
                        ("oidc:read-only", "view", "")], subjects
    import base64  # noqa: PLC0415
    client = get("secret", "-n", "authentik", "oidc-harbor")["data"]
    issuer = base64.b64decode(client["issuer_url"]).decode()
    assert issuer == f"https://{BLOCK}6:9443/application/o/harbor/", issuer
    values = json.loads(subprocess.run([str(BIN / "helm"), "--kubeconfig", str(lab / "cluster" / "kubeconfig"), "-n",
                                        "harbor", "get", "values", "harbor", "-o", "json"], capture_output=True,
                                       text=True, check=True).stdout)
    settings = values["core"]["configureUserSettings"]
    settings = json.loads(settings) if isinstance(settings, str) else settings
    assert settings["auth_mode"] == "oidc_auth" and settings["oidc_endpoint"] == issuer.rstrip("/")
    assert settings["oidc_client_secret"] == base64.b64decode(client["client_secret"]).decode()
    for kind, ns, name in (("knativeservings.operator.knative.dev", "knative-serving", "knative-serving"),
                           ("knativeeventings.operator.knative.dev", "knative-eventing", "knative-eventing"),
                           ("tektonconfigs.operator.tekton.dev", "", "config")):
        obj = get(kind, *(("-n", ns) if ns else ()), name)
        ready = {c["type"]: c["status"] for c in obj.get("status", {}).get("conditions", [])}.get("Ready")
        assert ready == "True", f"{kind} {name} not Ready: {obj.get('status')}"
    harbor = harbor_state(lab)
    registries = {str(r["id"]): r["name"] for r in harbor["registries"].values()}
    projects = {p["name"]: registries.get(str(p.get("registry_id"))) for p in harbor["projects"].values()}
    assert projects == {"library": None, "dockerhub": "docker-hub", "ghcr": "ghcr", "apps": None}, projects


def test_rerun_changes_nothing(lab, cold):
    out, elapsed = site(lab, log="rerun.log")
    changed = recap(out)
    assert changed and all(v == 0 for v in changed.values()), changed
    timings = json.loads((lab / "timings.json").read_text())
    timings["rerun_seconds"] = round(elapsed, 1)
    (lab / "timings.json").write_text(json.dumps(timings))
    # kept outside the source tree (a test run leaves the clone as it was); bench/site.py measures
    results = CACHE / "bench"
    results.mkdir(parents=True, exist_ok=True)
    (results / "site_e2e.json").write_text(json.dumps(timings, indent=2) + "\n")


def test_check_diff_shows_one_change_per_layer_and_changes_nothing(lab, cold):
    before = fingerprint(lab)
    changes = lab / "changes.yml"
    changes.write_text(yaml.safe_dump(CHANGES))
    drift = lab / "drift_report.json"
    callbacks = "ansible.posix.profile_tasks,homecluster.platform.drift"
    out, _elapsed = site(lab, "--check", "--diff", "-e", f"@{changes}", log="check.log",
                         extra_env={"ANSIBLE_CALLBACKS_ENABLED": callbacks, "HOMECLUSTER_DRIFT_REPORT": str(drift)})
    changed = recap(out)
    assert changed["cp1"] > 0 and changed["w1"] > 0 and changed["localhost"] > 0
    # Each layer's change appears in the diff output.
    assert "20480" in out, "VM memory change not shown"
    assert "somaxconn" in out, "Talos patch not shown"
    assert BLOCK + "240" in out, "Cilium LB pool change not shown"
    assert "changed under --check" in out, "Flux-delivered value not shown"
    assert "oidc-auditors" in out, "the new RBAC group's ClusterRoleBinding not shown"
    assert "project/e2e-new" in out, "the new Harbor project not shown"
    assert fingerprint(lab) == before, "the --check run changed something"
    # drift_report.json names each layer's change, with its diff.
    report = json.loads(drift.read_text())
    assert report["check_mode"] and report["drifted"] and not report["run_failed"]
    diffs = {layer: "\n".join(c["diff"] for c in report["changes"] if c["layer"] == layer)
             for layer in report["changes_by_layer"]}
    for layer, needle in (("proxmox", "20480"), ("talos", "somaxconn"), ("cilium", BLOCK + "240"),
                          ("flux", "changed under --check"), ("identity", "oidc-auditors"),
                          ("identity", "group-auditors"), ("apps", "project/e2e-new")):
        assert needle in diffs.get(layer, ""), f"drift_report.json: no {needle!r} under {layer}: {sorted(diffs)}"
    # the block pool's replicas, 3 -> 2, in the storage layer's diff (not any "size: 2" anywhere)
    storage = diffs.get("storage", "")
    assert re.search(r"(?m)^-\s*size: 3$", storage) and re.search(r"(?m)^\+\s*size: 2$", storage), \
        f"Ceph pool size change not in the storage layer's diff:\n{storage[-3000:]}"
    assert "storage" in diffs, f"drift_report.json: no storage change: {sorted(diffs)}"
    data = diffs.get("data", "")
    assert re.search(r"(?m)^-\s*instances: 3$", data) and re.search(r"(?m)^\+\s*instances: 2$", data), \
        f"the PostgreSQL instance count change is not in the data layer's diff:\n{data[-3000:]}"
    assert "preflight" not in diffs, "the preflight predicted a change"


def test_no_secret_leaks(lab, cold):
    """The cold run at -vvv, the rerun and --check --diff (their output), the lab's logs, the GitOps
    remote's whole history and every file of the lab state not kept 0600 hold none of the Talos
    bundle's keys, the age private key, the inventory's tokens and secrets, nor any Secret value."""
    import sys  # noqa: PLC0415 - the audit lives with the security tests
    sys.path.insert(0, str(REPO / "tests" / "integration" / "security"))
    import secrets_audit  # noqa: PLC0415
    logs = sorted(lab.glob("*.log")) + sorted(lab.rglob("logs/*.log"))
    kubectl = [str(BIN / "kubectl"), "--kubeconfig", str(lab / "cluster" / "kubeconfig")]
    names, findings = secrets_audit.audit(lab, lab / "inventory", kubectl, logs, lab / "git" / "gitops.git")
    assert any(n.startswith("talos ") for n in names) and "age private key" in names, sorted(names)
    assert not findings, "secrets found: " + "; ".join(findings)
