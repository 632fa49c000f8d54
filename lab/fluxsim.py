#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""fluxsim: the lab's stand-in for the Flux controllers, driven by the real git, sops, kubectl and helm.

There are no container images in the lab, so the Flux Operator and the Flux controllers cannot run.
fluxsim does what they would do for the parts HomeCluster relies on:

- FluxInstance `flux` in flux-system with spec.sync: creates the GitRepository and Kustomization
  `flux-system` the operator would generate, clones spec.sync.url at spec.sync.ref (git, any URL git
  can reach from this machine) and applies spec.sync.path;
- Flux Kustomizations found there (sourceRef GitRepository flux-system): builds spec.path like
  kustomize-controller (kustomization.yaml when present, otherwise every manifest under the path),
  decrypts SOPS-encrypted manifests with the age key of the Secret named in spec.decryption, and
  applies the result server-side;
- HelmReleases: resolves the chart through its HelmRepository (HTTP or OCI) or OCIRepository,
  installs or upgrades it with the real helm (so a values.schema.json refuses a wrong key) and
  writes the HelmRelease status: Ready True/False for the generation it handled.

Statuses of FluxInstance, GitRepository, HelmRepository, OCIRepository and Kustomization come from the
kwok stages in kwok/stages/flux.yaml. Pruning, health checks and intervals are not simulated.

  lab/fluxsim up --kubeconfig FILE [--dir DIR]    start in the background (idempotent)
  lab/fluxsim down [--dir DIR]                     stop
  lab/fluxsim status [--dir DIR]
  lab/fluxsim once --kubeconfig FILE [--dir DIR]  one reconciliation pass in the foreground
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

LAB = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("HOMECLUSTER_CACHE", Path.home() / ".cache/homecluster"))
os.environ["PATH"] = f"{CACHE / 'bin'}:{os.environ['PATH']}"
NS = "flux-system"
MANAGER = "fluxsim"


