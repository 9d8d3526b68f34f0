"""StepFlow's JSON shapes (media-io/ex_step_flow, lib/step_flow/view/*.ex) built from our views and records.

Pure functions: the routes (`stepflow_routes`) read the backend and hand the results here. Where StepFlow has a
database id we have none (definitions, status entries, worker definitions), a stable synthetic id is given.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

#: Our job status -> StepFlow's job state (StepFlow.Jobs.Status.StateEnum); an aborted job is "skipped" there.
JOB_STATES = {"queued": "queued", "processing": "processing", "retrying": "retrying", "completed": "completed",
              "error": "error", "skipped": "skipped", "stopped": "skipped"}
#: Our workflow status -> StepFlow's workflow state (StepFlow.Workflows.Status.StateEnum).
WORKFLOW_STATES = {"pending": "pending", "processing": "processing", "paused": "processing",
                   "completed": "completed", "error": "error", "aborted": "skipped"}
#: Our step status -> the status StepFlow's get_step_status gives a step.
STEP_STATES = {"pending": "queued", "queued": "processing", "processing": "processing", "completed": "completed",
               "error": "error", "skipped": "skipped", "stopped": "skipped"}
DEFAULT_SCHEMA_VERSION = "1.8"


def stable_id(*parts: str) -> int:
    """A positive id that stays the same across restarts for the same ``parts``."""
    return zlib.crc32("\0".join(parts).encode("utf-8")) & 0x7FFFFFFF


def error_body(reason: str, message: str = "Incorrect parameters") -> dict[str, Any]:
    """WorkflowDefinitionView's ``error.json``: ``{"errors": [{"reason", "message"}]}``."""
    return {"errors": [{"reason": reason, "message": message}]}


def definition_json(definition: Any, mode: str = "full") -> dict[str, Any]:
    """A `WorkflowDefinition` as ``workflow_definition_<mode>.json`` (``simple``, ``full``) or, with
    ``mode="with_steps"``, as ``show.json`` renders it."""
    raw = definition.raw
    result = {"id": stable_id(definition.identifier, definition.version), "identifier": definition.identifier,
              "label": definition.label, "version_major": definition.version_major,
              "version_minor": definition.version_minor, "version_micro": definition.version_micro}
    if mode == "simple":
        return result
    result.update({"icon": definition.icon, "tags": list(definition.tags),
                   "start_parameters": raw.get("start_parameters", []), "parameters": raw.get("parameters", [])})
    if mode == "with_steps":
        result["steps"] = raw.get("steps", [])
    else:
        result["schema_version"] = definition.schema_version or DEFAULT_SCHEMA_VERSION
    return result


def workflow_parameters(definition: Any, values: dict[str, Any]) -> list[dict[str, Any]]:
    """The workflow's ``parameters`` as StepFlow's merge_parameters leaves them: the definition's parameter list,
    each one given a value at launch taking it; then the start parameters that list lacks, with their values."""
    merged: list[dict[str, Any]] = []
    for item in definition.raw.get("parameters", []) if definition is not None else []:
        value = values.get(item.get("id"))
        merged.append(dict(item, value=value) if value is not None else dict(item))
    known = {item.get("id") for item in merged}
    for parameter in definition.start_parameters if definition is not None else ():
        if parameter.id not in known:
            merged.append({"id": parameter.id, "type": parameter.type, "label": parameter.label,
                           "value": values.get(parameter.id)})
    known |= {item.get("id") for item in merged}
    merged += [{"id": key, "type": "string", "value": value} for key, value in values.items() if key not in known]
    return merged


def step_json(raw_step: dict[str, Any], view: Any) -> dict[str, Any]:
    """A step as StepFlow's get_step_status returns it: its definition plus ``status`` and ``jobs`` counts."""
    counts = view.counts if view is not None else {}
    jobs = {"total": counts.get("total", 0), "completed": counts.get("completed", 0),
            "errors": counts.get("error", 0), "processing": counts.get("processing", 0),
            "queued": counts.get("queued", 0) + counts.get("retrying", 0),
            "skipped": counts.get("skipped", 0) + counts.get("stopped", 0)}
    status = STEP_STATES.get(view.status, "queued") if view is not None else "queued"
    return {**raw_step, "status": status, "jobs": jobs}


