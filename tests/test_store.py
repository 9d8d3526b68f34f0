"""The state store on real files: round trips, sharded flushes, locking, corruption, deletes, kill -9."""

from __future__ import annotations

import json
import os
import queue
import random
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import pytest
from tinydb import TinyDB

from stepflow_tui.core.model import (
    Job,
    JobStatus,
    State,
    StepState,
    StepStatus,
    Workflow,
    WorkflowStatus,
    empty_counts,
)
from stepflow_tui.store import (
    FORMAT_VERSION,
    SHARD_SIZE,
    Store,
    StoreCorrupt,
    StoreError,
    StoreLocked,
    read_state,
)

T0 = "2026-01-01T00:00:00Z"
T1 = "2026-01-01T00:00:05Z"


def add_workflow(state: State, steps: int = 2, label: str = "Checksum") -> Workflow:
    """A workflow with ``steps`` steps, marked dirty."""
    workflow = Workflow(
        id=state.next_workflow_id,
        identifier="checksum_folder",
        label=label,
        version="1.2.3",
        definition={
            "identifier": "checksum_folder",
            "steps": [{"id": i, "name": "checksum"} for i in range(steps)],
        },
        parameters={"source_dir": "/data/in"},
        status=WorkflowStatus.PROCESSING,
        steps=[
            StepState(id=i, name="checksum", label=f"Step {i}", status=StepStatus.PROCESSING)
            for i in range(steps)
        ],
        variables={"seen": [1, 2]},
        history=[["processing", T0]],
        created_at=T0,
        updated_at=T1,
    )
    state.next_workflow_id += 1
    state.workflows[workflow.id] = workflow
    state.mark_workflow(workflow)
    return workflow


def add_job(state: State, workflow: Workflow, step_id: int, status: JobStatus = JobStatus.QUEUED) -> Job:
    """A job as the engine creates it: next id, listed in its step, counted, marked dirty."""
    job = Job(
        id=state.next_job_id,
        workflow_id=workflow.id,
        step_id=step_id,
        job_type="checksum",
        parameters=[{"id": "source_path", "type": "string", "value": f"/data/in/{state.next_job_id}.txt"}],
        status=status,
        history=[["queued", T0]] + ([[status.value, T1, "note"]] if status != JobStatus.QUEUED else []),
        created_at=T0,
    )
    if status == JobStatus.COMPLETED:
        job.destination_paths = [f"/data/out/{job.id}.sha256"]
        job.outputs = [{"id": "checksum", "type": "string", "value": "abc"}]
        job.execution_duration = 0.5
    if status == JobStatus.ERROR:
        job.error = "disk full"
        job.traceback = "Traceback (most recent call last):\n  ...\nOSError: disk full"
    state.next_job_id += 1
    state.jobs[job.id] = job
    step = workflow.step(step_id)
    step.job_ids.append(job.id)
    step.counts[status.value] += 1
    step.counts["total"] += 1
    state.mark_job(job)
    return job


def reopen(path: Path) -> State:
    store = Store(path)
    try:
        return store.open()
    finally:
        store.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "state.json"  # the parent folder does not exist yet


def test_round_trip_keeps_workflows_steps_jobs_and_ids(db: Path) -> None:
    store = Store(db)
    state = store.open()
    assert state.workflows == {} and state.jobs == {}
    first = add_workflow(state)
    statuses = [
        JobStatus.COMPLETED,
        JobStatus.ERROR,
        JobStatus.PROCESSING,
        JobStatus.QUEUED,
        JobStatus.SKIPPED,
    ]
    for index, status in enumerate(statuses):
        add_job(state, first, index % 2, status)
    second = add_workflow(state, steps=1, label="Other")
    add_job(state, second, 0, JobStatus.STOPPED)
    store.flush(state)
    assert not state.dirty
    store.close()

    loaded = reopen(db)
    assert loaded.next_workflow_id == state.next_workflow_id == 3
    assert loaded.next_job_id == state.next_job_id == 7
    assert {k: w.to_dict() for k, w in loaded.workflows.items()} == {
        k: w.to_dict() for k, w in state.workflows.items()
    }
    assert {k: j.to_dict() for k, j in loaded.jobs.items()} == {k: j.to_dict() for k, j in state.jobs.items()}
    assert loaded.jobs[2].status is JobStatus.ERROR and loaded.jobs[2].history[-1] == ["error", T1, "note"]
    assert loaded.workflows[1].step(0).job_ids == [1, 3, 5]
    assert (
        loaded.workflows[1].step(0).counts["total"] == 3
        and loaded.workflows[1].step(0).counts["completed"] == 1
    )


