"""Store settings: eventsourcing's own environment variables, with simledger's defaults."""

from __future__ import annotations

from collections.abc import Mapping

from simledger.adapters.store.connect_check import check_reachable

FORCED = {"ORIGINATOR_ID_TYPE": "text"}
"""SIM ids are ICCIDs (text); other ids are UUIDs stored as text in the same table."""

POSTGRES_RECORDER_TOPIC = "simledger.adapters.store.pg_recorder:BulkPostgresApplicationRecorder"
"""eventsourcing's PostgreSQL recorder with a faster, non-pipelined insert (pg_recorder.py)."""

SQLITE_RECORDER_TOPIC = "simledger.adapters.store.sqlite_recorder:LedgerSqliteApplicationRecorder"
"""eventsourcing's SQLite recorder with the in-transaction hook (sqlite_recorder.py)."""

CONNECT_TIMEOUT = "10"
"""Seconds eventsourcing's pool waits for a connection (``POSTGRES_CONNECT_TIMEOUT``)."""

DEFAULTS = {
    # eventsourcing insists on a password even where the server trusts local connections.
    "POSTGRES_PASSWORD": "unused-with-trust-auth",
}


def store_env(env: Mapping[str, str]) -> dict[str, str]:
    """The settings simledger runs with, given what the caller and the process say."""
    settled = {**DEFAULTS, **env, **FORCED}
    if settled.get("PERSISTENCE_MODULE", "") in ("", "eventsourcing.popo"):
        settled.pop("POSTGRES_PASSWORD", None)
    # POSTGRES_ENABLE_DB_FUNCTIONS misroutes inserts when two applications share a schema.
    settled.pop("POSTGRES_ENABLE_DB_FUNCTIONS", None)
    if settled.get("PERSISTENCE_MODULE") == "eventsourcing.postgres":
        # Bulk inserts as binary arrays, without the pipeline that hangs on big saves.
        settled.setdefault("APPLICATION_RECORDER_TOPIC", POSTGRES_RECORDER_TOPIC)
        # The pool's wait for a connection (eventsourcing: 30 s). A server that refuses is
        # found by check_reachable at once; this bounds the wait for a busy or restarting one.
        settled.setdefault("POSTGRES_CONNECT_TIMEOUT", CONNECT_TIMEOUT)
    if settled.get("PERSISTENCE_MODULE") == "eventsourcing.sqlite":
        # The read models are folded inside the events' transaction (in_transaction.py).
        settled.setdefault("APPLICATION_RECORDER_TOPIC", SQLITE_RECORDER_TOPIC)
    return settled


def reachable_store_env(env: Mapping[str, str]) -> dict[str, str]:
    """:func:`store_env`, after one direct connection with these settings: bad PostgreSQL
    settings fail here within seconds, with the server's reason (``StoreUnreachable``)."""
    settled = store_env(env)
    check_reachable(settled)
    return settled


def persistence_module(env: Mapping[str, str]) -> str:
    return env.get("PERSISTENCE_MODULE") or "eventsourcing.popo"
