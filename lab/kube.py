#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""The lab's Kubernetes control plane: real etcd, kube-apiserver, kube-controller-manager and
kube-scheduler on a loopback address, with kwok giving nodes and pods their lifecycle.

  lab/kube up     [--dir DIR] [--address 127.0.10.10] [--port 6443]
                  [--ca-cert F --ca-key F] [--sa-key F] [--node NAME=IP[:ROLE]] ...
                  [--apiserver-arg=FLAG ...]
  lab/kube apiserver-restart [--dir DIR] [--apiserver-arg=FLAG ...]
  lab/kube down   [--dir DIR]
  lab/kube status [--dir DIR]
  lab/kube node add    [--dir DIR] --name N --ip IP [--role worker|controlplane] [--label k=v]
  lab/kube node stop [--dir DIR] --name N      (kubelet gone: the Node object stays and goes NotReady)
  lab/kube node remove [--dir DIR] --name N

State (certificates, kubeconfigs, etcd data, logs, pids) lives in DIR, by default
lab/.state/kube. kwok runs with its Stage CRD: the stages in lab/kwok/stages/*.yaml are
applied as soon as the API group they refer to is served, so a custom resource whose CRD a
chart installs later still gets its stage (kwok itself does not retry a stage whose resource
is not in /openapi/v3 yet).
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import ipaddress
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LAB = Path(__file__).resolve().parent
STAGES = LAB / "kwok" / "stages"
CACHE = Path(os.environ.get("HOMECLUSTER_CACHE", Path.home() / ".cache" / "homecluster")).expanduser()
BIN = CACHE / "bin"
SERVICE_CIDR = "10.96.0.0/12"
POD_CIDR = "10.244.0.0/16"
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "stage-sync")


class LabError(Exception):
    """A failure with a message for the person running the lab."""


# --------------------------------------------------------------------------- PKI

def _load_key(data: bytes):
    return serialization.load_pem_private_key(data, password=None)


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _sign_algorithm(key):
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def _new_cert(subject: x509.Name, pub, issuer: x509.Name, issuer_key, *, ca: bool = False,
              usages=(), sans=()) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(pub)
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(days=365 if not ca else 3650))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False),
                                        critical=True)
    else:
        builder = builder.add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False),
                                        critical=True)
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return builder.sign(issuer_key, _sign_algorithm(issuer_key))


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _write(path: Path, data: bytes, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, mode)


def make_pki(pki: Path, address: str, ca_cert: Path | None, ca_key: Path | None, sa_key: Path | None) -> None:
    """Write the CA (given or new), the service-account key, serving and client certificates."""
    pki.mkdir(parents=True, exist_ok=True)
    if ca_cert and ca_key:
        ca_pem, ca_key_pem = ca_cert.read_bytes(), ca_key.read_bytes()
    elif ca_cert or ca_key:
        raise LabError("--ca-cert and --ca-key go together: pass both or neither")
    else:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _new_cert(_name("kubernetes"), key.public_key(), _name("kubernetes"), key, ca=True)
        ca_pem, ca_key_pem = _pem_cert(cert), _pem_key(key)
    _write(pki / "ca.crt", ca_pem, 0o644)
    _write(pki / "ca.key", ca_key_pem)
    ca = x509.load_pem_x509_certificate(ca_pem)
    ca_key_obj = _load_key(ca_key_pem)

    sa = _load_key(sa_key.read_bytes()) if sa_key else ec.generate_private_key(ec.SECP256R1())
    if not isinstance(sa, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise LabError("the service-account key must be an RSA or ECDSA private key (PEM)")
    _write(pki / "sa.key", _pem_key(sa))
    _write(pki / "sa.pub", sa.public_key().public_bytes(serialization.Encoding.PEM,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo), 0o644)

    service_ip = next(ipaddress.ip_network(SERVICE_CIDR).hosts())
    sans = [x509.IPAddress(ipaddress.ip_address(address)), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(service_ip), x509.DNSName("localhost")]
    sans += [x509.DNSName(n) for n in ("kubernetes", "kubernetes.default", "kubernetes.default.svc",
                                        "kubernetes.default.svc.cluster.local")]
    issue = [("apiserver", "kube-apiserver", None, [ExtendedKeyUsageOID.SERVER_AUTH], sans),
             ("admin", "admin", "system:masters", [ExtendedKeyUsageOID.CLIENT_AUTH], []),
             ("controller-manager", "system:kube-controller-manager", None, [ExtendedKeyUsageOID.CLIENT_AUTH], []),
             ("scheduler", "system:kube-scheduler", None, [ExtendedKeyUsageOID.CLIENT_AUTH], []),
             ("kwok", "kwok-controller", "system:masters", [ExtendedKeyUsageOID.CLIENT_AUTH], [])]
    for stem, cn, org, usages, alt in issue:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _new_cert(_name(cn, org), key.public_key(), ca.subject, ca_key_obj, usages=usages, sans=alt)
        _write(pki / f"{stem}.crt", _pem_cert(cert), 0o644)
        _write(pki / f"{stem}.key", _pem_key(key))


def kubeconfig(pki: Path, server: str, user: str, cluster: str = "homecluster-lab") -> str:
    def b64(name: str) -> str:
        return base64.b64encode((pki / name).read_bytes()).decode()

    doc = {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": cluster, "cluster": {"server": server, "certificate-authority-data": b64("ca.crt")}}],
        "users": [{"name": f"{user}@{cluster}", "user": {"client-certificate-data": b64(f"{user}.crt"),
                                                         "client-key-data": b64(f"{user}.key")}}],
        "contexts": [{"name": f"{user}@{cluster}", "context": {"cluster": cluster, "user": f"{user}@{cluster}"}}],
        "current-context": f"{user}@{cluster}",
    }
    return yaml.safe_dump(doc, sort_keys=False)


# --------------------------------------------------------------------------- processes

def _binary(name: str) -> str:
    path = BIN / name
    if not path.exists():
        raise LabError(f"{path} is missing: run `make tools` first")
    return str(path)


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((host, port)) == 0


def _pids(state: Path) -> dict[str, int]:
    path = state / "pids.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.split(")")[-1].split()[0] == "Z":
            return False
    return True


def _spawn(state: Path, name: str, argv: list[str]) -> int:
    logs = state / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / f"{name}.log", "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=state)
    pids = _pids(state)
    pids[name] = proc.pid
    (state / "pids.json").write_text(json.dumps(pids, indent=2))
    return proc.pid


def _wait(what: str, check, timeout: float, state: Path, component: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        pid = _pids(state).get(component)
        if pid and not _alive(pid):
            tail = (state / "logs" / f"{component}.log").read_text(errors="replace")[-3000:]
            raise LabError(f"{component} exited while waiting for {what}; log tail:\n{tail}")
        time.sleep(0.2)
    raise LabError(f"timed out after {timeout:.0f}s waiting for {what} (logs in {state / 'logs'})")


def _readyz(state: Path, server: str) -> bool:
    pki = state / "pki"
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    try:
        with urllib.request.urlopen(f"{server}/readyz", context=ctx, timeout=2) as resp:  # noqa: S310
            return resp.status == 200
    except OSError:
        return False


def kubectl(state: Path, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([_binary("kubectl"), "--kubeconfig", str(state / "admin.kubeconfig"), *args],
                          input=stdin, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise LabError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc


def _config(state: Path) -> dict:
    path = state / "config.json"
    if not path.exists():
        raise LabError(f"no lab control plane in {state}: run `lab/kube up` first")
    return json.loads(path.read_text())


def up(args: argparse.Namespace) -> None:
    state: Path = args.dir
    if state.exists() and any(_alive(p) for p in _pids(state).values()):
        status_ok = _readyz(state, _config(state)["server"]) if (state / "config.json").exists() else False
        if status_ok:
            print(f"lab control plane already running: {state / 'admin.kubeconfig'}")
            add_nodes(state, args.node)
            return
        raise LabError(f"processes from an earlier run are still alive in {state}: run `lab/kube down` first")
    ipaddress.ip_address(args.address)
    if not ipaddress.ip_address(args.address).is_loopback:
        raise LabError(f"--address {args.address} is not a loopback address; the lab binds 127.0.0.0/8 only")
    for port in (args.port, args.etcd_port, args.etcd_port + 1):
        if _port_open(args.address, port):
            raise LabError(f"{args.address}:{port} is already in use; stop whatever listens there or pick "
                           "another --address")
    started = time.monotonic()
    state.mkdir(parents=True, exist_ok=True)
    (state / "pids.json").write_text("{}")
    pki = state / "pki"
    make_pki(pki, args.address, args.ca_cert, args.ca_key, args.sa_key)
    server = f"https://{args.address}:{args.port}"
    cfg = {"server": server, "address": args.address, "port": args.port, "etcd_port": args.etcd_port,
           "apiserver_args": list(args.apiserver_arg)}
    (state / "config.json").write_text(json.dumps(cfg, indent=2))
    for user in ("admin", "controller-manager", "scheduler", "kwok"):
        name = "admin.kubeconfig" if user == "admin" else f"{user}.kubeconfig"
        _write(state / name, kubeconfig(pki, server, user).encode())

    etcd_url = f"http://{args.address}:{args.etcd_port}"
    _spawn(state, "etcd", [
        _binary("etcd"), "--name", "lab", "--data-dir", str(state / "etcd"),
        "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
        "--listen-peer-urls", f"http://{args.address}:{args.etcd_port + 1}",
        "--initial-advertise-peer-urls", f"http://{args.address}:{args.etcd_port + 1}",
        "--initial-cluster", f"lab=http://{args.address}:{args.etcd_port + 1}",
        "--listen-metrics-urls", "", "--log-level", "warn", "--quota-backend-bytes", str(2 * 1024**3),
        "--unsafe-no-fsync"])
    _wait("etcd", lambda: _port_open(args.address, args.etcd_port), 30, state, "etcd")

    _spawn(state, "kube-apiserver", _apiserver_argv(state, cfg))
    _wait("kube-apiserver /readyz", lambda: _readyz(state, server), 90, state, "kube-apiserver")

    common = ["--leader-elect=false", "--secure-port=0", "--profiling=false", "--v=1"]
    kcm = state / "controller-manager.kubeconfig"
    _spawn(state, "kube-controller-manager", [
        _binary("kube-controller-manager"), f"--kubeconfig={kcm}",
        f"--authentication-kubeconfig={kcm}", f"--authorization-kubeconfig={kcm}",
        f"--root-ca-file={pki / 'ca.crt'}", f"--service-account-private-key-file={pki / 'sa.key'}",
        f"--cluster-signing-cert-file={pki / 'ca.crt'}", f"--cluster-signing-key-file={pki / 'ca.key'}",
        "--use-service-account-credentials=true", f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--controllers=*,bootstrapsigner,tokencleaner",
        # kwok posts node heartbeats (kwok/stages/02-node-heartbeat.yaml); on a loaded two-core
        # machine they can come late, and a node marked NotReady leaves its pods NotReady.
        "--node-monitor-grace-period=5m", *common])
    sched = state / "scheduler.kubeconfig"
    _spawn(state, "kube-scheduler", [
        _binary("kube-scheduler"), f"--kubeconfig={sched}", f"--authentication-kubeconfig={sched}",
        f"--authorization-kubeconfig={sched}", *common])
    _spawn(state, "kwok", [
        _binary("kwok"), f"--kubeconfig={state / 'kwok.kubeconfig'}", "--manage-all-nodes=false",
        f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake", "--enable-crds=Stage",
        f"--cidr={POD_CIDR}", f"--node-ip={args.address}"])
    _spawn(state, "stage-sync", [sys.executable, str(Path(__file__).resolve()), "_stage-sync", "--dir", str(state)])
    # The Stage CRD comes from kwok itself once it starts; nodes are usable when pod and node stages are in.
    _wait("kwok stages", lambda: _stages_applied(state), 60, state, "stage-sync")
    add_nodes(state, args.node)
    _wait("the default service account", lambda: kubectl(state, "get", "serviceaccount", "default",
                                                          check=False).returncode == 0, 60, state,
          "kube-controller-manager")
    print(f"lab control plane up at {server} in {time.monotonic() - started:.1f}s")
    print(f"  export KUBECONFIG={state / 'admin.kubeconfig'}")


def _apiserver_argv(state: Path, cfg: dict) -> list[str]:
    """kube-apiserver's command line: the lab's flags, then the scenario's own (config.json
    apiserver_args, from `up --apiserver-arg` or `apiserver-restart --apiserver-arg`)."""
    pki = state / "pki"
    address = cfg["address"]
    return [
        _binary("kube-apiserver"), f"--etcd-servers=http://{address}:{cfg['etcd_port']}",
        f"--bind-address={address}", f"--advertise-address={address}", f"--secure-port={cfg['port']}",
        f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        f"--service-account-key-file={pki / 'sa.pub'}", f"--service-account-signing-key-file={pki / 'sa.key'}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-cluster-ip-range={SERVICE_CIDR}", "--authorization-mode=Node,RBAC",
        "--allow-privileged=true", "--endpoint-reconciler-type=none", "--profiling=false",
        "--enable-admission-plugins=NodeRestriction", "--v=1", *cfg.get("apiserver_args", [])]


def apiserver_restart(args: argparse.Namespace) -> None:
    """Stop the running kube-apiserver and start it again with the given extra flags (replacing
    the earlier extra flags; none given: the lab's own flags only), until /readyz answers. etcd,
    the controllers and kwok keep running; they reconnect."""
    state: Path = args.dir
    cfg = _config(state)
    pid = _pids(state).get("kube-apiserver")
    if pid and _alive(pid):
        # As `down` does: SIGTERM, then SIGKILL after 20 s (its graceful termination can wait on
        # the controllers' open requests; the API server keeps no state of its own, etcd does).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.2)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        _wait("kube-apiserver to stop", lambda: not _alive(pid), 10, state, "etcd")
    _wait(f"{cfg['address']}:{cfg['port']} to be free", lambda: not _port_open(cfg["address"], cfg["port"]), 30,
          state, "etcd")
    cfg["apiserver_args"] = list(args.apiserver_arg)
    (state / "config.json").write_text(json.dumps(cfg, indent=2))
    started = time.monotonic()
    _spawn(state, "kube-apiserver", _apiserver_argv(state, cfg))
    _wait("kube-apiserver /readyz", lambda: _readyz(state, cfg["server"]), 90, state, "kube-apiserver")
    extra = cfg["apiserver_args"] or "no extra flags"
    print(f"kube-apiserver restarted in {time.monotonic() - started:.1f}s with {extra}")


def _stages_applied(state: Path) -> bool:
    return (state / "stages.applied").exists()


# --------------------------------------------------------------------------- kwok stages

def _stage_docs() -> list[dict]:
    docs = []
    for path in sorted(STAGES.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def _openapi_paths(state: Path) -> set[str]:
    proc = kubectl(state, "get", "--raw", "/openapi/v3", check=False)
    if proc.returncode != 0:
        return set()
    return set(json.loads(proc.stdout).get("paths", {}))


def _openapi_kinds(state: Path, path: str) -> set[str]:
    """The kinds whose schema the API server publishes under /openapi/v3/<path>."""
    proc = kubectl(state, "get", "--raw", f"/openapi/v3/{path}", check=False)
    if proc.returncode != 0:
        return set()
    schemas = (json.loads(proc.stdout).get("components") or {}).get("schemas") or {}
    return {name.rsplit(".", 1)[-1] for name in schemas}


def _failed_stage_kinds(state: Path, offset: int) -> tuple[set[tuple[str, str]], int]:
    """(apiGroup, kind) of each stage controller kwok failed to start since offset in its log
    ("failed to start controller ... no matches for ..."), and the new offset."""
    log = state / "logs" / "kwok.log"
    if not log.exists():
        return set(), offset
    with log.open("rb") as f:
        f.seek(offset)
        data = f.read()
    failed = set()
    for line in data.decode(errors="replace").splitlines():
        if "failed to start controller" not in line:
            continue
        try:
            ref = json.loads(line).get("ref") or {}
        except ValueError:
            continue
        if ref.get("Kind"):
            failed.add((ref.get("APIGroup", ""), ref["Kind"]))
    return failed, offset + len(data)


def _forget_failed_stages(state: Path, docs: list[dict], applied: dict, failed: set) -> None:
    """Delete each applied Stage whose controller kwok failed to start, so it is applied again."""
    for doc in docs:
        ref = doc["spec"]["resourceRef"]
        if (ref["apiGroup"], ref["kind"]) in failed and doc["metadata"]["name"] in applied:
            kubectl(state, "delete", "stage.kwok.x-k8s.io", doc["metadata"]["name"], "--ignore-not-found",
                    check=False)
            applied.pop(doc["metadata"]["name"], None)


def _openapi_path(api_group: str) -> str:
    """kwok's resourceRef.apiGroup ("v1", "ceph.rook.io/v1") as an /openapi/v3 path."""
    return f"api/{api_group}" if "/" not in api_group else f"apis/{api_group}"


def stage_sync(args: argparse.Namespace) -> None:
    """Apply each Stage once the API it refers to is published; runs until killed.

    kwok starts a stage's controller when the Stage object appears and needs the resource's
    schema from /openapi/v3 then; if it is not there yet, kwok logs an error and never retries.
    A CRD shows up in API discovery before its OpenAPI path, so the path is what is waited for, and
    within it the kind's own schema: a group's path appears with its first CRD, and a Stage for a
    second kind of that group applied before that kind's schema is published was never served
    (molecule/e2e runs saw a CephBlockPool stay without a phase while CephCluster's moved on).
    """
    state: Path = args.dir
    applied: dict[str, str] = {}
    crd_yaml = LAB / "kwok" / "stage-crd.yaml"
    while True:
        if kubectl(state, "apply", "--server-side", "-f", str(crd_yaml), check=False).returncode == 0:
            break
        time.sleep(1)
    kubectl(state, "wait", "--for=condition=Established", "crd/stages.kwok.x-k8s.io", "--timeout=60s")
    log_offset = 0
    while True:
        docs = _stage_docs()
        # kwok does not retry a stage controller it failed to start (its REST mapper did not know
        # the kind yet): such a Stage is deleted and applied again once its kind is published.
        failed, log_offset = _failed_stage_kinds(state, log_offset)
        _forget_failed_stages(state, docs, applied, failed)
        published = _openapi_paths(state)
        kinds: dict[str, set[str]] = {}
        pending = []
        for doc in docs:
            name = doc["metadata"]["name"]
            body = yaml.safe_dump(doc)
            if applied.get(name) == body:
                continue
            path = _openapi_path(doc["spec"]["resourceRef"]["apiGroup"])
            if path not in published:
                continue
            if path not in kinds:
                kinds[path] = _openapi_kinds(state, path)
            if doc["spec"]["resourceRef"]["kind"] not in kinds[path]:
                continue
            pending.append(doc)
            applied[name] = body
        if pending:
            manifest = yaml.safe_dump_all(pending)
            if kubectl(state, "apply", "--server-side", "--force-conflicts", "-f", "-", stdin=manifest,
                       check=False).returncode != 0:
                for doc in pending:
                    applied.pop(doc["metadata"]["name"], None)
        core = [d for d in docs if d["spec"]["resourceRef"]["apiGroup"] == "v1"]
        if core and all(d["metadata"]["name"] in applied for d in core):
            (state / "stages.applied").write_text(json.dumps(sorted(applied)))
        time.sleep(2)


# --------------------------------------------------------------------------- nodes

def _kubernetes_version() -> str:
    versions = json.loads((LAB / "tools" / "versions.json").read_text())
    return versions["go_tools"]["kubernetes"]["version"]


def _node_manifest(name: str, ip: str, role: str, labels: dict[str, str],
                   os_image: str = "Talos (homecluster lab)") -> dict:
    all_labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                  "type": "kwok", **labels}
    if role == "controlplane":
        all_labels["node-role.kubernetes.io/control-plane"] = ""
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": all_labels, "annotations": {KWOK_ANNOTATION: "fake",
                                                                         "homecluster.dev/address": ip}},
        "spec": {},
        "status": {"addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
                   "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux",
                                "osImage": os_image, "kernelVersion": "lab",
                                "containerRuntimeVersion": "containerd://lab",
                                "kubeletVersion": _kubernetes_version(), "kubeProxyVersion": "",
                                "machineID": "", "systemUUID": "", "bootID": ""},
                   "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "250"},
                   "capacity": {"cpu": "32", "memory": "256Gi", "pods": "250"}},
    }


def _parse_node(spec: str) -> tuple[str, str, str]:
    try:
        name, rest = spec.split("=", 1)
        ip, _, role = rest.partition(":")
        ipaddress.ip_address(ip)
    except ValueError as exc:
        raise LabError(f"--node {spec!r}: expected NAME=IP[:controlplane|worker]") from exc
    return name, ip, role or "worker"


def add_nodes(state: Path, specs: list[str], labels: dict[str, str] | None = None) -> None:
    nodes = [_parse_node(s) for s in specs or []]
    if not nodes:
        return
    docs = [_node_manifest(n, ip, role, labels or {}) for n, ip, role in nodes]
    existing = set(kubectl(state, "get", "nodes", "-o", "name", check=False).stdout.split())
    fresh = [d for d in docs if f"node/{d['metadata']['name']}" not in existing]
    if fresh:
        kubectl(state, "create", "-f", "-", stdin=yaml.safe_dump_all(fresh))
    # a node that was reset keeps its Node object (`node stop`); its kubelet reports again
    back = [d["metadata"]["name"] for d in docs if d not in fresh]
    if back:
        kubectl(state, "annotate", "--overwrite", *[f"node/{n}" for n in back], f"{KWOK_ANNOTATION}=fake")
    names = [d["metadata"]["name"] for d in docs]
    kubectl(state, "wait", "--for=condition=Ready", *[f"node/{n}" for n in names], "--timeout=60s")


def node_cmd(args: argparse.Namespace) -> None:
    state: Path = args.dir
    _config(state)
    if args.action == "add":
        labels = dict(kv.split("=", 1) for kv in args.label or [])
        add_nodes(state, [f"{args.name}={args.ip}:{args.role}"], labels)
        print(f"node {args.name} Ready")
    elif args.action == "stop":
        # the kubelet is gone (a Talos reset or power off): the Node object stays, kwok stops its
        # heartbeats and the controller-manager marks it NotReady after the grace period, as on Talos
        if f"node/{args.name}" in kubectl(state, "get", "nodes", "-o", "name", check=False).stdout.split():
            kubectl(state, "annotate", f"node/{args.name}", f"{KWOK_ANNOTATION}-")
        print(f"node {args.name} stopped")
    else:
        kubectl(state, "delete", "node", args.name, "--ignore-not-found", "--wait=true")
        print(f"node {args.name} removed")


# --------------------------------------------------------------------------- down / status

def down(args: argparse.Namespace) -> None:
    state: Path = args.dir
    pids = _pids(state)
    order = list(reversed(COMPONENTS))
    for name in sorted(pids, key=lambda n: order.index(n) if n in order else -1):
        pid = pids[name]
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_alive(p) for p in pids.values()):
        time.sleep(0.2)
    for pid in pids.values():
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    if (state / "config.json").exists():
        cfg = _config(state)
        ports = (cfg["port"], cfg["etcd_port"], cfg["etcd_port"] + 1)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_port_open(cfg["address"], p) for p in ports):
            time.sleep(0.2)
        busy = [p for p in ports if _port_open(cfg["address"], p)]
        if busy:
            raise LabError(f"ports still listening after stop: {busy}")
    (state / "pids.json").unlink(missing_ok=True)
    (state / "stages.applied").unlink(missing_ok=True)
    if not args.keep_data and state.exists():
        for sub in ("etcd",):
            subprocess.run(["rm", "-rf", str(state / sub)], check=True)
    print("lab control plane stopped")


def status(args: argparse.Namespace) -> int:
    state: Path = args.dir
    pids = _pids(state)
    if not pids:
        print(f"lab control plane: not running ({state})")
        return 1
    rc = 0
    for name in COMPONENTS:
        pid = pids.get(name)
        alive = bool(pid) and _alive(pid)
        rc |= 0 if alive else 1
        print(f"  {name:<24} {'running' if alive else 'stopped'}{f' (pid {pid})' if pid else ''}")
    cfg = _config(state)
    ready = _readyz(state, cfg["server"])
    print(f"  {'readyz':<24} {'ok' if ready else 'failing'} ({cfg['server']})")
    if ready:
        print(kubectl(state, "get", "nodes", "-o", "wide", check=False).stdout.rstrip())
    return rc if ready else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lab/kube", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    default_dir = Path(os.environ.get("HOMECLUSTER_KUBE_DIR", LAB / ".state" / "kube"))

    def with_dir(p):
        p.add_argument("--dir", type=Path, default=default_dir, help="state directory (default %(default)s)")
        return p

    p_up = with_dir(sub.add_parser("up", help="start the control plane"))
    p_up.add_argument("--address", default="127.0.10.10", help="loopback address to bind")
    p_up.add_argument("--port", type=int, default=6443)
    p_up.add_argument("--etcd-port", type=int, default=2379, help="etcd client port (peer port is +1)")
    p_up.add_argument("--ca-cert", type=Path, help="cluster CA certificate (PEM); a new CA when omitted")
    p_up.add_argument("--ca-key", type=Path, help="cluster CA private key (PEM)")
    p_up.add_argument("--sa-key", type=Path, help="service-account signing key (PEM); new when omitted")
    p_up.add_argument("--node", action="append", default=[], help="NAME=IP[:controlplane|worker], repeatable")
    p_up.add_argument("--apiserver-arg", action="append", default=[], metavar="FLAG",
                      help="an extra kube-apiserver flag (--apiserver-arg=--authentication-config=F), repeatable")
    p_restart = with_dir(sub.add_parser("apiserver-restart", help="restart kube-apiserver with other extra flags"))
    p_restart.add_argument("--apiserver-arg", action="append", default=[], metavar="FLAG",
                           help="an extra kube-apiserver flag, repeatable; none: the lab's flags only")
    p_down = with_dir(sub.add_parser("down", help="stop everything and free the ports"))
    p_down.add_argument("--keep-data", action="store_true", help="keep etcd's data directory")
    with_dir(sub.add_parser("status", help="show processes, readiness and nodes"))
    p_node = with_dir(sub.add_parser("node", help="add or remove a kwok node"))
    p_node.add_argument("action", choices=["add", "stop", "remove"])
    p_node.add_argument("--name", required=True)
    p_node.add_argument("--ip", default="127.0.10.100")
    p_node.add_argument("--role", choices=["controlplane", "worker"], default="worker")
    p_node.add_argument("--label", action="append", help="k=v, repeatable")
    with_dir(sub.add_parser("_stage-sync", help=argparse.SUPPRESS))
    args = parser.parse_args(argv)
    args.dir = args.dir.resolve()
    try:
        if args.cmd == "up":
            up(args)
        elif args.cmd == "down":
            down(args)
        elif args.cmd == "apiserver-restart":
            apiserver_restart(args)
        elif args.cmd == "status":
            return status(args)
        elif args.cmd == "node":
            node_cmd(args)
        elif args.cmd == "_stage-sync":
            stage_sync(args)
    except LabError as exc:
        print(f"lab/kube: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
