"""The CLI on errors a user meets: a reader that stops early, a mistyped state path, input too big or too deep.
Each ends with one line and a documented exit status, never a traceback."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from backend_harness import engine_definition, step
from helpers import REPO_WORKFLOWS, cli_command, cli_env, describe, run_cli

from stepflow_tui.core.engine import Engine
from stepflow_tui.store import Store


def many_workflows(path: Path, count: int) -> Path:
    store = Store(path)
    engine = Engine(store.open())
    definition = engine_definition([step(1, "noop")])
    for _ in range(count):
        engine.start_workflow(definition, {})
    store.flush(engine.state)
    store.close()
    return path


def test_status_into_a_pipe_closed_early_ends_quietly(tmp_path: Path) -> None:
    db = many_workflows(tmp_path / "state.json", 2000)  # far more than a pipe's buffer
    proc = subprocess.Popen(cli_command("status", "--db", db), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=cli_env(home=tmp_path), cwd=tmp_path)
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()  # `stepflow status | head -1`
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert first.startswith(b"#1 ")
    assert stderr == ""


def _deep_definitions(path: Path, depth: int) -> Path:
    definitions = json.loads(REPO_WORKFLOWS.read_text())
    first = definitions[0] if isinstance(definitions, list) else definitions["workflows"][0]
    first["steps"][0]["parameters"].append({"id": "deep", "type": "array", "value": "DEEP"})
    path.write_text(json.dumps(definitions).replace('"DEEP"', "[" * depth + "1" + "]" * depth))
    return path


@pytest.mark.parametrize("what", ["nested 900 deep", "nested 5,000 deep", "an integer of 4,400 digits"])
def test_definitions_too_deep_or_too_big_are_refused_with_one_line(tmp_path: Path, what: str) -> None:
    path = tmp_path / "workflows.json"
    if what.startswith("nested"):
        _deep_definitions(path, 900 if "900" in what else 5000)
    else:
        path.write_text('[{"identifier": "x", "n": ' + "9" * 4400 + "}]")
    for args in (["validate", path], ["run", "checksum_folder", "--workflows", path]):
        result = run_cli(*args, db=tmp_path / "state.json", cwd=tmp_path)
        assert result.returncode == 2, describe(result)
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, describe(result)
        assert str(path) in result.stderr


def test_status_on_a_mistyped_path_or_a_missing_shard_folder_says_so(tmp_path: Path) -> None:
    typo = run_cli("status", db=tmp_path / "sate.json", cwd=tmp_path)
    assert typo.returncode == 2 and "no state file at" in typo.stderr and "sate.json" in typo.stderr, describe(typo)
    fresh = run_cli("status", cwd=tmp_path)  # the default state, before any run: nothing to mistype
    assert fresh.returncode == 0 and "no workflows yet" in fresh.stdout, describe(fresh)

    db = many_workflows(tmp_path / "state.json", 3)
    shards = tmp_path / "state.json.d"
    shards.rename(tmp_path / "elsewhere.d")
    for args in (["status"], ["status", "--json"]):
        gone = run_cli(*args, db=db, cwd=tmp_path)
        assert gone.returncode == 2 and "jobs-0.json" in gone.stderr and "missing" in gone.stderr, describe(gone)
