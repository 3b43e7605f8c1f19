"""What the SQLite and PostgreSQL view stores do alike, over their connections.

A :class:`SqlViewStore` runs the statements of :class:`~.sql.Statements` (written once,
in its dialect's terms) through a few connection hooks each store defines: a transaction
that may write, a read, a consistent read for verify, and statements run one by one. The
rebuild's install is one procedure here; each store only fills and indexes its scratch
tables its own way (executemany or COPY, one index at a time or several at once).
"""

from __future__ import annotations

import secrets
import threading
import time
from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from eventsourcing.persistence import ApplicationRecorder, Notification

from simledger.adapters.logs import get_logger
from simledger.adapters.views.auto_analyze import AutoAnalyze
from simledger.adapters.views.base import (
    PROJECTION_VERSION,
    SIM_TOPICS,
    TRACKING_NAME,
    ApplyRange,
    BuiltViews,
    LogSpan,
    ViewSnapshot,
    ViewStore,
    level,
)
from simledger.adapters.views.dialect import Dialect
from simledger.adapters.views.sim_list_sql import page_statement, total_statement
from simledger.adapters.views.sql import Statements, Tables
from simledger.projections.batch_state import Changes, CountKey, Keys, Touched
from simledger.projections.listing import SimQuery
from simledger.projections.rows import GroupRow, OperationRow, SimRow

log = get_logger("simledger.views")

LogSource = tuple[str, Callable[[Any], Any] | None]
"""The event table of a recorder this store can read, and how its ids convert (if)."""
Stream = Callable[[str], Iterator[Sequence[Any]]]
"""Rows of a statement, fetched a few thousand at a time."""


