# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: HomeCluster developers
"""Command line of the Harbor API v2.0 simulator: up, down, status, serve.

    lab/harbor_sim/run up [--dir DIR] [--config FILE] [--address 127.0.0.1] [--port 8444] [--fresh]
    lab/harbor_sim/run status [--dir DIR]   # prints JSON (url, api, ca, pid) and exits 0 when up
    lab/harbor_sim/run down [--dir DIR]

DIR holds ca.pem (the lab CA: pass it as the clients' CA bundle), server.pem/key, state.json,
sim.log, sim.pid and endpoint.json. The API base URL is https://ADDRESS:PORT/api/v2.0. Binds
loopback addresses only.
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

DEFAULT_DIR = os.path.join(os.path.dirname(HERE), ".state", "harbor_sim")
DEFAULT_CONFIG = os.path.join(HERE, "config.yml")


def cmd_serve(args):
    from hsim_server import make_server  # noqa: PLC0415

    config = load_config(args.config)
    os.makedirs(args.dir, exist_ok=True)
    simkit.make_certs(
        args.dir,
        args.address,
        ca_name=[("CN", "HomeCluster lab CA (Harbor simulator)")],
        server_name="harbor.lab.invalid",
        dns_names=("localhost", "harbor.lab.invalid"),
    )
    state = os.path.join(args.dir, "state.json")
    if args.fresh and os.path.exists(state):
        os.remove(state)
    srv = make_server(
        config,
        args.address,
        args.port,
        os.path.join(args.dir, "server.pem"),
        os.path.join(args.dir, "server.key"),
        state_file=state,
    )
    srv.verbose = args.verbose
    base = f"https://{args.address}:{args.port}"
    ep = {
        "url": base,
        "api": base + "/api/v2.0",
        "host": args.address,
        "port": args.port,
        "ca": os.path.join(args.dir, "ca.pem"),
        "pid": os.getpid(),
    }
    simkit.write_endpoint(args.dir, ep)
    signal.signal(signal.SIGTERM, lambda *_: (srv.sim.save(), os._exit(0)))
    print(f"harbor simulator on {ep['api']} (CA {ep['ca']})", flush=True)
    srv.serve_forever()


def main(argv=None):
    return simkit.cli(
        argv,
        prog="harbor_sim",
        doc=__doc__,
        script=os.path.abspath(__file__),
        env_dir="HARBOR_SIM_DIR",
        default_dir=DEFAULT_DIR,
        default_config=DEFAULT_CONFIG,
        default_port=8444,
        serve=cmd_serve,
    )


if __name__ == "__main__":
    sys.exit(main())
