# SPDX-License-Identifier: GPL-3.0-or-later
"""ceph_* modules against a real Ceph cluster: changes, idempotence, check mode read back from Ceph."""

from __future__ import annotations

import json
import time


def read_pool(cluster, name):
    pools = json.loads(cluster.ceph("osd", "pool", "ls", "detail", "--format", "json"))
    return next((p for p in pools if p["pool_name"] == name), None)


def read_flags(cluster):
    return json.loads(cluster.ceph("osd", "dump", "--format", "json"))["flags_set"]


def test_status_reports_health_and_checks(ceph_cluster, ceph_args, run_module):
    res = run_module("ceph_status", ceph_args)
    assert res["changed"] is False
    assert res["health"] in ("HEALTH_OK", "HEALTH_WARN")
    assert res["osds"] == {"num_osds": 3, "num_up_osds": 3, "num_in_osds": 3}
    assert res["quorum_names"] == ["a"]


def test_pool_create_rerun_size_diff_check_mode_and_delete(ceph_cluster, ceph_args, run_module):
    want = {**ceph_args, "name": "itest", "size": 2, "min_size": 1, "pg_num": 8, "pg_autoscale_mode": "warn",
            "application": "rbd"}
    created = run_module("ceph_pool", want)
    assert created["changed"] is True
    assert created["diff"]["before"] == {}
    pool = read_pool(ceph_cluster, "itest")
    assert (pool["size"], pool["min_size"], pool["pg_autoscale_mode"]) == (2, 1, "warn")
    assert "rbd" in pool["application_metadata"]

    again = run_module("ceph_pool", want)
    assert again["changed"] is False and again["commands"] == []

    predicted = run_module("ceph_pool", {**want, "size": 3}, check=True)
    assert predicted["changed"] is True
    assert predicted["diff"]["before"]["size"] == 2 and predicted["diff"]["after"]["size"] == 3
    assert read_pool(ceph_cluster, "itest")["size"] == 2, "check mode changed the pool"

    resized = run_module("ceph_pool", {**want, "size": 3})
    assert resized["changed"] is True
    assert resized["diff"]["before"]["size"] == 2 and resized["diff"]["after"]["size"] == 3
    assert read_pool(ceph_cluster, "itest")["size"] == 3
    assert run_module("ceph_pool", {**want, "size": 3})["changed"] is False

    refused = run_module("ceph_pool", {**ceph_args, "name": "itest", "state": "absent"}, expect_fail=True)
    assert "allow_delete" in refused["msg"]
    assert read_pool(ceph_cluster, "itest") is not None

    check_delete = run_module("ceph_pool", {**ceph_args, "name": "itest", "state": "absent", "allow_delete": True},
                              check=True)
    assert check_delete["changed"] is True and read_pool(ceph_cluster, "itest") is not None
    deleted = run_module("ceph_pool", {**ceph_args, "name": "itest", "state": "absent", "allow_delete": True})
    assert deleted["changed"] is True and read_pool(ceph_cluster, "itest") is None
    gone = run_module("ceph_pool", {**ceph_args, "name": "itest", "state": "absent", "allow_delete": True})
    assert gone["changed"] is False


def test_pool_bad_min_size_fails_before_creating(ceph_cluster, ceph_args, run_module):
    res = run_module("ceph_pool", {**ceph_args, "name": "badpool", "size": 2, "min_size": 3}, expect_fail=True)
    assert "min_size (3) must not exceed size (2)" in res["msg"]
    assert read_pool(ceph_cluster, "badpool") is None


def test_noout_set_and_unset_are_idempotent(ceph_cluster, ceph_args, run_module):
    args = {**ceph_args, "flags": ["noout"]}
    checked = run_module("ceph_osd_flag", args, check=True)
    assert checked["changed"] is True and "noout" not in read_flags(ceph_cluster)
    assert run_module("ceph_osd_flag", args)["changed"] is True
    assert "noout" in read_flags(ceph_cluster)
    assert run_module("ceph_osd_flag", args)["changed"] is False

    status = run_module("ceph_status", ceph_args)
    flags_check = [c for c in status["checks"] if c["name"] == "OSDMAP_FLAGS"]
    assert flags_check and "noout" in flags_check[0]["summary"]

    unset = {**args, "state": "absent"}
    assert run_module("ceph_osd_flag", unset, check=True)["changed"] is True
    assert "noout" in read_flags(ceph_cluster)
    assert run_module("ceph_osd_flag", unset)["changed"] is True
    assert "noout" not in read_flags(ceph_cluster)
    assert run_module("ceph_osd_flag", unset)["changed"] is False


