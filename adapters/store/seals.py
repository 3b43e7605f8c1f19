"""The log's checkpoints (R-ES5, :mod:`simledger.domain.log_seal`), in the ledger's store.

The table ``simledger_seals`` lives next to the events in the SQLite file or PostgreSQL
schema; with the in-memory store the checkpoints are kept in memory per recorder. Each row
names the position of the checkpoint it follows, unique, so two sealers racing cannot fork
the chain: the second insert fails and that sealer takes the first one's checkpoint.
"""

from __future__ import annotations

import weakref
from datetime import UTC, datetime
from typing import Any, Protocol

from simledger.adapters.store.side_tables import SqlTable, table_for
from simledger.domain.log_seal import Checkpoint

TABLE = "simledger_seals"
_CREATE = (
    "CREATE TABLE IF NOT EXISTS {table} (position BIGINT PRIMARY KEY, hash TEXT NOT NULL, "
    "previous BIGINT NOT NULL UNIQUE, sealed_at TEXT NOT NULL)"
)
_ALL = "SELECT position, hash, previous FROM {table} ORDER BY position"
_LATEST = "SELECT position, hash, previous FROM {table} ORDER BY position DESC LIMIT 1"
_AFTER = "SELECT position, hash, previous FROM {table} WHERE previous = %s"
_INSERT = (
    "INSERT INTO {table} (position, hash, previous, sealed_at) VALUES (%s, %s, %s, %s) "
    "ON CONFLICT DO NOTHING"
)


class Seals(Protocol):
    def all(self) -> list[Checkpoint]: ...

    def latest(self) -> Checkpoint | None: ...

    def append(self, checkpoint: Checkpoint) -> bool:
        """Record ``checkpoint`` after the one at ``checkpoint.previous``; False when another
        sealer recorded one after it first (nothing written)."""
        ...


class MemorySeals:
    def __init__(self) -> None:
        self.rows: list[Checkpoint] = []

    def all(self) -> list[Checkpoint]:
        return list(self.rows)

    def latest(self) -> Checkpoint | None:
        return self.rows[-1] if self.rows else None

    def append(self, checkpoint: Checkpoint) -> bool:
        if any(
            r.previous == checkpoint.previous or r.position == checkpoint.position
            for r in self.rows
        ):
            return False
        self.rows.append(checkpoint)
        return True


_MEMORY: weakref.WeakKeyDictionary[Any, MemorySeals] = weakref.WeakKeyDictionary()


def _checkpoint(row: Any) -> Checkpoint:
    if isinstance(row, dict):
        return Checkpoint(int(row["position"]), str(row["hash"]), int(row["previous"]))
    return Checkpoint(int(row[0]), str(row[1]), int(row[2]))


class SqlSeals(SqlTable):
    """The checkpoint table on the ledger's SQLite or PostgreSQL datastore."""

    CREATE = _CREATE

    def all(self) -> list[Checkpoint]:
        with self._transaction(False) as cur:
            cur.execute(self._render(_ALL))
            return [_checkpoint(row) for row in cur.fetchall()]

    def latest(self) -> Checkpoint | None:
        with self._transaction(False) as cur:
            cur.execute(self._render(_LATEST))
            row = cur.fetchone()
        return _checkpoint(row) if row else None

    def append(self, checkpoint: Checkpoint) -> bool:
        with self._transaction(True) as cur:
            cur.execute(
                self._render(_INSERT),
                [
                    checkpoint.position,
                    checkpoint.hash,
                    checkpoint.previous,
                    datetime.now(UTC).isoformat(),
                ],
            )
            # Whether ours went in (the SQLite cursor has no rowcount): the row that follows
            # the same checkpoint is ours.
            cur.execute(self._render(_AFTER), [checkpoint.previous])
            row = cur.fetchone()
        return row is not None and _checkpoint(row) == checkpoint


def seals_for(recorder: Any) -> Seals:
    """The checkpoints of the store of ``recorder`` (a ledger's recorder)."""
    table: Seals = table_for(recorder, TABLE, SqlSeals, _MEMORY, MemorySeals)
    return table
