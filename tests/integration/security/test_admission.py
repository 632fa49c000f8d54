# SPDX-License-Identifier: GPL-3.0-or-later
"""The security layer's admission rules, enforced by a real kube-apiserver (lab/kube).

The policies are rendered from the role's own data (defaults and vars, through ansible-playbook)
and applied to a lab control plane of this test's own (127.0.45.30). Then real pod creations:
refused with `:latest`, untagged or from an unlisted registry, admitted when compliant; a
privileged pod refused outside the privileged namespaces and admitted inside; Pod Security
`restricted` enforced on a labelled namespace. And the list of platform images the preflight
checks is compared with what the stand-in charts render.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
CACHE = Path(os.environ.get("HOMECLUSTER_CACHE", Path.home() / ".cache" / "homecluster"))
ADDRESS, PORT, ETCD_PORT = "127.0.45.30", "18320", "18321"
ROLE = REPO / "roles" / "platform_security"
ALLOWED = ["registry.k8s.io", "quay.io", "docker.io", "ghcr.io", "registry.lab.invalid"]

RENDER = """
- hosts: localhost
  gather_facts: false
  vars_files: [{defaults}, {vars}]
  tasks:
    - ansible.builtin.copy:
        dest: {out}
        content: "{{{{ _platform_security_admission_manifests | to_json }}}}"
        mode: '0600'
