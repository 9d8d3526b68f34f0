"""The definition data classes and errors (what the rest of stepflow-tui reads)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ONE_FOR_ONE = "one_for_one"
ONE_FOR_MANY = "one_for_many"
NOTIFICATION = "notification"  # a step that calls a webhook instead of sending an order
START_PARAMETER_TYPES = ("string", "number", "choice", "file")


class DefinitionError(ValueError):
    """A workflow definition is malformed. ``str(error)`` is a one-line message fit for a user."""

    def __init__(self, message: str, *, source: str | None = None, workflow: str | None = None,
                 field_path: str | None = None) -> None:
        self.source = source
        self.workflow = workflow
        self.field_path = field_path
        self.detail = message
        where = []
        if source:
            where.append(source)
        if workflow:
            where.append(f"workflow {workflow!r}")
        if field_path:
            where.append(f"field {field_path!r}")
        super().__init__(f"{': '.join(where)}: {message}" if where else message)


class StartParameterError(ValueError):
    """Start parameters given to a workflow are missing or invalid (message names workflow and parameter)."""


@dataclass(frozen=True)
class StartParameter:
    id: str
    label: str
    type: str = "string"  # string | number | choice | file
    default: Any = None
    required: bool = False
    items: tuple[Any, ...] = ()  # allowed values for ``choice`` (StepFlow's item ids)
    item_labels: tuple[str, ...] = ()  # their labels when given as [{"id", "label"}]; () means the ids


@dataclass(frozen=True)
class StepDefinition:
    id: int
    name: str  # job type; a leading ``job_`` is stripped on load (``job_transfer`` == ``transfer``)
    label: str
    parent_ids: tuple[int, ...] = ()
    required_to_start: tuple[int, ...] = ()  # defaults to parent_ids when absent
    mode: str = ONE_FOR_ONE
    parameters: tuple[dict[str, Any], ...] = ()  # [{"id", "type", "value"?, "default"?, "store"?}]
    max_retries: int = 0
    retry_delay: float = 0.0
    timeout: float | None = None
    icon: str | None = None
    condition: str | None = None  # a safe expression (core.expressions); false skips the step
    multiple_jobs: str | None = None  # the workflow parameter holding the media segments to fan out over
    allow_failure: bool = False
    skip_destination_path: bool = False
    work_dir: str | None = None

    @property
    def queue(self) -> str:
        return f"job_{self.name}"


#: The keys of a workflow's version, most significant first.
VERSION_KEYS = ("version_major", "version_minor", "version_micro")


@dataclass(frozen=True)
class WorkflowDefinition:
    identifier: str
    label: str
    version_major: int = 0
    version_minor: int = 0
    version_micro: int = 1
    version_parts: int = 3  # how many of major/minor/micro the JSON gave (up to the last one given)
    tags: tuple[str, ...] = ()
    start_parameters: tuple[StartParameter, ...] = ()
    steps: tuple[StepDefinition, ...] = ()
    source: str = ""  # where it was loaded from (file path or ``plugin:<name>``)
    raw: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)  # the JSON as given
    schema_version: str | None = None
    icon: str | None = None
    reference: str | None = None
    parameters: tuple[dict[str, Any], ...] = ()  # the workflow's runtime variables, with their defaults
    notification_hooks: tuple[dict[str, Any], ...] = ()

    @property
    def version(self) -> str:
        """The version as the definition states it: ``version_major: 1`` alone is ``1``, not ``1.0.1``."""
        parts = (self.version_major, self.version_minor, self.version_micro)
        return ".".join(str(part) for part in parts[:self.version_parts or 3])

    def step(self, step_id: int) -> StepDefinition:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)