def test_files_are_tinydb_and_index_has_no_job_lists(db: Path) -> None:
    store = Store(db)
    state = store.open()
    workflow = add_workflow(state)
    add_job(state, workflow, 0)
    store.flush(state)
    store.close()

    index = TinyDB(db, access_mode="r")
    assert index.table("meta").get(doc_id=1)["format"] == FORMAT_VERSION
    (document,) = index.table("workflows").all()
    assert document.doc_id == 1 and document["label"] == "Checksum"
    assert "job_ids" not in document["steps"][0] and "counts" not in document["steps"][0]
    index.close()
    shard = TinyDB(db.with_name("state.json.d") / "jobs-0.json", access_mode="r")
    assert shard.table("jobs").get(doc_id=1)["status"] == "queued"
    shard.close()


def test_counts_and_job_ids_are_rebuilt_from_jobs(db: Path) -> None:
    # A job status change flushes the job only; the step's counts on load follow the job.
    store = Store(db)
    state = store.open()
    workflow = add_workflow(state)
    job = add_job(state, workflow, 1)
    store.flush(state)
    job.status = JobStatus.COMPLETED
    state.mark_job(job)
    store.flush(state)
    store.close()
    counts = reopen(db).workflows[1].step(1).counts
    assert counts == {**empty_counts(), "completed": 1, "total": 1}


def shard_inodes(db: Path) -> dict[str, int]:
    folder = db.with_name(db.name + ".d")
    return {p.name: p.stat().st_ino for p in folder.glob("jobs-*.json")}


def journal_files(db: Path) -> list[str]:
    return sorted(p.name for p in db.with_name(db.name + ".d").glob("journal-*.json.gz"))


def test_flush_rewrites_only_dirty_shards(db: Path) -> None:
    store = Store(db)
    state = store.open()
    workflow = add_workflow(state)
    for _ in range(2 * SHARD_SIZE + 10):  # ids 1..2010: shards 0, 1 and 2
        add_job(state, workflow, 0)
    store.flush(state)
    assert journal_files(db) and not shard_inodes(db)  # new jobs go to the journal
    store.close()  # folds the journal into the shards
    assert not journal_files(db)
    store = Store(db)
    state = store.open()
    workflow = state.workflows[1]
    before = shard_inodes(db)
    assert sorted(before) == ["jobs-0.json", "jobs-1.json", "jobs-2.json"]
    index_inode = db.stat().st_ino
    files = store.stats.files_written

    job = state.jobs[SHARD_SIZE + 5]
    job.status = JobStatus.PROCESSING
    state.mark_job(job)
    store.flush(state)
    after = shard_inodes(db)
    assert store.stats.files_written - files == 1 and len(journal_files(db)) == 1  # the journal, no shard
    assert after == before
    assert db.stat().st_ino == index_inode

    # A workflow change rewrites the index and no shard.
    workflow.status = WorkflowStatus.COMPLETED
    state.mark_workflow(workflow)
    store.flush(state)
    assert shard_inodes(db) == after and db.stat().st_ino != index_inode

    # Nothing dirty: nothing written, not counted.
    flushes = store.stats.flushes
    store.flush(state)
    assert store.stats.flushes == flushes
    store.close()
    assert reopen(db).jobs[SHARD_SIZE + 5].status is JobStatus.PROCESSING


def test_restart_keeps_ids_after_deleting_the_newest(db: Path) -> None:
    store = Store(db)
    state = store.open()
    old = add_workflow(state)
    add_job(state, old, 0, JobStatus.COMPLETED)
    newest = add_workflow(state)
    add_job(state, newest, 0)
    add_job(state, newest, 1)
    store.flush(state)
    # Delete the newest workflow and its jobs, as the engine does.
    for job_id in [*newest.step(0).job_ids, *newest.step(1).job_ids]:
        del state.jobs[job_id]
        state.deleted_jobs.add(job_id)
    del state.workflows[newest.id]
    state.deleted_workflows.add(newest.id)
    store.flush(state)
    store.close()

    loaded = reopen(db)
    assert list(loaded.workflows) == [old.id]
    assert list(loaded.jobs) == [1]
    assert loaded.jobs[1].status is JobStatus.COMPLETED
    assert loaded.next_workflow_id == 3 and loaded.next_job_id == 4