class SqlViewStore(ViewStore):
    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._lock = threading.RLock()
        """Held by a thread using the store's main connection, and through an install."""
        self.sql = Statements(dialect)
        self.live = self.sql.live
        self.scratch = self.sql.scratch

    # ---- connection hooks ---------------------------------------------------------------
    @abstractmethod
    def _transaction(self) -> AbstractContextManager[Any]:
        """A cursor in a transaction that may write (committed when the block ends)."""

    @abstractmethod
    def _query(self, statement: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        """The rows of one read statement."""

    @abstractmethod
    def _consistent(self) -> AbstractContextManager[tuple[Any, Stream]]:
        """A cursor reading one snapshot of the views, and a stream of rows over it."""

    @abstractmethod
    def _execute_each(self, statements: Iterable[str]) -> None:
        """Statements run one after the other, each in a transaction of its own."""

    @abstractmethod
    def _log_source(self, recorder: ApplicationRecorder) -> LogSource | None:
        """Where ``recorder`` keeps its events, if this store can read them itself."""

    def _read_log(self, statement: str, params: Sequence[Any]) -> list[Sequence[Any]]:
        return self._query(statement, params)

    def _lock_schema(self, cursor: Any) -> None:
        """Serialise schema changes between processes (beyond the transaction's own)."""

    def _own_indexes(self, tables: Tables, token: str) -> list[str]:
        """The dialect store's own indexes of ``tables`` (beside the sort indexes)."""
        return []

    def _extra_checks(self, cursor: Any) -> list[tuple[str, str, object, object]]:
        """Store-specific consistency checks of a snapshot (see :class:`ViewSnapshot`)."""
        return []

    # ---- statements the tests and tools read ----------------------------------------------
    def q(self, table: str) -> str:
        return self.dialect.q(table)

    def page_statement(self, query: SimQuery, tables: Tables) -> tuple[str, list[Any]]:
        return page_statement(self.sql, query, tables)

    def total_statement(self, query: SimQuery, tables: Tables) -> tuple[str, list[Any]]:
        return total_statement(self.sql, query, tables)

    def index_statements(self, tables: Tables) -> list[str]:
        token = secrets.token_hex(4)
        return self.sql.index_statements(tables, token, self._own_indexes(tables, token))

    # ---- schema -------------------------------------------------------------------------
    def _ensure_schema(self) -> None:
        with self._transaction() as cursor:
            self._lock_schema(cursor)
            cursor.execute(self.sql.create_tracking)
            cursor.execute(self.sql.read_version, (TRACKING_NAME,))
            found = cursor.fetchone()
            if found is None or found[0] != PROJECTION_VERSION:
                if found is not None:
                    log.info("views.schema.outdated", found=found[0], wanted=PROJECTION_VERSION)
                self._drop(cursor, self.live.all())
                for statement in self.sql.create_tables(self.live, keyed=True):
                    cursor.execute(statement)
                for statement in self.index_statements(self.live):
                    cursor.execute(statement)
                cursor.execute(self.sql.reset_tracking, (TRACKING_NAME, PROJECTION_VERSION))

    def _drop(self, cursor: Any, tables: Sequence[str]) -> None:
        for table in tables:
            cursor.execute(f"DROP TABLE IF EXISTS {self.q(table)}")

    def _create_scratch(self, cursor: Any) -> None:
        """Empty scratch tables, without indexes (a bulk load maintains none)."""
        self._drop(cursor, self.scratch.all())
        for statement in self.sql.create_tables(self.scratch, keyed=False):
            cursor.execute(statement)

    # ---- projecting ---------------------------------------------------------------------
    def _own_notifications(
        self, recorder: ApplicationRecorder, span: LogSpan
    ) -> Sequence[Notification] | None:
        """The recorder's own query, on this store's connections: SQLite reads inside the
        batch's transaction (which holds the file's write lock: a read through
        eventsourcing's pool could wait for a command that waits for that lock); PostgreSQL
        reads on a connection of its own, so the runner reads the next batch while this
        one writes, and can split the log by SIM (a parallel rebuild's part)."""
        start, limit, stop, partition = span
        source = self._log_source(recorder)
        hashes = self.dialect.partition_filter() is not None
        if source is None or (isinstance(partition, tuple) and not hashes):
            return None
        table, convert = source
        rows = self._read_log(*self.sql.log(table, start, limit, stop, partition))
        if convert is None:
            return [notification(*row) for row in rows]
        return [notification(i, convert(o), v, t, s) for i, o, v, t, s in rows]

    def sim_bounds(self, recorder: ApplicationRecorder, every: int) -> list[str] | None:
        source = self._log_source(recorder)
        if source is None:
            return None
        statement, bounds = self.sql.sim_bound(source[0]), []
        after, skip = "", every  # "": below every ICCID; the first range has no low bound
        while found := self._read_log(statement, (SIM_TOPICS, after, skip)):
            after, skip = str(found[0][0]), every - 1
            bounds.append(after)
        return bounds

    def head_and_position(self, recorder: ApplicationRecorder) -> tuple[int, int]:
        source = self._log_source(recorder)
        if source is None:
            return super().head_and_position(recorder)
        rows = self._query(self.sql.head_and_position(source[0]), (TRACKING_NAME,))
        return (int(rows[0][0] or 0), int(rows[0][1] or 0)) if rows else (0, 0)

    def position(self) -> int:
        rows = self._query(self.sql.read_position, (TRACKING_NAME,))
        return int(rows[0][0]) if rows else 0

    def _locked_position(self, cursor: Any) -> int:
        cursor.execute(self.sql.lock_position, (TRACKING_NAME,))
        return int(cursor.fetchone()[0])

    @contextmanager
    def exclusive(self) -> Iterator[SqlTx]:
        with self._transaction() as cursor:
            yield SqlTx(self, cursor, self.live, self._locked_position(cursor), track=True)

    def inline(self, connection: object, keys: Keys) -> tuple[SqlTx, Touched]:
        cursor = self._inline_cursor(connection)
        tx = SqlTx(self, cursor, self.live, self._locked_position(cursor), track=True)
        return tx, tx.load(keys)

    def _inline_cursor(self, connection: Any) -> Any:
        """A cursor on the event store's connection, as this store's own cursors are."""
        return connection.cursor()

    def write_changes(self, cursor: Any, tables: Tables, changes: Changes) -> None:
        if changes.sims and tables == self.live:
            self._auto_analyze.wrote(len(changes.sims))
        self._write_rows(cursor, tables, changes)

    def _write_rows(self, cursor: Any, tables: Tables, changes: Changes) -> None:
        self.sql.write_changes(cursor, tables, changes)

    def analyze(self) -> None:
        self._auto_analyze.analyzed(self._analyze_now())

    # ---- the planner's statistics (auto_analyze.py) -------------------------------------
    def _start_counting(self, *, apart: bool) -> None:
        """Once the schema is there: count the SIM rows written from the planner's last
        count on (``apart``: ``ANALYZE`` on a thread of its own)."""
        self._auto_analyze = AutoAnalyze(self._analyze_now, self._sim_rows(), apart=apart)

    @abstractmethod
    def _sim_rows(self) -> float:
        """The SIM list's rows as the planner last counted them (0 or less: never)."""

    def _analyze_now(self) -> float:
        """``ANALYZE`` of the live views; the SIM list's rows after it."""
        self._execute_each(self._analyze_statements(self.live))
        return self._sim_rows()

    def settle(self) -> None:
        self._auto_analyze.settle()

    def close(self) -> None:
        self._auto_analyze.wait()

    def _analyze_statements(self, tables: Tables) -> list[str]:
        return [*self.dialect.analyze_first, *(f"ANALYZE {self.q(t)}" for t in tables.all())]

    # ---- queries ------------------------------------------------------------------------
    def sims_page(self, query: SimQuery) -> tuple[list[SimRow], int]:
        page, page_params = self.page_statement(query, self.live)
        total, total_params = self.total_statement(query, self.live)
        with self._consistent() as (cursor, _):
            rows = list(map(self.sql.sims.decode, cursor.execute(page, page_params).fetchall()))
            count = int(cursor.execute(total, total_params).fetchone()[0])
        return rows, count

    def operations(self) -> list[OperationRow]:
        found = self._query(self.sql.operations_statement(self.live))
        return list(map(self.sql.operations.decode, found))

    def groups(self, *, company: str | None, locked: bool | None) -> list[GroupRow]:
        found = self._query(*self.sql.groups_statement(company, locked, self.live))
        return list(map(self.sql.groups.decode, found))

    # ---- rebuild and verify -------------------------------------------------------------
    @abstractmethod
    def _fill_scratch(self, built: BuiltViews) -> None:
        """Create the scratch tables and load ``built`` (and its staged rows) into them."""

    def _index_scratch(self, built: BuiltViews) -> None:
        """Create the scratch tables' indexes and keys."""
        self._execute_each(self.index_statements(self.scratch))

    def _installed(self) -> None:
        """After a swap: whatever the new tables need."""

    def install(self, built: BuiltViews, views: Sequence[str], apply: ApplyRange) -> int:
        with self._lock:
            # The scratch tables are committed (under names no query reads) before they are
            # swapped in, so that their indexes can be built one at a time or on several
            # connections; a rebuild that dies leaves them behind for the next one to drop.
            started = time.monotonic()
            self._fill_scratch(built)
            filled = time.monotonic()
            self._index_scratch(built)
            indexed = time.monotonic()
            log.info(
                "views.rebuild.tables",
                rows=len(built.all_sims),
                copy_s=round(filled - started, 3),
                index_s=round(indexed - filled, 3),
            )
            with self._transaction() as cursor:

                def catch_up(after: int, upto: int) -> None:
                    apply(SqlTx(self, cursor, self.scratch, after, track=False), after, upto)

                live = self._locked_position(cursor)
                views, position = level(live, built.position(), views, catch_up)
                swap = self.scratch.of_views(views)
                for scratch, table in zip(swap, self.live.of_views(views), strict=True):
                    cursor.execute(f"DROP TABLE {self.q(table)}")
                    cursor.execute(f"ALTER TABLE {self.q(scratch)} RENAME TO {table}")
                self._drop(cursor, [t for t in self.scratch.all() if t not in swap])
                cursor.execute(self.sql.set_position, (position, TRACKING_NAME))
            log.info("views.rebuild.swapped", swap_s=round(time.monotonic() - indexed, 3))
            self._installed()
        return position

    def _fill_rest(self, cursor: Any, built: BuiltViews) -> None:
        """The counts, groups and operations of ``built`` into the scratch tables."""
        self.sql.write_changes(
            cursor,
            self.scratch,
            Changes(
                groups=dict(built.all_groups),
                operations=dict(built.all_operations),
                counts=dict(built.all_counts),
            ),
        )

    @contextmanager
    def snapshot(self) -> Iterator[ViewSnapshot]:
        sql = self.sql
        with self._consistent() as (cursor, stream):
            cursor.execute(sql.read_position, (TRACKING_NAME,))
            found = cursor.fetchone()

            def groups() -> Iterator[GroupRow]:
                statement = sql.groups_statement(None, None, self.live)[0]
                return iter(list(map(sql.groups.decode, cursor.execute(statement).fetchall())))

            def operations() -> Iterator[OperationRow]:
                statement = sql.operations_statement(self.live)
                return iter(list(map(sql.operations.decode, cursor.execute(statement).fetchall())))

            def counts() -> dict[CountKey, int]:
                return sql.decode_counts(cursor.execute(sql.all_counts(self.live)).fetchall())

            yield ViewSnapshot(
                position=int(found[0]) if found else 0,
                sims=lambda: map(sql.sims.decode, stream(sql.all_sims(self.live))),
                groups=groups,
                operations=operations,
                counts=counts,
                extra_checks=lambda: self._extra_checks(cursor),
            )


def notification(
    notification_id: int, originator_id: Any, version: int, topic: str, state: bytes
) -> Notification:
    """``Notification(...)`` without the frozen dataclass's ``__init__`` (five
    ``object.__setattr__`` calls): the same object for less, which a rebuild pays once per
    event."""
    made = object.__new__(Notification)
    object.__setattr__(
        made,
        "__dict__",
        {
            "originator_id": originator_id,
            "originator_version": version,
            "topic": topic,
            "state": state,
            "id": notification_id,
        },
    )
    return made


class SqlTx:
    """One view transaction of a SQL store: rows and tracking position on one cursor."""

    def __init__(
        self,
        store: SqlViewStore,
        cursor: Any,
        tables: Tables,
        position: int,
        *,
        track: bool,
        new_cursor: Callable[[], Any] | None = None,
    ) -> None:
        self._store = store
        self._cursor = cursor
        self._new_cursor = new_cursor or cursor.connection.cursor
        """Cursors for reads, on the same connection, with the same kind of rows."""
        self._tables = tables
        self._position = position
        self._track = track

    @property
    def position(self) -> int:
        return self._position

    def load(self, keys: Keys) -> Touched:
        return self._store.sql.load_rows(self._new_cursor, self._tables, keys)

    def write(self, changes: Changes, position: int) -> None:
        self._store.write_changes(self._cursor, self._tables, changes)
        if self._track and position > self._position:
            self._cursor.execute(self._store.sql.set_position, (position, TRACKING_NAME))
        self._position = max(self._position, position)

    def write_at(self, changes: Changes, position_sql: str) -> None:
        """:meth:`write`, the position given as SQL (a scalar subquery: the log's last id
        once the save's INSERT, sent before, ran)."""
        self._store.write_changes(self._cursor, self._tables, changes)
        if self._track:
            statement = self._store.sql.set_position_to(position_sql)
            self._cursor.execute(statement, (TRACKING_NAME,), prepare=True)
