"""Errors of the state store. Each carries a one-line message for the user (what, where, what to do)."""

from __future__ import annotations


class StoreError(Exception):
    """Base class: the state store cannot be used; ``str(error)`` is a one-line user message."""


class StoreLocked(StoreError):
    """Another live owner (another process, or another Store in this one) holds the state file's lock."""

    def __init__(self, path: str, pid: int | None) -> None:
        owner = f"process {pid}" if pid else "another process"
        super().__init__(f"state file {path} is in use by {owner}; stop it or use another --db")
        self.path = path
        self.pid = pid


class StoreCorrupt(StoreError):
    """A state file cannot be read. The file is kept as it is; ``copy`` names the backup made of it."""

    def __init__(self, path: str, detail: str, copy: str | None = None) -> None:
        kept = f"; a copy was saved as {copy}" if copy else ""
        super().__init__(
            f"state file {path} is unreadable ({detail}){kept}; move it aside or use another --db"
        )
        self.path = path
        self.detail = detail
        self.copy = copy


class BrokerMismatch(StoreError):
    """The state's unfinished workflows were started on another broker than the one given (their orders, their
    workers are there); ``str(error)`` names both and how to move them."""