def test_config_set_get_and_remove(ceph_cluster, ceph_args, run_module):
    args = {**ceph_args, "who": "osd", "name": "osd_memory_target", "value": "2G"}
    assert run_module("ceph_config", args, check=True)["changed"] is True
    info = {k: v for k, v in args.items() if k != "value"}
    assert run_module("ceph_config_info", info)["value"] is None
    res = run_module("ceph_config", args)
    assert res["changed"] is True and res["value"] == "2147483648"
    assert run_module("ceph_config", {**args, "value": 2147483648})["changed"] is False
    assert run_module("ceph_config", args)["changed"] is False
    got = run_module("ceph_config_info", info)
    assert got["value"] == "2147483648" and str(got["effective"]) == "2147483648"
    assert got["entries"] == [{"section": "osd", "mask": "", "name": "osd_memory_target", "value": "2147483648"}]
    bad = run_module("ceph_config", {**args, "name": "osd_no_such_option"}, expect_fail=True)
    assert "not a Ceph configuration option" in bad["msg"]
    assert run_module("ceph_config", {**args, "state": "absent"})["changed"] is True
    assert run_module("ceph_config", {**args, "state": "absent"})["changed"] is False


def test_no_quorum_times_out_with_a_clear_error(ceph_cluster, tmp_path, run_module):
    # the same cluster's ceph.conf, but naming a monitor address where nothing listens
    conf = ceph_cluster.conf.read_text()
    mon_host = conf.split("mon host = ")[1].splitlines()[0]
    dead = tmp_path / "dead.conf"
    dead.write_text(conf.replace(mon_host, "[v2:127.0.60.254:3300,v1:127.0.60.254:6789]"))
    started = time.monotonic()
    res = run_module("ceph_status", {"ceph_conf": str(dead), "keyring": str(ceph_cluster.keyring),
                                     "connect_timeout": 2}, expect_fail=True)
    assert time.monotonic() - started < 30
    assert "connect_timeout=2s" in res["msg"] and "quorum" in res["msg"]
    assert res["cmd"] and "stderr" in res

    res = run_module("ceph_status", {"ceph_conf": str(dead), "keyring": str(ceph_cluster.keyring),
                                     "connect_timeout": 60, "command_timeout": 2}, expect_fail=True)
    assert "command_timeout=2s" in res["msg"]


def test_toolbox_transport_runs_ceph_after_kubectl_exec(ceph_cluster, tmp_path, run_module):
    """The toolbox transport's command line, through a kubectl stand-in that checks what it is
    asked and runs the real ceph (as `kubectl exec` would in the Rook toolbox)."""
    log = tmp_path / "kubectl.log"
    stub = tmp_path / "kubectl"
    stub.write_text(f"""#!/bin/sh
echo "$@" >> {log}
[ "$1 $2 $3 $4 $5 $6 $7" = "--kubeconfig /lab/kubeconfig --namespace storage exec deployment/tools --" ] || exit 97
shift 7
exec "$@" --conf {ceph_cluster.conf}
""")
    stub.chmod(0o755)
    args = {"transport": "toolbox", "kubectl_binary": str(stub), "kubeconfig": "/lab/kubeconfig",
            "toolbox_namespace": "storage", "toolbox_deployment": "tools"}
    res = run_module("ceph_status", args)
    assert res["osds"]["num_up_osds"] == 3
    first = log.read_text().splitlines()[0]
    assert " -- ceph --connect-timeout 10 status --format json" in first
    flag = run_module("ceph_osd_flag", {**args, "flags": ["norebalance"]})
    assert flag["changed"] is True and "norebalance" in read_flags(ceph_cluster)
    assert run_module("ceph_osd_flag", {**args, "flags": ["norebalance"], "state": "absent"})["changed"] is True
