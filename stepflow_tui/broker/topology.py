"""THE one place for exchange and queue names, their types and arguments.

The topology is data (`ExchangeSpec` / `QueueSpec` with their `Binding`s) so that the embedded broker
(`memory.py`) and RabbitMQ (`amqp.py`) declare exactly the same thing from the same table. RabbitMQ refuses a
re-declaration with different arguments (PRECONDITION_FAILED), so nobody may spell an argument anywhere else.

The layout is the one Media Cloud AI's worker SDK declares, argument for argument, so that an SDK worker and
this project share a vhost in either start order (docs/broker.md has the table):

- ``job_submit`` (topic, alternate exchange ``job_queue_not_found``) -> ``job_<type>`` queues (workers declare
  them); an order for a type no worker declared lands in the fanout ``job_queue_not_found`` and its queue.
- ``job_response`` (topic, alternate ``job_response_not_found``) -> ``job_completed``, ``job_error``,
  ``job_progression``, ``job_stopped``, ``worker_discovery`` (the SDK announces itself there too).
- ``worker_response`` (topic, alternate ``worker_response_not_found``) -> ``worker_discovery``
  (``worker_created``), ``worker_status`` (``worker_status``, ``worker_terminated``).
- ``direct_messaging`` (headers, alternate ``direct_messaging_not_found``) -> one ``direct_messaging_<id>``
  queue per worker.
- ``job_delayed`` (fanout): the dead-letter exchange of the job queues; its queue sends a rejected order back
  after 5 s, and ``job_rejected`` (ours) keeps a copy so the backend sees every rejection.
- ``job_dead_letter`` (topic) -> ``job_dead_letter``: where a message rejected for good stays visible (the
  response queues dead-letter there; a worker puts a poison order there itself, `Connection.dead_letter`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

# Exchanges (the SDK's names; see docs/broker.md for who declares what).
JOB_SUBMIT = "job_submit"
JOB_QUEUE_NOT_FOUND = "job_queue_not_found"  # exchange and queue
JOB_RESPONSE = "job_response"
JOB_RESPONSE_NOT_FOUND = "job_response_not_found"  # exchange and queue
WORKER_RESPONSE = "worker_response"
WORKER_RESPONSE_NOT_FOUND = "worker_response_not_found"  # exchange and queue
DIRECT_MESSAGING = "direct_messaging"
DIRECT_MESSAGING_NOT_FOUND = "direct_messaging_not_found"  # exchange and queue
JOB_DELAYED = "job_delayed"  # exchange and queue: a rejected order comes back after DELAY_MS
JOB_RESPONSE_DELAYED = "job_response_delayed"  # the SDK's dead-letter exchange of worker_discovery
JOB_DEAD_LETTER = "job_dead_letter"  # exchange and queue

# Queues (and their routing keys).
JOB_COMPLETED = "job_completed"
JOB_ERROR = "job_error"
JOB_PROGRESSION = "job_progression"
JOB_STOPPED = "job_stopped"
WORKER_DISCOVERY = "worker_discovery"
WORKER_CREATED = "worker_created"  # routing key of the SDK's announce on worker_response
WORKER_STATUS = "worker_status"
WORKER_TERMINATED = "worker_terminated"  # routing key, into the worker_status queue
JOB_REJECTED = "job_rejected"  # ours: a copy of every order a worker rejected (through job_delayed)

JOB_QUEUE_PREFIX = "job_"
DIRECT_QUEUE_PREFIX = "direct_messaging_"
#: How long a rejected order waits in ``job_delayed`` before it is back in its job queue (the SDK's value).
DELAY_MS = 5000
#: The SDK's ``x-max-priority`` of a job queue.
MAX_PRIORITY = 100

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


# Arguments shared by every queue of ours whose rejected messages must stay visible.
DEAD_LETTER_ARGUMENTS: dict[str, Any] = {"x-dead-letter-exchange": JOB_DEAD_LETTER}
# The fanout exchanges' binding key, as the SDK binds job_delayed (a fanout ignores it).
FANOUT_KEY = "*"

# Alternate exchanges come first only for readability: RabbitMQ accepts an alternate-exchange argument naming an
# exchange that does not exist yet. The four main exchanges carry exactly the SDK's arguments.
EXCHANGES: tuple[ExchangeSpec, ...] = (
    ExchangeSpec(JOB_QUEUE_NOT_FOUND, FANOUT),
    ExchangeSpec(JOB_SUBMIT, TOPIC, arguments={"alternate-exchange": JOB_QUEUE_NOT_FOUND}),
    ExchangeSpec(JOB_RESPONSE_NOT_FOUND, FANOUT),
    ExchangeSpec(JOB_RESPONSE, TOPIC, arguments={"alternate-exchange": JOB_RESPONSE_NOT_FOUND}),
    ExchangeSpec(WORKER_RESPONSE_NOT_FOUND, FANOUT),
    ExchangeSpec(WORKER_RESPONSE, TOPIC, arguments={"alternate-exchange": WORKER_RESPONSE_NOT_FOUND}),
    ExchangeSpec(DIRECT_MESSAGING_NOT_FOUND, FANOUT),
    ExchangeSpec(DIRECT_MESSAGING, HEADERS, arguments={"alternate-exchange": DIRECT_MESSAGING_NOT_FOUND}),
    ExchangeSpec(JOB_DELAYED, FANOUT),
    ExchangeSpec(JOB_RESPONSE_DELAYED, FANOUT),
    ExchangeSpec(JOB_DEAD_LETTER, TOPIC),
)
EXCHANGES_BY_NAME: dict[str, ExchangeSpec] = {spec.name: spec for spec in EXCHANGES}

#: The SDK's ``job_delayed`` queue: a rejected order waits DELAY_MS, then the default exchange takes it back to
#: its job queue (its routing key is the job queue's name).
JOB_DELAYED_QUEUE = QueueSpec(
    JOB_DELAYED,
    arguments={"x-dead-letter-exchange": "", "x-message-ttl": DELAY_MS},
    bindings=(Binding(JOB_DELAYED, FANOUT_KEY),),
)

# The queues that catch what would otherwise be lost: unknown job types, unknown responses and worker messages,
# direct messages to nobody, rejected orders (a copy, beside job_delayed's), rejected messages for good
# (job_dead_letter, also where a rejected discovery message goes).
CATCH_QUEUES: tuple[QueueSpec, ...] = (
    QueueSpec(JOB_QUEUE_NOT_FOUND, bindings=(Binding(JOB_QUEUE_NOT_FOUND, FANOUT_KEY),)),
    QueueSpec(JOB_RESPONSE_NOT_FOUND, bindings=(Binding(JOB_RESPONSE_NOT_FOUND, FANOUT_KEY),)),
    QueueSpec(WORKER_RESPONSE_NOT_FOUND, bindings=(Binding(WORKER_RESPONSE_NOT_FOUND, FANOUT_KEY),)),
    QueueSpec(DIRECT_MESSAGING_NOT_FOUND, bindings=(Binding(DIRECT_MESSAGING_NOT_FOUND, FANOUT_KEY),)),
    JOB_DELAYED_QUEUE,
    QueueSpec(JOB_REJECTED, bindings=(Binding(JOB_DELAYED, FANOUT_KEY),)),
    QueueSpec(JOB_DEAD_LETTER, bindings=(Binding(JOB_DEAD_LETTER, "#"), Binding(JOB_RESPONSE_DELAYED, FANOUT_KEY))),
)

RESPONSE_QUEUES: tuple[QueueSpec, ...] = tuple(
    QueueSpec(name, arguments=dict(DEAD_LETTER_ARGUMENTS), bindings=(Binding(JOB_RESPONSE, name),))
    for name in (JOB_COMPLETED, JOB_ERROR, JOB_PROGRESSION)
)
#: The SDK's answer to a stop_process (a job_completed body): consumed beside the response queues.
JOB_STOPPED_QUEUE = QueueSpec(JOB_STOPPED, arguments=dict(DEAD_LETTER_ARGUMENTS),
                              bindings=(Binding(JOB_RESPONSE, JOB_STOPPED),))

#: The SDK declares ``worker_discovery`` itself, with these arguments, and announces itself on two routes.
WORKER_DISCOVERY_QUEUE = QueueSpec(
    WORKER_DISCOVERY,
    arguments={"x-dead-letter-exchange": JOB_RESPONSE_DELAYED, "x-dead-letter-routing-key": WORKER_DISCOVERY},
    bindings=(
        Binding(JOB_RESPONSE, WORKER_DISCOVERY),
        Binding(WORKER_RESPONSE, WORKER_CREATED),
        Binding(WORKER_RESPONSE, WORKER_DISCOVERY),  # stepflow-tui workers before the SDK's protocol
    ),
)

WORKER_QUEUES: tuple[QueueSpec, ...] = (
    WORKER_DISCOVERY_QUEUE,
    QueueSpec(WORKER_STATUS, bindings=(Binding(WORKER_RESPONSE, WORKER_STATUS),
                                       Binding(WORKER_RESPONSE, WORKER_TERMINATED))),
)

#: What `Connection.declare_backend_topology` declares: every exchange and every queue except job / direct queues.
BACKEND_QUEUES: tuple[QueueSpec, ...] = CATCH_QUEUES + RESPONSE_QUEUES + (JOB_STOPPED_QUEUE,) + WORKER_QUEUES


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
    """The durable ``job_<type>`` queue exactly as the SDK declares it (so an SDK worker and ours can serve one
    job type): a rejected order goes to ``job_delayed`` (and, a copy, to ``job_rejected``) and comes back after
    DELAY_MS; bound to ``job_submit`` by its own name."""
    name = job_queue(job_type)
    arguments = {"x-dead-letter-exchange": JOB_DELAYED, "x-dead-letter-routing-key": name,
                 "x-max-priority": MAX_PRIORITY}
    return QueueSpec(name, arguments=arguments, bindings=(Binding(JOB_SUBMIT, name),))


def worker_topology(job_type: str, queue_type: str = "classic") -> tuple[tuple[ExchangeSpec, ...],
                                                                       tuple[QueueSpec, ...]]:
    """What `Connection.declare_job_queue` declares, so a worker may start before any backend: every exchange
    (a worker publishes to ``job_response`` and ``worker_response``; publishing to a missing exchange is an
    error in RabbitMQ), the catch queues (a response or a dead letter produced before the backend exists is
    kept, never dropped; of ``queue_type``, as the backend declares them) and the job queue itself."""
    return EXCHANGES, with_queue_type(CATCH_QUEUES, queue_type) + (job_queue_spec(job_type),)


#: The value of the ``broadcast`` header: a string, because the SDK binds the string (a boolean would not match).
BROADCAST = "true"


def direct_queue(instance_id: str) -> str:
    """The per-worker queue name ``direct_messaging_<instance_id>``."""
    return DIRECT_QUEUE_PREFIX + instance_id


def direct_queue_spec(instance_id: str, job_types: Sequence[str]) -> QueueSpec:
    """The auto-delete queue of one worker on ``direct_messaging`` (headers): it receives messages whose headers
    carry ``instance_id`` = this id, or ``broadcast`` = the string "true" (as the SDK binds it), or ``job_type``
    = one of ``job_types`` (as given: one binding each, because a headers binding matches one value per header)."""
    bindings = [
        Binding(DIRECT_MESSAGING, arguments={"x-match": "any", "instance_id": instance_id, "broadcast": BROADCAST}),
        # An earlier stepflow-tui backend broadcast a boolean: ours still hear it.
        Binding(DIRECT_MESSAGING, arguments={"x-match": "all", "broadcast": True}),
    ]
    bindings += [Binding(DIRECT_MESSAGING, arguments={"x-match": "all", "job_type": t}) for t in job_types]
    return QueueSpec(direct_queue(instance_id), durable=False, auto_delete=True, bindings=tuple(bindings))


def direct_topology(spec: QueueSpec) -> tuple[tuple[ExchangeSpec, ...], tuple[QueueSpec, ...]]:
    """What `Connection.declare_direct_queue` declares: ``direct_messaging``, its alternate exchange and queue
    (a direct message to nobody is kept there), and the worker's direct queue ``spec``."""
    catch = next(q for q in CATCH_QUEUES if q.name == DIRECT_MESSAGING_NOT_FOUND)
    exchanges = (EXCHANGES_BY_NAME[DIRECT_MESSAGING_NOT_FOUND], EXCHANGES_BY_NAME[DIRECT_MESSAGING])
    return exchanges, (catch, spec)


def response_queue_names() -> list[str]:
    """StepFlow's queues of job results: ``job_completed``, ``job_error``, ``job_progression`` (the backend
    consumes `JOB_STOPPED` too)."""
    return [spec.name for spec in RESPONSE_QUEUES]


def system_queue_names() -> list[str]:
    """Every queue of the backend topology that is not a job queue, for ``stepflow queues`` and the queue panel:
    the response queues, the worker queues, and the catch queues (not found, dead letters)."""
    return [spec.name for spec in RESPONSE_QUEUES + (JOB_STOPPED_QUEUE,) + WORKER_QUEUES + CATCH_QUEUES]
