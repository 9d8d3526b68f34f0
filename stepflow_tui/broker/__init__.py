"""Brokers: ``memory://`` (embedded, default) and ``amqp://`` (RabbitMQ through pika)."""

from stepflow_tui.broker.base import (
    BrokerError,
    Connection,
    ConnectionLost,
    Delivery,
    OutgoingMessage,
    PublishFailed,
    QueueState,
    TopologyConflict,
    connect,
    mask_url,
)

__all__ = [
    "BrokerError",
    "Connection",
    "ConnectionLost",
    "Delivery",
    "OutgoingMessage",
    "PublishFailed",
    "QueueState",
    "TopologyConflict",
    "connect",
    "mask_url",
]
