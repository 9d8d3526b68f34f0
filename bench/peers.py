"""Peers: stepflow, raw pika and Celery on the same RabbitMQ, the same N no-op jobs, in the same run.

    pip install -e '.[bench]'            # installs celery
    python bench/peers.py --broker amqp://guest:guest@127.0.0.1:5672/ --jobs 5000 --runs 3

Each system runs in a fresh vhost (``rabbitmqctl add_vhost``, deleted afterwards), one after the other in
each run, with one worker process holding up to ``--prefetch`` jobs and running one at a time:

- **stepflow** and **raw pika**: exactly as ``bench/throughput.py --workers 1`` measures them.
- **celery**: a no-op task (returns its input path), ``task_acks_late``, persistent messages on durable
  queues, the ``rpc://`` result backend; one ``celery worker --pool solo`` process with
  ``worker_prefetch_multiplier`` = ``--prefetch``. This process sends the N tasks as one ``group`` and waits
  for every result: from the first send to the last result.

Medians over the runs are printed last, with the ratios (absolute figures move with the machine's load; the
ratios of systems measured in the same run are the steadier figure).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import fresh_vhost, input_path, median  # noqa: E402
from throughput import run_raw, run_stepflow, stop_processes, wait_for_consumers  # noqa: E402

from stepflow_tui.backend.backend import BackendConfig  # noqa: E402
from stepflow_tui.broker.base import mask_url  # noqa: E402

CELERY_QUEUE = "peers_noop"
TIMEOUT = 600.0


def celery_app(url: str, prefetch: int):  # noqa: ANN201 - celery is optional: no annotation to import
    """The Celery app of the benchmark: one no-op task, acks late, persistent messages, rpc results."""
    from celery import Celery

    app = Celery("stepflow_peers", broker=url, backend="rpc://")
    app.conf.update(
        task_acks_late=True,
        task_default_delivery_mode="persistent",
        task_default_queue=CELERY_QUEUE,
        worker_prefetch_multiplier=prefetch,
        worker_hijack_root_logger=False,
        result_persistent=True,
        broker_connection_retry_on_startup=True,
    )

    app.task(name="peers.noop")(noop_task)
    return app


def noop_task(path: str) -> str:
    """The no-op task: returns its input path (one module-level callable for every app of the process)."""
    return path


def celery_worker(url: str, prefetch: int) -> None:
    """Run one solo Celery worker (this is the worker process's main)."""
    app = celery_app(url, prefetch)
    app.worker_main(["worker", "--pool", "solo", "--concurrency", "1", "--loglevel", "WARNING",
                     "--without-gossip", "--without-mingle", "--without-heartbeat", "-Q", CELERY_QUEUE])


def run_celery(url: str, jobs: int, prefetch: int, log_dir: Path) -> float:
    """Seconds from sending ``jobs`` no-op tasks (one group) to having every result."""
    from celery import group

    app = celery_app(url, prefetch)
    log = open(log_dir / "celery-worker.log", "wb")  # noqa: SIM115 - closed after the process
    proc = subprocess.Popen([sys.executable, __file__, "--celery-worker", url, "--prefetch", str(prefetch)],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_consumers(url, CELERY_QUEUE, 1, [proc])
        noop = app.tasks["peers.noop"]
        started = time.perf_counter()
        result = group(noop.s(input_path(i)) for i in range(jobs)).apply_async()
        values = result.get(timeout=TIMEOUT)
        seconds = time.perf_counter() - started
        if len(values) != jobs:
            raise RuntimeError(f"celery returned {len(values)} results for {jobs} tasks")
    finally:
        stop_processes([proc])
        log.close()
        app.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--prefetch", type=int, default=100, help="jobs each worker holds (every system)")
    parser.add_argument("--runs", type=int, default=3, help="runs; the medians are printed")
    parser.add_argument("--celery-worker", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.celery_worker:
        celery_worker(args.celery_worker, args.prefetch)
        return
    try:
        import celery  # noqa: F401
    except ImportError:
        sys.exit("peers: celery is not installed; pip install -e '.[bench]'")
    import tempfile

    defaults = BackendConfig()
    rates: dict[str, list[float]] = {"stepflow": [], "raw pika": [], "celery": []}
    for run in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory(prefix="stepflow-peers-") as tmp:
            measures = {
                "stepflow": lambda url: run_stepflow(url, args.jobs, 1, 1, args.prefetch)[0],
                "raw pika": lambda url: run_raw(url, args.jobs, 1, args.prefetch, defaults.publish_batch,
                                                defaults.window),
                "celery": lambda url: run_celery(url, args.jobs, args.prefetch, Path(tmp)),
            }
            for name, measure in measures.items():
                with fresh_vhost(args.broker) as url:
                    seconds = measure(url)
                rates[name].append(args.jobs / seconds)
                print(f"run {run}: {name} {args.jobs / seconds:,.0f} jobs/s ({seconds:.2f} s)", flush=True)
    ours, raw, peer = (median(rates[name]) for name in ("stepflow", "raw pika", "celery"))
    print(f"peers: {mask_url(args.broker)}, {args.jobs} no-op jobs, 1 worker process (one job at a time, "
          f"prefetch {args.prefetch}), acks late, persistent messages; medians of {args.runs} runs; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"stepflow/raw pika {ours / raw:.2f}")
    print(f"peers: stepflow {ours:,.0f} jobs/s; raw pika {raw:,.0f} jobs/s; celery {peer:,.0f} jobs/s; "
          f"stepflow/celery {ours / peer:.1f}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
