"""``GET /metrics``: Prometheus' text format through prometheus-client. One custom collector reads the backend's
views when Prometheus scrapes, so every figure is what the state holds then (nothing is counted twice, and a
restart loses nothing). StepFlow's names where it has them (lib/step_flow/metrics/*.ex); the library exports a
counter ``X`` as ``X_total``.

A counter here is a count of what the state holds: deleting workflows makes it go down, which Prometheus reads
as a counter reset (``rate`` and ``increase`` handle that).
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from .keys import BACKEND

#: Upper bounds (seconds) of the job duration histogram's buckets: from a no-op job to a long transcode.
DURATION_BUCKETS = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0, math.inf)
FINISHED_JOBS = ("completed", "error")
UNFINISHED_JOBS = ("queued", "processing", "retrying")
_PAGE = 1000
REGISTRY: web.AppKey[CollectorRegistry] = web.AppKey("metrics_registry", CollectorRegistry)


def _time(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None
    except ValueError:
        return None


def job_duration(record: dict[str, Any]) -> float | None:
    """How long a finished job ran: the worker's execution duration, else from its start to its end."""
    seconds: float | None = None
    if record.get("execution_duration") is not None:
        try:
            seconds = float(record["execution_duration"])
        except (TypeError, ValueError):  # what a foreign worker reported: not ours to trust
            seconds = None
    if seconds is None:
        started, finished = _time(record.get("started_at")), _time(record.get("finished_at"))
        seconds = (finished - started).total_seconds() if started and finished else None
    return seconds if seconds is not None and 0 <= seconds < math.inf else None


class DurationCache:
    """Per workflow, the bucket counts of its finished jobs' durations by job type, recomputed only when the
    workflow changed since the last scrape: a scrape costs what is active, not all history."""

    def __init__(self) -> None:
        self._by_workflow: dict[int, tuple[Any, dict[str, list[float]]]] = {}
        self._lock = threading.Lock()

    def totals(self, backend: Any, views: list[Any]) -> dict[str, list[float]]:
        """``{job_type: [count per bucket..., sum]}`` over every workflow in ``views``."""
        with self._lock:  # two scrapes at once would compute the same thing twice
            present = {view.id for view in views}
            for workflow_id in list(self._by_workflow):
                if workflow_id not in present:
                    del self._by_workflow[workflow_id]
            totals: dict[str, list[float]] = defaultdict(lambda: [0.0] * (len(DURATION_BUCKETS) + 1))
            for view in views:
                # a retried job changes the counts even if two changes share a timestamp
                key = (view.updated_at, tuple(sorted(view.counts.items())))
                cached = self._by_workflow.get(view.id)
                if cached is None or cached[0] != key:
                    cached = (key, self._workflow_durations(backend, view))
                    self._by_workflow[view.id] = cached
                for job_type, values in cached[1].items():
                    totals[job_type] = [a + b for a, b in zip(totals[job_type], values, strict=True)]
            return dict(totals)

    @staticmethod
    def _workflow_durations(backend: Any, view: Any) -> dict[str, list[float]]:
        found: dict[str, list[float]] = {}
        for step in view.steps:
            for status in FINISHED_JOBS:
                for offset in range(0, step.counts.get(status, 0), _PAGE):
                    for job in backend.jobs(view.id, step.id, offset, _PAGE, status=status):
                        record = backend.job(job.id)
                        seconds = job_duration(record) if record is not None else None
                        if seconds is None:
                            continue
                        values = found.setdefault(step.name, [0.0] * (len(DURATION_BUCKETS) + 1))
                        values[next(i for i, bound in enumerate(DURATION_BUCKETS) if seconds <= bound)] += 1
                        values[-1] += seconds
        return found


