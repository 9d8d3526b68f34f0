"""End-to-end tests of the `stepflow` CLI on the embedded broker (memory://), each command a real process."""

from __future__ import annotations

import json
import random
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from helpers import (
    REPO_ROOT,
    REPO_WORKFLOWS,
    LineReader,
    describe,
    make_tree,
    run_cli,
    start_cli,
    step,
    workflow,
    write_workflows,
)

ID_LINE = re.compile(r"workflow #(\d+)")


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A working folder without workflows.json: definitions come only from installed plugins."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    return folder


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "state.json"


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """Assert a usage error: exit 2, exactly one line on stderr, no traceback; return that line."""
    assert result.returncode == 2, describe(result)
    assert "Traceback" not in result.stderr, describe(result)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, describe(result)
    return lines[0]


# ------------------------------------------------------------------------------------------ checksum_folder
def checksum_tree(root: Path) -> list[str]:
    """~300 files in nested folders: names with spaces, an empty file, sizes from 0 to 1 MB."""
    rng = random.Random(20240611)
    files: dict[str, bytes] = {"empty file": b"", "top.txt": b"top\n"}
    for i in range(298):
        folder = ["alpha", "beta gamma", "alpha/deep er/deepest", "delta/x y z", "e"][i % 5]
        name = f"file {i:03d}.dat" if i % 3 == 0 else f"f{i:03d}.bin"
        if i % 75 == 0:
            size = 1024 * 1024
        elif i % 20 == 0:
            size = rng.randint(100_000, 300_000)
        else:
            size = rng.randint(1, 4096)
        files[f"{folder}/{name}"] = rng.randbytes(size)
    return make_tree(root, files)


