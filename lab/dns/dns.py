# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: HomeCluster developers
"""The lab's internal DNS: a real BIND 9 (Debian's bind9) on one loopback address, as a home DNS
server that takes RFC 2136 dynamic updates signed with a TSIG key.

    lab/dns/run up --dir D --address A --port P --zone Z [--key-name N]
    lab/dns/run down --dir D
    lab/dns/run status --dir D

BIND listens only on addresses that an interface carries: on a lab machine that is 127.0.0.1
(the rest of 127.0.0.0/8 is routed to lo but not configured on it), so each user of the lab DNS
takes its own port on 127.0.0.1, as the chart repositories do.

`up` writes D/named.conf (listen on A:P only, IPv4, no recursion, queries from 127.0.0.0/8,
the zone Z primary with updates and transfers allowed for the key N alone), a zone file with its
SOA and NS, and a TSIG key (hmac-sha256) created once: D/tsig.secret (0600) is kept across
restarts, so a rerun of the lab does not rotate it. It starts named in the foreground of its own
session (log D/named.log, pid D/named.pid), waits until the zone's SOA answers and writes
D/endpoint.json {address, port, zone, key_name, algorithm, secret_file}. `up` on a running
server does nothing. This is what external-dns's rfc2136 provider talks to; Pi-hole has no
equivalent here (its API needs the Pi-hole server, which is not packaged for Debian).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path


def running(d: Path) -> int:
    try:
        pid = int((d / "named.pid").read_text().strip())
        os.kill(pid, 0)
        return pid
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return 0


def secret(d: Path) -> str:
    f = d / "tsig.secret"
    if not f.exists():
        fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(base64.b64encode(secrets.token_bytes(32)).decode())
    return f.read_text().strip()


def config(d: Path, address: str, port: int, zone: str, *, key_name: str, key: str) -> str:
    return f"""// The lab's internal DNS (lab/dns/dns.py). Loopback only.
options {{
    directory "{d}";
    pid-file "{d}/named.pid";
    session-keyfile "{d}/session.key";
    listen-on port {port} {{ {address}; }};
    listen-on-v6 {{ none; }};
    recursion no;
    allow-query {{ 127.0.0.0/8; }};
    dnssec-validation no;
    notify no;
}};
controls {{ }};
key "{key_name}" {{
    algorithm hmac-sha256;
    secret "{key}";
}};
zone "{zone}" {{
    type primary;
    file "{d}/{zone}.zone";
    allow-update {{ key "{key_name}"; }};
    allow-transfer {{ key "{key_name}"; }};
}};
"""


def zone_file(zone: str, address: str) -> str:
    return f"""$TTL 300
@   IN SOA ns.{zone}. hostmaster.{zone}. ( 1 3600 600 86400 300 )
    IN NS  ns.{zone}.
ns  IN A   {address}
"""


def dig(address: str, port: int, name: str, rtype: str) -> subprocess.CompletedProcess:
    return subprocess.run(["dig", "+short", "+time=1", "+tries=1", "-p", str(port), f"@{address}", name, rtype],
                          capture_output=True, text=True, check=False)


def cmd_up(args) -> int:
    d = Path(args.dir).resolve()
    d.mkdir(parents=True, exist_ok=True)
    if running(d):
        return 0
    named = shutil.which("named") or "/usr/sbin/named"
    if not os.path.exists(named) or not shutil.which("dig"):
        print("named or dig is missing: make tools installs bind9 and bind9-dnsutils "
              "(lab/tools/versions.json, debian_packages)", file=sys.stderr)
        return 2
    key = secret(d)
    conf = d / "named.conf"
    conf.write_text(config(d, args.address, args.port, args.zone, key_name=args.key_name, key=key))
    conf.chmod(0o600)
    zf = d / f"{args.zone}.zone"
    if not zf.exists():  # kept across restarts: the records external-dns wrote stay (with the journal)
        zf.write_text(zone_file(args.zone, args.address))
    check = subprocess.run(["named-checkconf", str(conf)], capture_output=True, text=True, check=False)
    if check.returncode:
        print(check.stdout + check.stderr, file=sys.stderr)
        return 1
    with (d / "named.log").open("ab") as log:
        subprocess.Popen([named, "-4", "-g", "-n", "1", "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        answer = dig(args.address, args.port, args.zone, "SOA")
        if answer.returncode == 0 and answer.stdout.strip() and not answer.stdout.startswith(";;"):
            break
        time.sleep(0.2)
    else:
        print(f"named did not answer on {args.address}:{args.port} (log {d / 'named.log'})", file=sys.stderr)
        return 1
    endpoint = {"address": args.address, "port": args.port, "zone": args.zone, "key_name": args.key_name,
                "algorithm": "hmac-sha256", "secret_file": str(d / "tsig.secret")}
    (d / "endpoint.json").write_text(json.dumps(endpoint, indent=1) + "\n")
    print(f"internal DNS (BIND) on {args.address}:{args.port}, zone {args.zone}, TSIG key {args.key_name}")
    return 0


def cmd_down(args) -> int:
    d = Path(args.dir)
    pid = running(d)
    if not pid:
        return 0
    os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    return 0


def cmd_status(args) -> int:
    d = Path(args.dir)
    pid = running(d)
    if not pid:
        print("internal DNS: not running")
        return 1
    ep = json.loads((d / "endpoint.json").read_text())
    print(f"internal DNS: named {pid} on {ep['address']}:{ep['port']}, zone {ep['zone']}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="lab/dns/run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up")
    up.add_argument("--dir", required=True)
    up.add_argument("--address", required=True)
    up.add_argument("--port", type=int, default=53)
    up.add_argument("--zone", required=True)
    up.add_argument("--key-name", default="homecluster-external-dns")
    for name in ("down", "status"):
        sub.add_parser(name).add_argument("--dir", required=True)
    args = parser.parse_args(argv)
    if args.cmd == "up" and not args.address.startswith("127."):
        parser.error(f"--address {args.address}: the lab binds loopback addresses (127.0.0.0/8) only")
    return {"up": cmd_up, "down": cmd_down, "status": cmd_status}[args.cmd](args)


if __name__ == "__main__":
    raise SystemExit(main())
