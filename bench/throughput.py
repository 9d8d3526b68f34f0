"""Throughput: one workflow of N no-op jobs, from start to its completion in the state, against raw pika.

    python bench/throughput.py --broker amqp://guest:guest@127.0.0.1:5672/ --jobs 5000 --workers 2
    python bench/throughput.py --broker memory:// --jobs 5000

On RabbitMQ each run measures, in a fresh vhost each:

- **stepflow**: the real `Backend` (TinyDB state, flushes before acks) and W ``python -m stepflow_tui.worker``
  processes serving ``noop``; from ``start_workflow`` to the workflow ``completed`` in the state.
- **raw pika**: the baseline a hand-written system would get on the same broker: this process publishes the
  same N order bodies (persistent, tx batches of the backend's publish batch, the same window of orders in
  flight) and W raw worker processes answer each with one completion body of the same size (persistent, one
  tx per batch of deliveries, then one ack). No state, no exchange routing, no progress messages.

``--broker memory://`` measures the embedded broker with in-process workers (no baseline). The figures and the
ratio are printed last, as medians over ``--runs`` runs.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import fresh_vhost, median, noop_definition, wait_until  # noqa: E402

from stepflow_tui.backend.backend import Backend, BackendConfig  # noqa: E402
from stepflow_tui.broker.base import mask_url  # noqa: E402
from stepflow_tui.core.engine import Engine  # noqa: E402
from stepflow_tui.core.model import State, WorkflowStatus  # noqa: E402
from stepflow_tui.core.protocol import JobCompleted, JobOrder  # noqa: E402

RAW_ORDERS = "raw_orders"
RAW_COMPLETED = "raw_completed"
TIMEOUT = 600.0


# ---------------------------------------------------------------------------------------------------- stepflow
def start_workers(url: str, count: int, concurrency: int, prefetch: int, log_dir: Path) -> list[subprocess.Popen]:
    """W headless worker processes serving noop, exactly as a user starts them."""
    procs = []
    for i in range(count):
        log = open(log_dir / f"worker-{i}.log", "wb")  # noqa: SIM115 - closed with the process
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "stepflow_tui.worker", "--broker", url, "--job-type", "noop",
             "--concurrency", str(concurrency), "--prefetch", str(prefetch)],
            stdout=log, stderr=subprocess.STDOUT))
    return procs


def stop_processes(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for_consumers(url: str, queue: str, count: int, procs: list[subprocess.Popen]) -> None:
    """Until ``count`` consumers are on ``queue`` (a worker that exits early is an error)."""
    from stepflow_tui.broker.base import connect

    conn = connect(url, name="bench-probe")
    try:
        def ready() -> bool:
            for proc in procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"a worker process exited with status {proc.returncode}")
            (state,) = conn.queue_states([queue])
            return state.exists and state.consumers >= count

        wait_until(ready, 60, f"{count} consumers on {queue}", interval=0.05)
    finally:
        conn.close()


def run_stepflow(url: str, jobs: int, workers: int, concurrency: int | None, prefetch: int) -> tuple[float, dict]:
    """Seconds from start_workflow to the workflow completed in the state; and the backend's stats."""
    from stepflow_tui.plugins import load_registry

    definition = noop_definition(jobs)
    memory = url.startswith("memory:")
    with tempfile.TemporaryDirectory(prefix="stepflow-bench-") as tmp:
        folder = Path(tmp)
        procs = [] if memory else start_workers(url, workers, concurrency or 1, prefetch, folder)
        config = BackendConfig(broker_url=url, db_path=folder / "state.json",
                               definitions={definition.identifier: definition}, registry=load_registry())
        if memory and concurrency:
            config.local_concurrency = concurrency
        backend = Backend(config)
        try:
            if procs:
                wait_for_consumers(url, "job_noop", workers, procs)
            backend.start()
            if not backend.wait_until_running(30):
                raise RuntimeError(f"the backend did not connect to {mask_url(url)}: {backend.last_error}")
            started = time.perf_counter()
            workflow_id = backend.start_workflow(definition.identifier, {}).result(60)
            workflow = backend.state.workflows[workflow_id]

            def finished() -> bool:
                # One attribute read, no lock: the broker thread is the only writer, and polling must not
                # slow it down.
                if workflow.status in (WorkflowStatus.ERROR, WorkflowStatus.ABORTED):
                    raise RuntimeError(f"the benchmark workflow ended {workflow.status.value}")
                return workflow.status == WorkflowStatus.COMPLETED

            wait_until(finished, TIMEOUT, f"{jobs} jobs to complete")
            seconds = time.perf_counter() - started
            stats = dict(backend.stats, store_flushes=backend.store.stats.flushes,
                         bytes_written=backend.store.stats.bytes_written)
        finally:
            backend.stop()
            stop_processes(procs)
    return seconds, stats


# ---------------------------------------------------------------------------------------------------- raw pika
def order_parameters(jobs: int) -> dict[int, list[dict]]:
    """Job id -> the parameters of the order stepflow sends for it in the benchmark workflow: the engine's own
    (source_path and the generated destination_path, as StepFlow sends them), so both systems send the same
    bytes (the raw baseline encodes them in its timed loop, as the backend does)."""
    engine = Engine(State())
    workflow = engine.start_workflow(noop_definition(jobs), {})
    return {job_id: engine.state.jobs[job_id].parameters for job_id in workflow.step(1).job_ids}