def test_delete_removes_workflow_from_index_and_shards(db: Path) -> None:
    store = Store(db)
    state = store.open()
    keep = add_workflow(state)
    add_job(state, keep, 0)
    gone = add_workflow(state)
    for _ in range(SHARD_SIZE + 5):  # its jobs span shards 0 and 1; shard 1 holds only its jobs
        add_job(state, gone, 0)
    store.flush(state)
    store.close()  # folds the journal into the shards
    store = Store(db)
    state = store.open()
    keep, gone = state.workflows[keep.id], state.workflows[gone.id]
    assert sorted(shard_inodes(db)) == ["jobs-0.json", "jobs-1.json"]

    # Only the workflow is marked: its jobs go with it.
    del state.workflows[gone.id]
    state.deleted_workflows.add(gone.id)
    for job_id in gone.step(0).job_ids:
        del state.jobs[job_id]
    store.flush(state)
    assert sorted(shard_inodes(db)) == ["jobs-0.json"]
    with TinyDB(db.with_name("state.json.d") / "jobs-0.json", access_mode="r") as shard:
        assert [doc.doc_id for doc in shard.table("jobs").all()] == [1]
    with TinyDB(db, access_mode="r") as index:
        assert [doc.doc_id for doc in index.table("workflows").all()] == [keep.id]

    # A single job deleted.
    job = add_job(state, keep, 1)
    store.flush(state)
    del state.jobs[job.id]
    state.deleted_jobs.add(job.id)
    store.flush(state)
    store.close()
    loaded = reopen(db)
    assert list(loaded.jobs) == [1] and list(loaded.workflows) == [keep.id]
    assert loaded.next_job_id == job.id + 1


def test_second_store_in_same_process_is_locked_out(db: Path) -> None:
    store = Store(db)
    store.open()
    other = Store(db)
    with pytest.raises(StoreLocked) as error:
        other.open()
    message = str(error.value)
    assert str(db) in message and f"process {os.getpid()}" in message and "--db" in message
    store.close()
    store.close()  # idempotent
    other.open()
    other.close()


LOCK_HOLDER = textwrap.dedent(
    """
    import sys
    from stepflow_tui.store import Store
    store = Store(sys.argv[1])
    store.open()
    print("open", flush=True)
    sys.stdin.read()  # hold the lock until the parent closes our stdin
    """
)


def test_second_store_in_another_process_is_locked_out(db: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "open"
        with pytest.raises(StoreLocked) as error:
            Store(db).open()
        assert error.value.pid == child.pid
        assert f"in use by process {child.pid}" in str(error.value)
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=30)
    reopen(db)  # the lock file is still there but nobody holds it


def test_stale_lock_file_does_not_block(db: Path) -> None:
    db.parent.mkdir(parents=True)
    db.with_name("state.json.lock").write_text("999999\n")
    store = Store(db)
    store.open()
    assert db.with_name("state.json.lock").read_text().strip() == str(os.getpid())
    store.close()


def write_sample(db: Path, jobs: int = 3) -> None:
    store = Store(db)
    state = store.open()
    workflow = add_workflow(state)
    for _ in range(jobs):
        add_job(state, workflow, 0)
    store.flush(state)
    store.close()


def corrupt_copies(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + ".corrupt-*"))


