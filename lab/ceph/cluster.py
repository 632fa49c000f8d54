# SPDX-License-Identifier: GPL-3.0-or-later
"""A real Ceph cluster on loopback for the ceph_* modules' tests.

One monitor, one manager and N (default 3) memstore OSDs, all from the Debian packages, all state
(data, keyrings, pid files, admin sockets, logs) under one directory. Nothing touches /etc/ceph or
/var/lib/ceph, so several clusters can run side by side on different loopback addresses.

    cluster up --dir DIR [--address 127.0.0.1] [--osds 3] [--pool-size N] [--hosts w1,w2,w3] [--timeout 120]
    cluster status --dir DIR
    cluster host-power --dir DIR [--provision w1,w2,...] NAME on|off
    cluster add-osd --dir DIR --host NAME
    cluster down --dir DIR [--purge]

`up` prints the environment a client needs (CEPH_CONF, CEPH_KEYRING) and the seconds it took;
DIR/env holds the same lines for a shell to source. With `--hosts`, OSD i sits under the CRUSH host
bucket hosts[i % len(hosts)] (under root default, set as each OSD's `crush location` in ceph.conf,
so a restarted OSD stays there) and DIR/hosts.json records {osd id: host}.

`host-power NAME off` stops (SIGTERM, then waits until they are gone) the OSD daemons placed on
host NAME, `on` starts them again - as a node losing and regaining power would. A NAME that holds
no OSD, or a cluster made without `--hosts`, is a no-op; so is `on` for an OSD that runs already or
was purged (no longer in `ceph osd ls`, or its data directory gone).

`add-osd --host NAME` creates one more memstore OSD under CRUSH host NAME (the bucket appears with
it), starts it and waits until it is up and in. `host-power --provision LIST NAME on` does the same
for a host of LIST that holds no OSD yet: the lab's stand-in for Rook, whose operator prepares an
OSD on a node of the CephCluster's `storage.nodes` once that node runs (day-2 node add). A host
whose OSDs were purged is provisioned again only if its bucket is gone and it is powered on again.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

CONF_TEMPLATE = """\
[global]
fsid = {fsid}
mon host = [v2:{address}:{v2_port},v1:{address}:{v1_port}]
mon initial members = a
public addr = {address}
cluster addr = {address}
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
auth allow insecure global id reclaim = false
keyring = {dir}/ceph.client.admin.keyring
run dir = {dir}/run
admin socket = {dir}/run/$cluster-$name.asok
pid file = {dir}/run/$name.pid
log file = {dir}/log/$name.log
crash dir = {dir}/crash
exporter sock dir = {dir}/run
osd pool default size = {pool_size}
osd pool default min size = 1
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon data avail warn = 1
mon warn on insecure global id reclaim allowed = false
osd max object name len = 460
osd max object namespace len = 64
mgr initial modules = iostat

[mon]
mon data = {dir}/mon/$cluster-$id
keyring = {dir}/mon/$cluster-$id/keyring

[mgr]
mgr data = {dir}/mgr/$cluster-$id
keyring = {dir}/mgr/$cluster-$id/keyring

