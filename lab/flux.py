#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""lab/flux: the real Flux in the lab — flux-operator and the Flux controllers as processes.

There are no container images in the lab, so the Deployments that the flux-operator chart and the
operator itself create become kwok pods (Running and Ready, doing nothing). The work is done by the
same programs, built from their Go modules by `make tools` (lab/tools/versions.json), running on
this machine against the lab's API server, the way upstream's `make run` does. A supervisor starts
each program when the object a kubelet would run it for exists, and stops it when that goes:

- flux-operator, once the operator's CRDs (from the flux-operator chart) and its Deployment exist;
  it reconciles the FluxInstance from the Flux manifests embedded in its module (copied by
  `make tools` to $HOMECLUSTER_CACHE/share/flux-operator/data) and applies the toolkit CRDs and
  Deployments;
- source-, kustomize-, helm- and notification-controller, once the operator has applied their
  Deployment in the runtime namespace. The supervisor records the image tag of each Deployment
  next to the version of the program it runs (`lab/flux status`); versions.json pins the programs
  to the tags of the Flux distribution the operator installs.

Every listener is on --address (loopback) from --port-base: source-controller's artifact storage
(+3, advertised at the same address, so kustomize- and helm-controller fetch from it), the
notification-controller's event receiver (+33, every controller sends its events there), the
metrics and health endpoints. `--git-root DIR` also serves the bare repositories under DIR over
Git's smart HTTP protocol (`git http-backend`) at http://ADDRESS:PORT-BASE/<repo>.git, read-only;
GitRepository accepts only http(s) and ssh URLs. With --git-password-file, once that file exists,
the server asks for HTTP Basic credentials with its content as password (what the FluxInstance's
pull Secret carries).

  lab/flux up --kubeconfig FILE --dir DIR [--address A] [--port-base N] [--git-root DIR
               [--git-password-file FILE]]
  lab/flux down --dir DIR          stop everything, wait until no port of ours listens
  lab/flux status --dir DIR        processes, versions, Deployment images
  lab/flux versions                the built versions of the programs
