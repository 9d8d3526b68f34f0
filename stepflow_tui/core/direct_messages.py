"""Direct messages, backend -> worker on ``direct_messaging`` (headers ``instance_id`` or ``broadcast``), in the
variants Media Cloud AI's SDK reads. Part of `stepflow_tui.core.protocol`'s vocabulary (re-exported there)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stepflow_tui.core.protocol import (
    _BLACK_LIST_TYPES,
    LEGACY_DIRECT_TYPES,
    STOP_PROCESS,
    ProtocolError,
    _dumps,
    _is_int,
    _job_id,
    _kind,
    _loads,
)


@dataclass
class DirectMessage:
    """backend -> worker, on ``direct_messaging`` (headers ``instance_id``, or ``broadcast`` = "true"): ``type``
    is one of the SDK's variants: STOP_PROCESS (``job_id``; ``"parameters": []`` on the wire, which the SDK
    requires), ADD_TO_BLACK_LIST / DELETE_FROM_BLACK_LIST (one ``job_id`` a message, as the SDK reads them;
    `black_list` builds them), STATUS_REQUEST, STOP_CONSUMING_JOBS, RESUME_CONSUMING_JOBS, STOP_WORKER.
    Decoded, ``job_ids`` holds the black-list ids (our old ``drop_jobs`` carried several)."""

    type: str
    job_id: int | None = None
    job_ids: list[int] = field(default_factory=list)

    def encode(self) -> bytes:
        data: dict[str, Any] = {"type": self.type}
        job_id = self.job_id if self.job_id is not None or self.type not in _BLACK_LIST_TYPES else (
            self.job_ids[0] if self.job_ids else None)
        if job_id is not None:
            data["job_id"] = job_id
        if self.type == STOP_PROCESS:
            data["parameters"] = []
        if self.type in _BLACK_LIST_TYPES and len(self.job_ids) > 1:
            data["job_ids"] = self.job_ids  # ours read them all (one message to a new worker)
        return _dumps(data)


def black_list(kind: str, job_ids: list[int]) -> list[DirectMessage]:
    """ADD_TO_BLACK_LIST / DELETE_FROM_BLACK_LIST for these job ids: one message each."""
    return [DirectMessage(kind, job_id=job_id, job_ids=[job_id]) for job_id in job_ids]


def decode_direct(body: bytes) -> DirectMessage:
    """Parse a direct message; the names of `LEGACY_DIRECT_TYPES` are read as the SDK's. A black-list message
    gives its ids in ``job_ids`` (from ``job_id``, or the ``job_ids`` array of our old ``drop_jobs``; ids that
    are not integers are left out); a STOP_PROCESS without an integer ``job_id`` is a ProtocolError. Other
    types come back as they are (the caller ignores what it does not know)."""
    data = _loads(body)
    kind = data.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(f"direct message needs a string type, got {_kind(kind)}")
    kind = LEGACY_DIRECT_TYPES.get(kind, kind)
    if kind == STOP_PROCESS:
        return DirectMessage(kind, job_id=_job_id(data))
    if kind in _BLACK_LIST_TYPES:
        ids = data.get("job_ids", [])
        if "job_id" in data and not ids:
            ids = [_job_id(data)]
        elif not isinstance(ids, list) or not ids:
            raise ProtocolError(f"{kind} needs a job_id, got {_kind(data.get('job_id'))}")
        return DirectMessage(kind, job_ids=[i for i in ids if _is_int(i)])
    return DirectMessage(kind)
