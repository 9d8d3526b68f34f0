"""The reads behind StepFlow's routes: query parameters parsed as StepFlow's contexts read them (``page`` from
0, ``size`` 10 by default, Phoenix lists as ``name[]=a&name[]=b``), filters applied to the backend's views, pages
rendered by `stepflow_views`. Each function runs in a thread (backend reads take its lock)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, time, timedelta
from typing import Any

from .encoding import Encoded, encoded_list
from .stepflow_views import (
    WORKFLOW_STATES,
    definition_json,
    job_json,
    statistics_json,
    worker_definitions_json,
    workflow_json,
)

Query = Mapping[str, str]
DEFAULT_SIZE = 10
MAX_SIZE = 1000
#: Jobs shown per workflow in a list, and per page of a list (a workflow shown alone shows them all).
LIST_JOBS = 1000
LIST_JOBS_PER_PAGE = 10_000
_READ_PAGE = 1000
MAX_INTERVAL = 10**10  # seconds: about 300 years


class StepFlowError(Exception):
    """A response in StepFlow's error shape (``{"errors": [{"reason", "message"}]}``)."""

    def __init__(self, status: int, reason: str, message: str = "Incorrect parameters") -> None:
        super().__init__(reason)
        self.status, self.reason, self.message = status, reason, message


class ChangesetError(Exception):
    """A field the created record refuses, rendered as StepFlow's ChangesetView: ``{"errors": {field: [...]}}``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field} {message}")
        self.field, self.message = field, message


def query_int(query: Query, name: str, default: int | None, minimum: int = 0) -> int | None:
    """An integer query parameter (at least ``minimum``), or ``default``; 422 for anything else."""
    text = query.get(name)
    if text is None or text == "":
        return default
    stripped = text.strip()
    if not stripped.isascii() or not stripped.lstrip("-").isdigit() or len(stripped) > 18:
        raise StepFlowError(422, f"{name} must be an integer, not {text[:40]!r}")
    if int(stripped) < minimum:
        raise StepFlowError(422, f"{name} must be at least {minimum}, not {stripped}")
    return int(stripped)


def query_list(query: Any, name: str) -> list[str]:
    """``name[]=a&name[]=b`` (as Phoenix clients send lists), or repeated ``name=a``."""
    return [*query.getall(f"{name}[]", []), *query.getall(name, [])]


def paging(query: Query, allow_all: bool = False) -> tuple[int, int | None]:
    """(offset, size) from ``page`` and ``size``; size -1 means everything where StepFlow allows it."""
    page = query_int(query, "page", 0)
    size = query_int(query, "size", DEFAULT_SIZE, minimum=-1 if allow_all else 1)
    if size == 0 or (size == -1 and not allow_all):
        raise StepFlowError(422, "size must be at least 1")
    if size > MAX_SIZE:
        raise StepFlowError(422, f"size must be at most {MAX_SIZE}")
    return (0, None) if size == -1 else (page * size, size)


def _page(items: list[Any], offset: int, size: int | None) -> list[Any]:
    return items[offset:] if size is None else items[offset:offset + size]


def parse_date(text: str, name: str, end_of_day: bool = False) -> datetime:
    """An ISO date-time (naive UTC), or a date (its first or last moment), as StepFlow's filters read them."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise StepFlowError(422, f"{name} must be an ISO 8601 date or date-time, not {text[:40]!r}") from None
    if value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    if len(text.strip()) == 10:  # a date alone
        return datetime.combine(value.date(), time.max if end_of_day else time.min)
    return value


def _created(view: Any) -> datetime:
    return parse_date(view.created_at, "created_at")


def definitions_page(backend: Any, files: Any, query: Query) -> dict[str, Any]:
    """GET /definitions: search (label contains, or identifier equals, ignoring case), versions, mode."""
    offset, size = paging(query, allow_all=True)
    mode = query.get("mode") or "full"
    if mode not in ("full", "simple"):
        raise StepFlowError(422, f"mode must be full or simple, not {mode[:40]!r}")
    found = list(backend.definitions())
    search = (query.get("search") or "").lower()
    if search:
        found = [d for d in found if search in d.label.lower() or d.identifier.lower() == search]
    versions = query_list(query, "versions")
    if versions and versions != ["latest"]:  # one version per identifier here: "latest" is every one
        found = [d for d in found if d.version in versions]
    found.sort(key=lambda d: (d.version_major, d.version_minor, d.version_micro), reverse=True)
    return {"data": [definition_json(d, mode) for d in _page(found, offset, size)], "total": len(found)}


def _definitions(backend: Any) -> dict[str, Any]:
    return {d.identifier: d for d in backend.definitions()}


def workflow_jobs(backend: Any, view: Any, limit: int | None = None) -> Encoded:
    """The workflow's jobs in StepFlow's shape, step by step (the first ``limit`` when given), encoded a page at
    a time as they are read (`encoding`: a workflow of 100,000 jobs is 49 MB of JSON)."""
    pages: list[str] = []
    found = 0
    for step in view.steps:
        for offset in range(0, step.job_count, _READ_PAGE):
            page = []
            for job in backend.jobs(view.id, step.id, offset, _READ_PAGE):
                if limit is not None and found >= limit:
                    break
                record = backend.job(job.id)
                if record is not None:
                    page.append(job_json(record))
                    found += 1
            pages.append(json.dumps(page)[1:-1])
            if limit is not None and found >= limit:
                return encoded_list(pages)
    return encoded_list(pages)


