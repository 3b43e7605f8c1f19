"""Tables of the ledger's own beside the events (the log's checkpoints, the API keys): how
to reach the SQLite file or PostgreSQL schema that holds a recorder's events."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, ClassVar, TypeVar

Transaction = Callable[[bool], AbstractContextManager[Any]]
"""``transaction(True)``: a cursor in one transaction of the store's datastore, committed
at the end; ``transaction(False)``: a cursor to read with, one statement at a time."""
Render = Callable[[str], Any]
"""A statement with ``{table}`` and ``%s`` placeholders, as the datastore's driver takes it."""


def sql_access(recorder: Any, table: str) -> tuple[Transaction, Render] | None:
    """The transactions and statement rendering for ``table`` in the store of ``recorder``;
    None for a store without SQL (in memory)."""
    from eventsourcing.postgres import PostgresApplicationRecorder
    from eventsourcing.sqlite import SQLiteApplicationRecorder

    if isinstance(recorder, SQLiteApplicationRecorder):
        lite = recorder.datastore
        return (
            lambda commit: lite.transaction(commit=commit),
            lambda statement: statement.format(table=table).replace("%s", "?"),
        )
    if isinstance(recorder, PostgresApplicationRecorder):
        from psycopg import sql

        pg = recorder.datastore
        identifier = sql.Identifier(pg.schema, table)
        # A read is one statement on an autocommit connection: one round trip, where a
        # transaction rolled back would take three (BEGIN, the query, ROLLBACK) — the key
        # check of every HTTP request is such a read.
        return (
            lambda commit: pg.transaction(commit=True) if commit else pg.cursor(),
            lambda statement: sql.SQL(statement).format(table=identifier),
        )
    return None


class SqlTable:
    """A side table on the store's SQLite or PostgreSQL datastore, created (``CREATE``, with
    ``IF NOT EXISTS``) when it is first reached."""

    CREATE: ClassVar[str]

    def __init__(self, transaction: Transaction, render: Render) -> None:
        self._transaction = transaction
        self._render = render
        with self._transaction(True) as cur:
            cur.execute(self._render(self.CREATE))


M = TypeVar("M")


def table_for(
    recorder: Any,
    table: str,
    sql_table: Callable[[Transaction, Render], Any],
    in_memory: weakref.WeakKeyDictionary[Any, M],
    make: Callable[[], M],
) -> Any:
    """``sql_table`` on the store of ``recorder``, or, for a store in memory, the one
    object ``make`` gave for that recorder (kept while it lives)."""
    access = sql_access(recorder, table)
    if access is not None:
        return sql_table(*access)
    memory = in_memory.get(recorder)
    if memory is None:
        memory = in_memory[recorder] = make()
    return memory
