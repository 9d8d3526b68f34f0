"""Full garbage collections at idle moments, not while the operator is typing.

CPython's cyclic collector runs a full collection whenever enough objects have survived younger ones. Each
full collection scans every tracked object that is not frozen (`store` freezes the loaded state), and in
the workbench that is tens of thousands of objects — tree nodes, rendered lines and their caches: 15–60 ms
during which the event loop stands still. Paging through a big step made one every few pages, the longest
stalls `bench/tui.py` measured.

`IdleCollector` keeps the young generations automatic (cheap, and most garbage dies there) and defers full
collections to a moment when no key or mouse input came for ``idle_after`` seconds, at the pace the default
settings would have run them. So that garbage cannot pile up under non-stop input, a full collection also
runs when ``at_most`` seconds have passed without one. Reference counting frees everything without cycles
at once either way; only cyclic garbage waits.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable

#: A threshold the collector never reaches: full collections are ours to start.
NEVER = 1 << 30

# The interpreter's thresholds are process-wide, and several workbenches may run in one process (tests): the
# first collector to start saves them, the last to stop puts them back.
_lock = threading.Lock()
_active = 0
_saved: tuple[int, ...] | None = None


def saved_threshold() -> tuple[int, ...] | None:
    """The interpreter's own thresholds while a collector holds them (None when none does)."""
    return _saved


class IdleCollector:
    def __init__(self, idle_after: float = 1.0, at_most: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.idle_after = idle_after
        self.at_most = at_most
        self.clock = clock
        self.collections = 0
        self._started = False
        self._last_input = self._last_full = clock()

    @property
    def active(self) -> bool:
        return self._started

    def start(self) -> None:
        """Take full collections over (young ones stay automatic)."""
        global _active, _saved
        if self._started:
            return
        with _lock:
            if _active == 0:
                _saved = gc.get_threshold()
                gc.set_threshold(_saved[0], _saved[1], NEVER)
            _active += 1
        self._started = True

    def stop(self) -> None:
        """Give full collections back to the interpreter, as they were (once every collector has stopped)."""
        global _active, _saved
        if not self._started:
            return
        self._started = False
        with _lock:
            _active -= 1
            if _active == 0 and _saved is not None:
                gc.set_threshold(*_saved)
                _saved = None

    def input_seen(self) -> None:
        """The operator pressed a key or used the mouse."""
        self._last_input = self.clock()

    def due(self) -> bool:
        """Whether a full collection should run now."""
        saved = _saved
        if not self._started or saved is None or not gc.isenabled():
            return False
        now = self.clock()
        if now - self._last_full >= self.at_most:
            return True
        # gc.get_count()[2]: younger collections since the last full one; the default runs one at threshold[2]
        return now - self._last_input >= self.idle_after and gc.get_count()[2] >= saved[2]

    def tick(self) -> bool:
        """Run a full collection if one is due (call it from a timer on the UI thread); True when it ran."""
        if not self.due():
            return False
        gc.collect()
        self.collections += 1
        self._last_full = self.clock()
        return True
