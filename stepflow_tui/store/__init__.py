"""The state store: a ``State`` persisted in TinyDB files (lock file, atomic writes, batched flushes).

    store = Store(path)            # path: --db, else $STEPFLOW_DB, else cli.default_db()
    state = store.open()           # StoreLocked / StoreCorrupt / StoreError
    with store.lock:               # mutate the State, mark what changed (state.mark_job, ...)
        ...
    store.flush(state)             # writes only what is marked, atomically; clears the marks
    store.close()

    state = read_state(path)       # a snapshot without owning the file (stepflow status)

The layout and the guarantees are described in docs/state.md.
"""

from .documents import FORMAT_VERSION, SHARD_SIZE
from .errors import BrokerMismatch, StoreCorrupt, StoreError, StoreLocked
from .storage import AtomicJSONStorage
from .store import FlushStats, Store, read_state

__all__ = [
    "FORMAT_VERSION",
    "SHARD_SIZE",
    "AtomicJSONStorage",
    "BrokerMismatch",
    "FlushStats",
    "Store",
    "StoreCorrupt",
    "StoreError",
    "StoreLocked",
    "read_state",
]
