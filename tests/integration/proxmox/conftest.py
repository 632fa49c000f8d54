# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures: simulators started in-process for a test module, stopped at its end."""

from __future__ import annotations

import threading

import pytest
from pvehelp import Sim, cli, sim_config
from pvesim_server import make_server


@pytest.fixture(scope="module")
def make_sim(tmp_path_factory):
    servers = []

    def start(config=None):
        d = tmp_path_factory.mktemp("pve")
        cli.make_certs(str(d), "127.0.0.1")
        srv = make_server(config or sim_config(), "127.0.0.1", 0, str(d / "server.pem"), str(d / "server.key"))
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return Sim(srv, str(d / "ca.pem"))

    yield start
    for srv in servers:
        srv.shutdown()


@pytest.fixture(scope="module")
def sim(make_sim):
    return make_sim()
