"""The plugin API: everything a plugin needs, in one import.

    from stepflow_tui import hookimpl, JobType, JobContext, JobResult, JobCancelled

A plugin implements hooks (`stepflow_tui.hookspecs`) with ``@hookimpl``: it registers `JobType`s and worker
implementations (callables taking a `JobContext` and returning a `JobResult`, a list of paths, a dict or None;
raising `JobCancelled` when the job was cancelled, any other exception to fail the job).
"""

from __future__ import annotations

import pluggy

#: Decorator for plugin hook implementations: ``@stepflow_tui.hookimpl``.
hookimpl = pluggy.HookimplMarker("stepflow_tui")

# Imported after hookimpl: the plugin manager module reads it.
from stepflow_tui.plugins import JobType, WorkbenchCommand  # noqa: E402
from stepflow_tui.worker.context import (  # noqa: E402
    JobCancelled,
    JobContext,
    JobResult,
    WorkerImplementation,
)

__all__ = ["JobCancelled", "JobContext", "JobResult", "JobType", "WorkbenchCommand", "WorkerImplementation",
           "hookimpl"]
