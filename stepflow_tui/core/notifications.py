"""Notifications due: webhook calls the engine asks for, which the backend sends (core does no I/O).

Two sources, as StepFlow: a ``notification`` step (one job whose parameters ``url``, ``method``, ``body``,
``headers`` say what to send; its result completes or fails that job), and the workflow's
``notification_hooks`` (``{label, endpoint, conditions}``: a POST to ``endpoint`` on each event whose name is
true in ``conditions``; a hook that fails is only shown, it never changes the workflow).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stepflow_tui.core.definitions.model import NOTIFICATION

#: The events a notification hook may ask for in its ``conditions``.
HOOK_EVENTS = ("job_completed", "job_error", "workflow_completed", "workflow_error")
NOTIFICATION_MODE = NOTIFICATION


@dataclass(frozen=True)
class Notification:
    """One HTTP call to make. ``job_id`` is set for a notification step's job (its result is reported back
    to the engine); None for a hook."""

    url: str
    body: str
    workflow_id: int
    label: str
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=dict)
    job_id: int | None = None
    event: str | None = None


def hook_notifications(hooks: Sequence[Mapping[str, Any]], event: str,
                       payload: Mapping[str, Any]) -> list[Notification]:
    """The hooks' calls for ``event`` (one of `HOOK_EVENTS`), each POSTing ``payload`` with the event as JSON."""
    found = []
    body = json.dumps({"event": event, **payload}, separators=(",", ":"), default=str)
    for hook in hooks:
        conditions = hook.get("conditions")
        if isinstance(conditions, Mapping) and conditions.get(event) and hook.get("endpoint"):
            found.append(Notification(url=str(hook["endpoint"]), body=body, workflow_id=int(payload["workflow_id"]),
                                      label=str(hook.get("label") or hook["endpoint"]), event=event,
                                      headers={"Content-Type": "application/json"}))
    return found


def step_notification(parameters: Sequence[Mapping[str, Any]], *, workflow_id: int, job_id: int,
                      label: str, default_body: Mapping[str, Any]) -> Notification:
    """The call a ``notification`` step's job makes, from its rendered parameters. Raises ValueError with a
    one-line reason when they do not say where to send it or how."""
    values = {str(p.get("id")): p.get("value") for p in parameters}
    service = values.get("service")
    if service not in (None, "", "webhook"):
        raise ValueError(f"notification service {service!r} is not supported (only webhooks: give a url)")
    url = values.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValueError(f"a notification step needs a url parameter (http:// or https://), not {url!r}")
    method = str(values.get("method") or "POST").upper()
    headers_text = values.get("headers") or "{}"
    try:
        headers = json.loads(headers_text) if isinstance(headers_text, str) else headers_text
    except json.JSONDecodeError as exc:
        raise ValueError(f"headers is not a JSON object: {exc}") from None
    if not isinstance(headers, dict):
        raise ValueError("headers must be a JSON object of strings")
    body = values.get("body")
    if body is None:
        body = json.dumps(default_body, separators=(",", ":"), default=str)
        headers.setdefault("Content-Type", "application/json")
    return Notification(url=url, body=str(body), workflow_id=workflow_id, label=label, method=method,
                        headers={str(k): str(v) for k, v in headers.items()}, job_id=job_id)