def raw_worker(url: str, prefetch: int) -> None:
    """A raw pika worker: take orders, answer each with a completion (tx per batch), ack the batch."""
    import pika

    instance_id = uuid.uuid4().hex
    connection = pika.BlockingConnection(pika.URLParameters(url))
    consuming = connection.channel()
    consuming.basic_qos(prefetch_count=prefetch)
    publishing = connection.channel()
    publishing.tx_select()
    properties = pika.BasicProperties(content_type="application/json", delivery_mode=2)
    batch: list[tuple[int, bytes]] = []
    consuming.basic_consume(RAW_ORDERS, lambda _ch, method, _props, body: batch.append((method.delivery_tag, body)))
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    while not stop:
        connection.process_data_events(time_limit=0.05)
        if not batch:
            continue
        taken, batch[:] = list(batch), []
        started = time.monotonic()
        for _tag, body in taken:
            order = json.loads(body)
            path = order["parameters"][0]["value"]
            answer = JobCompleted(order["job_id"], execution_duration=time.monotonic() - started,
                                  destination_paths=[path], instance_id=instance_id).encode()
            publishing.basic_publish("", RAW_COMPLETED, answer, properties)
        publishing.tx_commit()
        consuming.basic_ack(taken[-1][0], multiple=True)  # in order: one worker thread
    connection.close()


def run_raw(url: str, jobs: int, workers: int, prefetch: int, publish_batch: int, window: int) -> float:
    """Seconds for ``jobs`` orders out and their completions back, with W raw worker processes."""
    import pika

    parameters = order_parameters(jobs)
    job_ids = sorted(parameters)
    connection = pika.BlockingConnection(pika.URLParameters(url))
    admin = connection.channel()
    # The orders' queue has the arguments of a job queue (the SDK's x-max-priority: a priority queue costs
    # RabbitMQ time on every message), so the ratio compares the same kind of queue.
    admin.queue_delete(RAW_ORDERS)
    admin.queue_declare(RAW_ORDERS, durable=True, arguments={"x-max-priority": 100})
    admin.queue_declare(RAW_COMPLETED, durable=True)
    procs = [subprocess.Popen([sys.executable, __file__, "--raw-worker", url, "--prefetch", str(prefetch)])
             for _ in range(workers)]
    try:
        wait_for_consumers(url, RAW_ORDERS, workers, procs)
        publishing = connection.channel()
        publishing.tx_select()
        consuming = connection.channel()
        consuming.basic_qos(prefetch_count=2 * 1000)
        received: list[int] = []
        consuming.basic_consume(RAW_COMPLETED, lambda _ch, method, _p, body: (
            json.loads(body), received.append(method.delivery_tag)))
        properties = pika.BasicProperties(content_type="application/json", delivery_mode=2)
        started = time.perf_counter()
        sent = done = 0
        while done < jobs:
            while sent < jobs and sent - done < window:
                count = min(publish_batch, jobs - sent, window - (sent - done))
                for job_id in job_ids[sent:sent + count]:
                    publishing.basic_publish("", RAW_ORDERS, JobOrder(job_id, parameters[job_id]).encode(),
                                             properties)
                publishing.tx_commit()
                sent += count
            connection.process_data_events(time_limit=0.05)
            if received:
                done += len(received)
                consuming.basic_ack(received[-1], multiple=True)
                received.clear()
        seconds = time.perf_counter() - started
    finally:
        stop_processes(procs)
        connection.close()
    return seconds


# ---------------------------------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", default="memory://", help="amqp://user:pass@host:5672/ or memory://")
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=1, help="worker processes (RabbitMQ only)")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="jobs at the same time in each worker (default: 1; in-process: the backend's 4)")
    parser.add_argument("--prefetch", type=int, default=100, help="orders each worker holds (both systems)")
    parser.add_argument("--runs", type=int, default=3, help="runs; the medians are printed")
    parser.add_argument("--no-baseline", action="store_true", help="skip the raw pika baseline")
    parser.add_argument("--raw-worker", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.raw_worker:
        raw_worker(args.raw_worker, args.prefetch)
        return
    memory = args.broker.startswith("memory:")
    defaults = BackendConfig()
    ours: list[float] = []
    raw: list[float] = []
    for run in range(1, args.runs + 1):
        if memory:
            url = f"memory://bench-{uuid.uuid4().hex[:8]}"
            seconds, stats = run_stepflow(url, args.jobs, args.workers, args.concurrency, args.prefetch)
        else:
            with fresh_vhost(args.broker) as url:
                seconds, stats = run_stepflow(url, args.jobs, args.workers, args.concurrency, args.prefetch)
        ours.append(args.jobs / seconds)
        print(f"run {run}: stepflow {args.jobs / seconds:,.0f} jobs/s ({seconds:.2f} s; "
              f"{stats['store_flushes']} flushes, {stats['bytes_written'] / 1e6:.1f} MB written)", flush=True)
        if memory or args.no_baseline:
            continue
        with fresh_vhost(args.broker) as url:
            seconds = run_raw(url, args.jobs, args.workers, args.prefetch, defaults.publish_batch, defaults.window)
        raw.append(args.jobs / seconds)
        print(f"run {run}: raw pika {args.jobs / seconds:,.0f} jobs/s ({seconds:.2f} s)", flush=True)
    print(f"throughput: {mask_url(args.broker)}, {args.jobs} jobs, "
          + ("in-process workers" if memory else f"{args.workers} worker processes")
          + f", concurrency {args.concurrency or ('default' if memory else 1)}, prefetch {args.prefetch}"
          + f", median of {args.runs} runs")
    print(f"stepflow: {median(ours):,.0f} jobs/s")
    if raw:
        print(f"raw pika: {median(raw):,.0f} jobs/s")
        print(f"ratio: {median(ours) / median(raw):.2f}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
