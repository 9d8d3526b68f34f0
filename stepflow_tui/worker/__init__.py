"""Workers: what runs jobs, in-process (embedded broker) or headless (``stepflow worker``).

``Worker`` and ``run_headless`` live in `stepflow_tui.worker.runner`; they are exported here lazily because
`stepflow_tui.plugins` imports `stepflow_tui.worker.context`, and the runner imports the plugins: an eager
import here would make that a cycle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stepflow_tui.worker.runner import Worker, run_headless

__all__ = ["Worker", "run_headless"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from stepflow_tui.worker import runner

        return getattr(runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
