# SPDX-License-Identifier: GPL-3.0-or-later
"""Helpers of the Proxmox integration tests: the simulator in-process, the modules run as Ansible runs them."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import requests

REPO_ROOT = Path(__file__).resolve().parents[3]
# re-exported to the proxmox tests
from modrun import run_module  # noqa: F401  # pylint: disable=unused-import

sys.path.insert(0, str(REPO_ROOT / "lab" / "proxmox_sim"))
import pvesim_cli as cli

TOKEN = "5f0c8e2a-1b7d-4c3e-9a61-2d4b8f7e0c11"


class Sim:
    """One simulator: its API for the modules, its lab endpoints for the tests."""

    def __init__(self, srv, ca):
        self.srv, self.ca = srv, ca
        self.port = srv.server_address[1]
        self.url = f"https://127.0.0.1:{self.port}"

    def admin(self, method, path, body=None):
        r = requests.request(method, f"{self.url}/_sim/{path}", json=body, verify=self.ca, timeout=10)
        r.raise_for_status()
        return r.json()

    def pvestatd(self):
        """Run one pvestatd round now (the fixture's period is an hour, so nothing refreshes by itself)."""
        self.admin("POST", "pvestatd")

    def resources(self):
        return {r["vmid"]: r for r in self.api_get("cluster/resources", type="vm")}

    def api_get(self, path, **params):
        r = requests.get(f"{self.url}/api2/json/{path}", params=params, verify=self.ca, timeout=10,
                         headers={"Authorization": f"PVEAPIToken=root@pam!lab={TOKEN}"})
        r.raise_for_status()
        return r.json()["data"]

    def api(self, method, path, **params):
        r = requests.request(method, f"{self.url}/api2/json/{path}", data=params, verify=self.ca, timeout=10,
                             headers={"Authorization": f"PVEAPIToken=root@pam!lab={TOKEN}"})
        r.raise_for_status()
        return r.json()["data"]

    def wait_task(self, node, upid):
        import time  # noqa: PLC0415

        while True:
            st = self.api_get(f"nodes/{node}/tasks/{upid}/status")
            if st["status"] == "stopped":
                return st
            time.sleep(0.02)

    def writes(self):
        return self.admin("GET", "stats")["writes"]

    def tasks(self, node="pve1"):
        return self.api_get(f"nodes/{node}/tasks", limit=500)


def sim_config(**tokens):
    config = cli.load_config(cli.DEFAULT_CONFIG)
    config = copy.deepcopy(config)
    config.update(task_delay=0.05, lock_timeout=2, status_period=3600)
    config["tokens"]["root@pam!lab"] = {"secret": TOKEN, "privsep": False}
    config["tokens"].update(tokens)
    return config


def conn(sim, user="automation@pve", token="ansible", secret=TOKEN):  # noqa: S107 - lab token
    return {"api_host": "127.0.0.1", "api_port": sim.port, "api_user": user, "api_token_id": token,
            "api_token_secret": secret, "ca_path": sim.ca, "task_timeout": 60}
