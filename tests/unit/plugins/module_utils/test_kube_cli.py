# SPDX-License-Identifier: GPL-3.0-or-later
"""The helm and kubectl runners: the command lines they build and how they read the output.

Outputs under fixtures/kube_cli/ were recorded from the real kubectl v1.37.2 and helm v3.22.0
against the lab control plane (see the README there for the commands).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from ansible_collections.homecluster.platform.plugins.module_utils._cli import CliError, Completed
from ansible_collections.homecluster.platform.plugins.module_utils._kube_cli import Helm, Kubectl, comparable

FIXTURES = Path(__file__).parent / "fixtures" / "kube_cli"


def fixture(name):
    return (FIXTURES / name).read_text()


class Recorder:
    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls = []

    def __call__(self, cmd, data, env, timeout):
        self.calls.append({"cmd": cmd, "data": data, "env": env})
        rc, out, err = self.answers.pop(0)
        return Completed(cmd, rc, out, err)


def test_kubectl_connection_options_and_clean_environment():
    rec = Recorder((0, fixture("get-list.json"), ""))
    k = Kubectl("/usr/bin/kubectl", kubeconfig="/k/config", context="lab", runner=rec)
    k.get_many([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}], "demo")
    cmd = rec.calls[0]["cmd"]
    assert cmd[:5] == ["/usr/bin/kubectl", "--kubeconfig", "/k/config", "--context", "lab"]
    assert cmd[5:] == ["get", "-f", "-", "-o", "json", "--ignore-not-found"]
    assert rec.calls[0]["env"]["LANG"] == "C"
    sent = json.loads(rec.calls[0]["data"])
    assert sent["kind"] == "List" and sent["items"][0]["metadata"]["namespace"] == "demo"


def test_get_many_reads_a_list_and_single_objects():
    rec = Recorder((0, fixture("get-list.json"), ""))
    found = Kubectl("kubectl", runner=rec).get_many(
        [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": n}} for n in ("a", "b")], "demo")
    assert sorted(k[3] for k in found) == ["a", "b"]
    rec = Recorder((0, fixture("get-single.json"), ""))
    found = Kubectl("kubectl", runner=rec).get_many(
        [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}}], "demo")
    assert list(found) == [("", "Namespace", "", "demo")]
    # Cluster-scoped kinds are not given the default namespace.
    assert "namespace" not in json.loads(rec.calls[0]["data"])["items"][0]["metadata"]


def test_an_unserved_kind_counts_as_absent_and_others_are_looked_up_one_by_one():
    rec = Recorder((1, "", fixture("get-no-crd.stderr")), (1, "", fixture("get-no-crd.stderr")),
                   (0, fixture("get-single.json"), ""))
    objs = [{"apiVersion": "lab.homecluster.dev/v1", "kind": "Widget", "metadata": {"name": "w"}},
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}}]
    found = Kubectl("kubectl", runner=rec).get_many(objs, "demo")
    assert list(found) == [("", "Namespace", "", "demo")]
    assert len(rec.calls) == 3


def test_other_get_errors_are_not_hidden():
    rec = Recorder((1, "", "error: You must be logged in to the server (Unauthorized)\n"))
    with pytest.raises(CliError, match="Unauthorized"):
        Kubectl("kubectl", runner=rec).get_many([{"apiVersion": "v1", "kind": "ConfigMap",
                                                  "metadata": {"name": "a"}}], "demo")


def test_apply_is_server_side_with_our_field_manager_and_dry_run_on_request():
    rec = Recorder((0, fixture("apply-dry-run.json"), ""))
    out = Kubectl("kubectl", runner=rec).apply([{"apiVersion": "v1", "kind": "ConfigMap",
                                                 "metadata": {"name": "a"}}], "demo", dry_run=True)
    cmd = rec.calls[0]["cmd"]
    assert cmd[1:] == ["apply", "--server-side", "--field-manager=homecluster", "--force-conflicts", "-f", "-",
                       "-o", "json", "--dry-run=server"]
    assert out[0]["metadata"]["name"] == "a"


def test_a_failed_secret_apply_keeps_no_stdout():
    rec = Recorder((1, '{"kind": "Secret", "stringData": {"t": "hunter2"}}', "error: boom\n"))
    with pytest.raises(CliError) as e:
        Kubectl("kubectl", runner=rec).apply([{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}],
                                             "demo", secret=True)
    assert "hunter2" not in e.value.stdout


def test_comparable_drops_what_the_server_changes_on_every_write():
    stored = json.loads(fixture("get-single.json"))
    after = json.loads(json.dumps(stored))
    after["metadata"]["resourceVersion"] = "999"
    after["metadata"]["managedFields"] = []
    assert comparable(stored) == comparable(after)
    after["metadata"]["labels"] = {"x": "y"}
    assert comparable(stored) != comparable(after)


def test_helm_releases_come_from_one_list_of_every_namespace():
    rec = Recorder((0, fixture("helm-list.json"), ""))
    rels = Helm("helm", kubeconfig="/k", context="lab", runner=rec).releases()
    assert rec.calls[0]["cmd"] == ["helm", "--kubeconfig", "/k", "--kube-context", "lab", "list", "--all",
                                   "--all-namespaces", "--max", "0", "-o", "json"]
    assert rels == {("hello", "demo"): {"chart": "lab-hello-0.1.0", "status": "deployed", "revision": "1"}}


def test_helm_user_values_keep_no_stdout_on_failure():
    rec = Recorder((0, fixture("helm-get-values.json"), ""))
    assert Helm("helm", runner=rec).user_values("hello", "demo") == {"replicaCount": 1}
    rec = Recorder((1, "password: hunter2", "Error: release: not found\n"))
    with pytest.raises(CliError) as e:
        Helm("helm", runner=rec).user_values("nope", "demo")
    assert "hunter2" not in e.value.stdout


def test_helm_upgrade_passes_values_on_stdin_with_wait_atomic_and_reset():
    rec = Recorder((0, "", ""))
    Helm("helm", runner=rec).upgrade("hello", "/tmp/lab-hello-0.1.0.tgz", "demo", {"a": 1}, timeout=120)
    cmd = rec.calls[0]["cmd"]
    assert cmd[1:9] == ["upgrade", "--install", "hello", "/tmp/lab-hello-0.1.0.tgz", "--namespace", "demo",
                        "--values", "-"]
    assert {"--wait", "--atomic", "--timeout=120s", "--reset-values"} <= set(cmd)
    assert json.loads(rec.calls[0]["data"]) == {"a": 1}


def test_helm_pull_sources(tmp_path):
    rec = Recorder((0, "", ""))
    chart = {"name": "lab-hello", "version": "0.1.0", "ref": "oci://127.0.0.1:5000/charts/lab-hello",
             "repo_url": "", "plain_http": True, "source": "oci"}
    with pytest.raises(CliError, match="left 0 archives"):
        Helm("helm", runner=rec).pull(chart, str(tmp_path))
    assert rec.calls[0]["cmd"][1:] == ["pull", "oci://127.0.0.1:5000/charts/lab-hello", "--destination",
                                       str(tmp_path), "--version", "0.1.0", "--plain-http"]


def test_helm_manifest_objects_lists_what_the_release_rendered_and_keeps_no_stdout_on_failure():
    rec = Recorder((0, fixture("helm-get-manifest.txt"), ""))
    h = Helm("/usr/bin/helm", runner=rec)
    assert h.manifest_objects("hello", "demo") == [("Service", "hello"), ("Deployment", "hello")]
    assert rec.calls[0]["cmd"][1:] == ["get", "manifest", "hello", "-n", "demo"]
    rec = Recorder((1, "kind: Secret\ndata: {password: c2VjcmV0}\n", "Error: boom"))
    with pytest.raises(CliError) as e:
        Helm("/usr/bin/helm", runner=rec).manifest_objects("hello", "demo")
    assert "c2VjcmV0" not in str(e.value.fail_kwargs())


def test_error_summary_carries_the_cause_after_a_header_line():
    from ansible_collections.homecluster.platform.plugins.module_utils._cli import first_line  # noqa: PLC0415

    helm = ("Error: release loki failed, and has been uninstalled due to atomic being set: 1 error occurred:\n"
            "\t* StatefulSet.apps \"loki\" is invalid: spec.template.spec.containers[0].volumeMounts[1].name: "
            "Not found: \"storage\"\n\n\n")
    assert first_line(helm) == ("Error: release loki failed, and has been uninstalled due to atomic being set: "
                                "1 error occurred: StatefulSet.apps \"loki\" is invalid: spec.template.spec."
                                "containers[0].volumeMounts[1].name: Not found: \"storage\"")
    assert first_line("Error: not found\nsecond line\n") == "Error: not found"
    assert first_line("\n\n") == "(no message)"