"""


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PATH"] = f"{CACHE / 'bin'}:{CACHE / 'venv' / 'bin'}:{e['PATH']}"
    e["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
    e.pop("ANSIBLE_CALLBACKS_ENABLED", None)
    return e


def run(*args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(args, input=stdin, capture_output=True, text=True, check=check, env=env(), timeout=300)


@pytest.fixture(scope="module")
def kube(tmp_path_factory):
    state = tmp_path_factory.mktemp("kube")
    run(str(REPO / "lab" / "kube"), "up", "--dir", str(state), "--address", ADDRESS, "--port", PORT,
        "--etcd-port", ETCD_PORT, "--node", "cp1=127.0.45.31:controlplane")
    yield state
    run(str(REPO / "lab" / "kube"), "down", "--dir", str(state), check=False)


def kubectl(state: Path, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return run(str(CACHE / "bin" / "kubectl"), "--kubeconfig", str(state / "admin.kubeconfig"), *args,
               stdin=stdin, check=check)


@pytest.fixture(scope="module")
def policies(kube, tmp_path_factory):
    work = tmp_path_factory.mktemp("render")
    out = work / "admission.json"
    (work / "render.yml").write_text(RENDER.format(defaults=ROLE / "defaults" / "main.yml",
                                                   vars=ROLE / "vars" / "main.yml", out=out))
    run("ansible-playbook", "-i", "localhost,", "-c", "local", str(work / "render.yml"),
        "-e", json.dumps({"ansible_python_interpreter": str(CACHE / "venv" / "bin" / "python"),
                          "platform_security_allowed_registries": ALLOWED}))
    manifests = json.loads(out.read_text())
    kubectl(kube, "apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests}))
    for ns, level in (("apps", "baseline"), ("legacy", "privileged"), ("istio-system", "privileged"),
                      ("team", "restricted")):
        kubectl(kube, "create", "namespace", ns)
        kubectl(kube, "label", "namespace", ns, f"pod-security.kubernetes.io/enforce={level}")
    return manifests


def pod(name: str, namespace: str, image: str, security: dict | None = None, labels: dict | None = None) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
                       "spec": {"containers": [{"name": "main", "image": image, "securityContext": security or {}}]}})


def create(kube: Path, doc: str) -> subprocess.CompletedProcess:
    """Create for real (no dry run). A new policy takes effect within about a second."""
    for _attempt in range(20):
        r = kubectl(kube, "create", "-f", "-", stdin=doc, check=False)
        if r.returncode != 0 and "homecluster-" not in r.stderr and "not found" in r.stderr:
            continue
        return r
    return r


RESTRICTED = {"runAsNonRoot": True, "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
              "seccompProfile": {"type": "RuntimeDefault"}}


@pytest.fixture(scope="module")
def enforced(kube, policies):
    """Wait until the API server enforces the image policy (its informer has the new policy)."""
    for i in range(30):
        r = kubectl(kube, "create", "--dry-run=server", "-f", "-", check=False,
                    stdin=pod(f"probe{i}", "apps", "evil.example.com/probe:latest"))
        if r.returncode != 0 and "homecluster-images" in r.stderr:
            return kube
        subprocess.run(["sleep", "1"], check=True)
    pytest.fail("the image policy was never enforced: " + r.stderr)


@pytest.mark.parametrize(("name", "image", "needle"), [
    ("latest", "docker.io/library/busybox:latest", "has the tag latest or no tag"),
    ("untagged", "busybox", "image busybox has the tag latest or no tag"),
    ("unlisted", "evil.example.com/miner:1.0", "evil.example.com/miner:1.0 is not from an allowed registry"),
    ("hub-unlisted-path", "registry.example.org:5000/x/y:2.0", "is not from an allowed registry"),
])
def test_refused(enforced, name, image, needle):
    r = create(enforced, pod(name, "apps", image))
    assert r.returncode != 0, f"{image} was admitted"
    assert "homecluster-images" in r.stderr and needle in r.stderr, r.stderr


@pytest.mark.parametrize(("name", "image"), [
    ("compliant", "registry.lab.invalid/hello:0.1.0"),
    ("hub-short", "openebs/provisioner-localpv:4.6.0"),
    ("digest", "quay.io/cilium/cilium@sha256:" + "0" * 64),
])
def test_admitted(enforced, name, image):
    r = create(enforced, pod(name, "apps", image))
    assert r.returncode == 0, r.stderr


def test_istio_gateway_auto_image_only_when_injected(enforced):
    assert create(enforced, pod("gw", "apps", "auto", labels={"sidecar.istio.io/inject": "true"})).returncode == 0
    r = create(enforced, pod("not-injected", "apps", "auto"))
    assert r.returncode != 0 and "image auto has the tag latest or no tag" in r.stderr


def test_privileged_refused_outside_privileged_namespaces(enforced):
    r = create(enforced, pod("priv", "legacy", "docker.io/istio/install-cni:1.30.4", {"privileged": True}))
    assert r.returncode != 0
    assert "homecluster-no-privileged" in r.stderr and "privileged container main in namespace legacy" in r.stderr


def test_privileged_admitted_in_privileged_namespace(enforced):
    r = create(enforced, pod("priv", "istio-system", "docker.io/istio/install-cni:1.30.4", {"privileged": True}))
    assert r.returncode == 0, r.stderr


def test_pod_security_restricted_enforced(enforced):
    r = create(enforced, pod("root", "team", "registry.lab.invalid/hello:0.1.0"))
    assert r.returncode != 0 and 'violates PodSecurity "restricted:latest"' in r.stderr, r.stderr
    assert create(enforced, pod("ok", "team", "registry.lab.invalid/hello:0.1.0", RESTRICTED)).returncode == 0


def test_image_update_of_an_existing_pod_checks_only_added_images(enforced):
    create(enforced, pod("upd", "apps", "registry.lab.invalid/hello:0.1.0"))
    r = kubectl(enforced, "set", "image", "-n", "apps", "pod/upd", "main=registry.lab.invalid/hello:latest",
                check=False)
    assert r.returncode != 0 and "homecluster-images" in r.stderr, r.stderr


def test_platform_images_cover_the_charts():
    """Every image a stand-in chart renders (true to upstream) is in the role's platform image list."""
    data = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
    listed = [i["image"] for i in data["_platform_security_platform_images"]]
    rendered = set()
    for chart in sorted((REPO / "lab" / "charts").iterdir()):
        if not (chart / "Chart.yaml").is_file() or chart.name == "lab-hello":
            continue
        out = run(str(CACHE / "bin" / "helm"), "template", "x", str(chart)).stdout
        for doc in yaml.safe_load_all(out):
            spec = ((doc or {}).get("spec") or {})
            pod_spec = (spec.get("template") or {}).get("spec") or {}
            for c in pod_spec.get("containers", []) + pod_spec.get("initContainers", []):
                rendered.add(c["image"])
            if (doc or {}).get("kind") == "CephCluster":
                rendered.add(spec["cephVersion"]["image"])
    rendered.discard("auto")
    missing = []
    for image in sorted(rendered):
        ref = image if "/" in image.split(":")[0] and "." in image.split("/")[0] else "docker.io/" + image
        if not any(ref.startswith(i + ":") or ref.startswith(i + "@") for i in listed):
            missing.append(image)
    assert not missing, f"images the charts render but _platform_security_platform_images lacks: {missing}"
