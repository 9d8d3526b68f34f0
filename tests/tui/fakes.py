"""`FakeBackend`: deterministic data behind the `WorkbenchBackend` protocol, for snapshot and pilot tests.

Fixed ids and times; the big step (100,000 jobs) is generated lazily from its index, never stored. Every
command is recorded in ``calls`` and applied to the data in a simple way, then announced to subscribers
like the real backend does (an `Update`, from the calling thread, never the UI's own).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from stepflow_tui.backend.views import JobView, StepStats, StepView, Update, WorkerView, WorkflowView
from stepflow_tui.broker.base import QueueState
from stepflow_tui.core.definitions import ONE_FOR_MANY, StartParameter, StepDefinition, WorkflowDefinition
from stepflow_tui.ops import NO_ORIGIN

T0 = datetime(2026, 3, 2, 10, 0, 0, tzinfo=UTC)
#: The fixed "now" of every test app (`fixed_clock`).
NOW = T0 + timedelta(minutes=5)


def fixed_clock() -> datetime:
    """The clock injected into test apps: always `NOW`."""
    return NOW


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


DEFINITIONS: tuple[WorkflowDefinition, ...] = (
    WorkflowDefinition(
        identifier="checksum_folder",
        label="Checksum every file of a folder and write a manifest",
        version_micro=2,
        start_parameters=(
            StartParameter(id="source_dir", label="Folder to checksum", type="file", required=True),
            StartParameter(id="manifest_path", label="Manifest file", type="string", default="manifest.sha256",
                           required=True),
            StartParameter(id="algorithm", label="Algorithm", type="choice", default="sha256",
                           items=("sha256", "md5")),
            StartParameter(id="max_files", label="Stop after this many files", type="number"),
        ),
        steps=(
            StepDefinition(id=1, name="list_files", label="list files",
                           parameters=({"id": "source_dir", "type": "template", "value": "{source_dir}"},)),
            StepDefinition(id=2, name="checksum", label="checksum", parent_ids=(1,),
                           parameters=({"id": "algorithm", "type": "template", "value": "{algorithm}"},)),
            StepDefinition(id=3, name="manifest", label="manifest", parent_ids=(2,), mode=ONE_FOR_MANY,
                           parameters=({"id": "manifest_path", "type": "template", "value": "{manifest_path}"},)),
        ),
    ),
    WorkflowDefinition(
        identifier="failing_demo",
        label="A step that always fails (to try retry)",
        start_parameters=(StartParameter(id="count", label="Jobs", type="number", default=3),),
        steps=(StepDefinition(id=1, name="fail", label="fail", max_retries=1,
                              parameters=({"id": "message", "type": "string", "value": "boom"},)),),
    ),
    WorkflowDefinition(
        identifier="sleep_many",
        label="Many short sleeps (load test)",
        start_parameters=(StartParameter(id="count", label="Jobs", type="number", default=100000),),
        steps=(StepDefinition(id=1, name="sleep", label="sleep",
                              parameters=({"id": "seconds", "type": "number", "value": 0.01},)),),
    ),
)


@dataclass
class FakeStep:
    id: int
    name: str
    label: str
    #: job statuses in id order: [("completed", 25), ("processing", 4), ...]
    blocks: list[tuple[str, int]]
    first_job_id: int
    status: str = "processing"
    launched: bool = True  # False: never launched (pending, or skipped by an abort)

    @property
    def job_count(self) -> int:
        return sum(count for _, count in self.blocks)

    def status_of(self, index: int) -> str:
        for status, count in self.blocks:
            if index < count:
                return status
            index -= count
        raise IndexError(index)


@dataclass
class FakeWorkflow:
    id: int
    identifier: str
    label: str
    status: str
    parameters: dict[str, Any]
    steps: list[FakeStep]
    created: datetime
    paused: bool = False
    finished: datetime | None = None


@dataclass
class FakeJobState:
    status: str
    progress: int
    error: str | None = None


@dataclass
class FakeBackend:
    """Implements `stepflow_tui.backend.WorkbenchBackend` over fixed data."""

    read_only: bool = False
    broker_display_url: str = "amqp://stepflow:***@rabbit.example:5672/prod"
    connection_state: str = "connected"
    #: (method, *arguments) of every command received, in order.
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    #: When set, the next command's future fails with this message.
    fail_next: str | None = None
    #: What job_dead_letter holds, per original queue (`ops.NO_ORIGIN`: without x-death).
    dead_letters: dict[str, int] = field(default_factory=lambda: {"job_checksum": 1, NO_ORIGIN: 1})
    _callbacks: list[Callable[[Update], None]] = field(default_factory=list)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _overrides: dict[int, FakeJobState] = field(default_factory=dict)
    _workflows: dict[int, FakeWorkflow] = field(default_factory=dict)
    _next_workflow_id: int = 16
    _next_job_id: int = 900_000

    def __post_init__(self) -> None:
        if not self._workflows:
            for workflow in default_workflows():
                self._workflows[workflow.id] = workflow

    # -- reads ------------------------------------------------------------------------------------------
    def subscribe(self, callback: Callable[[Update], None]) -> None:
        self._callbacks.append(callback)

    def definitions(self) -> list[WorkflowDefinition]:
        return list(DEFINITIONS)

    def workflows(self) -> list[WorkflowView]:
        with self._lock:
            return [self._view(workflow) for workflow in sorted(self._workflows.values(), key=lambda w: w.id)]

    def workflow(self, workflow_id: int) -> WorkflowView | None:
        with self._lock:
            workflow = self._workflows.get(workflow_id)
            return self._view(workflow) if workflow else None

    def jobs(self, workflow_id: int, step_id: int, offset: int = 0, limit: int = 200,
             status: str | None = None, after: int | None = None, before: int | None = None) -> list[JobView]:
        with self._lock:
            step = self._step(workflow_id, step_id)
            if step is None:
                return []
            if status is None and after is None and before is None:
                indexes = range(offset, min(offset + limit, step.job_count))
                return [self._job_view(workflow_id, step, index) for index in indexes]
            views = [self._job_view(workflow_id, step, index) for index in range(step.job_count)]
            if after is not None or before is not None:
                anchor = next((n for n, view in enumerate(views) if view.id == (after if after is not None
                                                                                  else before)), None)
                if anchor is None:
                    return []
                matching = [v for v in (views[anchor + 1:] if after is not None else views[:anchor])
                            if status is None or v.status == status]
                return matching[:limit] if after is not None else matching[-limit:]
            return [view for view in views if view.status == status][offset:offset + limit]

    def job(self, job_id: int) -> dict[str, Any] | None:
        with self._lock:
            found = self._find_job(job_id)
            if found is None:
                return None
            workflow, step, index = found
            view = self._job_view(workflow.id, step, index)
        created = workflow.created + timedelta(seconds=1)
        started = created + timedelta(seconds=2)
        history: list[list[str]] = [["queued", iso(created)]]
        if view.status != "queued":
            history.append(["processing", iso(started), "worker-checksum-1"])
        finished = None
        if view.status in ("completed", "error", "stopped"):
            finished = iso(started + timedelta(seconds=3))
            history.append([view.status, finished] + (["no such file"] if view.status == "error" else []))
        error = view.error
        return {
            "id": job_id,
            "workflow_id": workflow.id,
            "step_id": step.id,
            "job_type": step.name,
            "parameters": [
                {"id": "source_path", "type": "string", "value": f"/data/photos/img_{index:05}.jpg"},
                {"id": "algorithm", "type": "string", "value": "sha256"},
            ],
            "status": view.status,
            "history": history,
            "progress": view.progress,
            "attempts": 2 if error else 1,
            "retries": 1 if error else 0,
            "dispatched": True,
            "error": error,
            "traceback": (
                "Traceback (most recent call last):\n"
                '  File "stepflow_files/checksum.py", line 41, in run\n'
                "    with open(path, 'rb') as handle:\n"
                f"FileNotFoundError: [Errno 2] No such file or directory: '/data/photos/img_{index:05}.jpg'"
            ) if error else None,
            "destination_paths": [f"/data/out/img_{index:05}.jpg.sha256"] if view.status == "completed" else [],
            "outputs": [{"id": "digest", "type": "string", "value": f"{job_id:064x}"}]
            if view.status == "completed" else [],
            "worker": "worker-checksum-1" if view.status != "queued" else None,
            "execution_duration": 3.0 if finished else None,
            "logs": ([f"10:01:03 INFO reading /data/photos/img_{index:05}.jpg"]
                     + ([f"10:01:06 WARNING failed: {error}"] if error else [])) if view.status != "queued" else [],
            "created_at": iso(created),
            "started_at": iso(started) if view.status != "queued" else None,
            "finished_at": finished,
        }

    def find_jobs(self, text: str, limit: int = 20) -> list[JobView]:
        """A job by id (``3026`` or ``#3026``); or by its file name (``img_00042``: job 42 of each step)."""
        wanted = text.strip().lower().removeprefix("#")
        with self._lock:
            if wanted.isdigit():
                found = self._find_job(int(wanted))
                if found is None:
                    return []
                workflow, step, index = found
                return [replace(self._job_view(workflow.id, step, index), position=index)]
            match = re.search(r"img_(\d+)", wanted)
            if match is None:
                return []
            index = int(match.group(1))
            return [replace(self._job_view(workflow.id, step, index), position=index)
                    for workflow in sorted(self._workflows.values(), key=lambda w: -w.id)
                    for step in workflow.steps if index < step.job_count][:limit]

    def step_stats(self, workflow_id: int, step_id: int) -> StepStats | None:
        """Fixed durations: the slowest jobs are the step's first three finished ones."""
        with self._lock:
            step = self._step(workflow_id, step_id)
            if step is None:
                return None
            finished = [index for index in range(min(step.job_count, 50))
                        if step.status_of(index) in ("completed", "error")][:3]
            counts = self._step_counts(step)
            slowest = tuple(replace(self._job_view(workflow_id, step, index), duration=12.25 - index)
                            for index in finished)
        timed = counts["completed"] + counts["error"]
        if not timed:
            return StepStats()
        return StepStats(timed=timed, minimum=0.4, median=3.0, p95=7.5, maximum=12.25, throughput=1.5,
                         slowest=slowest)

    def count_failed(self, workflow_id: int, step_id: int | None = None) -> int:
        view = self.workflow(workflow_id)
        if view is None:
            return 0
        # as the real backend: jobs in error or stopped (both can be retried)
        return sum(step.counts.get("error", 0) + step.counts.get("stopped", 0) for step in view.steps
                   if step_id is None or step.id == step_id)

    def queue_states(self) -> list[QueueState]:
        return [
            QueueState("job_list_files", True, 0, 0, 1),
            QueueState("job_checksum", True, 10, 4, 2),
            QueueState("job_manifest", True, 0, 0, 1),
            QueueState("job_fail", True, 0, 0, 1),
            QueueState("job_sleep", True, 38_758, 8, 0),
            QueueState("job_completed", True, 0, 0, 1),
            QueueState("job_error", True, 0, 0, 1),
            QueueState("job_progression", True, 0, 0, 1),
            QueueState("job_response_not_found", True, 0, 0, 0),
            QueueState("job_queue_not_found", True, 0, 0, 1),
            QueueState("job_dead_letter", True, 2, 0, 0),
        ]

    def workers(self) -> list[WorkerView]:
        return [
            WorkerView("worker-checksum-1", "stepflow-files", ("list_files", "checksum", "manifest"), "Busy",
                       (1140, 1141), "node-a", 4242, "0.1.0", iso(NOW - timedelta(seconds=2)), False,
                       concurrency=4, processed=1_338, failed=1, first_seen=iso(NOW - timedelta(minutes=40)),
                       last_job=1139, last_job_at=iso(NOW - timedelta(seconds=3))),
            WorkerView("worker-fail-1", "stepflow defaults", ("fail", "noop"), "Idle", (), "node-a", 4243,
                       "0.1.0", iso(NOW - timedelta(seconds=4)), False, processed=6, failed=6,
                       first_seen=iso(NOW - timedelta(minutes=12)), last_job=2003,
                       last_job_at=iso(NOW - timedelta(minutes=9))),
            WorkerView("worker-sleep-1", "stepflow defaults", ("sleep",), "Busy", (200_001,), "node-b", 977,
                       "0.1.0", iso(NOW - timedelta(seconds=40)), True, concurrency=8,
                       first_seen=iso(NOW - timedelta(hours=3))),
        ]

    # -- commands ---------------------------------------------------------------------------------------
    def start_workflow(self, identifier: str, parameters: dict[str, str]) -> Future[int]:
        def run() -> int:
            if identifier not in {d.identifier for d in DEFINITIONS}:
                raise KeyError(f"no workflow definition {identifier!r}")
            with self._lock:
                workflow_id = self._next_workflow_id
                self._next_workflow_id += 1
                definition = next(d for d in DEFINITIONS if d.identifier == identifier)
                steps = []
                for step in definition.steps:
                    steps.append(FakeStep(step.id, step.name, step.label, [("queued", 1)], self._next_job_id,
                                          status="queued"))
                    self._next_job_id += 1
                self._workflows[workflow_id] = FakeWorkflow(workflow_id, identifier, definition.label,
                                                            "processing", dict(parameters), steps, NOW)
            self.emit(Update(workflow_ids=frozenset({workflow_id})))
            return workflow_id

        return self._command(("start_workflow", identifier, dict(parameters)), run)

    def retry_job(self, job_id: int) -> Future[None]:
        def run() -> None:
            with self._lock:
                found = self._find_job(job_id)
                if found is None:
                    raise KeyError(f"no job #{job_id}")
                self._overrides[job_id] = FakeJobState("queued", 0)
                workflow_id = found[0].id
            self.emit(Update(workflow_ids=frozenset({workflow_id}), job_ids=frozenset({job_id})))

        return self._command(("retry_job", job_id), run)

    def retry_failed(self, workflow_id: int, step_id: int | None = None) -> Future[int]:
        return self._command(("retry_failed", workflow_id, step_id),
                             lambda: self.count_failed(workflow_id, step_id))

    def abort(self, workflow_id: int) -> Future[None]:
        return self._command(("abort", workflow_id), lambda: self._set(workflow_id, status="aborted"))

    def pause(self, workflow_id: int) -> Future[None]:
        return self._command(("pause", workflow_id), lambda: self._set(workflow_id, paused=True))

    def resume(self, workflow_id: int) -> Future[None]:
        return self._command(("resume", workflow_id), lambda: self._set(workflow_id, paused=False))

    def delete(self, workflow_id: int) -> Future[None]:
        def run() -> None:
            with self._lock:
                if self._workflows.pop(workflow_id, None) is None:
                    raise KeyError(f"no workflow #{workflow_id}")
            self.emit(Update(workflow_ids=frozenset({workflow_id})))

        return self._command(("delete", workflow_id), run)

    def cancel_job(self, job_id: int) -> Future[None]:
        def run() -> None:
            with self._lock:
                found = self._find_job(job_id)
                if found is None:
                    raise KeyError(f"no job #{job_id}")
                self._overrides[job_id] = FakeJobState("stopped", 0)
            self.emit(Update(workflow_ids=frozenset({found[0].id}), job_ids=frozenset({job_id})))

        return self._command(("cancel_job", job_id), run)

    def redrive_dead_letters(self, queue: str | None = None, dry_run: bool = False) -> Future[dict[str, int]]:
        def run() -> dict[str, int]:
            if self.read_only and not dry_run:
                raise RuntimeError("read-only mode: changes are refused")
            with self._lock:
                counts = {q: n for q, n in self.dead_letters.items() if queue is None or q in (queue, NO_ORIGIN)}
                if not dry_run:  # what has no x-death stays, as in the real backend
                    self.dead_letters = {q: n for q, n in self.dead_letters.items() if q not in counts
                                         or q == NO_ORIGIN}
            return counts

        return self._command(("redrive_dead_letters", queue, dry_run), run)

    # -- test helpers -----------------------------------------------------------------------------------
    def emit(self, update: Update) -> None:
        """Announce a change to every subscriber (as the backend's thread does)."""
        for callback in list(self._callbacks):
            callback(update)

    def set_job(self, job_id: int, status: str, progress: int = 0, error: str | None = None) -> None:
        """Change one job (no update is sent: call `emit`)."""
        with self._lock:
            self._overrides[job_id] = FakeJobState(status, progress, error)

    def commands(self) -> list[str]:
        """The names of the commands received, in order."""
        return [call[0] for call in self.calls]

    # -- internals --------------------------------------------------------------------------------------
    def _command(self, call: tuple[Any, ...], run: Callable[[], Any]) -> Future[Any]:
        self.calls.append(call)
        future: Future[Any] = Future()
        if self.fail_next is not None:
            message, self.fail_next = self.fail_next, None
            future.set_exception(RuntimeError(message))
            return future
        try:
            future.set_result(run())
        except Exception as error:  # the real backend fails the future the same way
            future.set_exception(error)
        return future

    def _set(self, workflow_id: int, **changes: Any) -> None:
        with self._lock:
            workflow = self._workflows.get(workflow_id)
            if workflow is None:
                raise KeyError(f"no workflow #{workflow_id}")
            for key, value in changes.items():
                setattr(workflow, key, value)
        self.emit(Update(workflow_ids=frozenset({workflow_id})))

    def _step(self, workflow_id: int, step_id: int) -> FakeStep | None:
        workflow = self._workflows.get(workflow_id)
        if workflow is None:
            return None
        return next((step for step in workflow.steps if step.id == step_id), None)

    def _find_job(self, job_id: int) -> tuple[FakeWorkflow, FakeStep, int] | None:
        for workflow in self._workflows.values():
            for step in workflow.steps:
                index = job_id - step.first_job_id
                if 0 <= index < step.job_count:
                    return workflow, step, index
        return None

    def _job_view(self, workflow_id: int, step: FakeStep, index: int) -> JobView:
        job_id = step.first_job_id + index
        override = self._overrides.get(job_id)
        if override is not None:
            status, progress, error = override.status, override.progress, override.error
        else:
            status = step.status_of(index)
            progress = {"completed": 100, "processing": (index * 37) % 100, "error": 40}.get(status, 0)
            error = f"no such file: /data/photos/img_{index:05}.jpg" if status == "error" else None
        # what `job` tells of the same job: its tree line reads the same from a page or from a record
        return JobView(job_id, workflow_id, step.id, step.name, status, progress, error,
                       input=f"/data/photos/img_{index:05}.jpg",
                       worker="worker-checksum-1" if status != "queued" else None,
                       duration=3.0 if status in ("completed", "error", "stopped") else None)

    def _step_counts(self, step: FakeStep) -> dict[str, int]:
        counts = dict.fromkeys(("queued", "processing", "retrying", "completed", "error", "skipped", "stopped"), 0)
        for status, count in step.blocks:
            counts[status] += count
        for job_id, override in self._overrides.items():
            index = job_id - step.first_job_id
            if 0 <= index < step.job_count:
                counts[step.status_of(index)] -= 1
                counts[override.status] += 1
        counts["total"] = step.job_count
        return counts

    def _view(self, workflow: FakeWorkflow) -> WorkflowView:
        steps = []
        totals: dict[str, int] = {}
        for step in workflow.steps:
            counts = self._step_counts(step)
            for key, value in counts.items():
                totals[key] = totals.get(key, 0) + value
            steps.append(StepView(step.id, step.name, step.label, step.status, counts, step.job_count,
                                  launched_at=iso(workflow.created) if step.launched else None))
        finished = iso(workflow.finished) if workflow.finished else None
        return WorkflowView(
            id=workflow.id, identifier=workflow.identifier, label=workflow.label, version="0.0.1",
            status=workflow.status, paused=workflow.paused, parameters=dict(workflow.parameters),
            counts=totals, steps=tuple(steps), created_at=iso(workflow.created),
            updated_at=iso(workflow.finished or NOW), finished_at=finished,
        )


def default_workflows() -> list[FakeWorkflow]:
    """#12 completed, #13 failed, #14 running, #15 a running step of 100,000 jobs."""
    return [
        FakeWorkflow(12, "checksum_folder", "Checksum every file of a folder and write a manifest", "completed",
                     {"source_dir": "/data/photos", "manifest_path": "manifest.sha256", "algorithm": "sha256"},
                     [FakeStep(1, "list_files", "list files", [("completed", 1)], 1000, "completed"),
                      FakeStep(2, "checksum", "checksum", [("completed", 338)], 1001, "completed"),
                      FakeStep(3, "manifest", "manifest", [("completed", 1)], 1339, "completed")],
                     T0 - timedelta(minutes=20), finished=T0 - timedelta(minutes=18)),
        FakeWorkflow(13, "failing_demo", "A step that always fails (to try retry)", "error", {"count": "3"},
                     [FakeStep(1, "fail", "fail", [("error", 3)], 2001, "error")],
                     T0 - timedelta(minutes=10), finished=T0 - timedelta(minutes=9)),
        FakeWorkflow(14, "checksum_folder", "Checksum every file of a folder and write a manifest", "processing",
                     {"source_dir": "/data/scans", "manifest_path": "manifest.sha256", "algorithm": "md5"},
                     [FakeStep(1, "list_files", "list files", [("completed", 1)], 3000, "completed"),
                      FakeStep(2, "checksum", "checksum",
                               [("completed", 25), ("error", 1), ("processing", 4), ("queued", 10)], 3001),
                      FakeStep(3, "manifest", "manifest", [], 3041, "pending")],
                     T0 + timedelta(minutes=3)),
        FakeWorkflow(15, "sleep_many", "Many short sleeps (load test)", "processing", {"count": "100000"},
                     [FakeStep(1, "sleep", "sleep",
                               [("completed", 61_234), ("processing", 8), ("queued", 38_758)], 100_000)],
                     T0 + timedelta(minutes=1)),
    ]


def add_ended_workflows(backend: FakeBackend) -> None:
    """#17 ended stopped (a job cancelled, none failed); #18 aborted before its second step began."""
    backend._workflows[17] = FakeWorkflow(
        17, "failing_demo", "A step that always fails (to try retry)", "stopped", {"count": "2"},
        [FakeStep(1, "fail", "fail", [("completed", 1), ("stopped", 1)], 4001, "stopped")],
        T0 + timedelta(minutes=4), finished=T0 + timedelta(minutes=4, seconds=30))
    backend._workflows[18] = FakeWorkflow(
        18, "checksum_folder", "Checksum every file of a folder and write a manifest", "aborted",
        {"source_dir": "/data/old", "manifest_path": "manifest.sha256", "algorithm": "sha256"},
        [FakeStep(1, "list_files", "list files", [("stopped", 1)], 4101, "stopped"),
         FakeStep(2, "checksum", "checksum", [], 4102, "skipped", launched=False),
         FakeStep(3, "manifest", "manifest", [], 4102, "skipped", launched=False)],
        T0 + timedelta(minutes=4, seconds=10), finished=T0 + timedelta(minutes=4, seconds=20))