@pytest.mark.parametrize("target", ["index", "shard"])
def test_truncated_file_is_corrupt_kept_and_copied(db: Path, target: str) -> None:
    write_sample(db)
    path = db if target == "index" else db.with_name("state.json.d") / "jobs-0.json"
    original = path.read_bytes()
    truncated = original[: len(original) // 2]
    path.write_bytes(truncated)

    with pytest.raises(StoreCorrupt) as error:
        Store(db).open()
    (copy,) = corrupt_copies(path)
    assert re.fullmatch(re.escape(path.name) + r"\.corrupt-\d{8}T\d{6}", copy.name)
    assert path.read_bytes() == truncated and copy.read_bytes() == truncated
    message = str(error.value)
    assert str(path) in message and str(copy) in message and "--db" in message and "\n" not in message

    # A second attempt makes a second copy, never overwriting the first; the lock was released.
    with pytest.raises(StoreCorrupt):
        Store(db).open()
    assert len(corrupt_copies(path)) == 2 and copy.read_bytes() == truncated


def test_missing_index_with_shards_is_refused(db: Path) -> None:
    write_sample(db)
    db.unlink()
    with pytest.raises(StoreCorrupt, match="is missing"):
        Store(db).open()


def test_missing_shard_listed_in_index_is_refused(db: Path) -> None:
    write_sample(db)
    (db.with_name("state.json.d") / "jobs-0.json").unlink()
    with pytest.raises(StoreCorrupt, match="jobs-0.json"):
        Store(db).open()


def test_newer_format_is_refused(db: Path) -> None:
    write_sample(db)
    data = json.loads(db.read_text())
    data["meta"]["1"]["format"] = FORMAT_VERSION + 1
    db.write_text(json.dumps(data))
    with pytest.raises(StoreError, match="newer than this stepflow") as error:
        Store(db).open()
    assert not isinstance(error.value, StoreCorrupt)


def test_foreign_tinydb_file_is_refused(db: Path) -> None:
    db.parent.mkdir(parents=True)
    with TinyDB(db) as other:
        other.insert({"name": "not ours"})
    with pytest.raises(StoreError, match="not a stepflow state file"):
        Store(db).open()
    assert json.loads(db.read_text())["_default"]["1"] == {"name": "not ours"}


def test_missing_file_is_an_empty_state_and_folders_are_created(tmp_path: Path) -> None:
    db = tmp_path / "a" / "b" / "state.json"
    store = Store(db)
    state = store.open()
    assert state.workflows == {} and state.next_job_id == 1 and not db.exists()
    add_job(state, add_workflow(state), 0)
    store.flush(state)
    store.close()
    assert db.is_file() and (tmp_path / "a" / "b" / "state.json.d" / "jobs-0.json").is_file()


def test_jobs_written_without_their_index_are_ignored_and_ids_not_reused(db: Path) -> None:
    # As after a crash between the shard writes and the index write of a new workflow.
    write_sample(db, jobs=2)
    shard = db.with_name("state.json.d") / "jobs-0.json"
    data = json.loads(shard.read_text())
    data["jobs"]["3"] = {**data["jobs"]["2"], "id": 3, "workflow_id": 2}
    shard.write_text(json.dumps(data))

    store = Store(db)
    state = store.open()
    assert sorted(state.jobs) == [1, 2]
    assert state.next_job_id == 4 and state.next_workflow_id == 3
    add_job(state, state.workflows[1], 1)
    store.flush(state)  # rewrites the shard without the orphan
    store.close()
    assert sorted(json.loads(shard.read_text())["jobs"]) == ["1", "2", "4"]


def test_flush_before_open_is_an_error(db: Path) -> None:
    with pytest.raises(StoreError, match="not open"):
        Store(db).flush(State())


def test_concurrent_flushes_and_mutations_persist_the_last_values(db: Path) -> None:
    store = Store(db)
    state = store.open()
    workflow = add_workflow(state)
    for _ in range(40):
        add_job(state, workflow, 0)
    store.flush(state)
    errors: list[BaseException] = []

    def worker(offset: int) -> None:
        try:
            for round_number in range(1, 51):
                with store.lock:
                    for job_id in range(1 + offset, 41, 4):
                        state.jobs[job_id].progress = round_number
                        state.mark_job(state.jobs[job_id])
                store.flush(state)
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(offset,)) for offset in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    store.close()
    assert {job.progress for job in reopen(db).jobs.values()} == {50}


FLUSH_LOOP = textwrap.dedent(
    """
    import sys
    from stepflow_tui.core.model import Job, JobStatus, StepState, Workflow
    from stepflow_tui.store import Store

    store = Store(sys.argv[1])
    state = store.open()
    if 1 not in state.workflows:
        state.workflows[1] = Workflow(id=1, identifier="w", label="W", version="1", definition={},
                                      parameters={}, steps=[StepState(id=0, name="noop", label="N")])
        state.next_workflow_id = 2
    workflow = state.workflows[1]
    flushes = workflow.variables.get("flushes", 0)
    while True:
        flushes += 1
        with store.lock:
            for _ in range(150):  # crosses a shard boundary every few flushes
                job = Job(id=state.next_job_id, workflow_id=1, step_id=0, job_type="noop",
                          parameters=[{"id": "n", "type": "number", "value": flushes}])
                state.next_job_id += 1
                state.jobs[job.id] = job
                state.mark_job(job)
            for job_id in {1, state.next_job_id // 2, state.next_job_id - 200}:  # and older shards too
                old = state.jobs.get(job_id)  # ids have gaps after a kill dropped a flush's new jobs
                if old is None:
                    continue
                old.status = JobStatus.COMPLETED
                old.progress = flushes % 100
                old.history.append(["completed", str(flushes)])
                state.mark_job(old)
            workflow.variables["flushes"] = flushes
            workflow.variables["jobs"] = len(state.jobs)
            state.mark_workflow(workflow)
        store.flush(state)
        print(flushes, flush=True)
    """
)


def pump(stream: Iterable[str], lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)
    lines.put("EOF")


