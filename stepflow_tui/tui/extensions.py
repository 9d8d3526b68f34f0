"""What plugins add to the workbench (`register_output_renderers`, `register_job_columns`, `register_commands`
in `stepflow_tui.hookspecs`), as the app receives it: plain callables, so the workbench needs no import of the
plugin machinery."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class WorkbenchExtensions:
    #: job type -> ``render(record)``: a string or a Rich renderable for the job's detail.
    renderers: dict[str, Callable[[dict[str, Any]], Any]] = field(default_factory=dict)
    #: column name -> ``value(job_view)``: a short string appended to job lines.
    columns: dict[str, Callable[[Any], str | None]] = field(default_factory=dict)
    #: objects with ``name``, ``help`` and ``run(selection) -> str | None`` (`stepflow_tui.WorkbenchCommand`).
    commands: tuple[Any, ...] = ()

    @classmethod
    def from_registry(cls, registry: Any) -> WorkbenchExtensions:
        """The extensions of a plugin registry (`stepflow_tui.plugins.Registry`)."""
        return cls(dict(registry.output_renderers), dict(registry.job_columns), tuple(registry.commands))
