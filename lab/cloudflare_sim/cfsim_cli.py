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

import os
import signal
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))  # lab/simkit.py

import simkit
from simkit import load_config

DEFAULT_DIR = os.path.join(os.path.dirname(HERE), ".state", "cloudflare_sim")
DEFAULT_CONFIG = os.path.join(HERE, "config.yml")


def make_certs(directory, address):
    """A lab CA and a server certificate for localhost, api.cloudflare.com and the bind address."""
    simkit.make_certs(directory, address, ca_name=[("CN", "HomeCluster lab CA (Cloudflare simulator)")],
                      server_name="api.cloudflare.com", dns_names=("localhost", "api.cloudflare.com"))


def cmd_serve(args):
    from cfsim_server import make_server  # noqa: PLC0415

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
    simkit.write_endpoint(args.dir, ep)
    signal.signal(signal.SIGTERM, lambda *_: (srv.sim.save(), os._exit(0)))
    print(f"cloudflare simulator on {ep['api']} (CA {ep['ca']})", flush=True)
    srv.serve_forever()


def main(argv=None):
    return simkit.cli(argv, prog="cloudflare_sim", doc=__doc__, script=os.path.abspath(__file__),
                      env_dir="CLOUDFLARE_SIM_DIR", default_dir=DEFAULT_DIR, default_config=DEFAULT_CONFIG,
                      default_port=8443, serve=cmd_serve)


if __name__ == "__main__":
    sys.exit(main())