@pytest.mark.e2e
def test_sigkill_during_flush_loop_leaves_a_loadable_state(db: Path) -> None:
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    confirmed = 0
    for _ in range(5):
        child = subprocess.Popen(
            [sys.executable, "-c", FLUSH_LOOP, str(db)], stdout=subprocess.PIPE, text=True
        )
        lines: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(target=pump, args=(child.stdout, lines), daemon=True)
        reader.start()
        kill_after = confirmed + rng.randint(3, 25)
        try:
            while confirmed < kill_after:
                line = lines.get(timeout=60)
                if line == "EOF":
                    pytest.fail(f"the flush loop died by itself with code {child.wait()} (see its stderr)")
                confirmed = int(line)
            # Not synchronisation: picks where in the next mutate-serialise-write cycle the kill lands
            # (without it, the kill always hits the cheap mutation right after the print).
            time.sleep(rng.uniform(0, 0.03))
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
            reader.join(timeout=30)
        while not lines.empty():  # flushes that completed before the kill landed
            line = lines.get_nowait()
            confirmed = max(confirmed, int(line)) if line != "EOF" else confirmed

        state = reopen(db)
        workflow = state.workflows[1]
        flushes = workflow.variables["flushes"]
        context = (
            f"seed {seed}: {flushes} flushes in the index, {confirmed} confirmed, {len(state.jobs)} jobs"
        )
        # Every confirmed flush is there; at most one more, whose shards may have landed before its index.
        assert confirmed <= flushes <= confirmed + 1, context
        # New jobs of a flush whose index did not land are not part of the state, and their ids not reused.
        assert len(state.jobs) == workflow.variables["jobs"], context
        assert workflow.step(0).job_ids == sorted(state.jobs), context
        assert workflow.step(0).counts["total"] == len(state.jobs), context
        assert max(state.jobs) < state.next_job_id <= max(state.jobs) + 151, context
        assert not list(db.parent.rglob("*.tmp")), context  # leftovers were cleaned on open
        confirmed = flushes


def test_read_state_reads_without_owning_and_writes_nothing(db: Path) -> None:
    assert read_state(db).workflows == {} and not db.parent.exists()
    write_sample(db)
    lock_file = db.with_name("state.json.lock")
    lock_file.unlink()
    owner = Store(db)
    owner.open()
    try:
        state = read_state(db)  # the owner holds the lock: reading is still fine
        assert sorted(state.jobs) == [1, 2, 3] and state.workflows[1].step(0).job_ids == [1, 2, 3]
    finally:
        owner.close()
    shard = db.with_name("state.json.d") / "jobs-0.json"
    shard.write_bytes(shard.read_bytes()[:10])
    with pytest.raises(StoreCorrupt) as error:
        read_state(db)
    assert error.value.copy is None and not corrupt_copies(shard)


def test_read_state_while_a_flush_loop_runs(db: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", FLUSH_LOOP, str(db)], stdout=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=pump, args=(child.stdout, lines), daemon=True).start()
    try:
        assert lines.get(timeout=60).strip() == "1"
        for _ in range(30):
            state = read_state(db)
            workflow = state.workflows[1]
            assert len(state.jobs) == workflow.variables["jobs"]
            assert workflow.step(0).job_ids == sorted(state.jobs)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)


def test_failed_write_is_reported_and_retried_by_the_next_flush(db: Path) -> None:
    store = Store(db)
    state = store.open()
    shard_dir = db.with_name("state.json.d")
    shard_dir.write_text("in the way")  # a file where the shard folder must go
    add_job(state, add_workflow(state), 0, JobStatus.COMPLETED)
    with pytest.raises(StoreError, match="cannot write state file") as error:
        store.flush(state)
    assert str(shard_dir) in str(error.value)
    assert not state.dirty and not db.exists()  # marks are cleared: the store keeps the work pending

    shard_dir.unlink()
    store.flush(state)  # nothing marked, but the pending shard and index are written now
    store.close()
    loaded = reopen(db)
    assert list(loaded.jobs) == [1] and loaded.jobs[1].status is JobStatus.COMPLETED


def index_data(db: Path) -> dict:
    return json.loads(db.read_text())


def test_definition_has_a_file_of_its_own_written_once_and_removed_with_the_workflow(db: Path) -> None:
    store = Store(db)
    state = store.open()
    workflow = add_workflow(state)
    add_job(state, workflow, 0)
    store.flush(state)
    definition_file = db.with_name("state.json.d") / f"definition-{workflow.id}.json"
    with TinyDB(definition_file, access_mode="r") as plain:
        assert plain.table("definition").get(doc_id=workflow.id) == workflow.definition
    assert "definition" not in index_data(db)["workflows"][str(workflow.id)]
    inode = definition_file.stat().st_ino

    workflow.status = WorkflowStatus.PAUSED  # the index is rewritten, the definition is not
    state.mark_workflow(workflow)
    store.flush(state)
    assert index_data(db)["workflows"]["1"]["status"] == "paused"
    assert definition_file.stat().st_ino == inode
    store.close()
    assert reopen(db).workflows[1].definition == workflow.definition

    store = Store(db)
    state = store.open()
    del state.workflows[1]
    state.jobs.clear()
    state.deleted_workflows.add(1)
    store.flush(state)
    store.close()
    assert not definition_file.exists() and index_data(db)["workflows"] == {}


