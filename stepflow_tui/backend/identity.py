"""The broker a state belongs to: unfinished workflows stay on the broker they were started on (their orders
wait in its queues, its workers run them), unless the operator moves them."""

from __future__ import annotations

import logging
from pathlib import Path

from stepflow_tui.broker.url import InvalidBrokerURL, parse_broker_url
from stepflow_tui.core.model import WORKFLOW_FINAL, State
from stepflow_tui.store import BrokerMismatch

log = logging.getLogger("stepflow_tui.backend")


def broker_identity(url: str) -> str:
    """``scheme://host:port/vhost`` of ``url``, without credentials or options; every ``memory://`` is one."""
    try:
        address = parse_broker_url(url)
    except InvalidBrokerURL:
        return url  # connecting reports it; never printed (the URL may hold a password)
    return "memory://" if address.scheme == "memory" else address.identity()


def claim_broker(state: State, url: str, path: Path, *, move: bool) -> bool:
    """Tie ``state`` to the broker of ``url``. Raises `BrokerMismatch` when unfinished workflows were started on
    another broker, unless ``move``: then they are moved, and True is returned (their orders sent so far are on
    the other broker: they must be sent again)."""
    identity = broker_identity(url)
    if state.broker == identity:
        return False
    unfinished = sorted(wf_id for wf_id, workflow in state.workflows.items()
                        if workflow.status not in WORKFLOW_FINAL)
    if state.broker is not None and unfinished:
        listed = ", ".join(f"#{wf_id}" for wf_id in unfinished[:5]) + (", …" if len(unfinished) > 5 else "")
        if not move:
            raise BrokerMismatch(
                f"state file {path}: {len(unfinished)} unfinished workflow(s) ({listed}) were started on "
                f"{state.broker}, not on {identity}: use --broker for {state.broker}, or --move-to-broker to "
                f"move them to {identity} (their orders still queued there stay there)")
        log.warning("moved %d unfinished workflow(s) (%s) from %s to %s", len(unfinished), listed, state.broker,
                    identity)
    moved = state.broker is not None and bool(unfinished)
    state.broker = identity
    state.dirty_meta = True
    return moved
