# ruff: noqa: UP006, UP035, UP045 - the SDK reads typing.Optional / typing.List annotations as written
"""A Media Cloud AI worker built with the real SDK (mcai-worker-sdk), run by tests/sdk as a process.

Parameters (all optional; the SDK sets no attribute for one absent from the order, or leaves the one an
earlier order set):
- ``source_path`` / ``source_paths``: each gives a destination path ``<path>.sdk``;
- ``secret``: resolved by the SDK (``"store": "BACKEND"`` fetches it from our API), returned as a destination
  path ``secret:<value>`` so that a test can see it;
- ``fail``: raise with this message;
- ``sleep_ms``: work that long, checking for a stop (progress 10 then 90).
"""

import time
from typing import List, Optional

import mcai_worker_sdk as mcai


class Parameters(mcai.WorkerParameters):
    destination_path: Optional[str]  # StepFlow (and stepflow-tui) generate one for a job with an input
    source_path: Optional[str]
    source_paths: Optional[List[str]]
    secret: Optional[str]
    fail: Optional[str]
    sleep_ms: Optional[int]


class TestWorker(mcai.Worker):
    def setup(self) -> None:
        print("ready", flush=True)

    def process(self, handle, parameters, job_id):
        def given(name):
            return getattr(parameters, name, None)

        print("process", job_id, flush=True)
        handle.publish_job_progression(10)
        if given("fail"):
            raise RuntimeError(given("fail"))
        deadline = time.monotonic() + (given("sleep_ms") or 0) / 1000
        while time.monotonic() < deadline:
            if handle.is_stopped():
                print("stopped", job_id, flush=True)
                return {"destination_paths": []}
            time.sleep(0.05)
        handle.publish_job_progression(90)
        # The SDK keeps a parameter of an earlier order when this one lacks it: the list wins when given.
        paths = list(given("source_paths") or []) or ([given("source_path")] if given("source_path") else [])
        outputs = [f"{path}.sdk" for path in paths]
        if given("secret"):
            outputs.append(f"secret:{given('secret')}")
        return {"destination_paths": outputs}


if __name__ == "__main__":
    TestWorker(Parameters, mcai.WorkerDescription(__package__)).start()