"""

from __future__ import annotations

import argparse
import base64
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from kubernetes import client, config  # the lab virtualenv's client (kubernetes.core needs it)

CACHE = Path(os.environ.get("HOMECLUSTER_CACHE", Path.home() / ".cache/homecluster"))
NAMESPACE = "flux-system"
OPERATOR_CRDS = ["fluxinstances", "fluxreports", "resourcesets", "resourcesetinputproviders"]
CONTROLLERS = ["source-controller", "kustomize-controller", "helm-controller", "notification-controller"]
PROGRAMS = ["flux-operator", *CONTROLLERS]
# Offsets from --port-base: (metrics, health) and the extra listeners.
PORTS = {
    "git": 0,
    "source-controller": (1, 2), "storage": 3,
    "kustomize-controller": (11, 12),
    "helm-controller": (21, 22),
    "notification-controller": (31, 32), "events": 33, "receiver": 34,
    "flux-operator": (41, 42),
}


def built_version(program: str) -> str:
    stamp = CACHE / "stamps" / f"{program}.json"
    try:
        return json.loads(stamp.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return "not built"


def listeners(cfg: dict) -> list[tuple[str, int]]:
    base, addr = cfg["port_base"], cfg["address"]
    ports = []
    for key, off in PORTS.items():
        if key == "git" and not cfg.get("git_root"):
            continue
        ports += list(off) if isinstance(off, tuple) else [off]
    return [(addr, base + p) for p in ports]


def listening(addr: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((addr, port)) == 0


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def read_pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text())
    except (OSError, ValueError):
        return None
    return pid if alive(pid) else None


# ---------------------------------------------------------------- the smart-HTTP Git server

class GitHandler(BaseHTTPRequestHandler):
    root: Path = Path()
    password_file: Path | None = None
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write(f"{time.strftime('%H:%M:%S')} git {self.address_string()} {fmt % args}\n")

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _authorized(self) -> bool:
        """With --git-password-file, only HTTP Basic credentials carrying that password pass."""
        if self.password_file is None or not self.password_file.exists():
            return True
        scheme, _, value = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            password = base64.b64decode(value).decode().partition(":")[2]
        except ValueError:
            return False
        return hmac.compare_digest(password, self.password_file.read_text().strip())

    def _serve(self) -> None:
        if not self._authorized():
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="lab git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        if "receive-pack" in path or "service=git-receive-pack" in query:
            self.send_error(403, "read-only: push to the repository directly")
            return
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.root), "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command, "PATH_INFO": path, "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "REMOTE_ADDR": self.client_address[0], "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
        }
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        if self.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        body = self._body() if self.command == "POST" else b""
        env["CONTENT_LENGTH"] = str(len(body))
        proc = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, check=False)
        head, sep, payload = proc.stdout.partition(b"\r\n\r\n")
        if not sep:
            head, sep, payload = proc.stdout.partition(b"\n\n")
        status, headers = 200, []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        if proc.returncode != 0 and not sep:
            self.send_error(500, proc.stderr.decode(errors="replace")[-200:])
            return
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = _serve
    do_POST = _serve


def git_serve(root: Path, address: str, port: int, password_file: str) -> None:
    GitHandler.root = root.resolve()
    GitHandler.password_file = Path(password_file) if password_file else None
    server = ThreadingHTTPServer((address, port), GitHandler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()


# ---------------------------------------------------------------- the supervisor

class Supervisor:
    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.dir = Path(cfg["dir"])
        self.procs: dict[str, subprocess.Popen] = {}
        self.restarts: dict[str, int] = {}
        self.next_start: dict[str, float] = {}
        self.status: dict[str, dict] = {}
        self.api = None
        self.kubeconfig_mtime: float | None = None
        self.failures = 0

    def log(self, msg: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)

    def connect(self) -> bool:
        try:
            mtime = Path(self.cfg["kubeconfig"]).stat().st_mtime
        except OSError:
            mtime = None
        if self.api is not None and mtime != self.kubeconfig_mtime:
            # A new cluster (lab/down and up again, another bootstrap): start over against it.
            self.log("the kubeconfig changed: restarting every program")
            for name in list(self.procs):
                self.stop(name)
            self.api = None
        if self.api is not None:
            return True
        if mtime is None:
            return False
        self.kubeconfig_mtime = mtime
        try:
            api_client = config.new_client_from_config(self.cfg["kubeconfig"])
            client.VersionApi(api_client).get_code()
        except Exception:
            return False
        self.api = (client.ApiextensionsV1Api(api_client), client.AppsV1Api(api_client))
        self.log(f"API server reachable through {self.cfg['kubeconfig']}")
        return True

    def wanted(self) -> dict[str, str]:
        """Programs whose Deployment exists, with the image of that Deployment."""
        ext, apps = self.api
        crds = {c.metadata.name for c in ext.list_custom_resource_definition().items}
        deps = {d.metadata.name: d for d in apps.list_namespaced_deployment(self.cfg["namespace"]).items}
        want = {}
        if all(f"{p}.fluxcd.controlplane.io" in crds for p in OPERATOR_CRDS) and "flux-operator" in deps:
            want["flux-operator"] = deps["flux-operator"].spec.template.spec.containers[0].image
        for name in CONTROLLERS:
            if name in deps:
                want[name] = deps[name].spec.template.spec.containers[0].image
        return want

    def args(self, name: str) -> list[str]:
        addr, base = self.cfg["address"], self.cfg["port_base"]
        metrics, health = PORTS[name]
        args = [f"--metrics-addr={addr}:{base + metrics}", f"--health-addr={addr}:{base + health}",
                "--enable-leader-election=false", "--log-level=info", "--log-encoding=json"]
        events = f"--events-addr=http://{addr}:{base + PORTS['events']}/"
        if name == "flux-operator":
            args += [f"--storage-path={CACHE / 'share/flux-operator/data'}", "--web-server-port=0"]
        elif name == "source-controller":
            storage = self.dir / "source-storage"
            storage.mkdir(exist_ok=True)
            port = base + PORTS["storage"]
            args += [f"--storage-path={storage}", f"--storage-addr={addr}:{port}",
                     f"--storage-adv-addr={addr}:{port}", events]
        elif name == "notification-controller":
            args += [f"--events-addr={addr}:{base + PORTS['events']}",
                     f"--receiverAddr={addr}:{base + PORTS['receiver']}"]
        else:
            args += [events]
        if name in ("kustomize-controller", "helm-controller"):
            # Upstream re-checks a dependency that is not Ready every 30 s; the lab checks every 2 s.
            args += ["--requeue-dependency=2s"]
        return args

    def start(self, name: str, image: str) -> None:
        binary = CACHE / "bin" / name
        if not binary.exists():
            self.log(f"{name}: {binary} missing (make tools)")
            self.next_start[name] = time.monotonic() + 30
            return
        home = self.dir / "home" / name
        home.mkdir(parents=True, exist_ok=True)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "TMPDIR": str(home),
               "KUBECONFIG": self.cfg["kubeconfig"], "RUNTIME_NAMESPACE": self.cfg["namespace"],
               "GODEBUG": "fips140=on" if name == "flux-operator" else ""}
        if name == "flux-operator":
            # Its events go to notification-controller's in-cluster Service name unless told where it
            # listens: unresolvable here, each event held a reconcile ~15 s (five attempts).
            env["NOTIFICATION_CONTROLLER_ADDRESS"] = (f"http://{self.cfg['address']}:"
                                                      f"{self.cfg['port_base'] + PORTS['events']}/")
        log = open(self.dir / "logs" / f"{name}.log", "ab")
        proc = subprocess.Popen([str(binary), *self.args(name)], env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=home)
        log.close()
        self.procs[name] = proc
        (self.dir / "pids" / f"{name}.pid").write_text(str(proc.pid))
        tag = image.partition("@")[0].rpartition(":")[2]
        self.status[name] = {"pid": proc.pid, "version": built_version(name), "deployment_image": image,
                             "same_version": tag == built_version(name),
                             "restarts": self.restarts.get(name, 0)}
        self.log(f"{name} {built_version(name)} started (pid {proc.pid}) for Deployment image {image}")

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        (self.dir / "pids" / f"{name}.pid").unlink(missing_ok=True)
        self.status.pop(name, None)
        self.log(f"{name} stopped")

    def write_status(self) -> None:
        tmp = self.dir / "status.json.tmp"
        tmp.write_text(json.dumps(self.status, indent=2, sort_keys=True))
        tmp.replace(self.dir / "status.json")

    def step(self) -> None:
        if not self.connect():
            return
        try:
            want = self.wanted()
        except Exception as exc:
            self.failures += 1
            self.log(f"cannot list CRDs and Deployments: {exc.__class__.__name__}")
            if self.failures >= 15:
                self.api = None
            return
        self.failures = 0
        for name in PROGRAMS:
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is not None:
                self.log(f"{name} exited with {proc.returncode}; see logs/{name}.log")
                self.procs.pop(name)
                self.restarts[name] = self.restarts.get(name, 0) + 1
                self.next_start[name] = time.monotonic() + min(30, 2 ** self.restarts[name])
            if name in want and name not in self.procs and time.monotonic() >= self.next_start.get(name, 0):
                self.start(name, want[name])
            elif name not in want and name in self.procs:
                self.stop(name)
        self.write_status()

    def run(self) -> None:
        stopping = []
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
        self.log(f"supervising {', '.join(PROGRAMS)} for {self.cfg['kubeconfig']}")
        while not stopping:
            self.step()
            for _ in range(20):
                if stopping:
                    break
                time.sleep(0.1)
        for name in list(self.procs):
            self.stop(name)
        self.status = {}
        self.write_status()


# ---------------------------------------------------------------- commands

def spawn(argv: list[str], log: Path, pidfile: Path) -> int:
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    pidfile.write_text(str(proc.pid))
    return proc.pid


def cmd_up(args) -> int:
    state = Path(args.dir).resolve()
    for sub in ("logs", "pids"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    cfg = {"dir": str(state), "kubeconfig": str(Path(args.kubeconfig).resolve()), "address": args.address,
           "port_base": args.port_base, "namespace": args.namespace,
           "git_root": str(Path(args.git_root).resolve()) if args.git_root else ""}
    (state / "config.json").write_text(json.dumps(cfg, indent=2))
    me = [sys.executable, str(Path(__file__).resolve())]
    if cfg["git_root"] and not read_pid(state / "pids/git.pid"):
        port = args.port_base + PORTS["git"]
        secret = ["--password-file", str(Path(args.git_password_file).resolve())] if args.git_password_file else []
        pid = spawn([*me, "git-serve", "--root", cfg["git_root"], "--listen", f"{args.address}:{port}", *secret],
                    state / "logs/git.log", state / "pids/git.pid")
        for _ in range(50):
            if listening(args.address, port):
                break
            time.sleep(0.1)
        else:
            print(f"lab/flux: the Git server did not listen on {args.address}:{port}; see {state}/logs/git.log")
            return 1
        print(f"lab/flux: Git over smart HTTP at http://{args.address}:{port}/ for {cfg['git_root']} (pid {pid})")
    if read_pid(state / "pids/supervisor.pid"):
        print("lab/flux: supervisor already running")
        return 0
    pid = spawn([*me, "supervise", "--dir", str(state)], state / "logs/supervisor.log",
                state / "pids/supervisor.pid")
    print(f"lab/flux: supervisor started (pid {pid}); flux-operator and the controllers start as their "
          f"Deployments appear; logs in {state}/logs")
    return 0


def stop_pid(pidfile: Path, wait: float) -> bool:
    pid = read_pid(pidfile)
    if pid:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + wait
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    pidfile.unlink(missing_ok=True)
    return bool(pid)


def cmd_down(args) -> int:
    state = Path(args.dir).resolve()
    try:
        cfg = json.loads((state / "config.json").read_text())
    except OSError:
        print("lab/flux: nothing to stop")
        return 0
    stop_pid(state / "pids/supervisor.pid", 60)
    for pidfile in sorted((state / "pids").glob("*.pid")):  # children left by a killed supervisor
        stop_pid(pidfile, 20)
    busy = listeners(cfg)
    for _ in range(100):
        busy = [(a, p) for a, p in busy if listening(a, p)]
        if not busy:
            break
        time.sleep(0.1)
    if busy:
        print(f"lab/flux: still listening: {busy}")
        return 1
    print("lab/flux: stopped")
    return 0


def cmd_status(args) -> int:
    state = Path(args.dir).resolve()
    sup = read_pid(state / "pids/supervisor.pid")
    git = read_pid(state / "pids/git.pid")
    print(f"  supervisor: {f'pid {sup}' if sup else 'not running'}; "
          f"git server: {f'pid {git}' if git else 'not running'}")
    try:
        status = json.loads((state / "status.json").read_text())
    except (OSError, ValueError):
        status = {}
    for name in PROGRAMS:
        st = status.get(name)
        if st:
            print(f"  {name:24} {st['version']:8} pid {st['pid']:<7} Deployment image {st['deployment_image']}"
                  f"{'' if st['same_version'] else ' (different tag, see versions.json)'}")
        else:
            print(f"  {name:24} {built_version(name):8} not running")
    return 0 if sup else 1


def cmd_versions(_args) -> int:
    for name in PROGRAMS:
        print(f"{name} {built_version(name)}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up")
    up.add_argument("--kubeconfig", required=True)
    up.add_argument("--dir", required=True)
    up.add_argument("--address", default="127.0.10.9")
    up.add_argument("--port-base", type=int, default=9100)
    up.add_argument("--namespace", default=NAMESPACE)
    up.add_argument("--git-root", default="")
    up.add_argument("--git-password-file", default="",
                    help="once this file exists, the Git server requires HTTP Basic auth with its content as password")
    for name in ("down", "status", "supervise"):
        sub.add_parser(name).add_argument("--dir", required=True)
    sub.add_parser("versions")
    git = sub.add_parser("git-serve")
    git.add_argument("--root", required=True)
    git.add_argument("--listen", required=True)
    git.add_argument("--password-file", default="")
    args = parser.parse_args()
    if args.cmd == "up":
        return cmd_up(args)
    if args.cmd == "down":
        return cmd_down(args)
    if args.cmd == "status":
        return cmd_status(args)
    if args.cmd == "versions":
        return cmd_versions(args)
    if args.cmd == "supervise":
        Supervisor(json.loads((Path(args.dir) / "config.json").read_text())).run()
        return 0
    addr, _, port = args.listen.rpartition(":")
    git_serve(Path(args.root), addr, int(port), args.password_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
