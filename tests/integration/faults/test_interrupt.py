# SPDX-License-Identifier: GPL-3.0-or-later
"""Fault matrix: Ctrl-C at a random task, then a rerun (the Proxmox layer on the Proxmox VE simulator).

ansible-playbook runs the proxmox_vm role for three VMs on two nodes. At a task chosen at random
(seeded; the seed and the task are in every assertion message) the whole process group gets SIGINT,
as a terminal's Ctrl-C does, while Proxmox tasks may be in flight. The rerun must then converge:
exactly the three VMs, each once, with its own VMID and MAC; a third run reports changed=0.

The simulator listens on 127.0.0.1:18164 and answers Talos' port on the VMs' addresses
127.0.64.41-43 while they run (the fault block).
"""
from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time

import pytest
import requests
from modrun import REPO_ROOT, TOOL_BIN

PORT = 18164
TOKEN = "5f0c8e2a-1b7d-4c3e-9a61-2d4b8f7e0c11"  # the simulator's lab token, not a secret
VMS = {"cp1": ("pve1", 241, "127.0.64.41", "BC:24:11:64:00:41"),
       "cp2": ("pve2", 242, "127.0.64.42", "BC:24:11:64:00:42"),
       "w1": ("pve1", 243, "127.0.64.43", "BC:24:11:64:00:43")}
RUN = REPO_ROOT / "lab" / "proxmox_sim" / "run"


def inventory(tmp_path, sim_dir):
    hosts = "\n".join(
        f"        {name}:\n          proxmox_vm_node: {node}\n          proxmox_vm_vmid: {vmid}\n"
        f"          proxmox_vm_talos_role: {'controlplane' if name.startswith('cp') else 'worker'}\n"
        f"          proxmox_vm_memory: {2048 if name.startswith('cp') else 1024}\n"
        f"          proxmox_vm_address: {addr}/24\n"
        f"          proxmox_vm_mac: {mac}"
        for name, (node, vmid, addr, mac) in VMS.items())
    path = tmp_path / "hosts.yml"
    path.write_text(f"""---
all:
  vars:
    ansible_connection: local
    ansible_python_interpreter: {sys.executable}
    proxmox_vm_api_host: 127.0.0.1
    proxmox_vm_api_port: {PORT}
    proxmox_vm_api_user: automation@pve
    proxmox_vm_api_token_id: ansible
    proxmox_vm_api_token_secret: {TOKEN}
    proxmox_vm_ca_path: {sim_dir}/ca.pem
    proxmox_vm_talos_extensions: [siderolabs/qemu-guest-agent]
    proxmox_vm_gateway: 127.0.64.1
    proxmox_vm_wait_timeout: 20
  children:
    talos:
      hosts:
{hosts}
""")
    return path


def env():
    e = dict(os.environ)
    e.update({"PATH": f"{TOOL_BIN}:{TOOL_BIN.parent / 'venv' / 'bin'}:{e['PATH']}",
              "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"), "ANSIBLE_FORKS": "20", "ANSIBLE_NOCOLOR": "1",
              "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_COLLECTIONS_PATH": str(REPO_ROOT / ".collections")})
    return e


def playbook(inv, interrupt_at=None, rng=None, left=None):
    """Run converge; with interrupt_at=k, SIGINT the process group when the k-th task starts.

    With a list LEFT, append for every task the seconds the run still took after the task started.
    """
    cmd = ["ansible-playbook", "-i", str(inv), str(REPO_ROOT / "molecule" / "proxmox_vm" / "converge.yml")]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    lines, tasks, starts = [], [], []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("TASK ["):
            tasks.append(line.strip())
            starts.append(time.monotonic())
            if interrupt_at is not None and len(tasks) == interrupt_at:
                time.sleep(rng.uniform(0.3, 1.2) if rng else 0)  # somewhere inside the task
                os.killpg(proc.pid, signal.SIGINT)
    rc = proc.wait(timeout=300)
    if left is not None:
        end = time.monotonic()
        left.extend(end - t for t in starts)
    return rc, "".join(lines), tasks


def recap(out):
    """Totals of the PLAY RECAP over every host (None when there is no recap)."""
    rows = re.findall(r"ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", out)
    if not rows:
        return None
    totals = [sum(int(r[i]) for r in rows) for i in range(4)]
    return dict(zip(("ok", "changed", "unreachable", "failed"), totals, strict=True))


