"""`stepflow run … --wait` killed with SIGKILL mid-way, then `stepflow wait ID` on the same state file: the workflow
finishes and no job that had completed runs again.

The jobs are of a test plugin's type `probe`, which appends its input path to a log file each time it runs, so a
job run twice is seen directly (a second completion report would be ignored by the engine and leave no trace in
the state). The plugin is installed the way pip would: a module plus a `.dist-info` folder declaring the
`stepflow_tui` entry point, put on PYTHONPATH of the CLI processes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    LineReader,
    describe,
    run_cli,
    start_cli,
    step,
    wait_for,
    workflow,
    write_workflows,
)

ID_LINE = re.compile(r"workflow #(\d+)")
JOB_COUNT = 40

PROBE_PLUGIN = '''
"""A test plugin: job type ``probe`` logs each execution (its source_path) to the file ``log``, then waits."""

import os

from stepflow_tui import hookimpl
from stepflow_tui.plugins import JobType


def probe(ctx):
    path = str(ctx.require("source_path"))
    # One O_APPEND write per execution: lines never interleave, even across processes.
    fd = os.open(str(ctx.require("log")), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (path + "\\n").encode())
    finally:
        os.close(fd)
    ctx.wait(float(ctx.param("seconds", 0.2)))
    ctx.check_cancelled()
    return {"destination_paths": [path]}


@hookimpl
def register_job_types(register):
    register(JobType(name="probe", label="Probe", description="logs each execution, then waits"))


@hookimpl
def register_workers(register):
    register("probe", probe)
'''


def install_probe_plugin(folder: Path) -> Path:
    """Write the probe plugin and its dist-info (entry point group ``stepflow_tui``); return the folder."""
    folder.mkdir()
    (folder / "stepflow_resume_probe.py").write_text(textwrap.dedent(PROBE_PLUGIN), encoding="utf-8")
    info = folder / "stepflow_resume_probe-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: stepflow-resume-probe\nVersion: 0.1.0\n",
                                   encoding="utf-8")
    (info / "entry_points.txt").write_text("[stepflow_tui]\nprobe = stepflow_resume_probe\n", encoding="utf-8")
    return folder


def jobs_of(db: Path, workflow_id: int, cwd: Path, env: dict[str, str]) -> dict[int, dict[str, Any]]:
    """The workflow's jobs by id, from `stepflow status ID --json` (read from the state file on disk)."""
    result = run_cli("status", str(workflow_id), "--json", db=db, cwd=cwd, env=env)
    assert result.returncode == 0, describe(result)
    [workflow_record] = json.loads(result.stdout)
    return {job["id"]: job for job in workflow_record["jobs"]}


def completed(history: list[list[str]]) -> int:
    return sum(1 for entry in history if entry[0] == "completed")


def test_sigkill_then_wait_finishes_without_rerunning_completed_jobs(tmp_path: Path) -> None:
    plugin_dir = install_probe_plugin(tmp_path / "site")
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(plugin_dir), os.environ.get("PYTHONPATH")]))}
    log = tmp_path / "executions.log"
    paths = [f"/items/item-{i:03d}" for i in range(JOB_COUNT)]
    definitions = write_workflows(tmp_path / "workflows.json", [workflow(
        "resumable", [step(1, "probe", mode="one_for_one", parameters=[
            {"id": "source_paths", "type": "array_of_strings", "value": paths},
            {"id": "log", "type": "template", "value": "{log}"},
            {"id": "seconds", "type": "number", "value": 0.3},
        ])],
        start_parameters=[{"id": "log", "label": "execution log", "type": "file", "required": True}])])
    db = tmp_path / "state.json"
    common = ("--workflows", str(definitions))

    run = start_cli("run", "resumable", "-p", f"log={log}", "--wait", "--concurrency", "2", *common,
                    db=db, cwd=tmp_path, env=env)
    try:
        id_line = LineReader(run).wait_line(ID_LINE.search, 30, "the workflow id line")
        workflow_id = int(ID_LINE.search(id_line).group(1))
        # `status` reads the state file while the run owns it; wait until some (not all) jobs are done.
        def some_completed() -> dict[int, dict[str, Any]] | None:
            jobs = jobs_of(db, workflow_id, tmp_path, env)
            return jobs if sum(j["status"] == "completed" for j in jobs.values()) >= 3 else None

        before = wait_for(some_completed, timeout=30, what="3 completed jobs in the state file")
    finally:
        run.send_signal(signal.SIGKILL)
        run.wait(10)
    assert run.returncode == -signal.SIGKILL
    done_before = {i: j for i, j in before.items() if j["status"] == "completed"}
    if len(done_before) == JOB_COUNT:
        pytest.fail("every job had completed before the kill: the test proves nothing (make jobs slower)")

    result = run_cli("wait", str(workflow_id), *common, db=db, cwd=tmp_path, env=env, timeout=60)

    assert result.returncode == 0, describe(result)
    after = jobs_of(db, workflow_id, tmp_path, env)
    assert len(after) == JOB_COUNT
    assert all(j["status"] == "completed" for j in after.values()), Counter(j["status"] for j in after.values())
    twice = {i: j["history"] for i, j in after.items() if completed(j["history"]) != 1}
    assert not twice, f"jobs without exactly one 'completed' entry: {twice}"
    for job_id, job in done_before.items():
        assert after[job_id]["finished_at"] == job["finished_at"], job_id
        assert after[job_id]["attempts"] == job["attempts"] == 1, after[job_id]
        assert after[job_id]["history"] == job["history"], job_id
    executions = Counter(log.read_text(encoding="utf-8").splitlines())
    assert set(executions) == set(paths)  # every job ran
    source = {job_id: job["parameters"] for job_id, job in done_before.items()}
    for job_id, parameters in source.items():
        path = next(p["value"] for p in parameters if p["id"] == "source_path")
        assert executions[path] == 1, f"job #{job_id} ({path}) completed before the kill and ran again"