def test_checksum_folder_writes_a_manifest_sha256sum_verifies(tmp_path: Path, outside: Path, db: Path) -> None:
    source = tmp_path / "data set"
    relative = checksum_tree(source)
    manifest = tmp_path / "MANIFEST.sha256"

    result = run_cli("run", "checksum_folder", "-p", f"source_dir={source}", "-p", f"manifest={manifest}",
                     "--wait", db=db, cwd=outside, script=True, timeout=120)

    assert result.returncode == 0, describe(result)
    first = result.stdout.splitlines()[0]
    assert ID_LINE.search(first), describe(result)
    lines = manifest.read_text(encoding="utf-8").splitlines()
    assert [line.split("  ", 1)[1] for line in lines] == relative  # one line per file, sorted by path
    if shutil.which("sha256sum") is None:
        pytest.skip("sha256sum is not installed")
    check = subprocess.run(["sha256sum", "-c", str(manifest)], cwd=source, capture_output=True, text=True,
                           timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    ok = [line for line in check.stdout.splitlines() if line.endswith(": OK")]
    assert len(ok) == len(relative) == 300


# ------------------------------------------------------------------------------------------ a failing workflow
def test_failing_demo_exits_1_and_status_names_the_failed_job(tmp_path: Path, db: Path) -> None:
    marker = tmp_path / "no-such-marker"  # the job succeeds if this exists: make sure it does not

    result = run_cli("run", "failing_demo", "-p", f"marker={marker}", "--wait", "--workflows", REPO_WORKFLOWS,
                     db=db, cwd=tmp_path)

    assert result.returncode == 1, describe(result)
    workflow_id = ID_LINE.search(result.stdout.splitlines()[0]).group(1)
    status = run_cli("status", db=db, cwd=tmp_path)
    assert status.returncode == 0, describe(status)
    assert f"#{workflow_id} failing_demo" in status.stdout
    failed = [line for line in status.stdout.splitlines() if "this job fails on purpose" in line]
    assert len(failed) == 1, status.stdout
    assert re.search(r"job #\d+ \(fail\)", failed[0]), failed[0]


# ------------------------------------------------------------------------------------------ bad definitions
def _definition_files(tmp_path: Path) -> list[tuple[str, Path, list[str]]]:
    """(case, file, fragments the one-line error must contain)."""
    folder = tmp_path / "defs"
    folder.mkdir()
    noop = step(1, "noop")
    bad_json = folder / "bad_json.json"
    bad_json.write_text('{\n  "workflows": [\n    {"identifier": "w1",,}\n  ]\n}\n', encoding="utf-8")
    cases = [("bad JSON", bad_json, ["bad_json.json", "line 3"])]
    for case, name, workflows, fragments in [
        ("unknown required_to_start", "unknown_step.json",
         [workflow("w1", [noop, step(2, "noop", required_to_start=[7])])],
         ["'w1'", "required_to_start", "7"]),
        ("cycle", "cycle.json",
         [workflow("w1", [step(1, "noop", required_to_start=[2]), step(2, "noop", required_to_start=[1])])],
         ["'w1'", "steps", "cycle"]),
        ("missing name", "no_name.json",
         [workflow("w1", [{"id": 1, "label": "nameless"}])],
         ["'w1'", "steps[0].name"]),
        ("duplicate identifier", "duplicate.json",
         [workflow("w1", [noop]), workflow("w1", [noop])],
         ["'w1'", "identifier", "duplicate"]),
    ]:
        cases.append((case, write_workflows(folder / name, workflows), [name, *fragments]))
    return cases


CASES = ["bad JSON", "unknown required_to_start", "cycle", "missing name", "duplicate identifier"]


@pytest.mark.parametrize("case", CASES)
def test_invalid_definitions_exit_2_with_one_line_naming_file_workflow_field(
        tmp_path: Path, db: Path, case: str) -> None:
    _, path, fragments = next(c for c in _definition_files(tmp_path) if c[0] == case)

    for args in (("validate", path), ("run", "w1", "--workflows", path, "--wait")):
        result = run_cli(*args, db=db, cwd=tmp_path)
        line = one_line_error(result)
        for fragment in fragments:
            assert fragment in line, f"{args[0]}: {fragment!r} not in {line!r}"
    assert not db.exists()  # nothing was started


def test_missing_required_start_parameter_exits_2_naming_it(outside: Path, db: Path) -> None:
    result = run_cli("run", "checksum_folder", "-p", f"source_dir={outside}", "--wait", db=db, cwd=outside)
    line = one_line_error(result)
    assert "manifest" in line and "checksum_folder" in line, line


def test_parameter_without_equals_sign_exits_2(outside: Path, db: Path) -> None:
    result = run_cli("run", "checksum_folder", "-p", "nonsense", db=db, cwd=outside)
    assert "nonsense" in one_line_error(result)


def test_unknown_workflow_exits_2_listing_known_ones(tmp_path: Path, db: Path) -> None:
    result = run_cli("run", "no_such_workflow", "--workflows", REPO_WORKFLOWS, db=db, cwd=tmp_path)
    line = one_line_error(result)
    assert "no_such_workflow" in line
    for known in ("checksum_folder", "failing_demo", "fanout_demo"):
        assert known in line, line


# ------------------------------------------------------------------------------------------ a job type nobody serves
def test_job_type_without_worker_ends_in_error_without_hanging(tmp_path: Path, db: Path) -> None:
    definitions = write_workflows(tmp_path / "workflows.json", [
        workflow("orphan", [step(1, "noop"), step(2, "nobody_serves_this", required_to_start=[1])])])

    result = run_cli("run", "orphan", "--wait", "--workflows", definitions, db=db, cwd=tmp_path, timeout=40)

    assert result.returncode == 1, describe(result)
    status = run_cli("status", db=db, cwd=tmp_path)
    assert status.returncode == 0, describe(status)
    assert "no queue for job type 'nobody_serves_this'" in status.stdout, status.stdout


# ------------------------------------------------------------------------------------------ the state file
def test_unreadable_state_file_exits_2_and_keeps_the_file(tmp_path: Path, db: Path) -> None:
    definitions = write_workflows(tmp_path / "workflows.json", [workflow("quick", [step(1, "noop")])])
    db.parent.mkdir(parents=True)
    garbage = b"{ this is not JSON \x00\xff"
    db.write_bytes(garbage)

    for args in (("run", "quick", "--wait", "--workflows", definitions), ("status",)):
        result = run_cli(*args, db=db, cwd=tmp_path)
        line = one_line_error(result)
        assert str(db) in line, line
        assert db.read_bytes() == garbage  # kept as it was
    copies = list(db.parent.glob(db.name + ".corrupt-*"))
    assert copies, sorted(p.name for p in db.parent.iterdir())
    assert all(c.read_bytes() == garbage for c in copies)


def test_second_process_on_the_same_state_file_is_refused(tmp_path: Path, db: Path) -> None:
    definitions = write_workflows(tmp_path / "workflows.json", [
        workflow("long", [step(1, "sleep", parameters=[{"id": "seconds", "type": "number", "value": 120}])])])
    first = start_cli("run", "long", "--wait", "--workflows", definitions, db=db, cwd=tmp_path)
    try:
        LineReader(first).wait_line(ID_LINE.search, 30, "the workflow id line")

        second = run_cli("run", "long", "--wait", "--workflows", definitions, db=db, cwd=tmp_path)
        line = one_line_error(second)
        assert "in use by process" in line and str(db) in line, line
        assert str(first.pid) in line, line
        # reading the state needs no lock: status works while the run owns the file
        status = run_cli("status", db=db, cwd=tmp_path)
        assert status.returncode == 0 and "long" in status.stdout, describe(status)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)


