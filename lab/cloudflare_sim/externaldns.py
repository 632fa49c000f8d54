# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: HomeCluster developers
"""Run the real external-dns (built by lab/tools, `make tools`) as the lab's stand-in pods run it.

    lab/cloudflare_sim/externaldns once --kubeconfig K --sim-dir D [--namespace NS] [--name DEPLOY]
    lab/cloudflare_sim/externaldns up --kubeconfig K --sim-dir D --dir STATE   # the lab's controller
    lab/cloudflare_sim/externaldns down --dir STATE

Reads each external-dns Deployment of the lab cluster whose arguments say --provider=cloudflare
or --provider=rfc2136 (the stand-in chart renders them as upstream's chart does), resolves its
environment (values and Secret references, e.g. CF_API_TOKEN or EXTERNAL_DNS_RFC2136_TSIG_SECRET)
and runs the binary with those arguments, --kubeconfig and its metrics listener on the
simulator's loopback address. A Cloudflare instance is pointed at the Cloudflare simulator of D
(CLOUDFLARE_BASE_URL, the simulator's lab CA as SSL_CERT_FILE); an rfc2136 instance talks to the
DNS server its own arguments name (the lab's BIND, lab/dns), unchanged.

`once`: one sync loop (--once) per Deployment, in the foreground; the exit code is external-dns's.
`up`: a supervisor in the background (as lab/flux runs the Flux controllers) that, once the
kubeconfig exists, starts external-dns for each such Deployment with its own --interval loop,
restarts it when the Deployment's arguments or environment change and stops it when the
Deployment goes; logs in STATE/<namespace>_<name>.log. `down` stops the supervisor and them.
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
import time
from pathlib import Path

CACHE = Path(os.environ.get("HOMECLUSTER_CACHE", Path.home() / ".cache" / "homecluster"))
PROVIDERS = ("cloudflare", "rfc2136")


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


def binary_path():
    return shutil.which("external-dns", path=str(CACHE / "bin")) or shutil.which("external-dns")


def commands(args, sim, binary, *, once):
    """(namespace/name, argv, env) of each external-dns Deployment for Cloudflare."""
    selector = ["-l", "app.kubernetes.io/name=external-dns"]
    scope = ["-n", args.namespace] if getattr(args, "namespace", "") else ["-A"]
    out = []
    for dep in kubectl(args.kubeconfig, "get", "deployments", *scope, *selector)["items"]:
        if getattr(args, "name", "") and dep["metadata"]["name"] != args.name:
            continue
        container = dep["spec"]["template"]["spec"]["containers"][0]
        dargs = container.get("args") or []
        provider = next((a.split("=", 1)[1] for a in dargs if a.startswith("--provider=")), "")
        if provider not in PROVIDERS:
            continue
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
        env.update(resolve_env(args.kubeconfig, dep["metadata"]["namespace"], container.get("env")))
        if provider == "cloudflare":
            env.update({"CLOUDFLARE_BASE_URL": sim["api"] + "/", "SSL_CERT_FILE": sim["ca"]})
        # The metrics/health listener on the simulator's loopback address, any free port (the
        # default :7979 would bind every interface).
        argv = [binary, *dargs, f"--metrics-address={sim['host']}:0", "--kubeconfig", args.kubeconfig]
        argv += ["--once"] if once else []
        out.append((f"{dep['metadata']['namespace']}/{dep['metadata']['name']}", argv, env))
    return out


def cmd_once(args):
    binary = binary_path()
    if not binary:
        print("external-dns is not built: make tools (lab/tools/versions.json, external-dns)", file=sys.stderr)
        return 2
    with open(os.path.join(args.sim_dir, "endpoint.json"), encoding="utf-8") as f:
        sim = json.load(f)
    rc = 0
    ran = 0
    for _key, cmd, env in commands(args, sim, binary, once=True):
        dargs = cmd[1:-4]
        print(f"== {_key}: external-dns {' '.join(dargs)} --once", flush=True)
        proc = subprocess.run(cmd, env=env, check=False, timeout=args.timeout)
        rc = rc or proc.returncode
        ran += 1
    if not ran:
        print("no external-dns Deployment with --provider=cloudflare or rfc2136 found", file=sys.stderr)
        return 3
    return rc


def cmd_serve(args):
    """The supervisor loop (what `up` starts in the background)."""
    procs = {}  # key -> (digest, Popen)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    while not stop:
        binary = binary_path()
        sim_ep = os.path.join(args.sim_dir, "endpoint.json")
        wanted = {}
        if binary and os.path.exists(args.kubeconfig) and os.path.exists(sim_ep):
            with open(sim_ep, encoding="utf-8") as f:
                sim = json.load(f)
            try:
                for key, argv, env in commands(args, sim, binary, once=False):
                    digest = hashlib.sha256(json.dumps([argv, env], sort_keys=True).encode()).hexdigest()
                    wanted[key] = (digest, argv, env)
            except (subprocess.CalledProcessError, ValueError, KeyError):
                wanted = {k: (d, None, None) for k, (d, _p) in procs.items()}  # API not answering: keep as is
        for key in list(procs):
            digest, proc = procs[key]
            if key not in wanted or wanted[key][0] != digest or proc.poll() is not None:
                if proc.poll() is None:
                    proc.terminate()
                    proc.wait(timeout=10)
                del procs[key]
        for key, (digest, argv, env) in wanted.items():
            if key not in procs and argv:
                log = open(os.path.join(args.dir, key.replace("/", "_") + ".log"), "ab")
                procs[key] = (digest, subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                                       stdin=subprocess.DEVNULL))
        time.sleep(args.poll)
    for _digest, proc in procs.values():
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)
    return 0


def cmd_up(args):
    os.makedirs(args.dir, exist_ok=True)
    pidfile = os.path.join(args.dir, "supervisor.pid")
    if os.path.exists(pidfile):
        try:
            os.kill(int(open(pidfile).read().strip()), 0)
            return 0
        except (ProcessLookupError, ValueError):
            pass
    cmd = [sys.executable, os.path.abspath(__file__), "serve", "--kubeconfig", args.kubeconfig,
           "--sim-dir", args.sim_dir, "--dir", args.dir, "--poll", str(args.poll)]
    with open(os.path.join(args.dir, "supervisor.log"), "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    with open(pidfile, "w", encoding="utf-8") as f:
        f.write(str(proc.pid))
    print(f"external-dns supervisor {proc.pid} (logs in {args.dir})")
    return 0


def cmd_down(args):
    pidfile = os.path.join(args.dir, "supervisor.pid")
    if not os.path.exists(pidfile):
        return 0
    with open(pidfile, encoding="utf-8") as f:
        pid = int(f.read().strip() or 0)
    try:
        os.kill(pid, signal.SIGTERM)
        for _ in range(150):
            os.kill(pid, 0)
            time.sleep(0.1)
    except ProcessLookupError:
        pass
    os.remove(pidfile)
    return 0


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
    for name in ("up", "serve"):
        p = sub.add_parser(name)
        p.add_argument("--kubeconfig", required=True)
        p.add_argument("--sim-dir", required=True)
        p.add_argument("--dir", required=True)
        p.add_argument("--poll", type=float, default=5.0)
    down = sub.add_parser("down")
    down.add_argument("--dir", required=True)
    args = parser.parse_args(argv)
    return {"once": cmd_once, "up": cmd_up, "serve": cmd_serve, "down": cmd_down}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
