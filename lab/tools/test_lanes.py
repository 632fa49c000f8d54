# SPDX-License-Identifier: GPL-3.0-or-later
"""lanes.py: exclusive scenarios never overlap, lanes are filled, a failure starts nothing new."""
from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

spec = importlib.util.spec_from_file_location("lanes", Path(__file__).with_name("lanes.py"))
lanes = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lanes)


def fake(tmp_path: Path, fail: set[str] | None = None):
    """Each job appends 'start NAME' and 'end NAME' to one file and sleeps a little."""
    trace = tmp_path / "trace"

    def command(job: str) -> list[str]:
        rc = 3 if job in (fail or set()) else 0
        return ["sh", "-c", f"echo start {job} >> {trace}; sleep 0.3; echo end {job} >> {trace}; exit {rc}"]
    return trace, command


def spans(trace: Path) -> list[tuple[str, str]]:
    return [tuple(line.split()) for line in trace.read_text().splitlines()]


def run(pool):
    threads = [threading.Thread(target=pool.worker) for _ in range(pool.lanes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_exclusive_jobs_never_overlap_and_lanes_fill(tmp_path, monkeypatch):
    trace, command = fake(tmp_path)
    monkeypatch.setattr(lanes, "command", command)
    times = tmp_path / "times.tsv"
    pool = lanes.Pool(["a", "b", "c", "d"], 2, [{"a", "b"}], tmp_path, times)
    run(pool)
    events = spans(trace)
    running, most = set(), 0
    for what, job in events:
        if what == "start":
            running.add(job)
            assert not {"a", "b"} <= running, events
            most = max(most, len(running))
        else:
            running.discard(job)
    assert most == 2, events
    assert sorted(pool.done) == ["a", "b", "c", "d"]
    rows = [line.split("\t") for line in times.read_text().splitlines()]
    assert sorted(r[0] for r in rows) == ["molecule a", "molecule b", "molecule c", "molecule d"]
    assert all(r[2] == "passed" and r[3] == "parallel" for r in rows)


def test_a_failure_starts_no_new_job(tmp_path, monkeypatch):
    trace, command = fake(tmp_path, fail={"a"})
    monkeypatch.setattr(lanes, "command", command)
    pool = lanes.Pool(["a", "b", "c", "d"], 1, [], tmp_path, None)
    run(pool)
    assert pool.failed
    assert [job for what, job in spans(trace) if what == "start"] == ["a"]
    assert pool.done["a"][1] == 3
    assert (tmp_path / "a.log").exists()
    assert not any((tmp_path / f"{j}.log").exists() for j in "bcd")


def test_commands_molecule_by_default_and_named_ones_from_the_config(monkeypatch):
    monkeypatch.setitem(lanes.COMMANDS, "pytest-corpus", ["{python}", "-m", "pytest", "tests/preflight"])
    assert lanes.command("cilium") == ["molecule", "test", "-s", "cilium"]
    assert lanes.label("cilium") == "molecule cilium"
    assert lanes.command("pytest-corpus")[1:] == ["-m", "pytest", "tests/preflight"]
    assert lanes.command("pytest-corpus")[0].endswith("python") or "python" in lanes.command("pytest-corpus")[0]
    assert lanes.label("pytest-corpus") == "pytest-corpus"
    assert lanes.command("e2e")[-1] == "tests/e2e"


def test_a_failed_job_leaves_why_in_failures_txt(tmp_path, monkeypatch):
    """CI shows the end of the output; the failed task must be there, not molecule's destroy."""
    log_text = "\n".join([
        "PLAY [Check mode before the first apply]",
        "TASK [Run the role with --check --diff] ****",
        "ok: [localhost]",
        "TASK [Assert check mode predicted the layer and changed nothing] ****",
        'fatal: [localhost]: FAILED! => {"assertion": "x > 0", "msg": "the cause"}',
        "PLAY RECAP",
    ] + [f"INFO destroy: line {i}" for i in range(300)])

    def command(job):
        return ["sh", "-c", f"cat <<'X'\n{log_text}\nX\nexit 2"]
    monkeypatch.setattr(lanes, "command", command)
    times = tmp_path / "times" / "last.tsv"
    times.parent.mkdir()
    pool = lanes.Pool(["sec"], 1, [], tmp_path, times)
    run(pool)
    why = (times.parent / "failures.txt").read_text().splitlines()
    assert why[0].startswith("---- why molecule sec failed")
    assert why[1] == "TASK [Assert check mode predicted the layer and changed nothing] ****"
    assert why[2].startswith("fatal: [localhost]: FAILED!") and "the cause" in why[2]
    assert not any("destroy" in line for line in why)


def test_excerpt_reads_through_molecules_frame_and_wrapped_messages():
    log = [
        "  \x1b[2m\x1b[31m│\x1b[0m TASK [Assert check mode predicted the layer] ****",
        '  │ fatal: [localhost]: FAILED! => {"changed": false, "msg": "The security',
        "  │   layer refused its settings; nothing was changed:",
        "  │   platform_security_allowed_registries: would refuse the platform image",
        "  │ ",
        "  │ PLAY RECAP *****",
        "INFO     platform_security ➜ destroy: Executed: Successful",
    ]
    assert lanes.excerpt_of(log) == [
        "TASK [Assert check mode predicted the layer] ****",
        'fatal: [localhost]: FAILED! => {"changed": false, "msg": "The security',
        "  layer refused its settings; nothing was changed:",
        "  platform_security_allowed_registries: would refuse the platform image",
    ]