class BackendCollector(Collector):
    """Workflows, jobs, durations, queues and workers of a backend, read at each scrape."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.durations = DurationCache()

    def collect(self) -> Iterator[Metric]:
        """The metric families (prometheus-client calls this at each scrape)."""
        views = self.backend.workflows()
        yield from self._workflows(views)
        yield from self._jobs(views)
        yield self._histogram(self.durations.totals(self.backend, views))
        yield from self._queues()
        yield self._workers()

    @staticmethod
    def _workflows(views: list[Any]) -> Iterator[Metric]:
        created = Counter(v.identifier for v in views)
        by_status = Counter((v.identifier, v.status) for v in views)
        for name, status, text in (("step_flow_workflows_created", None, "Number of created workflows."),
                                   ("step_flow_workflows_completed", "completed", "Number of completed workflows."),
                                   ("step_flow_workflows_error", "error", "Number of failed workflows.")):
            family = CounterMetricFamily(name, text, labels=["identifier"])
            for identifier in sorted(created):
                family.add_metric([identifier], created[identifier] if status is None
                                  else by_status[(identifier, status)])
            yield family
        current = GaugeMetricFamily("stepflow_workflows", "Workflows by identifier and current status.",
                                    labels=["identifier", "status"])
        for (identifier, status), count in sorted(by_status.items()):
            current.add_metric([identifier, status], count)
        yield current
        since = datetime.now(UTC) - timedelta(days=1)
        spans: dict[str, list[float]] = defaultdict(list)
        for view in views:
            start, end = _time(view.created_at), _time(view.finished_at)
            if view.status == "completed" and start and end and end >= since:
                spans[view.identifier].append((end - start).total_seconds())
        duration = GaugeMetricFamily("step_flow_workflows_duration",
                                     "Average durations of workflows completed during the last day (seconds).",
                                     labels=["identifier"])
        for identifier, values in sorted(spans.items()):
            duration.add_metric([identifier], sum(values) / len(values))
        yield duration

    @staticmethod
    def _jobs(views: list[Any]) -> Iterator[Metric]:
        counts: dict[str, Counter[str]] = defaultdict(Counter)
        for view in views:
            for step in view.steps:
                counts[step.name].update(step.counts)
        for name, keys, text in (("step_flow_jobs_created", ("total",), "Number of created jobs."),
                                 ("step_flow_jobs_completed", ("completed",), "Number of completed jobs."),
                                 ("step_flow_jobs_error", ("error",), "Number of failed jobs.")):
            family = CounterMetricFamily(name, text, labels=["name"])
            for job_type in sorted(counts):
                family.add_metric([job_type], sum(counts[job_type][key] for key in keys))
            yield family
        processing = GaugeMetricFamily("step_flow_jobs_processing", "Jobs created and not finished yet.",
                                       labels=["name"])
        for job_type in sorted(counts):
            processing.add_metric([job_type], sum(counts[job_type][key] for key in UNFINISHED_JOBS))
        yield processing

    @staticmethod
    def _histogram(totals: dict[str, list[float]]) -> Metric:
        family = HistogramMetricFamily("stepflow_job_duration_seconds",
                                       "How long finished jobs ran (completed or in error), by job type.",
                                       labels=["job_type"])
        for job_type in sorted(totals):
            values, cumulative, buckets = totals[job_type], 0.0, []
            for bound, count in zip(DURATION_BUCKETS, values, strict=False):
                cumulative += count
                buckets.append(("+Inf" if math.isinf(bound) else repr(bound), cumulative))
            family.add_metric([job_type], buckets, sum_value=values[-1])
        return family

    def _queues(self) -> Iterator[Metric]:
        families = {key: GaugeMetricFamily(f"stepflow_queue_{key}", text, labels=["queue"]) for key, text in (
            ("messages", "Messages ready in the queue."), ("unacked", "Messages delivered and not acked yet."),
            ("consumers", "Consumers of the queue."))}
        for queue in self.backend.queue_states():
            if queue.exists:
                families["messages"].add_metric([queue.name], queue.ready)
                families["unacked"].add_metric([queue.name], queue.unacked)
                families["consumers"].add_metric([queue.name], queue.consumers)
        yield from families.values()

    def _workers(self) -> Metric:
        states = Counter("lost" if worker.lost else worker.activity.lower() for worker in self.backend.workers())
        family = GaugeMetricFamily("stepflow_workers", "Workers by state (idle, busy, suspended, lost).",
                                   labels=["state"])
        for state in sorted(set(states) | {"idle", "busy", "lost"}):
            family.add_metric([state], states[state])
        return family


async def metrics(request: web.Request) -> web.Response:
    """Prometheus' scrape: the text exposition format."""
    body = await asyncio.to_thread(generate_latest, request.app[REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def setup_metrics(app: web.Application) -> None:
    """Serve ``GET /metrics`` (and ``/api/step_flow/metrics``, where StepFlow's router served them) for the app's
    backend, plus the process' own metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BackendCollector(app[BACKEND]))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    app[REGISTRY] = registry
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/step_flow/metrics", metrics)
