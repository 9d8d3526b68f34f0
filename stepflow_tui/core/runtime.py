"""Process-wide settings for the processes that run jobs (the backend, a headless worker)."""

from __future__ import annotations

import gc

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
