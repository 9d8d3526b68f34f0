"""Workers: what runs jobs, in-process (embedded broker) or headless (``stepflow worker``).

``Worker`` (`stepflow_tui.worker.runner`) is a facade over the connection loop (`loop`), the execution pool
(`pool`) and the outbox of results (`outbox`); ``run_headless`` (`headless`) runs one until a signal. They are
exported here lazily because `stepflow_tui.plugins` imports `stepflow_tui.worker.context`, and the headless
entry point imports the plugins: an eager import here would make that a cycle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stepflow_tui.worker.headless import run_headless
    from stepflow_tui.worker.runner import Worker

__all__ = ["Worker", "run_headless"]


def __getattr__(name: str) -> Any:
    if name == "Worker":
        from stepflow_tui.worker.runner import Worker

        return Worker
    if name == "run_headless":
        from stepflow_tui.worker.headless import run_headless

        return run_headless
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
