"""A worker process for the fault tests: ``python chaos_worker.py --broker URL --effects DIR [options]``.

It is the real `Worker` (``stepflow_tui.worker.runner``) with two test job types whose effects are files, so a
test can count what ran, and when:

- ``chaos``: a job of the chaos run. Its kind follows the index in its ``source_path`` (``.../0042.dat``):
  index % 20 == 7 is slow (0.2 s), index % 20 == 3 fails on its first run (then succeeds on the retry), the
  rest are fast (0.01 s). Its effect is ``<job id>.done``, created with O_CREAT|O_EXCL and holding
  "pid start_time": a second run of the same job finds it and appends "pid start_time" to ``<job id>.dup``.
- ``record``: appends "<job id>" to ``runs.log`` when it starts, then waits ``seconds`` (cancellable).

Every redelivered order this worker receives is appended (job id) to ``redelivered-<pid>.log``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from stepflow_tui.broker.base import Delivery
from stepflow_tui.worker.context import JobContext
from stepflow_tui.worker.runner import Worker

FAST, SLOW = 0.01, 0.2


def kind_of(index: int) -> str:
    """The chaos job kind of the job at ``index`` of the step (the test uses the same rule)."""
    return {7: "slow", 3: "fail_once"}.get(index % 20, "fast")


def make_implementations(effects: Path) -> dict[str, Any]:
    def chaos(ctx: JobContext) -> list[str]:
        started = time.time()
        source = str(ctx.require("source_path"))
        kind = kind_of(int(Path(source).stem))
        if kind == "fail_once":
            try:
                os.close(os.open(effects / f"{ctx.job_id}.failed", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                pass  # failed once already: succeed now
            else:
                raise RuntimeError(f"chaos: job {ctx.job_id} fails on its first run")
        ctx.wait(SLOW if kind == "slow" else FAST)
        record = f"{os.getpid()} {started:.6f}\n".encode()
        # Written whole, then linked into place: a worker SIGKILLed in between leaves no empty .done file
        # (an empty one would hide when the first run started).
        scratch = effects / f".{ctx.job_id}.{os.getpid()}.{threading.get_ident()}.tmp"
        scratch.write_bytes(record)
        try:
            os.link(scratch, effects / f"{ctx.job_id}.done")
        except FileExistsError:
            with open(effects / f"{ctx.job_id}.dup", "ab") as dup:
                dup.write(record)
        finally:
            scratch.unlink()
        return [source]

    def record(ctx: JobContext) -> None:
        with open(effects / "runs.log", "a", encoding="utf-8") as runs:
            runs.write(f"{ctx.job_id}\n")
        ctx.wait(float(ctx.param("seconds", 0)))

    return {"chaos": chaos, "record": record}


class CountingWorker(Worker):
    """Logs the job id of every redelivered order (a test figure; the runner itself only logs replays)."""

    def __init__(self, *args: Any, effects: Path, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._redelivered_log = effects / f"redelivered-{os.getpid()}.log"

    def _on_order(self, delivery: Delivery) -> None:
        if delivery.redelivered:
            try:
                job_id = json.loads(delivery.body).get("job_id")
            except ValueError:
                job_id = None
            with open(self._redelivered_log, "a", encoding="utf-8") as log:
                log.write(f"{job_id}\n")
        super()._on_order(delivery)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", required=True)
    parser.add_argument("--effects", required=True, type=Path)
    parser.add_argument("--job-type", action="append", default=None)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--prefetch", type=int, default=None)
    parser.add_argument("--status-interval", type=float, default=1.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args.effects.mkdir(parents=True, exist_ok=True)
    implementations = make_implementations(args.effects)
    worker = CountingWorker(args.broker, implementations, job_types=args.job_type or list(implementations),
                            concurrency=args.concurrency, prefetch=args.prefetch, label="chaos worker",
                            status_interval=args.status_interval, effects=args.effects)
    signal.signal(signal.SIGTERM, lambda signum, frame: worker.stop(grace=5.0))
    worker.run()
    return 2 if worker.failure is not None else 0


if __name__ == "__main__":
    sys.exit(main())
