# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: HomeCluster developers
"""Run the real external-dns (built by lab/tools, `make tools`) as the lab's stand-in pods run it.

    lab/cloudflare_sim/externaldns once --kubeconfig K --sim-dir D [--namespace NS] [--name DEPLOY]

Reads each external-dns Deployment of the lab cluster whose arguments say --provider=cloudflare
(the stand-in chart renders them as upstream's chart does), resolves its environment (values and
Secret references, e.g. CF_API_TOKEN) and runs the binary with those arguments, --kubeconfig and
--once, pointed at the Cloudflare simulator of D (CLOUDFLARE_BASE_URL, the simulator's lab CA as
SSL_CERT_FILE). One sync loop per Deployment, in the foreground; the exit code is external-dns's.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

CACHE = Path(os.environ.get("HOMECLUSTER_CACHE", Path.home() / ".cache" / "homecluster"))


def kubectl(kubeconfig, *args):
    binary = shutil.which("kubectl") or str(CACHE / "bin" / "kubectl")
    out = subprocess.run([binary, "--kubeconfig", kubeconfig, *args, "-o", "json"], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


def resolve_env(kubeconfig, namespace, env):
    out = {}
    for item in env or []:
        if "value" in item:
            out[item["name"]] = item["value"]
            continue
        ref = (item.get("valueFrom") or {}).get("secretKeyRef")
        if ref:
            secret = kubectl(kubeconfig, "-n", namespace, "get", "secret", ref["name"])
            out[item["name"]] = base64.b64decode(secret["data"][ref["key"]]).decode()
    return out


def cmd_once(args):
    binary = shutil.which("external-dns", path=str(CACHE / "bin")) or shutil.which("external-dns")
    if not binary:
        print("external-dns is not built: make tools (lab/tools/versions.json, external-dns)", file=sys.stderr)
        return 2
    with open(os.path.join(args.sim_dir, "endpoint.json"), encoding="utf-8") as f:
        sim = json.load(f)
    selector = ["-l", "app.kubernetes.io/name=external-dns"]
    scope = ["-n", args.namespace] if args.namespace else ["-A"]
    deployments = kubectl(args.kubeconfig, "get", "deployments", *scope, *selector)["items"]
    rc = 0
    ran = 0
    for dep in deployments:
        if args.name and dep["metadata"]["name"] != args.name:
            continue
        container = dep["spec"]["template"]["spec"]["containers"][0]
        dargs = container.get("args") or []
        if "--provider=cloudflare" not in dargs:
            continue
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
        env.update(resolve_env(args.kubeconfig, dep["metadata"]["namespace"], container.get("env")))
        env.update({"CLOUDFLARE_BASE_URL": sim["api"] + "/", "SSL_CERT_FILE": sim["ca"]})
        cmd = [binary, *dargs, "--kubeconfig", args.kubeconfig, "--once"]
        print(f"== {dep['metadata']['namespace']}/{dep['metadata']['name']}: external-dns {' '.join(dargs)} --once",
              flush=True)
        proc = subprocess.run(cmd, env=env, check=False, timeout=args.timeout)
        rc = rc or proc.returncode
        ran += 1
    if not ran:
        print("no external-dns Deployment with --provider=cloudflare found", file=sys.stderr)
        return 3
    return rc


def main(argv=None):
    parser = argparse.ArgumentParser(prog="externaldns", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    once = sub.add_parser("once")
    once.add_argument("--kubeconfig", required=True)
    once.add_argument("--sim-dir", required=True)
    once.add_argument("--namespace", default="")
    once.add_argument("--name", default="")
    once.add_argument("--timeout", type=int, default=120)
    args = parser.parse_args(argv)
    return cmd_once(args)


if __name__ == "__main__":
    sys.exit(main())