class Sim:
    def __init__(self, kubeconfig: str, state: Path):
        self.kubeconfig = kubeconfig
        self.state = state
        self.last_rev: str | None = None
        self.last_apply = 0.0
        self.releases: dict[str, tuple] = {}

    # ------------------------------------------------------------------ helpers
    def kubectl(self, *args, stdin=None, check=True):
        proc = subprocess.run(["kubectl", "--kubeconfig", self.kubeconfig, *args], input=stdin,
                              capture_output=True, text=True, check=False)
        if check and proc.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args[:3])}: {proc.stderr.strip()}")
        return proc

    def get(self, kind, name=None, namespace=None):
        args = ["get", kind, "-o", "json"] + ([name] if name else []) + (["-n", namespace] if namespace else ["-A"])
        proc = self.kubectl(*args, check=False)
        return json.loads(proc.stdout) if proc.returncode == 0 else None

    def apply(self, docs):
        if docs:
            first = [d for d in docs if d.get("kind") in ("Namespace", "CustomResourceDefinition")]
            rest = [d for d in docs if d not in first]
            for batch in (first, rest):
                if batch:
                    self.kubectl("apply", "--server-side", "--force-conflicts", f"--field-manager={MANAGER}",
                                 "-f", "-", stdin=yaml.safe_dump_all(batch))

    def log(self, msg):
        print(time.strftime("%H:%M:%S"), msg, flush=True)

    # ------------------------------------------------------------------ sources
    def checkout(self, url, ref):
        branch = ref.removeprefix("refs/heads/") if ref else "main"
        out = subprocess.run(["git", "ls-remote", url, f"refs/heads/{branch}"], capture_output=True, text=True,
                             check=False)
        if out.returncode != 0 or not out.stdout.strip():
            raise RuntimeError(f"git ls-remote {url} {branch}: {out.stderr.strip() or 'no such branch'}")
        rev = out.stdout.split()[0]
        work = self.state / "src" / rev
        if not work.exists():
            tmp = Path(tempfile.mkdtemp(dir=self.state, prefix="clone-"))
            subprocess.run(["git", "clone", "--quiet", "--depth", "1", "--branch", branch, url, str(tmp)],
                           capture_output=True, text=True, check=True)
            work.parent.mkdir(parents=True, exist_ok=True)
            tmp.rename(work)
        return rev, work

    def age_key(self, secret_name, namespace):
        secret = self.get("secret", secret_name, namespace)
        if not secret:
            raise RuntimeError(f"decryption Secret {namespace}/{secret_name} not found")
        data = secret.get("data", {})
        key = next((v for k, v in data.items() if k.endswith(".agekey")), None)
        if not key:
            raise RuntimeError(f"Secret {namespace}/{secret_name} has no *.agekey entry")
        return base64.b64decode(key).decode()

    def build(self, root: Path, path: str, decryption):
        target = (root / path).resolve()
        if root.resolve() not in target.parents and target != root.resolve():
            raise RuntimeError(f"path {path} leaves the repository")
        if not target.is_dir():
            raise RuntimeError(f"path {path} not found in the source")
        if (target / "kustomization.yaml").exists():
            text = self.kubectl("kustomize", str(target)).stdout
            docs = [d for d in yaml.safe_load_all(text) if d]
        else:
            docs = []
            for f in sorted(target.rglob("*.y*ml")):
                if f.name == ".sops.yaml" or f.suffix not in (".yaml", ".yml"):
                    continue
                text = f.read_text()
                found = [d for d in yaml.safe_load_all(text) if isinstance(d, dict) and "kind" in d]
                if any("sops" in d for d in found):
                    # Decrypt the file as committed: sops's MAC covers the values in their order.
                    if not decryption:
                        raise RuntimeError(f"{f.relative_to(root)} is SOPS-encrypted but the Kustomization "
                                           "has no spec.decryption")
                    found = [d for d in yaml.safe_load_all(self.decrypt(text, decryption))
                             if isinstance(d, dict) and "kind" in d]
                docs += found
        return docs

    def decrypt(self, text, decryption):
        key = self.age_key(decryption["secretRef"]["name"], NS)
        env = {**os.environ, "SOPS_AGE_KEY": key}
        proc = subprocess.run(["sops", "decrypt", "--input-type", "yaml", "--output-type", "yaml"],
                              input=text, capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"sops decrypt failed: {proc.stderr.strip()}")
        return proc.stdout

    # ------------------------------------------------------------------ reconcile
    def sync(self):
        fi = self.get("fluxinstances.fluxcd.controlplane.io", "flux", NS)
        if not fi or not fi.get("spec", {}).get("sync"):
            return
        sync = fi["spec"]["sync"]
        ref = sync.get("ref", "refs/heads/main")
        generated = [
            {"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
             "metadata": {"name": NS, "namespace": NS},
             "spec": {"interval": sync.get("interval", "1m"), "url": sync["url"],
                      "ref": {"name": ref}, **({"secretRef": {"name": sync["pullSecret"]}}
                                               if sync.get("pullSecret") else {})}},
            {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
             "metadata": {"name": NS, "namespace": NS},
             "spec": {"interval": "10m", "path": sync["path"], "prune": True,
                      "sourceRef": {"kind": "GitRepository", "name": NS},
                      "decryption": {"provider": "sops", "secretRef": {"name": "sops-age"}}}},
        ]
        self.apply(generated)
        rev, work = self.checkout(sync["url"], ref)
        if rev == self.last_rev and time.time() - self.last_apply < 30:
            return
        queue = [generated[1]]
        seen = set()
        while queue:
            ks = queue.pop(0)
            name = ks["metadata"]["name"]
            if name in seen:
                continue
            seen.add(name)
            docs = self.build(work, ks["spec"]["path"], ks["spec"].get("decryption"))
            target_ns = ks["spec"].get("targetNamespace")
            for d in docs:
                if target_ns and d.get("kind") != "Namespace":
                    d.setdefault("metadata", {})["namespace"] = target_ns
            self.apply(docs)
            self.log(f"applied Kustomization {name} ({ks['spec']['path']}) at {rev[:12]}: {len(docs)} objects")
            queue += [d for d in docs if d.get("kind") == "Kustomization"
                      and d.get("apiVersion", "").startswith("kustomize.toolkit.fluxcd.io/")]
        self.last_rev, self.last_apply = rev, time.time()

    def chart_source(self, hr):
        spec = hr["spec"]
        ns = hr["metadata"]["namespace"]
        if spec.get("chartRef"):
            ref = spec["chartRef"]
            src = self.get("ocirepositories.source.toolkit.fluxcd.io", ref["name"], ref.get("namespace", ns))
            if not src:
                raise RuntimeError(f"OCIRepository {ref['name']} not found")
            tag = src["spec"].get("ref", {}).get("tag")
            return src["spec"]["url"], None, tag
        chart = spec["chart"]["spec"]
        ref = chart["sourceRef"]
        src = self.get("helmrepositories.source.toolkit.fluxcd.io", ref["name"], ref.get("namespace", ns))
        if not src:
            raise RuntimeError(f"HelmRepository {ref['name']} not found")
        url = src["spec"]["url"]
        if url.startswith("oci://"):
            return f"{url.rstrip('/')}/{chart['chart']}", None, chart.get("version")
        return chart["chart"], url, chart.get("version")

    def helm_release(self, hr):
        meta, spec = hr["metadata"], hr["spec"]
        key = f"{meta['namespace']}/{meta['name']}"
        gen = meta.get("generation", 1)
        try:
            chart, repo, version = self.chart_source(hr)
        except RuntimeError as e:
            self.set_status(hr, False, "ArtifactFailed", str(e))
            return
        requested = (meta.get("annotations") or {}).get("reconcile.fluxcd.io/requestedAt")
        digest = hashlib.sha256(json.dumps([spec, chart, repo, version, requested], sort_keys=True).encode())
        digest = digest.hexdigest()
        done = self.releases.get(key)
        # Done for this generation and request; a failure is retried after 15 s (helm-controller retries too).
        if done and done[:2] == (gen, digest) and (done[2] or time.time() - done[3] < 15):
            return
        release = spec.get("releaseName") or meta["name"]
        namespace = spec.get("targetNamespace") or meta["namespace"]
        try:
            merged = self.values(hr)
        except RuntimeError as e:
            self.set_status(hr, False, "InitFailed", str(e))
            self.releases[key] = (gen, digest, False, time.time())
            return
        with tempfile.NamedTemporaryFile("w", suffix=".json", dir=self.state) as values:
            json.dump(merged, values)
            values.flush()
            cmd = ["helm", "upgrade", "--install", release, chart, "--namespace", namespace,
                   "--kubeconfig", self.kubeconfig, "-f", values.name, "--wait", "--timeout", "120s"]
            cmd += (["--repo", repo] if repo else []) + (["--version", version] if version else [])
            if spec.get("install", {}).get("createNamespace"):
                cmd.append("--create-namespace")
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode == 0:
            self.set_status(hr, True, "UpgradeSucceeded", f"Helm install/upgrade succeeded for {chart} {version}",
                            version)
            self.log(f"HelmRelease {key}: {chart} {version} installed")
        else:
            msg = (proc.stderr.strip().splitlines() or ["helm failed"])[-1]
            self.set_status(hr, False, "UpgradeFailed", msg, version)
            self.log(f"HelmRelease {key}: {msg}")
        self.releases[key] = (gen, digest, proc.returncode == 0, time.time())

    def values(self, hr):
        """valuesFrom (Secrets, ConfigMaps) merged in order, then spec.values on top, like helm-controller."""
        def merge(base, top):
            for k, v in top.items():
                base[k] = merge(base.get(k, {}), v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
            return base

        out = {}
        ns = hr["metadata"]["namespace"]
        for ref in hr["spec"].get("valuesFrom") or []:
            kind = ref["kind"].lower()
            obj = self.get(kind, ref["name"], ns)
            if obj is None:
                if ref.get("optional"):
                    continue
                raise RuntimeError(f"{ref['kind']} {ns}/{ref['name']} for valuesFrom not found")
            key = ref.get("valuesKey", "values.yaml")
            raw = (obj.get("data") or {}).get(key)
            if raw is None:
                raise RuntimeError(f"{ref['kind']} {ns}/{ref['name']} has no key {key}")
            text = base64.b64decode(raw).decode() if kind == "secret" else raw
            out = merge(out, yaml.safe_load(text) or {})
        return merge(out, hr["spec"].get("values") or {})

    def set_status(self, hr, ready, reason, message, version=None):
        gen = hr["metadata"].get("generation", 1)
        status = {"observedGeneration": gen, "conditions": [{
            "type": "Ready", "status": "True" if ready else "False", "reason": reason, "message": message,
            "observedGeneration": gen, "lastTransitionTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}]}
        if version:
            status["lastAttemptedRevision"] = version
        requested = (hr["metadata"].get("annotations") or {}).get("reconcile.fluxcd.io/requestedAt")
        if requested:
            status["lastHandledReconcileAt"] = requested
        self.kubectl("patch", "helmreleases.helm.toolkit.fluxcd.io", hr["metadata"]["name"], "-n",
                     hr["metadata"]["namespace"], "--subresource=status", "--type=merge",
                     "-p", json.dumps({"status": status}), check=False)

    def once(self):
        try:
            self.sync()
        except (RuntimeError, subprocess.CalledProcessError) as e:
            self.log(f"sync: {e}")
        hrs = self.get("helmreleases.helm.toolkit.fluxcd.io") or {"items": []}
        for hr in hrs["items"]:
            self.helm_release(hr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cmd", choices=["up", "down", "status", "once", "_run"])
    ap.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG", ""))
    ap.add_argument("--dir", type=Path, default=LAB / ".state" / "fluxsim")
    ap.add_argument("--interval", type=float, default=2.0)
    args = ap.parse_args()
    state = args.dir.resolve()
    pidfile = state / "fluxsim.pid"

    def running():
        try:
            pid = int(pidfile.read_text())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    if args.cmd == "up":
        if running():
            print(f"fluxsim: running (pid {running()})")
            return
        if not args.kubeconfig:
            sys.exit("fluxsim: --kubeconfig (or KUBECONFIG) is required")
        state.mkdir(parents=True, exist_ok=True)
        with open(state / "fluxsim.log", "ab") as log:
            proc = subprocess.Popen([sys.executable, __file__, "_run", "--kubeconfig", args.kubeconfig,
                                     "--dir", str(state), "--interval", str(args.interval)],
                                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        pidfile.write_text(str(proc.pid))
        print(f"fluxsim: started (pid {proc.pid}, log {state / 'fluxsim.log'})")
    elif args.cmd == "down":
        pid = running()
        if pid:
            os.kill(pid, signal.SIGTERM)
            for _ in range(50):
                if not running():
                    break
                time.sleep(0.1)
        pidfile.unlink(missing_ok=True)
        shutil.rmtree(state / "src", ignore_errors=True)
        print("fluxsim: stopped")
    elif args.cmd == "status":
        pid = running()
        print(f"fluxsim: running (pid {pid})" if pid else "fluxsim: not running")
        sys.exit(0 if pid else 1)
    else:
        state.mkdir(parents=True, exist_ok=True)
        sim = Sim(args.kubeconfig, state)
        if args.cmd == "once":
            sim.once()
            return
        while True:
            sim.once()
            time.sleep(args.interval)


if __name__ == "__main__":
    main()