[osd]
osd data = {dir}/osd/$cluster-$id
keyring = {dir}/osd/$cluster-$id/keyring
osd objectstore = memstore
memstore device bytes = {memstore_bytes}
osd op num shards = 1
osd op num threads per shard = 2
"""


class ClusterError(RuntimeError):
    pass


def run(cmd: list[str], *, timeout: float = 60, stdin: str | None = None) -> str:
    try:
        proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ClusterError(f"timed out after {timeout}s: {' '.join(cmd)}") from exc
    if proc.returncode != 0:
        output = proc.stderr.strip() or proc.stdout.strip()
        raise ClusterError(f"{' '.join(cmd)} failed (rc={proc.returncode}): {output}")
    return proc.stdout


class Cluster:
    def __init__(self, directory: str) -> None:
        self.dir = Path(directory).resolve()
        self.conf = self.dir / "ceph.conf"
        self.keyring = self.dir / "ceph.client.admin.keyring"
        self.hosts_file = self.dir / "hosts.json"

    # -- helpers ---------------------------------------------------------------------------
    def ceph(self, *args: str, timeout: float = 30, stdin: str | None = None) -> str:
        cmd = ["ceph", "--conf", str(self.conf), "--connect-timeout", str(int(timeout)), *args]
        return run(cmd, timeout=timeout + 5, stdin=stdin)

    def status(self, timeout: float = 10) -> dict:
        return json.loads(self.ceph("status", "--format", "json", timeout=timeout))

    def pid_files(self) -> list[Path]:
        run_dir = self.dir / "run"
        return sorted(run_dir.glob("*.pid")) if run_dir.is_dir() else []

    def own_pids(self) -> list[int]:
        """Processes started for this cluster: pid files, plus any process whose command line
        names this cluster's ceph.conf (a daemon that died before writing its pid file)."""
        pids: set[int] = set()
        for pid_file in self.pid_files():
            try:
                pids.add(int(pid_file.read_text().strip()))
            except (OSError, ValueError):
                continue
        marker = str(self.conf).encode()
        for proc_dir in Path("/proc").iterdir():
            if not proc_dir.name.isdigit():
                continue
            try:
                cmdline = (proc_dir / "cmdline").read_bytes()
            except OSError:
                continue
            if marker in cmdline and b"ceph-" in cmdline:
                pids.add(int(proc_dir.name))
        return sorted(p for p in pids if alive(p))

    def env_lines(self) -> list[str]:
        return [f"CEPH_CONF={self.conf}", f"CEPH_KEYRING={self.keyring}"]

    # -- up --------------------------------------------------------------------------------
    def up(self, *, address: str, osds: int, timeout: float, v1_port: int, v2_port: int, memstore_mb: int,
           hosts: list[str] | None = None, pool_size: int = 0) -> float:
        started = time.monotonic()
        if self.conf.exists() and self.own_pids():
            raise ClusterError(f"a cluster already runs from {self.dir}; run 'down' first")
        if self.dir.exists():
            shutil.rmtree(self.dir)
        for sub in ("run", "log", "crash", "mon/ceph-a", "mgr/ceph-x"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o700)
        fsid = str(uuid.uuid4())
        self.conf.write_text(
            CONF_TEMPLATE.format(
                fsid=fsid,
                address=address,
                v1_port=v1_port,
                v2_port=v2_port,
                dir=self.dir,
                pool_size=pool_size or min(3, osds),
                memstore_bytes=memstore_mb * 1024 * 1024,
            )
        )
        if hosts:
            placement = {osd_id: hosts[osd_id % len(hosts)] for osd_id in range(osds)}
            with self.conf.open("a") as conf:
                for osd_id, host in placement.items():
                    conf.write(f"\n[osd.{osd_id}]\ncrush location = root=default host={host}\n")
            self.hosts_file.write_text(json.dumps({str(k): v for k, v in placement.items()}, indent=2) + "\n")
        mon_keyring = self.dir / "mon.keyring"  # mkfs writes mon/ceph-a/keyring itself
        authtool = ["ceph-authtool"]
        run([*authtool, "--create-keyring", str(mon_keyring), "--gen-key", "-n", "mon.", "--cap", "mon", "allow *"])
        run([
            *authtool, "--create-keyring", str(self.keyring), "--gen-key", "-n", "client.admin",
            "--cap", "mon", "allow *", "--cap", "osd", "allow *", "--cap", "mds", "allow *", "--cap", "mgr", "allow *",
        ])
        mgr_keyring = self.dir / "mgr/ceph-x/keyring"
        run([
            *authtool, "--create-keyring", str(mgr_keyring), "--gen-key", "-n", "mgr.x",
            "--cap", "mon", "allow profile mgr", "--cap", "osd", "allow *", "--cap", "mds", "allow *",
        ])
        run([*authtool, str(mon_keyring), "--import-keyring", str(self.keyring)])
        run([*authtool, str(mon_keyring), "--import-keyring", str(mgr_keyring)])
        for keyring in (mon_keyring, self.keyring, mgr_keyring):
            keyring.chmod(0o600)
        monmap = self.dir / "monmap"
        run([
            "monmaptool", "--create", "--fsid", fsid,
            "--addv", "a", f"[v2:{address}:{v2_port},v1:{address}:{v1_port}]", str(monmap),
        ])
        run(["ceph-mon", "--conf", str(self.conf), "--mkfs", "-i", "a", "--monmap", str(monmap),
             "--keyring", str(mon_keyring)])
        run(["ceph-mon", "--conf", str(self.conf), "-i", "a"])
        run(["ceph-mgr", "--conf", str(self.conf), "-i", "x"])
        self._make_osds(osds)
        self.wait_healthy(osds, started + timeout)
        (self.dir / "env").write_text("".join(f"export {line}\n" for line in self.env_lines()))
        return time.monotonic() - started

    def _make_osds(self, count: int) -> None:
        mkfs = [(osd_id, self._mkfs_osd(osd_id)) for osd_id in range(count)]
        for osd_id, proc in mkfs:
            self._finish_mkfs(osd_id, proc)
            self.start_osd(osd_id)

    def _mkfs_osd(self, osd_id: int) -> subprocess.Popen:
        """Register OSD_ID with the monitors (``ceph osd new``) and start its ``ceph-osd --mkfs``."""
        osd_uuid = str(uuid.uuid4())
        key = run(["ceph-authtool", "--gen-print-key"]).strip()
        data = self.dir / f"osd/ceph-{osd_id}"
        data.mkdir(parents=True)
        keyring = data / "keyring"
        keyring.write_text(f"[osd.{osd_id}]\n\tkey = {key}\n")
        keyring.chmod(0o600)
        self.ceph("osd", "new", osd_uuid, str(osd_id), "-i", "-", stdin=json.dumps({"cephx_secret": key}))
        return subprocess.Popen(
            ["ceph-osd", "--conf", str(self.conf), "-i", str(osd_id), "--mkfs", "--osd-uuid", osd_uuid],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )

    @staticmethod
    def _finish_mkfs(osd_id: int, proc: subprocess.Popen) -> None:
        out = proc.communicate(timeout=60)[0]
        if proc.returncode != 0:
            raise ClusterError(f"ceph-osd --mkfs for osd.{osd_id} failed: {out.strip()}")

    # -- add-osd ---------------------------------------------------------------------------
    def add_osd(self, host: str, timeout: float = 60) -> int:
        """One more OSD under CRUSH host HOST, started and waited for (up and in); its id."""
        if not self.conf.exists():
            raise ClusterError(f"no cluster in {self.dir}")
        placement = self.placement()
        taken = set(placement) | {int(d.name.split("-", 1)[1]) for d in (self.dir / "osd").glob("ceph-*")}
        known = self.osd_ids()
        if known is None:
            raise ClusterError("the monitors do not answer (ceph osd ls)")
        osd_id = max(taken | known, default=-1) + 1
        with self.conf.open("a") as conf:
            conf.write(f"\n[osd.{osd_id}]\ncrush location = root=default host={host}\n")
        placement[osd_id] = host
        self.hosts_file.write_text(json.dumps({str(k): v for k, v in sorted(placement.items())}, indent=2) + "\n")
        self._finish_mkfs(osd_id, self._mkfs_osd(osd_id))
        self.start_osd(osd_id)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = {o["osd"]: o for o in json.loads(self.ceph("osd", "dump", "--format", "json", timeout=10))["osds"]}
            if states.get(osd_id, {}).get("up") and states.get(osd_id, {}).get("in"):
                return osd_id
            time.sleep(0.2)
        raise ClusterError(f"osd.{osd_id} of host {host} not up and in after {timeout:.0f}s")

    def start_osd(self, osd_id: int) -> None:
        run(["ceph-osd", "--conf", str(self.conf), "-i", str(osd_id)])

    # -- host-power ------------------------------------------------------------------------
    def placement(self) -> dict[int, str]:
        """{osd id: CRUSH host} from hosts.json; empty for a cluster made without --hosts."""
        try:
            return {int(k): v for k, v in json.loads(self.hosts_file.read_text()).items()}
        except (OSError, ValueError):
            return {}

    def osd_pid(self, osd_id: int) -> int | None:
        """The running ceph-osd of OSD_ID (its pid file, checked against the process's command line)."""
        try:
            pid = int((self.dir / "run" / f"osd.{osd_id}.pid").read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        args = [a.decode(errors="replace") for a in cmdline]
        if not args[0].endswith("ceph-osd") or str(self.conf) not in args or "--mkfs" in args:
            return None
        if "-i" not in args or args[args.index("-i") + 1:args.index("-i") + 2] != [str(osd_id)]:
            return None
        return pid if alive(pid) else None

    def host_power(self, host: str, power_on: bool, timeout: float = 8, provision: tuple[str, ...] = ()) -> list[int]:
        """Stop or start the OSDs placed on HOST; return the OSD ids acted on. With HOST in PROVISION and no OSD
        of it known to the monitors and no CRUSH bucket of that name, ``on`` creates its first OSD (add_osd)."""
        osds = sorted(i for i, h in self.placement().items() if h == host)
        if power_on and host in provision and not self._host_known(host, osds):
            return [self.add_osd(host)]
        if power_on:
            stopped = [i for i in osds if self.osd_pid(i) is None and (self.dir / f"osd/ceph-{i}").is_dir()]
            if not stopped:
                return []
            known = self.osd_ids()
            started = [i for i in stopped if known is None or i in known]
            for osd_id in started:
                self.start_osd(osd_id)
            return started
        pids = {i: self.osd_pid(i) for i in osds}
        pids = {i: p for i, p in pids.items() if p is not None}
        for pid in pids.values():
            signal_pid(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(alive(p) for p in pids.values()):
            time.sleep(0.05)
        for pid in pids.values():
            if alive(pid):
                signal_pid(pid, signal.SIGKILL)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and any(alive(p) for p in pids.values()):
            time.sleep(0.05)
        left = [i for i, p in pids.items() if alive(p)]
        if left:
            raise ClusterError(f"osd daemons {left} of host {host} still running after SIGKILL")
        for osd_id in pids:  # ceph-osd leaves its pid file behind; a stale one could name another process later
            (self.dir / "run" / f"osd.{osd_id}.pid").unlink(missing_ok=True)
        return sorted(pids)

    def _host_known(self, host: str, osds: list[int]) -> bool:
        """Whether HOST holds an OSD the monitors know, or still has its CRUSH bucket (a node being removed)."""
        known = self.osd_ids()
        if known is None or set(osds) & known:
            return True
        tree = json.loads(self.ceph("osd", "tree", "--format", "json", timeout=10))
        return any(n.get("type") == "host" and n.get("name") == host for n in tree.get("nodes", []))

    def osd_ids(self) -> set[int] | None:
        """The OSD ids the monitors know (``ceph osd ls``), or None when they do not answer quickly."""
        try:
            return {int(i) for i in json.loads(self.ceph("osd", "ls", "--format", "json", timeout=4))}
        except (ClusterError, ValueError):
            return None

    def wait_healthy(self, osds: int, deadline: float) -> dict:
        last: object = None
        while time.monotonic() < deadline:
            try:
                st = self.status(timeout=5)
            except (ClusterError, ValueError) as exc:
                last = exc
            else:
                last = st["health"]
                up = st.get("osdmap", {}).get("num_up_osds", st.get("osdmap", {}).get("osdmap", {}).get("num_up_osds"))
                if st["health"]["status"] == "HEALTH_OK" and up == osds and st.get("mgrmap", {}).get("available"):
                    return st
            time.sleep(0.5)
        raise ClusterError(f"cluster in {self.dir} not HEALTH_OK with {osds} OSDs up in time; last: {last}")

    # -- down ------------------------------------------------------------------------------
    def down(self, purge: bool) -> list[int]:
        pids = self.own_pids()
        for pid in pids:
            signal_pid(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(alive(p) for p in pids):
            time.sleep(0.1)
        for pid in pids:
            if alive(pid):
                signal_pid(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(alive(p) for p in pids):
            time.sleep(0.1)
        left = [p for p in pids if alive(p)]
        if left:
            raise ClusterError(f"processes still running after SIGKILL: {left}")
        for pid_file in self.pid_files():
            pid_file.unlink(missing_ok=True)
        if purge and self.dir.exists():
            shutil.rmtree(self.dir)
        return pids


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def signal_pid(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lab/ceph/cluster", description=__doc__.split("\n\n", maxsplit=1)[0])
    sub = parser.add_subparsers(dest="action", required=True)
    up = sub.add_parser("up", help="create and start a cluster, wait for HEALTH_OK")
    up.add_argument("--dir", required=True)
    up.add_argument("--address", default="127.0.0.1", help="loopback address every daemon binds to")
    up.add_argument("--osds", type=int, default=3)
    up.add_argument("--hosts", default="", help="comma-separated CRUSH host buckets; OSD i goes to hosts[i % len]")
    up.add_argument("--v1-port", type=int, default=6789)
    up.add_argument("--v2-port", type=int, default=3300)
    up.add_argument("--pool-size", type=int, default=0,
                    help="osd pool default size (default: 3, or the number of OSDs when fewer)")
    up.add_argument("--memstore-mb", type=int, default=512, help="capacity of each memstore OSD")
    up.add_argument("--timeout", type=float, default=120)
    st = sub.add_parser("status", help="daemons running and the cluster's health")
    st.add_argument("--dir", required=True)
    power = sub.add_parser("host-power", help="stop (off) or start (on) the OSDs placed on one CRUSH host")
    power.add_argument("--dir", required=True)
    power.add_argument("--provision", default="",
                       help="comma-separated hosts that get an OSD at power on when they hold none (Rook's stand-in)")
    power.add_argument("name", help="CRUSH host bucket (as given to up --hosts)")
    power.add_argument("power", choices=["on", "off"])
    add = sub.add_parser("add-osd", help="one more OSD under a CRUSH host, started, up and in")
    add.add_argument("--dir", required=True)
    add.add_argument("--host", required=True)
    down = sub.add_parser("down", help="stop every daemon of the cluster")
    down.add_argument("--dir", required=True)
    down.add_argument("--purge", action="store_true", help="also remove DIR")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cluster = Cluster(args.dir)
    try:
        if args.action == "up":
            if not args.address.startswith("127."):
                parser.error("--address must be a loopback address (127.0.0.0/8)")
            try:
                seconds = cluster.up(address=args.address, osds=args.osds, timeout=args.timeout,
                                     v1_port=args.v1_port, v2_port=args.v2_port, memstore_mb=args.memstore_mb,
                                     hosts=[h for h in args.hosts.split(",") if h], pool_size=args.pool_size)
            except (ClusterError, subprocess.TimeoutExpired):
                cluster.down(purge=False)  # leave no daemon behind; keep the logs
                raise
            for line in cluster.env_lines():
                print(line)
            print(f"HEALTH_OK with {args.osds} OSDs in {seconds:.1f}s", file=sys.stderr)
        elif args.action == "status":
            pids = cluster.own_pids()
            print(f"daemons running: {len(pids)} {pids}")
            if not pids:
                return 3
            st = cluster.status(timeout=5)
            print(f"health: {st['health']['status']}")
            return 0 if st["health"]["status"] != "HEALTH_ERR" else 1
        elif args.action == "host-power":
            acted = cluster.host_power(args.name, args.power == "on",
                                       provision=tuple(h for h in args.provision.split(",") if h))
            print(f"host {args.name} power {args.power}: osds {acted}")
        elif args.action == "add-osd":
            print(f"host {args.host}: osd.{cluster.add_osd(args.host)} up and in")
        else:
            pids = cluster.down(args.purge)
            print(f"stopped {len(pids)} daemons")
    except (ClusterError, subprocess.TimeoutExpired) as exc:
        print(f"error: {exc}", file=sys.stderr)
        if args.action == "up":
            print(f"logs: {cluster.dir / 'log'}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
