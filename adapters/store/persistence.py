"""Store settings: eventsourcing's own environment variables, with simledger's defaults."""

from __future__ import annotations

from collections.abc import Mapping

FORCED = {"ORIGINATOR_ID_TYPE": "text"}
"""SIM ids are ICCIDs (text); other ids are UUIDs stored as text in the same table."""

POSTGRES_RECORDER_TOPIC = "simledger.adapters.store.pg_recorder:BulkPostgresApplicationRecorder"
"""eventsourcing's PostgreSQL recorder with a faster, non-pipelined insert (pg_recorder.py)."""

SQLITE_RECORDER_TOPIC = "simledger.adapters.store.sqlite_recorder:LedgerSqliteApplicationRecorder"
"""eventsourcing's SQLite recorder with the in-transaction hook (sqlite_recorder.py)."""

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
    if settled.get("PERSISTENCE_MODULE") == "eventsourcing.sqlite":
        # The read models are folded inside the events' transaction (in_transaction.py).
        settled.setdefault("APPLICATION_RECORDER_TOPIC", SQLITE_RECORDER_TOPIC)
    return settled


def persistence_module(env: Mapping[str, str]) -> str:
    return env.get("PERSISTENCE_MODULE") or "eventsourcing.popo"
