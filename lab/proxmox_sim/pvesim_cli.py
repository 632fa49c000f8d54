# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: HomeCluster developers
"""Command line of the Proxmox VE API simulator: up, down, status, serve.

    lab/proxmox_sim/run up [--dir DIR] [--config FILE] [--address 127.0.0.1] [--port 8006]
                           [--power-hook URL] [--talos-port-stub 50000] [--task-delay S] [--fresh]
    lab/proxmox_sim/run status [--dir DIR]      # prints JSON (url, ca, pid) and exits 0 when up
    lab/proxmox_sim/run down [--dir DIR]

DIR holds ca.pem (trust it, or pass it as the CA bundle), server.pem/key, state.json,
sim.log, sim.pid and endpoint.json. Binds loopback addresses only.
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

DEFAULT_DIR = os.path.join(os.path.dirname(HERE), ".state", "proxmox_sim")
DEFAULT_CONFIG = os.path.join(HERE, "config.yml")


def make_certs(directory, address):
    """A private CA and a server certificate for localhost and the bind address."""
    simkit.make_certs(directory, address, ca_name=[("CN", "Proxmox Virtual Environment (simulated)"),
                                                   ("O", "PVE Cluster Manager CA")],
                      server_name="pve1.lab.invalid")


def cmd_serve(args):
    from pvesim_server import make_server  # noqa: PLC0415

    config = load_config(args.config)
    for key, value in (("power_hook_url", args.power_hook), ("talos_port_stub", args.talos_port_stub),
                       ("task_delay", args.task_delay), ("status_period", args.status_period)):
        if value is not None:
            config[key] = value
    os.makedirs(args.dir, exist_ok=True)
    make_certs(args.dir, args.address)
    state = os.path.join(args.dir, "state.json")
    if args.fresh and os.path.exists(state):
        os.remove(state)
    srv = make_server(config, args.address, args.port, os.path.join(args.dir, "server.pem"),
                      os.path.join(args.dir, "server.key"), state_file=state)
    srv.cluster.verbose = args.verbose
    ep = {"url": f"https://{args.address}:{args.port}", "api": f"https://{args.address}:{args.port}/api2/json",
          "host": args.address, "port": args.port, "ca": os.path.join(args.dir, "ca.pem"), "pid": os.getpid(),
          "config": os.path.abspath(args.config)}
    simkit.write_endpoint(args.dir, ep)
    signal.signal(signal.SIGTERM, lambda *_: (srv.cluster.save(), os._exit(0)))
    print(f"proxmox simulator on {ep['url']} (CA {ep['ca']})", flush=True)
    srv.serve_forever()


OPTIONS = (
    ("--power-hook", {"default": None, "help": "URL to POST power events to (Talos simulator /power)"}),
    ("--talos-port-stub", {"type": int, "default": None,
                           "help": "without a hook: listen on VM address:PORT while the VM runs"}),
    ("--task-delay", {"type": float, "default": None, "help": "seconds a task runs"}),
    ("--status-period", {"type": float, "default": None,
                         "help": "seconds between pvestatd rounds feeding /cluster/resources (default 10; 0 live)"}),
)


def main(argv=None):
    return simkit.cli(argv, prog="proxmox_sim", doc=__doc__, script=os.path.abspath(__file__),
                      env_dir="PROXMOX_SIM_DIR", default_dir=DEFAULT_DIR, default_config=DEFAULT_CONFIG,
                      default_port=8006, serve=cmd_serve, options=OPTIONS)


if __name__ == "__main__":
    sys.exit(main())
