"""Which view store goes with an event store: the same SQLite file or PostgreSQL schema."""

from __future__ import annotations

from typing import Any, cast

from eventsourcing.persistence import ApplicationRecorder

from simledger.adapters.views.base import ViewStore
from simledger.adapters.views.memory import MemoryViewStore


def store_for(recorder: ApplicationRecorder) -> ViewStore:
    """The view store that goes with the ledger's event store: same file, same schema
    (in memory for an in-memory store, or one this module does not know)."""
    from eventsourcing.sqlite import SQLiteApplicationRecorder

    if isinstance(recorder, SQLiteApplicationRecorder):
        pool = recorder.datastore.pool
        if pool.is_sqlite_memory_mode:
            return MemoryViewStore()
        from simledger.adapters.views.sqlite import SqliteViewStore

        return SqliteViewStore(pool.db_name)
    try:
        from eventsourcing.postgres import PostgresApplicationRecorder
    except ImportError:  # pragma: no cover - psycopg missing
        return MemoryViewStore()
    if isinstance(recorder, PostgresApplicationRecorder):
        from simledger.adapters.views.postgres import PostgresViewStore

        datastore = recorder.datastore
        return PostgresViewStore(cast(dict[str, Any], datastore.pool.kwargs), datastore.schema)
    return MemoryViewStore()
