"""THE one place for exchange and queue names, their types and arguments.

The topology is data (`ExchangeSpec` / `QueueSpec` with their `Binding`s) so that the embedded broker
(`memory.py`) and RabbitMQ (`amqp.py`) declare exactly the same thing from the same table. RabbitMQ refuses a
re-declaration with different arguments (PRECONDITION_FAILED), so nobody may spell an argument anywhere else.

Layout (see docs/broker.md):

- ``job_submit`` (topic, alternate exchange ``job_queue_not_found``) -> ``job_<type>`` queues (workers declare
  them); an order for a type no worker declared lands in the fanout ``job_queue_not_found`` and its queue.
- ``job_response`` (topic, alternate exchange ``job_response_not_found``) -> ``job_completed``, ``job_error``,
  ``job_progression``; anything else lands in the fanout ``job_response_not_found`` and its queue.
- ``worker_response`` (topic) -> ``worker_discovery``, ``worker_status``.
- ``direct_messaging`` (headers) -> one auto-delete ``direct_messaging_<instance_id>`` queue per worker.
- ``job_dead_letter`` (topic) -> ``job_dead_letter`` (bound with ``#``): the dead-letter exchange of the job
  queues and the response queues, so a rejected message stays visible with ``x-death`` naming its queue.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

# Exchanges.
JOB_SUBMIT = "job_submit"
JOB_QUEUE_NOT_FOUND = "job_queue_not_found"  # exchange and queue
JOB_RESPONSE = "job_response"
JOB_RESPONSE_NOT_FOUND = "job_response_not_found"  # exchange and queue
WORKER_RESPONSE = "worker_response"
DIRECT_MESSAGING = "direct_messaging"
JOB_DEAD_LETTER = "job_dead_letter"  # exchange and queue

# Queues (and their routing keys).
JOB_COMPLETED = "job_completed"
JOB_ERROR = "job_error"
JOB_PROGRESSION = "job_progression"
WORKER_DISCOVERY = "worker_discovery"
WORKER_STATUS = "worker_status"

JOB_QUEUE_PREFIX = "job_"
DIRECT_QUEUE_PREFIX = "direct_messaging_"

TOPIC = "topic"
FANOUT = "fanout"
HEADERS = "headers"


@dataclass(frozen=True, slots=True)
class ExchangeSpec:
    """One exchange: name, type (``topic`` / ``fanout`` / ``headers``), durability and arguments."""

    name: str
    type: str
    durable: bool = True
    arguments: dict[str, Any] = field(default_factory=dict)

    @property
    def alternate_exchange(self) -> str | None:
        """Where messages that route to no queue go, or None."""
        return self.arguments.get("alternate-exchange")


@dataclass(frozen=True, slots=True)
class Binding:
    """A queue's binding to an exchange: a routing key (topic patterns ``*`` / ``#``) or, for a headers
    exchange, the header arguments (``x-match`` any/all)."""

    exchange: str
    routing_key: str = ""
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """One queue with its arguments and bindings."""

    name: str
    durable: bool = True
    auto_delete: bool = False
    exclusive: bool = False
    arguments: dict[str, Any] = field(default_factory=dict)
    bindings: tuple[Binding, ...] = ()

    @property
    def dead_letter_exchange(self) -> str | None:
        """The exchange a rejected (requeue=False) message is republished to, or None."""
        return self.arguments.get("x-dead-letter-exchange")


# Arguments shared by every queue whose rejected messages must stay visible.
DEAD_LETTER_ARGUMENTS: dict[str, Any] = {"x-dead-letter-exchange": JOB_DEAD_LETTER}

# Alternate exchanges come first only for readability: RabbitMQ accepts an alternate-exchange argument naming an
# exchange that does not exist yet.
EXCHANGES: tuple[ExchangeSpec, ...] = (
    ExchangeSpec(JOB_QUEUE_NOT_FOUND, FANOUT),
    ExchangeSpec(JOB_SUBMIT, TOPIC, arguments={"alternate-exchange": JOB_QUEUE_NOT_FOUND}),
    ExchangeSpec(JOB_RESPONSE_NOT_FOUND, FANOUT),
    ExchangeSpec(JOB_RESPONSE, TOPIC, arguments={"alternate-exchange": JOB_RESPONSE_NOT_FOUND}),
    ExchangeSpec(WORKER_RESPONSE, TOPIC),
    ExchangeSpec(DIRECT_MESSAGING, HEADERS),
    ExchangeSpec(JOB_DEAD_LETTER, TOPIC),
)
EXCHANGES_BY_NAME: dict[str, ExchangeSpec] = {spec.name: spec for spec in EXCHANGES}

# The queues that catch what would otherwise be lost: unknown job types, unknown responses, rejected messages.
CATCH_QUEUES: tuple[QueueSpec, ...] = (
    QueueSpec(JOB_QUEUE_NOT_FOUND, bindings=(Binding(JOB_QUEUE_NOT_FOUND),)),
    QueueSpec(JOB_RESPONSE_NOT_FOUND, bindings=(Binding(JOB_RESPONSE_NOT_FOUND),)),
    QueueSpec(JOB_DEAD_LETTER, bindings=(Binding(JOB_DEAD_LETTER, "#"),)),
)

RESPONSE_QUEUES: tuple[QueueSpec, ...] = tuple(
    QueueSpec(name, arguments=dict(DEAD_LETTER_ARGUMENTS), bindings=(Binding(JOB_RESPONSE, name),))
    for name in (JOB_COMPLETED, JOB_ERROR, JOB_PROGRESSION)
)

WORKER_QUEUES: tuple[QueueSpec, ...] = tuple(
    QueueSpec(name, bindings=(Binding(WORKER_RESPONSE, name),)) for name in (WORKER_DISCOVERY, WORKER_STATUS)
)

#: What `Connection.declare_backend_topology` declares: every exchange and every queue except job / direct queues.
BACKEND_QUEUES: tuple[QueueSpec, ...] = CATCH_QUEUES + RESPONSE_QUEUES + WORKER_QUEUES


def job_queue(job_type: str) -> str:
    """The queue (= routing key) of a job type: ``transfer`` -> ``job_transfer``; ``job_transfer`` stays as is
    (a StepFlow step name already carries the prefix)."""
    if not job_type:
        raise ValueError("empty job type")
    return job_type if job_type.startswith(JOB_QUEUE_PREFIX) else JOB_QUEUE_PREFIX + job_type


def with_queue_type(queues: Sequence[QueueSpec], queue_type: str) -> tuple[QueueSpec, ...]:
    """``queues`` with ``x-queue-type`` set on the durable ones when ``queue_type`` is ``quorum`` (replicated on
    a cluster); unchanged for ``classic`` (no argument: what the SDK and earlier versions declared). Job queues
    are never passed here: they keep the SDK's arguments. Auto-delete or exclusive queues cannot be quorum."""
    if queue_type == "classic":
        return tuple(queues)
    return tuple(
        replace(q, arguments={**q.arguments, "x-queue-type": queue_type})
        if q.durable and not (q.auto_delete or q.exclusive) else q
        for q in queues
    )


