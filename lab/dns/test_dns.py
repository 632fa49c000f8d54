# SPDX-License-Identifier: GPL-3.0-or-later
"""The lab's internal DNS: a real BIND that takes TSIG-signed RFC 2136 updates and refuses others."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

RUN = [sys.executable, str(Path(__file__).with_name("dns.py"))]
ADDRESS, PORT, ZONE = "127.0.0.1", 5391, "lab.test.example"

pytestmark = pytest.mark.skipif(not shutil.which("named") and not Path("/usr/sbin/named").exists(),
                                reason="bind9 is not installed (make tools)")


def dig(name, rtype="A"):
    return subprocess.run(["dig", "+short", "-p", str(PORT), f"@{ADDRESS}", name, rtype],
                          capture_output=True, text=True, check=True).stdout.split()


def nsupdate(script, key=None):
    cmd = ["nsupdate"] + (["-y", f"hmac-sha256:homecluster-external-dns:{key}"] if key else [])
    head = f"server {ADDRESS} {PORT}\nzone {ZONE}\n"
    return subprocess.run(cmd, input=head + script + "send\n", capture_output=True, text=True, check=False)


@pytest.fixture
def server(tmp_path):
    d = tmp_path / "dns"
    subprocess.run([*RUN, "up", "--dir", str(d), "--address", ADDRESS, "--port", str(PORT), "--zone", ZONE], check=True)
    yield d
    subprocess.run([*RUN, "down", "--dir", str(d)], check=True)


def test_signed_updates_only_and_the_key_and_records_survive_a_restart(server):
    key = (server / "tsig.secret").read_text().strip()
    assert (server / "tsig.secret").stat().st_mode & 0o777 == 0o600
    assert (server / "named.conf").stat().st_mode & 0o777 == 0o600
    assert nsupdate(f"update add hello.{ZONE} 300 A 192.0.2.80\n", key).returncode == 0
    assert dig(f"hello.{ZONE}") == ["192.0.2.80"]
    refused = nsupdate(f"update add evil.{ZONE} 300 A 192.0.2.9\n")
    assert refused.returncode != 0 and "REFUSED" in refused.stdout + refused.stderr
    assert nsupdate(f"update add evil.{ZONE} 300 A 192.0.2.9\n", "AAAA" + key[4:]).returncode != 0
    assert dig(f"evil.{ZONE}") == []
    subprocess.run([*RUN, "down", "--dir", str(server)], check=True)
    assert subprocess.run([*RUN, "status", "--dir", str(server)], capture_output=True, check=False).returncode == 1
    subprocess.run([*RUN, "up", "--dir", str(server), "--address", ADDRESS, "--port", str(PORT), "--zone", ZONE],
                   check=True)
    assert (server / "tsig.secret").read_text().strip() == key
    assert dig(f"hello.{ZONE}") == ["192.0.2.80"]


def test_refuses_an_address_off_loopback(tmp_path):
    out = subprocess.run([*RUN, "up", "--dir", str(tmp_path), "--address", "192.0.2.53", "--zone", ZONE],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 2 and "loopback" in out.stderr