def test_job_status_change_leaves_the_index_alone_and_updated_at_is_rebuilt(db: Path) -> None:
    store = Store(db)
    state = store.open()
    workflow = add_workflow(state)
    job = add_job(state, workflow, 0)
    store.flush(state)
    index_inode = db.stat().st_ino
    later = "2026-01-01T00:09:00.000000Z"
    # As the engine does on every job status change: the job, and the workflow's updated_at.
    job.status = JobStatus.PROCESSING
    job.history.append(["processing", later])
    workflow.updated_at = later
    state.mark_job(job)
    state.mark_workflow(workflow)
    store.flush(state)
    assert db.stat().st_ino == index_inode
    assert index_data(db)["workflows"]["1"]["updated_at"] == T1
    store.close()
    assert reopen(db).workflows[1].updated_at == later


def test_job_documents_leave_out_defaults_and_load_back(db: Path) -> None:
    store = Store(db)
    state = store.open()
    workflow = add_workflow(state)
    queued = add_job(state, workflow, 0)
    failed = add_job(state, workflow, 0, JobStatus.ERROR)
    store.flush(state)
    store.close()
    shard = json.loads((db.with_name("state.json.d") / "jobs-0.json").read_text())["jobs"]
    assert "error" not in shard["1"] and "progress" not in shard["1"] and shard["1"]["status"] == "queued"
    assert shard["2"]["error"] == "disk full"
    loaded = reopen(db)
    assert loaded.jobs[1].to_dict() == queued.to_dict() and loaded.jobs[2].to_dict() == failed.to_dict()
    assert loaded.jobs[1].outputs == [] and loaded.jobs[1].outputs is not loaded.jobs[2].outputs  # fresh lists


def test_format_1_state_is_read_and_upgraded_by_the_next_flush(db: Path) -> None:
    # Format 1, as the previous version wrote it: definitions in the index, every job key present.
    workflow = Workflow(id=1, identifier="w", label="W", version="1", definition={"steps": [{"id": 0}]},
                        parameters={}, status=WorkflowStatus.PROCESSING,
                        steps=[StepState(id=0, name="noop", label="N", status=StepStatus.PROCESSING)],
                        updated_at=T0)
    document = workflow.to_dict()
    for step in document["steps"]:
        del step["job_ids"], step["counts"]
    job = Job(id=1, workflow_id=1, step_id=0, job_type="noop", parameters=[], history=[["queued", T1]])
    far = Job(id=1500, workflow_id=1, step_id=0, job_type="noop", parameters=[], history=[["queued", T0]])
    db.parent.mkdir(parents=True)
    db.write_text(json.dumps({"meta": {"1": {"format": 1, "next_workflow_id": 2, "next_job_id": 1501,
                                                "shards": [0, 1]}},
                              "workflows": {"1": document}}))
    db.with_name("state.json.d").mkdir()
    (db.with_name("state.json.d") / "jobs-0.json").write_text(json.dumps({"jobs": {"1": job.to_dict()}}))
    # Format 1 shards held 1,000 jobs each: job 1500 is in shard 1.
    (db.with_name("state.json.d") / "jobs-1.json").write_text(json.dumps({"jobs": {"1500": far.to_dict()}}))

    store = Store(db)
    state = store.open()
    assert state.workflows[1].definition == {"steps": [{"id": 0}]} and state.jobs[1].to_dict() == job.to_dict()
    assert state.workflows[1].step(0).job_ids == [1, 1500] and state.workflows[1].updated_at == T1
    store.flush(state)  # nothing marked, but the index is rewritten as format 2
    state.jobs[1500].progress = 50  # still written to shard 1 of 1,000 jobs
    state.mark_job(state.jobs[1500])
    store.flush(state)
    store.close()
    data = index_data(db)
    assert data["meta"]["1"]["format"] == FORMAT_VERSION == 2 and "definition" not in data["workflows"]["1"]
    assert data["meta"]["1"]["shard_size"] == 1000 and data["meta"]["1"]["shards"] == [0, 1]
    assert reopen(db).jobs[1500].progress == 50
    assert (db.with_name("state.json.d") / "definition-1.json").is_file()
    assert reopen(db).workflows[1].definition == {"steps": [{"id": 0}]}


