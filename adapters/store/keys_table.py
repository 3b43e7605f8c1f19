"""API keys (application/keys.py), in the ledger's store.

The table ``simledger_keys`` lives next to the events in the SQLite file or PostgreSQL
schema, created as ``simledger_seals`` is (adapters/store/seals.py); with the in-memory
store the keys are kept in memory per recorder. A row holds a key's public id, the SHA-256
(hex) of its secret — never the secret — its name, company (NULL: an operator key),
scopes (space-separated) and the times it was created and revoked (ISO 8601; NULL: live).
Rows are never deleted. ``hash`` is UNIQUE, so the check of every HTTP request is one
lookup in that index.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, replace
from typing import Any, Protocol

from simledger.adapters.store.side_tables import SqlTable, table_for

TABLE = "simledger_keys"
_CREATE = (
    "CREATE TABLE IF NOT EXISTS {table} (id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, "
    "name TEXT NOT NULL, company TEXT, scopes TEXT NOT NULL, created_at TEXT NOT NULL, "
    "revoked_at TEXT)"
)
_COLUMNS = "id, hash, name, company, scopes, created_at, revoked_at"
_ALL = "SELECT " + _COLUMNS + " FROM {table} ORDER BY created_at, id"
_BY_ID = "SELECT " + _COLUMNS + " FROM {table} WHERE id = %s"
_BY_HASH = "SELECT " + _COLUMNS + " FROM {table} WHERE hash = %s"
_INSERT = (
    "INSERT INTO {table} (" + _COLUMNS + ") VALUES (%s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT DO NOTHING"
)
# The first revocation's time is kept: revoking again changes nothing.
_REVOKE = "UPDATE {table} SET revoked_at = %s WHERE id = %s AND revoked_at IS NULL"


@dataclass(frozen=True)
class KeyRow:
    """One row of the table, as stored (times as ISO 8601 text)."""

    id: str
    hash: str
    name: str
    company: str | None
    scopes: str
    created_at: str
    revoked_at: str | None


def _row(row: Any) -> KeyRow:
    if isinstance(row, dict):
        return KeyRow(**{k: row[k] for k in KeyRow.__dataclass_fields__})
    return KeyRow(*(row[i] for i in range(7)))


class KeysTable(Protocol):
    def insert(self, row: KeyRow) -> bool:
        """Add ``row``; False (nothing written) when its id or hash is taken."""
        ...

    def all(self) -> list[KeyRow]: ...

    def by_id(self, key_id: str) -> KeyRow | None: ...

    def by_hash(self, digest: str) -> KeyRow | None: ...

    def revoke(self, key_id: str, at: str) -> KeyRow | None:
        """Set the key's revocation time unless it has one; the row after (None: no key)."""
        ...


class MemoryKeys:
    """The keys of an in-memory store (gone with it)."""

    def __init__(self) -> None:
        self.rows: dict[str, KeyRow] = {}
        self.by_digest: dict[str, str] = {}

    def insert(self, row: KeyRow) -> bool:
        if row.id in self.rows or row.hash in self.by_digest:
            return False
        self.rows[row.id] = row
        self.by_digest[row.hash] = row.id
        return True

    def all(self) -> list[KeyRow]:
        return sorted(self.rows.values(), key=lambda r: (r.created_at, r.id))

    def by_id(self, key_id: str) -> KeyRow | None:
        return self.rows.get(key_id)

    def by_hash(self, digest: str) -> KeyRow | None:
        key_id = self.by_digest.get(digest)
        return None if key_id is None else self.rows[key_id]

    def revoke(self, key_id: str, at: str) -> KeyRow | None:
        row = self.rows.get(key_id)
        if row is not None and row.revoked_at is None:
            row = self.rows[key_id] = replace(row, revoked_at=at)
        return row


_MEMORY: weakref.WeakKeyDictionary[Any, MemoryKeys] = weakref.WeakKeyDictionary()


class SqlKeys(SqlTable):
    """The key table on the ledger's SQLite or PostgreSQL datastore."""

    CREATE = _CREATE

    def insert(self, row: KeyRow) -> bool:
        with self._transaction(True) as cur:
            cur.execute(
                self._render(_INSERT),
                [row.id, row.hash, row.name, row.company, row.scopes, row.created_at, None],
            )
            # Whether ours went in (the SQLite cursor has no rowcount): the row with our
            # id holds our hash.
            cur.execute(self._render(_BY_ID), [row.id])
            found = cur.fetchone()
        return found is not None and _row(found).hash == row.hash

    def all(self) -> list[KeyRow]:
        with self._transaction(False) as cur:
            cur.execute(self._render(_ALL))
            return [_row(r) for r in cur.fetchall()]

    def _one(self, statement: str, value: str) -> KeyRow | None:
        with self._transaction(False) as cur:
            cur.execute(self._render(statement), [value])
            found = cur.fetchone()
        return _row(found) if found else None

    def by_id(self, key_id: str) -> KeyRow | None:
        return self._one(_BY_ID, key_id)

    def by_hash(self, digest: str) -> KeyRow | None:
        return self._one(_BY_HASH, digest)

    def revoke(self, key_id: str, at: str) -> KeyRow | None:
        with self._transaction(True) as cur:
            cur.execute(self._render(_REVOKE), [at, key_id])
            cur.execute(self._render(_BY_ID), [key_id])
            found = cur.fetchone()
        return _row(found) if found else None


def keys_for(recorder: Any) -> KeysTable:
    """The key table of the store of ``recorder`` (a ledger's recorder), created if missing."""
    table: KeysTable = table_for(recorder, TABLE, SqlKeys, _MEMORY, MemoryKeys)
    return table
