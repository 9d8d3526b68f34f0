"""stepflow-tui: a terminal workbench for running workflows of jobs on workers over RabbitMQ.

Plugins import everything they need from here (see `stepflow_tui.api`)."""

__version__ = "0.1.0"

from stepflow_tui.api import (  # noqa: E402
    JobCancelled,
    JobContext,
    JobResult,
    JobType,
    WorkbenchCommand,
    WorkerImplementation,
    hookimpl,
)

__all__ = [
    "JobCancelled",
    "JobContext",
    "JobResult",
    "JobType",
    "WorkbenchCommand",
    "WorkerImplementation",
    "__version__",
    "hookimpl",
]