def test_missing_definition_is_refused_and_orphan_definitions_are_removed(db: Path) -> None:
    write_sample(db)
    folder = db.with_name("state.json.d")
    # A definition written by a flush whose index never landed: removed, its id not reused.
    (folder / "definition-7.json").write_text(json.dumps({"definition": {"7": {"steps": []}}}))
    store = Store(db)
    state = store.open()
    store.close()
    assert state.next_workflow_id == 8 and not (folder / "definition-7.json").exists()

    (folder / "definition-1.json").unlink()
    with pytest.raises(StoreCorrupt, match="definition-1.json.*definition of workflow 1"):
        Store(db).open()


def copy_files(db: Path, to: Path) -> Path:
    """A copy of the state files as they are now: what a crash at this moment would leave."""
    to.mkdir()
    shutil.copy2(db, to / db.name)
    shutil.copytree(db.with_name(db.name + ".d"), to / (db.name + ".d"))
    return to / db.name


def test_journal_is_read_back_after_a_crash_and_older_entries_never_win(db: Path, tmp_path: Path) -> None:
    store = Store(db)
    state = store.open()
    workflow = add_workflow(state)
    jobs = [add_job(state, workflow, 0) for _ in range(SHARD_SIZE + 5)]
    store.flush(state)
    jobs[0].status = JobStatus.PROCESSING
    state.mark_job(jobs[0])
    store.flush(state)
    assert len(journal_files(db)) == 2 and not shard_inodes(db)
    crashed = copy_files(db, tmp_path / "crashed")
    loaded = reopen(crashed)
    assert len(loaded.jobs) == len(jobs) and loaded.jobs[1].status is JobStatus.PROCESSING
    assert not journal_files(crashed) and sorted(shard_inodes(crashed)) == ["jobs-0.json", "jobs-1.json"]

    # Shard 1's jobs all final: the shard is rewritten, the journal files that held them remain for shard 0.
    for job in jobs[SHARD_SIZE - 1:]:
        job.status = JobStatus.COMPLETED
        state.mark_job(job)
    store.flush(state)
    assert list(shard_inodes(db)) == ["jobs-1.json"] and len(journal_files(db)) == 2
    # A crash before an older journal file was removed: its older entries of shard 1 are not applied.
    stale = copy_files(db, tmp_path / "stale")
    for job in jobs[:SHARD_SIZE - 1]:
        job.status = JobStatus.COMPLETED
        state.mark_job(job)
    store.flush(state)
    assert sorted(shard_inodes(db)) == ["jobs-0.json", "jobs-1.json"] and not journal_files(db)
    assert all(job.status is JobStatus.COMPLETED for job in reopen(stale).jobs.values() if job.id >= SHARD_SIZE)
    store.close()
    assert all(job.status is JobStatus.COMPLETED for job in reopen(db).jobs.values())


def test_a_job_deleted_from_a_journaled_shard_stays_deleted(db: Path, tmp_path: Path) -> None:
    store = Store(db)
    state = store.open()
    workflow = add_workflow(state)
    job = add_job(state, workflow, 1)
    store.flush(state)
    del state.jobs[job.id]
    state.deleted_jobs.add(job.id)
    store.flush(state)
    assert reopen(copy_files(db, tmp_path / "crashed")).jobs == {}
    store.close()
    assert reopen(db).jobs == {}


def test_jobs_journaled_without_their_index_never_come_back(db: Path) -> None:
    # A crash after a flush's journal and before its index: new jobs filling a shard of their own.
    store = Store(db)
    state = store.open()
    workflow = add_workflow(state)
    add_job(state, workflow, 0)
    store.close()
    old_index = db.read_bytes()
    store = Store(db)
    state = store.open()
    workflow = state.workflows[1]
    while state.next_job_id <= 2 * SHARD_SIZE:  # ids 2..500: shard 1 holds only these
        add_job(state, workflow, 0)
    store.flush(state)
    store._lockfile.release()  # the process dies here: no close, and its index never landed
    db.write_bytes(old_index)

    store = Store(db)
    state = store.open()
    assert sorted(state.jobs) == [1] and state.next_job_id == 2 * SHARD_SIZE + 1
    add_job(state, state.workflows[1], 0)  # the next id is past the lost jobs: the index moves past them
    store.flush(state)
    store.close()
    assert sorted(reopen(db).jobs) == [1, 2 * SHARD_SIZE + 1]


