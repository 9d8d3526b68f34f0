"""`Backend.jobs` pages (pure logic of `_page`): by offset, filtered by status, and anchored on a job."""

from __future__ import annotations

from types import SimpleNamespace

from stepflow_tui.backend.reads import _page
from stepflow_tui.core.model import JobStatus

IDS = list(range(10, 30))  # a step's jobs, in its order
STATUS = {i: JobStatus.COMPLETED if i % 3 == 0 else JobStatus.QUEUED for i in IDS}
JOBS = {i: SimpleNamespace(id=i, status=STATUS[i]) for i in IDS}


def ids(page) -> list[int]:
    return [job.id for job in page]


def test_offset_pages_with_and_without_a_status():
    assert ids(_page(IDS, JOBS, 5, 3, None, None, None)) == [15, 16, 17]
    queued = [i for i in IDS if STATUS[i] == JobStatus.QUEUED]
    assert ids(_page(IDS, JOBS, 2, 4, "queued", None, None)) == queued[2:6]
    assert ids(_page(IDS, JOBS, 50, 4, None, None, None)) == []


def test_anchored_pages_follow_the_anchor_not_the_offset():
    queued = [i for i in IDS if STATUS[i] == JobStatus.QUEUED]
    assert ids(_page(IDS, JOBS, 999, 3, "queued", 17, None)) == [i for i in queued if i > 17][:3]
    assert ids(_page(IDS, JOBS, 999, 3, "queued", None, 17)) == [i for i in queued if i < 17][-3:]
    assert ids(_page(IDS, JOBS, 0, 3, None, None, 11)) == [10]
    assert ids(_page(IDS, JOBS, 0, 3, None, 29, None)) == []
    assert ids(_page(IDS, JOBS, 0, 3, None, 999, None)) == []  # not a job of the step


def test_find_jobs_by_id_and_by_parameter_value_with_their_position():
    import threading

    from stepflow_tui.backend.reads import StateReader
    from stepflow_tui.core.definitions import parse_definitions
    from stepflow_tui.core.engine import Engine
    from stepflow_tui.core.model import State

    state = State()
    engine = Engine(state, clock=lambda: "2026-01-01T00:00:00Z")
    (definition,) = parse_definitions({"identifier": "f", "label": "F", "steps": [
        {"id": 1, "name": "hash", "label": "H", "parameters": [
            {"id": "source_paths", "type": "array_of_strings", "value": ["/in/a.jpg", "/in/b.png", "/in/c.jpg"]}]},
    ]}, "f.json")
    workflow = engine.start_workflow(definition, {})
    reader = StateReader(threading.RLock(), state, engine)
    job_ids = workflow.step(1).job_ids
    (by_id,) = reader.find_jobs(f"#{job_ids[0]}", 10)
    assert by_id.id == job_ids[0] and by_id.position == 0
    found = reader.find_jobs("B.PNG", 10)
    assert [(job.id, job.position, job.input) for job in found] == [(job_ids[1], 1, "/in/b.png")]
    assert reader.find_jobs("jpg", 1) == reader.find_jobs("jpg", 10)[:1]
    assert reader.find_jobs("nowhere", 10) == [] and reader.find_jobs("  ", 10) == []