def workflow_json(view: Any, definition: Any, reference: str | None,
                  jobs: Any = None, created: bool = False) -> dict[str, Any]:
    """A workflow as WorkflowView's ``workflow.json`` (with ``jobs`` when given: a list, or its `Encoded` text)
    or ``workflow_created.json``; ``definition`` is today's definition of its identifier, used only if it is the
    version it was started from."""
    if definition is not None and definition.version != view.version:
        definition = None  # replaced since (a posted definition): the view's own steps are what is known
    result: dict[str, Any] = {
        "schema_version": (definition.schema_version if definition is not None else None) or DEFAULT_SCHEMA_VERSION,
        "id": view.id, "identifier": view.identifier,
    }
    major, minor, micro = (int(part) for part in (view.version.split(".") + ["0", "0"])[:3])
    result.update({"version_major": major, "version_minor": minor, "version_micro": micro,
                   "tags": list(definition.tags) if definition is not None else [], "reference": reference})
    if not created:
        views = {step.id: step for step in view.steps}
        raw_steps = definition.raw.get("steps", []) if definition is not None else [
            {"id": s.id, "name": s.name, "label": s.label} for s in view.steps]
        result["steps"] = [step_json(raw, views.get(raw.get("id"))) for raw in raw_steps]
    result["parameters"] = workflow_parameters(definition, view.parameters)
    result["created_at"] = view.created_at
    if not created:
        # not in StepFlow 0.2's view, which has no workflow status: its clients ignore it, new ones use it
        result["status"] = WORKFLOW_STATES.get(view.status, view.status)
        result["artifacts"] = []
        result["rights"] = []
        if jobs is not None:
            result["jobs"] = jobs
    return result


def job_json(record: dict[str, Any]) -> dict[str, Any]:
    """A job's full record (``Job.to_dict()``) as JobView's ``job.json``, its history as StatusView entries."""
    job_id = record["id"]
    status = []
    for index, entry in enumerate(record.get("history") or []):
        state, when = entry[0], entry[1] if len(entry) > 1 else None
        description = {"message": entry[2]} if len(entry) > 2 and entry[2] else {}
        status.append({"id": job_id * 1000 + index, "state": JOB_STATES.get(state, state),
                       "description": description, "inserted_at": when})
    if record.get("error") and status and status[-1]["state"] == "error":
        status[-1]["description"] = {"message": record["error"]}
    progressions = []
    if record.get("progress"):
        progressions.append({"id": job_id, "datetime": record.get("started_at"),
                             "docker_container_id": record.get("worker"), "job_id": job_id,
                             "progression": record["progress"]})
    updated = record.get("finished_at") or (status[-1]["inserted_at"] if status else record.get("created_at"))
    return {"id": job_id, "workflow_id": record["workflow_id"], "name": record["job_type"],
            "step_id": record["step_id"], "params": record.get("parameters", []), "progressions": progressions,
            "status": status, "inserted_at": record.get("created_at"), "updated_at": updated}


def worker_definitions_json(workers: Iterable[Any]) -> list[dict[str, Any]]:
    """WorkerDefinitionView's ``worker_definition.json``: one per worker and job queue it consumes."""
    found = []
    for worker in workers:
        if worker.activity == "Terminated":
            continue  # listed (stopped) in the workbench, but it defines no worker any more
        for job_type in worker.job_types or ("",):
            queue = f"job_{job_type}" if job_type else ""
            found.append({"id": stable_id(worker.instance_id, queue), "queue_name": queue, "label": worker.label,
                          "short_description": worker.label, "description": "", "version": worker.version,
                          "parameters": {}, "created_at": worker.last_seen})
    return found


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        # StepFlow's timestamps have a resolution of a second (and its end_date is truncated to one)
        return datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=None, microsecond=0)
    except ValueError:
        return None


def statistics_json(views: Iterable[Any], start: datetime, end: datetime, interval: int) -> dict[str, Any]:
    """WorkflowView's ``statistics.json`` over the workflows' status changes between ``start`` and ``end``
    (naive UTC): a workflow counts as processing when it was created, then completed or error when it ended."""
    events: list[tuple[str, datetime]] = []
    for view in views:
        state = WORKFLOW_STATES.get(view.status)
        created, finished = _parse_time(view.created_at), _parse_time(view.finished_at)
        if created is not None:
            events.append(("processing", created))
        if finished is not None and state in ("completed", "error"):
            events.append((state, finished))
    events = [(state, when) for state, when in events if start <= when <= end]
    totals = {name: sum(1 for state, _ in events if state == name) for name in ("processing", "error", "completed")}
    if not events:
        return {"data": {**totals, "bins": []}}
    groups: dict[int, list[str]] = {}
    for state, when in events:
        groups.setdefault(int((end - when).total_seconds()) // interval, []).append(state)
    bins = [{"bin": number,
             "start_date": str(end - timedelta(seconds=(number + 1) * interval)),
             "end_date": str(end - timedelta(seconds=number * interval)),
             **{name: states.count(name) for name in ("processing", "error", "completed")}}
            for number, states in sorted(groups.items())]
    return {"data": {**totals, "bins": bins}}