def test_journal_bound_folds_every_journaled_shard(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("stepflow_tui.store.flush.JOURNAL_MAX_FILES", 3)
    store = Store(db)
    state = store.open()
    workflow = add_workflow(state)
    job = add_job(state, workflow, 0)
    for flush in range(5):
        job.progress = flush + 1
        state.mark_job(job)
        store.flush(state)
        assert len(journal_files(db)) <= 3
    assert shard_inodes(db)  # folded at least once: the job's shard exists while it still runs
    store._lockfile.release()  # no close: what is on disk must hold the last flush
    assert reopen(db).jobs[1].progress == 5


def finished_workflow(state: State, jobs: int) -> Workflow:
    """A completed workflow of ``jobs`` completed jobs in step 0."""
    workflow = add_workflow(state, steps=1)
    for _ in range(jobs):
        add_job(state, workflow, 0, JobStatus.COMPLETED)
    workflow.status = WorkflowStatus.COMPLETED
    return workflow


def test_finished_workflows_stay_on_disk_until_asked_for(db: Path) -> None:
    store = Store(db)
    state = store.open()
    done = finished_workflow(state, 2 * SHARD_SIZE)  # ids 1..500: shard 0 and 1 whole, shard 2 with 500
    active = add_workflow(state, steps=1)
    add_job(state, active, 0)  # id 501, beside job 500 of the finished workflow
    store.close()

    for loaded in (reopen(db), read_state(db)):
        assert sorted(dict.keys(loaded.jobs)) == [2 * SHARD_SIZE, 2 * SHARD_SIZE + 1]  # shards 0 and 1 left on disk
        step = loaded.workflows[done.id].step(0)
        assert step.job_ids == list(range(1, 2 * SHARD_SIZE + 1))
        assert step.counts["completed"] == step.counts["total"] == 2 * SHARD_SIZE
        assert loaded.jobs.get(3).status is JobStatus.COMPLETED and 3 in loaded.jobs  # shard 0 read now
        assert loaded.jobs[1].id == 1 and dict.__len__(loaded.jobs) == SHARD_SIZE + 1  # kept: ids 1..249, 500, 501
        assert len(loaded.jobs) == 2 * SHARD_SIZE + 1  # iterating reads every shard
        assert loaded.jobs.get(10**6) is None and 10**6 not in loaded.jobs

    # Changed once read (a retry), and a new job in an archived shard: its jobs on disk stay.
    store = Store(db)
    state = store.open()
    job = state.jobs[SHARD_SIZE + 3]
    job.status = JobStatus.QUEUED
    state.mark_job(job)
    store.flush(state)
    store.close()
    loaded = reopen(db)
    assert loaded.jobs[SHARD_SIZE + 3].status is JobStatus.QUEUED and len(loaded.workflows[done.id].step(0).job_ids) == 500


def test_deleting_a_workflow_left_on_disk_removes_its_jobs(db: Path) -> None:
    store = Store(db)
    state = store.open()
    done = finished_workflow(state, SHARD_SIZE + 5)
    keep = finished_workflow(state, 3)
    store.close()
    store = Store(db)
    state = store.open()
    assert not dict.keys(state.jobs) & set(range(1, SHARD_SIZE))
    del state.workflows[done.id]  # marked only, as the store's callers may
    state.deleted_workflows.add(done.id)
    store.flush(state)
    store.close()
    loaded = reopen(db)
    assert list(loaded.workflows) == [keep.id]
    assert sorted(loaded.jobs.get(i).id for i in range(1, SHARD_SIZE + 9) if i in loaded.jobs) == [
        SHARD_SIZE + 6, SHARD_SIZE + 7, SHARD_SIZE + 8]
    assert sorted(shard_inodes(db)) == ["jobs-1.json"]


def test_backend_reads_a_finished_workflow_left_on_disk(db: Path) -> None:
    from stepflow_tui.backend.backend import Backend, BackendConfig
    from stepflow_tui.plugins import load_registry

    store = Store(db)
    state = store.open()
    done = finished_workflow(state, SHARD_SIZE + 2)
    store.close()
    backend = Backend(BackendConfig(broker_url="memory://archive-reads", db_path=db, definitions={},
                                    registry=load_registry()))
    backend.start()
    try:
        assert backend.wait_until_running(30), backend.last_error
        assert not dict.keys(backend.state.jobs) & set(range(1, SHARD_SIZE))  # left on disk
        view = backend.workflow(done.id)
        assert view is not None and view.status == "completed"
        page = backend.jobs(done.id, 0, offset=SHARD_SIZE - 2, limit=3)
        assert [job.id for job in page] == [SHARD_SIZE - 1, SHARD_SIZE, SHARD_SIZE + 1]
        record = backend.job(7)
        assert record is not None and record["status"] == "completed" and record["id"] == 7
    finally:
        backend.stop()
