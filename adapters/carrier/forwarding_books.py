"""The carrier forwarder's bookkeeping, in the ledger's own store.

What the forwarder (``application/forwarding.py``) has sent and which answers it has applied
lives next to the events, in the tables ``simledger_forwarder_position``,
``simledger_forwarder_sent`` and ``simledger_forwarder_answers`` of the ledger's SQLite file or
PostgreSQL schema, so that a restarted forwarder neither sends a request twice nor applies an
answer twice. With the in-memory store, the books are kept in memory per store.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from simledger.adapters.carrier.gateway import CarrierRequest


@dataclass(frozen=True)
class AnswerRow:
    """One carrier answer as the forwarder recorded it, with what became of it."""

    request_id: str
    operation_id: str
    iccid: str
    ok: bool
    reason: str | None
    outcome: str


class Books(Protocol):
    """The forwarder's own records, in the ledger's store."""

    def position(self, name: str) -> int: ...

    def sent(self, operation_id: str) -> dict[str, str]:
        """Request id → ``sent`` / ``expired`` of the operation's recorded requests."""
        ...

    def record_sent(
        self,
        requests: Sequence[CarrierRequest],
        status: str,
        at: datetime,
        position: int | None,
        name: str,
    ) -> None: ...

    def answered(self, request_ids: Sequence[str]) -> set[str]: ...

    def record_answers(self, rows: Sequence[AnswerRow], at: datetime) -> None: ...

    def answer_outcomes(self) -> dict[str, str]: ...


class MemoryBooks:
    def __init__(self) -> None:
        self.positions: dict[str, int] = {}
        self.by_operation: dict[str, dict[str, str]] = {}  # op → request id → status
        self.answers: dict[str, AnswerRow] = {}

    def position(self, name: str) -> int:
        return self.positions.get(name, 0)

    def sent(self, operation_id: str) -> dict[str, str]:
        return dict(self.by_operation.get(operation_id, {}))

    def record_sent(
        self,
        requests: Sequence[CarrierRequest],
        status: str,
        at: datetime,
        position: int | None,
        name: str,
    ) -> None:
        for request in requests:
            recorded = self.by_operation.setdefault(request.operation_id, {})
            recorded.setdefault(request.request_id, status)
        if position is not None:
            self.positions[name] = position

    def answered(self, request_ids: Sequence[str]) -> set[str]:
        return {k for k in request_ids if k in self.answers}

    def record_answers(self, rows: Sequence[AnswerRow], at: datetime) -> None:
        for row in rows:
            self.answers.setdefault(row.request_id, row)

    def answer_outcomes(self) -> dict[str, str]:
        return {k: v.outcome for k, v in self.answers.items()}


_MEMORY_BOOKS: weakref.WeakKeyDictionary[Any, MemoryBooks] = weakref.WeakKeyDictionary()

_TABLES = {
    "position": "simledger_forwarder_position",
    "sent": "simledger_forwarder_sent",
    "answers": "simledger_forwarder_answers",
}
_CREATE = (
    "CREATE TABLE IF NOT EXISTS {position} (name TEXT PRIMARY KEY, "
    "notification_id BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS {sent} (request_id TEXT PRIMARY KEY, operation_id TEXT NOT NULL, "
    "iccid TEXT NOT NULL, kind TEXT NOT NULL, status TEXT NOT NULL, recorded_at TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS simledger_forwarder_sent_op ON {sent} (operation_id)",
    "CREATE TABLE IF NOT EXISTS {answers} (request_id TEXT PRIMARY KEY, "
    "operation_id TEXT NOT NULL, iccid TEXT NOT NULL, ok BOOLEAN NOT NULL, reason TEXT, "
    "outcome TEXT NOT NULL, recorded_at TEXT NOT NULL)",
)
_GET_POSITION = "SELECT notification_id FROM {position} WHERE name = %s"
_SET_POSITION = (
    "INSERT INTO {position} (name, notification_id) VALUES (%s, %s) "
    "ON CONFLICT (name) DO UPDATE SET notification_id = excluded.notification_id"
)
_SENT = "SELECT request_id, status FROM {sent} WHERE operation_id = %s"
_INSERT_SENT = (
    "INSERT INTO {sent} (request_id, operation_id, iccid, kind, status, recorded_at) "
    "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (request_id) DO NOTHING"
)
_INSERT_ANSWER = (
    "INSERT INTO {answers} (request_id, operation_id, iccid, ok, reason, outcome, recorded_at) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (request_id) DO NOTHING"
)
_ALL_ANSWERS = "SELECT request_id, outcome FROM {answers}"