def workflow_with_jobs(backend: Any, files: Any, view: Any) -> dict[str, Any]:
    """GET /workflows/{id}: the workflow, its steps, every job and its status history."""
    definition = _definitions(backend).get(view.identifier)
    return workflow_json(view, definition, files.reference(view.id), jobs=workflow_jobs(backend, view))


def _workflow_filters(query: Any) -> list[Any]:
    tests = []
    if query.get("identifier"):
        tests.append(lambda v, wanted=query["identifier"]: v.identifier == wanted)
    for index, part in enumerate(("version_major", "version_minor", "version_micro")):
        number = query_int(query, part, None)
        if number is not None:
            tests.append(lambda v, i=index, n=number: int((v.version.split(".") + ["0"] * 3)[i]) == n)
    if query.get("before_date"):
        before = parse_date(query["before_date"], "before_date", end_of_day=True)
        tests.append(lambda v: _created(v) <= before)
    if query.get("after_date"):
        after = parse_date(query["after_date"], "after_date")
        tests.append(lambda v: _created(v) >= after)
    states = set(query_list(query, "states"))
    if states:  # StepFlow's state names, or ours (paused, aborted)
        tests.append(lambda v: v.status in states or WORKFLOW_STATES.get(v.status) in states)
    ids = query_list(query, "ids")
    if ids:
        wanted = {query_int({"ids": text}, "ids", None) for text in ids}
        tests.append(lambda v: v.id in wanted)
    identifiers = set(query_list(query, "workflow_ids"))
    if identifiers:
        tests.append(lambda v: v.identifier in identifiers)
    return tests


def workflows_page(backend: Any, files: Any, query: Any) -> dict[str, Any]:
    """GET /workflows: newest first, StepFlow's filters, each workflow with (the first of) its jobs."""
    offset, size = paging(query)
    tests = _workflow_filters(query)
    views = [v for v in reversed(backend.workflows()) if all(test(v) for test in tests)]
    definitions = _definitions(backend)
    page = _page(views, offset, size)
    shown = min(LIST_JOBS, max(10, LIST_JOBS_PER_PAGE // max(1, len(page))))  # a page's cost stays bounded
    data = [workflow_json(v, definitions.get(v.identifier), files.reference(v.id),
                          jobs=workflow_jobs(backend, v, shown)) for v in page]
    return {"data": data, "total": len(views)}


def _job_type_matches(step: Any, job_type: str | None) -> bool:
    return job_type is None or step.name in (job_type, job_type.removeprefix("job_"))


def jobs_page(backend: Any, files: Any, query: Any) -> dict[str, Any]:
    """GET /jobs: newest first, filtered by workflow_id, job_type (with or without ``job_``) and step_id."""
    offset, size = paging(query)
    workflow_id = query_int(query, "workflow_id", None)
    step_id = query_int(query, "step_id", None)
    job_type = query.get("job_type") or None
    if workflow_id is not None:
        view = backend.workflow(workflow_id)
        views = [view] if view is not None else []
    else:
        views = list(reversed(backend.workflows()))
    slots = [(view, step) for view in views for step in reversed(view.steps)
             if (step_id is None or step.id == step_id) and _job_type_matches(step, job_type)]
    total = sum(step.job_count for _, step in slots)
    chosen: list[Any] = []
    skip = offset
    for view, step in slots:  # newest first: the last jobs of the last step of the last workflow
        if len(chosen) >= size:
            break
        if skip >= step.job_count:
            skip -= step.job_count
            continue
        high = step.job_count - skip
        take = min(size - len(chosen), high)
        chosen += reversed(backend.jobs(view.id, step.id, high - take, take))
        skip = 0
    records = (backend.job(job.id) for job in chosen)
    return {"data": [job_json(r) for r in records if r is not None], "total": total}


def worker_definitions_page(backend: Any, files: Any, query: Query) -> dict[str, Any]:
    """GET /worker_definitions: one per worker and job queue, from the workers' announcements."""
    offset, size = paging(query)
    found = worker_definitions_json(backend.workers())
    return {"data": _page(found, offset, size), "total": len(found)}


def statistics(backend: Any, files: Any, query: Any) -> dict[str, Any]:
    """GET /workflows_statistics: start_date (default a day ago), end_date (now), time_interval (seconds,
    default a sixtieth of the span), identifiers[]."""
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    start = parse_date(query["start_date"], "start_date") if query.get("start_date") else now - timedelta(days=1)
    end = parse_date(query["end_date"], "end_date") if query.get("end_date") else now
    start, end = start.replace(microsecond=0), end.replace(microsecond=0)
    default_interval = int((end - start).total_seconds()) // 60
    interval = max(1, query_int(query, "time_interval", default_interval, minimum=-(2**62)) or 1)
    if interval > MAX_INTERVAL:  # bins further back than the calendar goes
        raise StepFlowError(422, f"time_interval must be at most {MAX_INTERVAL} seconds")
    identifiers = set(query_list(query, "identifiers"))
    views = [v for v in backend.workflows() if not identifiers or v.identifier in identifiers]
    return statistics_json(views, start, end, interval)
