# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: HomeCluster developers
"""What the lab's HTTPS API simulators (lab/proxmox_sim, lab/cloudflare_sim) share: their config
file, a lab CA and server certificate, the loopback-only rule, and running `serve` detached with
up/down/status around it.

A simulator directory holds ca.pem, server.pem/key (0600), state.json, sim.log, sim.pid and
endpoint.json (written by `serve` once it listens: url, host, port, ca, pid and the simulator's
own keys). `up` is done when GET <url>/_sim/stats answers 200 with the lab CA.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.request


def load_config(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if path.endswith(".json"):
        return json.loads(text)
    import yaml  # noqa: PLC0415 - only needed for YAML configs

    return yaml.safe_load(text) or {}


def make_certs(directory, address, *, ca_name, server_name, dns_names=("localhost",)):
    """A lab CA and a server certificate for dns_names, 127.0.0.1 and the bind address, once.

    ca_name: [(attribute, value)] with attribute 'CN' or 'O'; server_name: the leaf's common name.
    """
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: PLC0415

    ca_pem = os.path.join(directory, "ca.pem")
    if os.path.exists(ca_pem) and os.path.exists(os.path.join(directory, "server.pem")):
        return
    oids = {"CN": NameOID.COMMON_NAME, "O": NameOID.ORGANIZATION_NAME}
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    issuer = x509.Name([x509.NameAttribute(oids[k], v) for k, v in ca_name])
    ca = (x509.CertificateBuilder().subject_name(issuer).issuer_name(issuer).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName(n) for n in dns_names] + [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    if address != "127.0.0.1":
        sans.append(x509.IPAddress(ipaddress.ip_address(address)))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, server_name)]))
            .issuer_name(issuer).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=825))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    with open(ca_pem, "wb") as f:
        f.write(ca.public_bytes(pem))
    with open(os.path.join(directory, "server.pem"), "wb") as f:
        f.write(cert.public_bytes(pem))
    fd = os.open(os.path.join(directory, "server.key"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def check_loopback(address):
    if not ipaddress.ip_address(address).is_loopback:
        raise SystemExit(f"refusing to bind {address}: the simulator listens on loopback addresses only")


def endpoint(directory):
    path = os.path.join(directory, "endpoint.json")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_endpoint(directory, ep):
    with open(os.path.join(directory, "endpoint.json"), "w", encoding="utf-8") as f:
        json.dump(ep, f, indent=1)


def is_up(ep, timeout=2):
    if not ep:
        return False
    ctx = ssl.create_default_context(cafile=ep["ca"])
    try:
        with urllib.request.urlopen(ep["url"] + "/_sim/stats", context=ctx, timeout=timeout) as r:  # noqa: S310
            return r.status == 200
    except OSError:
        return False


def up(directory, serve_argv, wait=20.0):
    """Start `serve` (serve_argv, run with this Python) detached unless already up; 0 once it answers."""
    os.makedirs(directory, exist_ok=True)
    ep = endpoint(directory)
    if is_up(ep):
        print(json.dumps(ep))
        return 0
    if os.path.exists(os.path.join(directory, "endpoint.json")):
        os.remove(os.path.join(directory, "endpoint.json"))
    with open(os.path.join(directory, "sim.log"), "ab") as log:
        proc = subprocess.Popen([sys.executable, *serve_argv], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    with open(os.path.join(directory, "sim.pid"), "w", encoding="utf-8") as f:
        f.write(str(proc.pid))
    deadline = time.time() + wait
    while time.time() < deadline:
        if proc.poll() is not None:
            print(f"simulator exited with {proc.returncode}; see {directory}/sim.log", file=sys.stderr)
            return 1
        ep = endpoint(directory)
        if is_up(ep, timeout=1):
            print(json.dumps(ep))
            return 0
        time.sleep(0.1)
    print(f"simulator did not answer within {wait:.0f} s; see {directory}/sim.log", file=sys.stderr)
    return 1


def down(directory):
    pidfile = os.path.join(directory, "sim.pid")
    if not os.path.exists(pidfile):
        print("not running")
        return 0
    with open(pidfile, encoding="utf-8") as f:
        pid = int(f.read().strip() or 0)
    try:
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            os.kill(pid, 0)
            time.sleep(0.1)
    except ProcessLookupError:
        pass
    os.remove(pidfile)
    print("stopped")
    return 0


def status(directory):
    ep = endpoint(directory)
    answering = is_up(ep)
    print(json.dumps({"up": answering, **(ep or {})}))
    return 0 if answering else 1


def cli(argv, *, prog, doc, script, env_dir, default_dir, default_config, default_port, serve, options=()):
    """The command line every simulator shares: up, serve, down and status.

    ``options`` are (flag, argparse keywords) pairs that `up` and `serve` both take; `up` passes each
    one that is set on to the detached `serve`, as it does --fresh and --verbose. ``serve`` is called
    with the parsed arguments.
    """
    parser = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("up", "serve", "down", "status"):
        p = sub.add_parser(name)
        p.add_argument("--dir", default=os.environ.get(env_dir, default_dir))
        if name in ("up", "serve"):
            p.add_argument("--config", default=default_config)
            p.add_argument("--address", default="127.0.0.1")
            p.add_argument("--port", type=int, default=default_port)
            for flag, kwargs in options:
                p.add_argument(flag, **kwargs)
            p.add_argument("--fresh", action="store_true", help="forget the persisted state")
            p.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    args.dir = os.path.abspath(args.dir)
    if args.cmd == "down":
        return down(args.dir)
    if args.cmd == "status":
        return status(args.dir)
    check_loopback(args.address)
    if args.cmd == "serve":
        return serve(args) or 0
    cmd = [script, "serve", "--dir", args.dir, "--config", args.config, "--address", args.address,
           "--port", str(args.port)]
    for flag, _ in options:
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is not None:
            cmd += [flag, str(value)]
    cmd += [f for f, on in (("--fresh", args.fresh), ("--verbose", args.verbose)) if on]
    return up(args.dir, cmd)
