"""The backend's interface: everything the TUI may import, and nothing it has to reach deeper for.

`stepflow_tui.tui` imports from here (and `stepflow_tui.backend.views`) only, never from ``broker``, ``core`` or
``ops``: the backend protocol, the views it hands out, and the shared vocabulary (queue names, status sets)
re-exported from the one module that defines each. `Backend` itself stays in `stepflow_tui.backend.backend`.
"""

from stepflow_tui.backend.interface import WorkbenchBackend
from stepflow_tui.backend.views import JobView, StepStats, StepView, Update, WorkerView, WorkflowView
from stepflow_tui.broker import topology
from stepflow_tui.broker.base import QueueState, mask_url
from stepflow_tui.broker.topology import JOB_DEAD_LETTER, JOB_QUEUE_NOT_FOUND
from stepflow_tui.core.definitions import StartParameter, WorkflowDefinition
from stepflow_tui.core.model import JOB_FINAL, WORKFLOW_FINAL, JobStatus
from stepflow_tui.ops import NO_ORIGIN, redrive_summary

#: Every job status, in the order of a job's life (what a job-status filter may ask for).
JOB_STATUSES: tuple[str, ...] = tuple(status.value for status in JobStatus)
#: The queues that catch what would otherwise be lost: unroutable orders and responses, rejected messages.
CATCH_QUEUE_NAMES: tuple[str, ...] = tuple(spec.name for spec in topology.CATCH_QUEUES)
#: The queues the backend consumes for job results (job_completed, job_error, job_progression).
RESPONSE_QUEUE_NAMES: tuple[str, ...] = tuple(topology.response_queue_names())

__all__ = [
    "CATCH_QUEUE_NAMES",
    "JOB_DEAD_LETTER",
    "JOB_FINAL",
    "JOB_QUEUE_NOT_FOUND",
    "JOB_STATUSES",
    "NO_ORIGIN",
    "RESPONSE_QUEUE_NAMES",
    "WORKFLOW_FINAL",
    "JobView",
    "QueueState",
    "StartParameter",
    "StepStats",
    "StepView",
    "Update",
    "WorkbenchBackend",
    "WorkerView",
    "WorkflowDefinition",
    "WorkflowView",
    "mask_url",
    "redrive_summary",
]