# ------------------------------------------------------------------------------------------ plugins, help, options
def test_plugins_lists_builtin_and_stepflow_files_job_types(outside: Path) -> None:
    result = run_cli("plugins", cwd=outside)
    assert result.returncode == 0, describe(result)
    listed = {line.split()[0] for line in result.stdout.split("job types:", 1)[1].splitlines() if line.strip()
              and line.startswith("  ")}
    assert {"noop", "sleep", "fail", "list_files", "checksum", "write_manifest"} <= listed, result.stdout

    as_json = run_cli("plugins", "--json", cwd=outside)
    assert as_json.returncode == 0, describe(as_json)
    data = json.loads(as_json.stdout)
    assert {"noop", "sleep", "fail", "list_files", "checksum", "write_manifest"} <= set(data["workers"])
    assert data["failures"] == []


@pytest.mark.parametrize("command", [[], ["run"], ["wait"], ["status"], ["plugins"], ["validate"], ["worker"],
                                     ["queues"], ["serve"]])
def test_help_exits_0(outside: Path, command: list[str]) -> None:
    result = run_cli(*command, "--help", cwd=outside, script=True)
    assert result.returncode == 0, describe(result)
    assert result.stdout.startswith(f"usage: stepflow{' ' + command[0] if command else ''}"), result.stdout
    assert "--db" in result.stdout  # the global options are offered on every command


def test_global_options_before_and_after_the_command(outside: Path, db: Path) -> None:
    # a state file with no workflow (a missing one is refused since issue 14: a mistyped --db)
    db.parent.mkdir(parents=True)
    db.write_text('{"meta": {"1": {"format": 2, "next_workflow_id": 1, "next_job_id": 1, "shards": []}}, '
                  '"workflows": {}}')
    before = run_cli("--db", db, "status", cwd=outside)
    after = run_cli("status", "--db", db, cwd=outside)
    from_env = run_cli("status", cwd=outside, env={"STEPFLOW_DB": str(db)})
    for result in (before, after, from_env):
        assert result.returncode == 0, describe(result)
        assert str(db) in result.stdout, result.stdout  # "no workflows in <db>": this file, not the default


def test_validate_accepts_the_repository_workflows(outside: Path) -> None:
    result = run_cli("validate", REPO_ROOT / "workflows.json", cwd=outside)
    assert result.returncode == 0, describe(result)
    for identifier in ("checksum_folder", "fanout_demo", "failing_demo"):
        assert identifier in result.stdout
