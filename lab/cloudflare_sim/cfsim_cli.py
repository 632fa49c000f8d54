# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: HomeCluster developers
"""Command line of the Cloudflare API v4 simulator: up, down, status, serve.

    lab/cloudflare_sim/run up [--dir DIR] [--config FILE] [--address 127.0.0.1] [--port 8443] [--fresh]
    lab/cloudflare_sim/run status [--dir DIR]   # prints JSON (url, api, ca, pid) and exits 0 when up
    lab/cloudflare_sim/run down [--dir DIR]

DIR holds ca.pem (the lab CA: pass it as the clients' CA bundle, SSL_CERT_FILE for Go programs),
server.pem/key, state.json, sim.log, sim.pid and endpoint.json. The API base URL is
https://ADDRESS:PORT/client/v4. Binds loopback addresses only.
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

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
DEFAULT_DIR = os.path.join(os.path.dirname(HERE), ".state", "cloudflare_sim")
DEFAULT_CONFIG = os.path.join(HERE, "config.yml")


def load_config(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if path.endswith(".json"):
        return json.loads(text)
    import yaml  # noqa: PLC0415 - only needed for YAML configs

    return yaml.safe_load(text) or {}


def make_certs(directory, address):
    """A lab CA and a server certificate for localhost, api.cloudflare.com and the bind address."""
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: PLC0415

    ca_pem = os.path.join(directory, "ca.pem")
    if os.path.exists(ca_pem) and os.path.exists(os.path.join(directory, "server.pem")):
        return
    stamp = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "HomeCluster lab CA (Cloudflare simulator)")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(stamp - datetime.timedelta(minutes=5))
          .not_valid_after(stamp + datetime.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName("localhost"), x509.DNSName("api.cloudflare.com"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    if address != "127.0.0.1":
        sans.append(x509.IPAddress(ipaddress.ip_address(address)))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "api.cloudflare.com")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(stamp - datetime.timedelta(minutes=5))
            .not_valid_after(stamp + datetime.timedelta(days=825))
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


def _check_loopback(address):
    if not ipaddress.ip_address(address).is_loopback:
        raise SystemExit(f"refusing to bind {address}: the simulator listens on loopback addresses only")


def endpoint(directory):
    path = os.path.join(directory, "endpoint.json")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def is_up(ep, timeout=2):
    if not ep:
        return False
    ctx = ssl.create_default_context(cafile=ep["ca"])
    try:
        with urllib.request.urlopen(ep["url"] + "/_sim/stats", context=ctx, timeout=timeout) as r:  # noqa: S310
            return r.status == 200
    except OSError:
        return False


def cmd_serve(args):
    from cfsim_server import make_server  # noqa: PLC0415

    _check_loopback(args.address)
    config = load_config(args.config)
    os.makedirs(args.dir, exist_ok=True)
    make_certs(args.dir, args.address)
    state = os.path.join(args.dir, "state.json")
    if args.fresh and os.path.exists(state):
        os.remove(state)
    srv = make_server(config, args.address, args.port, os.path.join(args.dir, "server.pem"),
                      os.path.join(args.dir, "server.key"), state_file=state)
    srv.verbose = args.verbose
    base = f"https://{args.address}:{args.port}"
    ep = {"url": base, "api": base + "/client/v4", "host": args.address, "port": args.port,
          "ca": os.path.join(args.dir, "ca.pem"), "pid": os.getpid(), "account_id": srv.sim.state.account["id"]}
    with open(os.path.join(args.dir, "endpoint.json"), "w", encoding="utf-8") as f:
        json.dump(ep, f, indent=1)
    signal.signal(signal.SIGTERM, lambda *_: (srv.sim.save(), os._exit(0)))
    print(f"cloudflare simulator on {ep['api']} (CA {ep['ca']})", flush=True)
    srv.serve_forever()


def cmd_up(args):
    _check_loopback(args.address)
    os.makedirs(args.dir, exist_ok=True)
    ep = endpoint(args.dir)
    if is_up(ep):
        print(json.dumps(ep))
        return 0
    cmd = [sys.executable, os.path.abspath(__file__), "serve", "--dir", args.dir, "--config", args.config,
           "--address", args.address, "--port", str(args.port)]
    if args.fresh:
        cmd.append("--fresh")
    if args.verbose:
        cmd.append("--verbose")
    if os.path.exists(os.path.join(args.dir, "endpoint.json")):
        os.remove(os.path.join(args.dir, "endpoint.json"))
    with open(os.path.join(args.dir, "sim.log"), "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    with open(os.path.join(args.dir, "sim.pid"), "w", encoding="utf-8") as f:
        f.write(str(proc.pid))
    deadline = time.time() + 20
    while time.time() < deadline:
        if proc.poll() is not None:
            print(f"simulator exited with {proc.returncode}; see {args.dir}/sim.log", file=sys.stderr)
            return 1
        ep = endpoint(args.dir)
        if is_up(ep, timeout=1):
            print(json.dumps(ep))
            return 0
        time.sleep(0.1)
    print(f"simulator did not answer within 20 s; see {args.dir}/sim.log", file=sys.stderr)
    return 1


def cmd_down(args):
    pidfile = os.path.join(args.dir, "sim.pid")
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


def cmd_status(args):
    ep = endpoint(args.dir)
    up = is_up(ep)
    print(json.dumps({"up": up, **(ep or {})}))
    return 0 if up else 1


def main(argv=None):
    parser = argparse.ArgumentParser(prog="cloudflare_sim", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("up", "serve", "down", "status"):
        p = sub.add_parser(name)
        p.add_argument("--dir", default=os.environ.get("CLOUDFLARE_SIM_DIR", DEFAULT_DIR))
        if name in ("up", "serve"):
            p.add_argument("--config", default=DEFAULT_CONFIG)
            p.add_argument("--address", default="127.0.0.1")
            p.add_argument("--port", type=int, default=8443)
            p.add_argument("--fresh", action="store_true", help="forget the persisted state")
            p.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    args.dir = os.path.abspath(args.dir)
    return {"up": cmd_up, "serve": cmd_serve, "down": cmd_down, "status": cmd_status}[args.cmd](args) or 0


if __name__ == "__main__":
    sys.exit(main())