def vms():
    r = requests.get(f"https://127.0.0.1:{PORT}/api2/json/cluster/resources", params={"type": "vm"},
                     headers={"Authorization": f"PVEAPIToken=automation@pve!ansible={TOKEN}"}, timeout=10,
                     verify=str(SIM_DIR["dir"] / "ca.pem"))
    r.raise_for_status()
    return sorted((v["vmid"], v["node"]) for v in r.json()["data"])


def macs():
    out = {}
    for name, (node, vmid, _ip, _mac) in VMS.items():
        r = requests.get(f"https://127.0.0.1:{PORT}/api2/json/nodes/{node}/qemu/{vmid}/config",
                         headers={"Authorization": f"PVEAPIToken=automation@pve!ansible={TOKEN}"}, timeout=10,
                         verify=str(SIM_DIR["dir"] / "ca.pem"))
        r.raise_for_status()
        out[name] = r.json()["data"].get("net0", "")
    return out


SIM_DIR = {}


@pytest.fixture
def fresh_sim(tmp_path):
    if not (TOOL_BIN.parent / "venv" / "bin" / "ansible-playbook").exists():
        pytest.skip("the tools venv is not built yet (make tools)")
    sim_dir = tmp_path / "pve"
    subprocess.run([str(RUN), "up", "--dir", str(sim_dir), "--port", str(PORT), "--fresh", "--task-delay", "0.3",
                    "--talos-port-stub", "50000"], check=True, capture_output=True, timeout=60, env=env())
    SIM_DIR["dir"] = sim_dir
    yield inventory(tmp_path, sim_dir)
    subprocess.run([str(RUN), "down", "--dir", str(sim_dir)], check=False, capture_output=True, timeout=60)


SEED = int(os.environ.get("HOMECLUSTER_FAULT_SEED", str(int(time.time()) % 100000)))


@pytest.mark.parametrize("part", ["first half", "second half", "inside the create task"])
def test_ctrl_c_at_a_random_task_then_the_rerun_converges(fresh_sim, part):
    rng = random.Random(f"{SEED}-{part}")  # noqa: S311 - picks a task, not a secret
    left = []  # seconds the cold run still took after each task started
    rc, out, tasks = playbook(fresh_sim, left=left)  # an uninterrupted cold run: the tasks a cold run goes through
    assert rc == 0, out[-3000:]
    # start again from nothing, then interrupt at a task of this half of the cold run
    subprocess.run([str(RUN), "down", "--dir", str(SIM_DIR["dir"])], check=True, capture_output=True, timeout=60)
    subprocess.run([str(RUN), "up", "--dir", str(SIM_DIR["dir"]), "--port", str(PORT), "--fresh", "--task-delay",
                    "0.3", "--talos-port-stub", "50000"], check=True, capture_output=True, timeout=60, env=env())
    assert vms() == [], "the simulator did not start empty"
    half = len(tasks) // 2
    if part == "inside the create task":  # the VMs' create and start tasks are in flight on Proxmox
        k = 1 + next(i for i, t in enumerate(tasks) if "Create, update and start the VMs" in t)
    else:
        # only a task after which the run still goes on for a while: the interrupt lands 0.3-1.2 s after
        # the task header, and a run that ends before it (the last tasks are skipped in a cold run)
        # would rightly report success
        candidates = [i + 1 for i in (range(half) if part == "first half" else range(half, len(tasks)))
                      if left[i] > 2.5]
        assert candidates, f"no task of the {part} leaves the run 2.5 s to go: {list(zip(tasks, left, strict=True))}"
        k = rng.choice(candidates)
    where = f"seed {SEED}, interrupted at task {k} of {len(tasks)}: {tasks[k - 1]}"
    rc, out, _err = playbook(fresh_sim, interrupt_at=k, rng=rng)
    assert rc != 0, f"the interrupted run claimed success ({where})"
    print(f"{where}; VMs left by the interrupted run: {vms()}")  # shown with -s, for the record
    rc, out, _err = playbook(fresh_sim)
    assert rc == 0, f"the rerun after Ctrl-C failed ({where}):\n{out[-3000:]}"
    assert vms() == sorted((vmid, node) for node, vmid, _ip, _mac in VMS.values()), f"VMs not exactly once ({where})"
    for name, net0 in macs().items():
        assert VMS[name][3].lower() in net0.lower(), f"{name}'s MAC changed: {net0} ({where})"
    rc, out, _err = playbook(fresh_sim)
    totals = recap(out)
    assert rc == 0 and totals and totals["changed"] == 0, \
        f"a third run changed something ({where}): {totals}\n{out[-4000:]}"