class SqlBooks:
    """The bookkeeping tables on the ledger's SQLite or PostgreSQL datastore."""

    def __init__(
        self,
        transaction: Callable[[bool], AbstractContextManager[Any]],
        render: Callable[[str], Any],
        answered_query: Callable[[Sequence[str]], tuple[Any, Sequence[Any]]],
    ) -> None:
        self._transaction = transaction
        self._render = render
        self._answered_query = answered_query
        with self._transaction(True) as cur:
            for statement in _CREATE:
                cur.execute(self._render(statement))

    @classmethod
    def for_recorder(cls, recorder: Any) -> SqlBooks | None:
        from eventsourcing.postgres import PostgresApplicationRecorder
        from eventsourcing.sqlite import SQLiteApplicationRecorder

        if isinstance(recorder, SQLiteApplicationRecorder):
            sqlite_store = recorder.datastore

            def sqlite_render(statement: str) -> str:
                return statement.format(**_TABLES).replace("%s", "?")

            def sqlite_in(ids: Sequence[str]) -> tuple[Any, Sequence[Any]]:
                marks = ",".join("?" for _ in ids)
                query = f"SELECT request_id FROM {_TABLES['answers']} WHERE request_id IN ({marks})"
                return query, list(ids)

            return cls(
                lambda commit: sqlite_store.transaction(commit=commit), sqlite_render, sqlite_in
            )
        if isinstance(recorder, PostgresApplicationRecorder):
            from psycopg import sql

            pg_store = recorder.datastore
            tables = {k: sql.Identifier(pg_store.schema, v) for k, v in _TABLES.items()}

            def pg_render(statement: str) -> Any:
                return sql.SQL(statement).format(**tables)

            def pg_in(ids: Sequence[str]) -> tuple[Any, Sequence[Any]]:
                query = pg_render("SELECT request_id FROM {answers} WHERE request_id = ANY(%s)")
                return query, [list(ids)]

            return cls(lambda commit: pg_store.transaction(commit=commit), pg_render, pg_in)
        return None

    def position(self, name: str) -> int:
        with self._transaction(False) as cur:
            cur.execute(self._render(_GET_POSITION), [name])
            row = cur.fetchone()
        return int(row[0] if not isinstance(row, dict) else row["notification_id"]) if row else 0

    def sent(self, operation_id: str) -> dict[str, str]:
        with self._transaction(False) as cur:
            cur.execute(self._render(_SENT), [operation_id])
            rows = cur.fetchall()
        return {_first(row): _second(row, "status") for row in rows}

    def record_sent(
        self,
        requests: Sequence[CarrierRequest],
        status: str,
        at: datetime,
        position: int | None,
        name: str,
    ) -> None:
        with self._transaction(True) as cur:
            if requests:
                cur.executemany(
                    self._render(_INSERT_SENT),
                    [
                        (
                            r.request_id,
                            r.operation_id,
                            r.iccid,
                            r.kind.value,
                            status,
                            at.isoformat(),
                        )
                        for r in requests
                    ],
                )
            if position is not None:
                cur.execute(self._render(_SET_POSITION), [name, position])

    def answered(self, request_ids: Sequence[str]) -> set[str]:
        if not request_ids:
            return set()
        query, params = self._answered_query(request_ids)
        with self._transaction(False) as cur:
            cur.execute(query, params)
            return {_first(row) for row in cur.fetchall()}

    def record_answers(self, rows: Sequence[AnswerRow], at: datetime) -> None:
        if not rows:
            return
        with self._transaction(True) as cur:
            cur.executemany(
                self._render(_INSERT_ANSWER),
                [
                    (
                        r.request_id,
                        r.operation_id,
                        r.iccid,
                        r.ok,
                        r.reason,
                        r.outcome,
                        at.isoformat(),
                    )
                    for r in rows
                ],
            )

    def answer_outcomes(self) -> dict[str, str]:
        with self._transaction(False) as cur:
            cur.execute(self._render(_ALL_ANSWERS))
            rows = cur.fetchall()
        return {_first(row): _second(row, "outcome") for row in rows}


def _first(row: Any) -> str:
    return str(row["request_id"] if isinstance(row, dict) else row[0])


def _second(row: Any, name: str) -> str:
    return str(row[name] if isinstance(row, dict) else row[1])


def books_for(recorder: Any) -> Books:
    """The forwarder's bookkeeping on the store of ``recorder`` (a ledger's recorder): tables
    next to the events on SQLite and PostgreSQL, else memory kept per recorder, so that a
    second forwarder on the same store carries on where the first stopped."""
    books = SqlBooks.for_recorder(recorder)
    if books is not None:
        return books
    memory = _MEMORY_BOOKS.get(recorder)
    if memory is None:
        memory = _MEMORY_BOOKS[recorder] = MemoryBooks()
    return memory