def job_type_of(queue: str) -> str:
    """The job type of a job queue: ``job_transfer`` -> ``transfer`` (the inverse of `job_queue`)."""
    return queue[len(JOB_QUEUE_PREFIX) :] if queue.startswith(JOB_QUEUE_PREFIX) else queue


def job_queue_spec(job_type: str) -> QueueSpec:
    """The durable ``job_<type>`` queue, dead-lettered to ``job_dead_letter``, bound to ``job_submit`` by its
    own name."""
    name = job_queue(job_type)
    return QueueSpec(name, arguments=dict(DEAD_LETTER_ARGUMENTS), bindings=(Binding(JOB_SUBMIT, name),))


def worker_topology(job_type: str, queue_type: str = "classic") -> tuple[tuple[ExchangeSpec, ...],
                                                                       tuple[QueueSpec, ...]]:
    """What `Connection.declare_job_queue` declares, so a worker may start before any backend: every exchange
    (a worker publishes to ``job_response`` and ``worker_response``; publishing to a missing exchange is an
    error in RabbitMQ), the catch queues (a response or a dead letter produced before the backend exists is
    kept, never dropped; of ``queue_type``, as the backend declares them) and the job queue itself."""
    return EXCHANGES, with_queue_type(CATCH_QUEUES, queue_type) + (job_queue_spec(job_type),)


def direct_queue(instance_id: str) -> str:
    """The per-worker queue name ``direct_messaging_<instance_id>``."""
    return DIRECT_QUEUE_PREFIX + instance_id


def direct_queue_spec(instance_id: str, job_types: Sequence[str]) -> QueueSpec:
    """The auto-delete queue of one worker on ``direct_messaging`` (headers): it receives messages whose headers
    carry ``instance_id`` = this id, or ``broadcast`` = true, or ``job_type`` = one of ``job_types`` (as given:
    one binding each, because a headers binding matches one value per header)."""
    bindings = [
        Binding(DIRECT_MESSAGING, arguments={"x-match": "any", "instance_id": instance_id, "broadcast": True})
    ]
    bindings += [Binding(DIRECT_MESSAGING, arguments={"x-match": "all", "job_type": t}) for t in job_types]
    return QueueSpec(direct_queue(instance_id), durable=False, auto_delete=True, bindings=tuple(bindings))


def response_queue_names() -> list[str]:
    """The queues the backend consumes for job results: ``job_completed``, ``job_error``, ``job_progression``."""
    return [spec.name for spec in RESPONSE_QUEUES]


def system_queue_names() -> list[str]:
    """Every queue of the backend topology that is not a job queue, for ``stepflow queues`` and the queue panel:
    the response queues, the worker queues, and the catch queues (not found, dead letters)."""
    return [spec.name for spec in RESPONSE_QUEUES + WORKER_QUEUES + CATCH_QUEUES]
