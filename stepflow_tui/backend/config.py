"""The backend's settings."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stepflow_tui.core.definitions import WorkflowDefinition

WORK_DIRECTORY_ENV = "STEPFLOW_WORK_DIRECTORY"


@dataclass
class BackendConfig:
    broker_url: str = "memory://"  # or a RabbitMQ cluster's node URLs separated by commas
    queue_type: str = "classic"  # x-queue-type of the queues the backend owns: classic or quorum
    db_path: Path = Path("stepflow-state.json")
    definitions: dict[str, WorkflowDefinition] = field(default_factory=dict)
    registry: Any = None  # stepflow_tui.plugins.Registry: job types, worker implementations
    #: Start in-process workers for every installed job type; None = only on memory://.
    local_workers: bool | None = None
    local_concurrency: int = 4
    #: Orders each in-process worker holds per job queue; None = `LOCAL_PREFETCH` on memory:// (no other
    #: worker there to share them with), else its concurrency (RabbitMQ: leave the rest to other workers).
    local_prefetch: int | None = None
    read_only: bool = False
    #: Move unfinished workflows started on another broker to this one (else opening such a state is refused).
    move_to_broker: bool = False
    batch_size: int = 1000  # responses applied per flush
    publish_batch: int = 500  # orders per confirmed publish
    window: int = 5000  # orders sent and not finished, at most
    update_interval: float = 0.1  # seconds between coalesced updates
    queue_interval: float = 1.0  # seconds between queue state polls
    worker_status_interval: float = 5.0
    clock: Callable[[], str] | None = None
    #: The workers' work directory (StepFlow's ``workers_work_directory``): the base of generated
    #: ``destination_path``s and the ``work_directory`` variable of steps without ``work_dir``.
    work_directory: str = field(default_factory=lambda: os.environ.get(WORK_DIRECTORY_ENV, ""))
