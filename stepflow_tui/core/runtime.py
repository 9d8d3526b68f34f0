"""Process-wide settings for the processes that run jobs (the backend, a headless worker)."""

from __future__ import annotations

import gc
import sys

#: Allocations (less deallocations) between two young collections. CPython's 700 made the cyclic collector
#: run ~2,000 times for 20,000 jobs and its full collections ~15 times, 26 ms each at that size: ~11 µs a job,
#: and the longest pauses an API request or the workbench met (docs/performance.md, round 6).
YOUNG_THRESHOLD = 10_000


def tune_gc() -> None:
    """Make cyclic garbage collections rarer (never more frequent than they are); idempotent. Reference
    counting still frees nearly everything a job creates at once: the collector only finds cycles."""
    young, middle, old = gc.get_threshold()
    if young and young < YOUNG_THRESHOLD:
        gc.set_threshold(YOUNG_THRESHOLD, middle, old)


#: Seconds a thread may keep the GIL while another waits for it, in a process that serves the HTTP API. A
#: request takes and gives the GIL back a dozen times; behind busy in-process workers each wait lasted up to
#: CPython's 5 ms, so a request's p99 was 35-57 ms; at 1 ms, 26-41 ms (a few percent of memory:// throughput).
SERVICE_SWITCH_INTERVAL = 0.001


def tune_for_service() -> None:
    """Hand the GIL over more often, so that API requests are not queued behind job threads (never less often
    than it is)."""
    if sys.getswitchinterval() > SERVICE_SWITCH_INTERVAL:
        sys.setswitchinterval(SERVICE_SWITCH_INTERVAL)

