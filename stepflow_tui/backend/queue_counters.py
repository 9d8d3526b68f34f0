"""Unacked counts and message totals for the queues panel, from RabbitMQ's management API when it answers.

The broker thread polls queues with passive declares, which know ready messages and consumers only. A
`CountersPoller` thread reads the management API beside it (an HTTP call must not hold up acks), and
`with_counters` completes the passive declares with its last answer; without one, unacked is unknown
(``None``, shown "?"), never a made-up 0.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Sequence

from stepflow_tui.broker.base import QueueState
from stepflow_tui.broker.management import ManagementAPI, ManagementUnavailable, QueueCounters

log = logging.getLogger("stepflow_tui.backend")

RETRY_AFTER = 60.0  # seconds before asking an API that did not answer again (the plugin may get enabled)


def with_counters(states: Sequence[QueueState], counters: dict[str, QueueCounters] | None,
                  counts_unacked: bool) -> list[QueueState]:
    """``states`` with the management API's counters; unacked unknown when neither the connection
    (``counts_unacked``: memory://) nor the API knows it."""
    if counts_unacked:
        return list(states)
    completed = []
    for state in states:
        found = counters.get(state.name) if counters is not None else None
        if not state.exists:
            completed.append(state)
        elif found is None:
            completed.append(dataclasses.replace(state, unacked=None))
        else:
            completed.append(dataclasses.replace(state, unacked=found.unacked, published=found.published,
                                                 delivered=found.delivered))
    return completed


class CountersPoller:
    """A daemon thread reading the management API every ``interval`` seconds; `latest` is its last answer
    (None while it has none, or after a failure)."""

    def __init__(self, api: ManagementAPI, interval: float, stopping: threading.Event) -> None:
        self._api = api
        self._interval = interval
        self._stopping = stopping
        self.latest: dict[str, QueueCounters] | None = None
        self._told = False  # say once that the API is missing, not every minute
        self._thread = threading.Thread(target=self._run, name="stepflow-management", daemon=True)

    def start(self) -> None:
        """Start reading."""
        self._thread.start()

    def poll_once(self) -> float:
        """One reading; returns the seconds to wait before the next."""
        try:
            self.latest = self._api.queue_counters()
        except ManagementUnavailable as exc:
            if self.latest is not None or not self._told:
                log.info("queue unacked counts unknown: RabbitMQ's management API did not answer (%s)", exc)
                self._told = True
            self.latest = None
            return RETRY_AFTER
        return self._interval

    def _run(self) -> None:
        # the stopping event's wait is the pause between readings, and ends it at once on stop
        while not self._stopping.wait(self.poll_once()):
            pass
