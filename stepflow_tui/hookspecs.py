"""The plugin hooks of stepflow-tui (pluggy project name ``stepflow_tui``).

Each hook receives a ``register`` callback rather than returning a list, so the registry can validate what a
plugin gives, name conflicts and attribute errors to the plugin. A plugin implements any subset of them with
``@stepflow_tui.hookimpl``. docs/plugins.md documents every hook here (a test checks it).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from stepflow_tui.plugins import JobType, WorkbenchCommand
    from stepflow_tui.worker.context import WorkerImplementation

hookspec = pluggy.HookspecMarker("stepflow_tui")


@hookspec
def register_job_types(register: Callable[[JobType], None]) -> None:
    """Declare job types: call ``register(JobType(name=..., label=..., description=..., parameters=...))``.

    ``name`` must match ``^[a-z0-9_]+$`` (a leading ``job_`` is stripped); the job queue is ``job_<name>``.
    ``parameters`` is a JSON schema of the order's parameters, shown to operators and announced by workers.
    """


@hookspec
def register_workers(register: Callable[[str, WorkerImplementation], None]) -> None:
    """Provide worker implementations: call ``register(job_type_name, implementation)``.

    ``implementation(ctx: JobContext)`` runs one job and returns ``None``, a list of destination paths, a dict
    ``{"destination_paths": [...], "outputs": {...}}`` or a ``JobResult``; it raises to fail the job.
    """


@hookspec
def register_workflows(register: Callable[[str | Path | dict[str, Any] | list[Any]], None]) -> None:
    """Ship workflow definitions: call ``register(path_to_workflows_json)`` or ``register(parsed_json)``.

    A path should be absolute (for instance ``Path(__file__).with_name("workflows.json")``); parsed JSON is
    a definition dict or a list of them. They are validated when the backend loads definitions.
    """


@hookspec
def register_output_renderers(register: Callable[[str, Callable[[dict[str, Any]], Any]], None]) -> None:
    """Show a job type's outputs your way in the workbench: call ``register(job_type_name, render)``.

    ``render(record)`` gets the job's full record (``outputs``, ``destination_paths``, ``parameters``...) and
    returns a string or a Rich renderable, shown in the job's detail; it runs on the UI thread, so it must be
    quick, and what it raises is shown instead of its output.
    """


@hookspec
def register_job_columns(register: Callable[[str, Callable[[Any], str | None]], None]) -> None:
    """Add a column to the workbench's job lines: call ``register(column_name, value)``.

    ``value(job)`` gets the line's `JobView` (id, status, progress, input, worker, duration...) and returns a
    short string (None or "" for nothing); it runs for every line drawn, so it must be quick.
    """


@hookspec
def register_commands(register: Callable[[WorkbenchCommand], None]) -> None:
    """Add commands to the workbench's command palette: call ``register(WorkbenchCommand(name, help, run))``.

    ``run(selection)`` gets ``{"workflow_id", "step_id", "job_id"}`` of the selected line (None where it does not
    apply) and returns a message for the operator (or None); it runs on a thread of its own.
    """
