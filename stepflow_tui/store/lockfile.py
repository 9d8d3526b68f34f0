"""The lock file that makes one process (one Store) the owner of a state file.

Its content is the owner's pid on the first line and, when the owner serves the HTTP API
(`stepflow backend`), the API's URL on the second: `read_lock_info` is how a CLI or a workbench finds a
running service for the same state.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path

from .errors import StoreError, StoreLocked


class LockFile:
    """``<state>.lock``, held with ``flock(LOCK_EX | LOCK_NB)`` for the owner's life, with its pid inside.

    flock locks belong to an open file description, so a second ``LockFile`` in the same process conflicts
    too, and the kernel drops the lock when the owner dies: a stale file left by a dead process never blocks.
    The file is never deleted (unlinking lock files races with the next owner opening it).
    """

    def __init__(self, state_path: Path) -> None:
        self.state_path = state_path
        self.path = lock_path(state_path)
        self._fd: int | None = None
        self._api_url: str | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock or raise ``StoreLocked`` naming the owner's pid."""
        if self._fd is not None:
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as error:
            raise StoreError(f"cannot create lock file {self.path}: {error.strerror}") from error
        try:
            _lock_exclusive(fd)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise StoreLocked(str(self.state_path), pid) from None
        except OSError as error:
            os.close(fd)
            raise StoreError(f"cannot lock {self.path}: {error.strerror}") from error
        self._fd = fd
        self._write_content()
        with _HELD_LOCK:
            _HELD[self.path.resolve()] = self

    def set_api(self, url: str | None) -> None:
        """Record (or with None, clear) the URL of the HTTP API this owner serves. Only while held."""
        if self._fd is None:
            raise StoreError(f"{self.path} is not held by this process: cannot record the API address")
        self._api_url = url
        self._write_content()

    def _write_content(self) -> None:
        lines = f"{os.getpid()}\n" + (f"{self._api_url}\n" if self._api_url else "")
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, lines.encode(), 0)
        except OSError:
            pass  # the content is a courtesy (error messages, attach); the flock is what protects

    def release(self) -> None:
        """Drop the lock (idempotent)."""
        if self._fd is None:
            return
        with _HELD_LOCK:
            _HELD.pop(self.path.resolve(), None)
        if self._api_url:
            self._api_url = None
            self._write_content()  # a stopped owner serves nothing: nobody must try to attach to it
        fd, self._fd = self._fd, None
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


# Lock files held by this process, by path: how the service finds the one its Backend's Store holds.
_HELD: dict[Path, LockFile] = {}
_HELD_LOCK = threading.Lock()


def lock_path(state_path: Path) -> Path:
    """``<state>.lock``."""
    return state_path.with_name(state_path.name + ".lock")


def held_lock(state_path: Path) -> LockFile | None:
    """The `LockFile` this process holds for ``state_path``, if any."""
    with _HELD_LOCK:
        return _HELD.get(lock_path(Path(state_path)).resolve())


def _parse(text: str) -> tuple[int | None, str | None]:
    lines = text.strip().splitlines()
    try:
        pid = int(lines[0]) if lines else None
    except ValueError:
        pid = None
    url = lines[1].strip() if len(lines) > 1 and lines[1].strip() else None
    return pid, url


def _lock_exclusive(fd: int, attempts: int = 3) -> None:
    """flock(LOCK_EX | LOCK_NB), tried again after a few ms: `read_lock_info` holds a shared lock for an
    instant when it probes, which must not make a starting owner fail. Raises BlockingIOError if held."""
    for attempt in range(attempts):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.01)  # a probe's shared lock lasts microseconds


def _read_pid(fd: int) -> int | None:
    try:
        return _parse(os.pread(fd, 4096, 0).decode("utf-8", "replace"))[0]
    except OSError:
        return None


def read_lock_info(state_path: Path) -> tuple[int | None, str | None]:
    """``(pid, api_url or None)`` of the process that owns the state now, or ``(None, None)`` when no process
    does (no lock file, or its owner is gone: the kernel dropped its flock)."""
    path = lock_path(Path(state_path))
    held = held_lock(Path(state_path))
    if held is not None:
        return os.getpid(), held._api_url
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None, None
    try:
        try:
            # A shared lock we can take means no owner holds the exclusive one.
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _parse(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
        except OSError:
            return None, None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None, None
    finally:
        os.close(fd)
