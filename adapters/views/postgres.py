"""The PostgreSQL view store: the views as tables in the ledger's own database and schema.

Connections of its own (the ledger's settings, ``TimeZone`` UTC), opened on first use and
shared by the store's threads under locks: one for writes and most reads, one for reading
the log ahead, one for ``sims()`` pages (prepared, generic plans); no pool, so nothing
outlives the ledger.
A batch is one transaction that starts with ``SELECT … FOR UPDATE`` on the tracking row,
so projectors in any number of processes serialise on it and each folds only events after
the position it read. Text columns sort with ``COLLATE "C"`` (code-point order, as Python
and SQLite sort); text is kept escaped (PostgreSQL text cannot hold NUL) and decimals as
exact text (``numeric`` cannot hold ``1E+200000``), each sorted by a bounded key. Labels
are a ``text[]``, with a GIN index on their keys (``label_keys``: a GIN entry is bounded
too). A page and its ``total`` are
one statement (one snapshot). Sorting by "this month's MB" uses an index of that month;
a rebuild adds status-led partial indexes for the statuses few SIMs have
(:mod:`.postgres_indexes`).
"""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import replace
from typing import Any, ClassVar, cast

import psycopg
from eventsourcing.persistence import ApplicationRecorder
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg import pq
from psycopg.rows import TupleRow, tuple_row

from simledger.adapters.views.base import TRACKING_NAME, BuiltViews
from simledger.adapters.views.dialect import (
    GROUP_TABLE_COLUMNS,
    SIM_TABLE,
    ColumnType,
    Convert,
    Dialect,
    decimal_text,
    escaped_list,
    text_decimal,
    unescaped_list,
)
from simledger.adapters.views.postgres_indexes import (
    HAS_LABELS,
    MONTH_INDEX,
    Conn,
    build_in_parallel,
    copy_rows,
    find_trigram_ops,
    literal,
    minority_index_statements,
    month_index_statement,
    own_index_statements,
    previous_month,
)
from simledger.adapters.views.sim_list_sql import escape_like
from simledger.adapters.views.sql import (
    COUNT_WRITE_COLUMNS,
    OPERATION_COLUMNS,
    SIM_TABLE_COLUMNS,
    Tables,
)
from simledger.adapters.views.sql_store import LogSource, SqlTx, SqlViewStore, Stream
from simledger.projections.batch_state import Changes, Keys, Touched
from simledger.projections.listing import SimQuery
from simledger.projections.rows import SimRow
from simledger.projections.sort_keys import TEXT_KEY_CHARS, escape_text, text_key

STAGED_PREFIX = "view_sims_staged_"
"""Name prefix of the tables a parallel rebuild's second process stages its rows in."""

COPY_FROM = 200
"""A batch writing at least this many SIM rows stages them with COPY."""

TYPES: Mapping[ColumnType, str] = {
    ColumnType.TEXT: "text",
    ColumnType.BOOL: "boolean",
    ColumnType.INT: "bigint",
    ColumnType.DECIMAL: "text",
    ColumnType.TIME: "timestamptz",
    ColumnType.LIST: "text[]",
    ColumnType.REAL: "float8",
}
SIM_COPY_TYPES = [TYPES[c.type] for c in SIM_TABLE]
"""The SIM table's column types, for a binary COPY."""


_SEARCH_ESCAPE = re.compile("[\x00-\x02]")
"""Characters of a needle that could match inside an escape code of the stored text."""


def _regex_literal(text: str) -> str:
    """``text`` as a literal of a PostgreSQL regular expression (ARE)."""
    return "".join(
        char if char.isascii() and char.isalnum() else f"\\U{ord(char):08x}" for char in text
    )


class PostgresDialect(Dialect):
    """Values as psycopg adapts them (timestamptz, text[], float8), decimals as text."""

    placeholder = "%s"
    chunk_size = 20_000
    key_after_fill = True
    lock_suffix = " FOR UPDATE"
    types: ClassVar[Mapping[ColumnType, str]] = {**TYPES, ColumnType.TEXT: 'text COLLATE "C"'}
    sims_options = " WITH (fillfactor = 80)"
    """Room on each page for updates that change no indexed column (HOT)."""
    no_time = "'0001-01-01 00:00:00+00'::timestamptz"
    encoders: ClassVar[Mapping[ColumnType, Convert]] = {
        ColumnType.DECIMAL: decimal_text,
        ColumnType.LIST: escaped_list,
    }
    decoders: ClassVar[Mapping[ColumnType, Convert]] = {
        ColumnType.DECIMAL: text_decimal,
        ColumnType.LIST: unescaped_list,
    }

    def __init__(self, schema: str) -> None:
        self.schema = schema

    def q(self, table: str) -> str:
        return '"' + self.schema.replace('"', '""') + '"."' + table + '"'

    def prefix(self, expression: str) -> str:
        return f"left({expression}, {TEXT_KEY_CHARS})"

    def label_filter(self, labels_table: str | None, label: str) -> tuple[str, list[Any]]:
        # The GIN index holds the labels' keys; the whole label is checked on the rows found.
        return (
            f"(label_keys @> ARRAY[%s]::text[] AND labels @> ARRAY[%s]::text[] AND {HAS_LABELS})",
            [text_key(label), escape_text(label)],
        )

    def list_contains(self, column: str, item: str) -> tuple[str, list[Any]]:
        return f"{column} @> ARRAY[%s]::text[]", [item]

    def contains(self, column: str, needle: str) -> tuple[str, list[Any]]:
        if _SEARCH_ESCAPE.search(needle) is None:
            # Its characters match only characters of the stored text as they are: a LIKE
            # on it (which the trigram index serves) is the search itself.
            return f"lower({column}) LIKE %s ESCAPE '\\'", ["%" + escape_like(needle) + "%"]
        # A needle with NUL, U+0001 or U+0002 could match from the middle of an escape
        # code: it must start after an even run of U+0001 (a code boundary).
        pattern = "(^|[^\\x01])(\\x01\\x01)*" + _regex_literal(escape_text(needle))
        return f"lower({column}) ~ %s", [pattern]

    def starts_with(self, column: str, prefix: str) -> tuple[str, list[Any]]:
        # A LIKE prefix under COLLATE "C": a range of the column's B-tree.
        return f"{column} LIKE %s", [escape_like(prefix) + "%"]

    def in_list(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        if column in ("status", "sim_type"):
            # Enum values (checked by make_query), written into the statement: a prepared
            # generic plan then still sees which status it is for (partial indexes).
            literals = [literal(str(value)) for value in values]
            if len(literals) == 1:
                return f"{column} = {literals[0]}", []
            return f"{column} IN ({', '.join(literals)})", []
        if len(values) == 1:  # "=": an index on (column, iccid) then also gives the order
            return f"{column} = %s", [values[0]]
        return f"{column} = ANY(%s)", [list(values)]

    def partition_filter(self) -> str:
        # hashtext is stable: a SIM always lands in the same part.
        return "(topic NOT LIKE %s OR mod(hashtext(originator_id)::bigint + 2147483648, %s) = %s)"


class PostgresViewStore(SqlViewStore):
    kind = "postgres"
    concurrent_reads = True

    def __init__(self, connect: Mapping[str, Any], schema: str) -> None:
        self.schema = schema or "public"
        super().__init__(PostgresDialect(self.schema))
        self._connect_kwargs = {k: v for k, v in connect.items() if k != "row_factory"}
        utc = "SET TIME ZONE 'UTC'"
        self._main = LazyConnection(self._connect(utc), self._lock)
        self._reader = LazyConnection(self._connect(), threading.Lock())
        """Reads the log ahead while the main connection writes a batch."""
        self._pages = LazyConnection(
            self._connect(utc, "SET plan_cache_mode = force_generic_plan"), threading.Lock()
        )
        self._trigram_ops: str | None = None
        self._months_indexed: set[str] = set()
        with self._conn() as conn:
            self._trigram_ops = find_trigram_ops(conn)
        self._ensure_schema()
        self._start_counting(apart=True)

    # ---- connections --------------------------------------------------------------------
    def _connect(self, *settings: str) -> Callable[[], Conn]:
        def connect() -> Conn:
            conn = psycopg.connect(**self._connect_kwargs, autocommit=True)
            for setting in settings:
                conn.execute(setting)
            return conn

        return connect

    def _conn(self) -> AbstractContextManager[Conn]:
        """The connection for writes and most reads."""
        return self._main.use()

    def _pages_conn(self) -> AbstractContextManager[Conn]:
        """The connection for ``sims()`` pages: its statements are prepared on first use
        with a generic plan (``force_generic_plan``), so the next pages of a listing are
        not planned again (a plan weighs up some 35 indexes). The values a plan depends on
        are written into the statement (statuses and SIM types, from the enums) or are
        cursor bounds; searches are not prepared."""
        return self._pages.use()

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Cursor[TupleRow]]:
        with self._conn() as conn, conn.transaction():
            yield conn.cursor()

    def inline(self, connection: object, keys: Keys) -> tuple[SqlTx, Touched]:
        conn = cast("psycopg.Connection[Any]", connection)
        # The tracking lock and the rows' reads leave together and come back in one round
        # trip (a pipeline; the save's own if it runs one: a nested one would add a sync).
        in_pipeline = conn.pgconn.pipeline_status != pq.PipelineStatus.OFF
        with nullcontext() if in_pipeline else conn.pipeline():
            return self.inline_send(conn, keys)()

    def inline_send(self, connection: object, keys: Keys) -> Callable[[], tuple[SqlTx, Touched]]:
        conn = cast("psycopg.Connection[Any]", connection)
        cursor = self._inline_cursor(conn)

        def new_cursor() -> psycopg.Cursor[TupleRow]:
            return conn.cursor(row_factory=tuple_row)

        cursor.execute(self.sql.lock_position, (TRACKING_NAME,))
        receive = self.sql.send_loads(new_cursor, self.live, keys)

        def opened() -> tuple[SqlTx, Touched]:
            found = cursor.fetchone()
            assert found is not None, "the views' tracking row exists from the store's creation"
            touched = receive()
            tx = SqlTx(self, cursor, self.live, int(found[0]), track=True, new_cursor=new_cursor)
            return tx, touched

        return opened

    def early_send(self, connection: object, keys: Keys) -> Callable[[], tuple[SqlTx, Touched]]:
        """:meth:`inline_send` for a save that writes its batch before its INSERT has
        answered (``SqlTx.write_at``)."""
        return self.inline_send(connection, keys)

    def _inline_cursor(self, connection: Any) -> psycopg.Cursor[TupleRow]:
        # eventsourcing's connections return dicts; ours tuples, and times in UTC (a
        # setting of the session, made once per pooled connection).
        if connection.info.parameter_status("TimeZone") not in ("UTC", "Etc/UTC"):
            connection.execute("SET TIME ZONE 'UTC'")
        return cast("psycopg.Cursor[TupleRow]", connection.cursor(row_factory=tuple_row))

    def _query(self, statement: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        with self._conn() as conn:
            return list(conn.execute(statement, params).fetchall())

    @contextmanager
    def _consistent(self) -> Iterator[tuple[psycopg.Cursor[TupleRow], Stream]]:
        with self._conn() as conn, conn.transaction():
            cursor = conn.cursor()
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            # A plan per call: the best index depends on the values (an ICCID prefix is a
            # range only when the planner sees it), which a cached generic plan ignores.
            cursor.execute("SET LOCAL plan_cache_mode = force_custom_plan")

            def stream(statement: str) -> Iterator[Sequence[Any]]:
                reader = conn.cursor(name="simledger_verify_sims")
                reader.itersize = 5000
                reader.execute(statement)
                return iter(reader)

            yield cursor, stream

    def _execute_each(self, statements: Iterable[str]) -> None:
        with self._conn() as conn:
            for statement in statements:
                conn.execute(statement)

    def _log_source(self, recorder: ApplicationRecorder) -> LogSource | None:
        table = getattr(recorder, "events_table_name", None)
        if not isinstance(recorder, PostgresApplicationRecorder) or table is None:
            return None
        return table, None

    def _read_log(self, statement: str, params: Sequence[Any]) -> list[Sequence[Any]]:
        """On a connection of its own, prepared, binary (the states arrive as bytes)."""
        with self._reader.use() as reader:
            return list(reader.execute(statement, params, prepare=True, binary=True))

    def _lock_schema(self, cursor: Any) -> None:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
            (f"{self.schema}.simledger.views",),
        )

    def _own_indexes(self, tables: Tables, token: str) -> list[str]:
        return own_index_statements(self.sql, tables, token, self._trigram_ops)

    # ---- writing ------------------------------------------------------------------------
    def _write_rows(self, cursor: Any, tables: Tables, changes: Changes) -> None:
        if len(changes.sims) >= COPY_FROM:
            # Many rows: one COPY into a session-local staging table and one set-based
            # upsert beat a statement per row (executemany) on the server.
            stage = f"{tables.sims}_stage"
            cursor.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {stage} "
                f"(LIKE {self.q(tables.sims)}) ON COMMIT DELETE ROWS"
            )
            self._copy_sims(cursor, stage, changes.sims.values())
            cursor.execute(self.sql.upsert_from(tables.sims, stage))
            cursor.execute(f"TRUNCATE {stage}")
            changes = replace(changes, sims={})
        super()._write_rows(cursor, tables, changes)

    def _copy_sims(self, cursor: Any, table: str, rows: Iterable[SimRow]) -> None:
        encode = self.sql.sims.encode
        copy_rows(cursor, table, SIM_TABLE_COLUMNS, map(encode, rows), SIM_COPY_TYPES)

    # ---- queries ------------------------------------------------------------------------
    def _ensure_month_index(self, month: str) -> None:
        """Create the live SIM table's index for ``month`` the first time a page is sorted
        by this month's MB (rebuilds create the current month's; so once a month here),
        and drop those of months before the previous one."""
        if month in self._months_indexed:
            return
        suffix = month.replace("-", "_")
        with self._conn() as conn:
            conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (f"{self.schema}:month",))
            try:
                months = {
                    name: found.group(1)
                    for (name,) in conn.execute(
                        "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND tablename = %s",
                        (self.schema, self.live.sims),
                    ).fetchall()
                    if (found := MONTH_INDEX.search(name)) is not None
                }  # a rebuild's index keeps its scratch table's name: view_sims_rebuild_month_…
                if suffix not in months.values():
                    conn.execute(month_index_statement(self.sql, self.live, month))
                    keep = (suffix, previous_month(month))
                    for name, indexed in months.items():
                        if indexed not in keep:
                            conn.execute(f"DROP INDEX IF EXISTS {self.q(name)}")
            finally:
                conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (f"{self.schema}:month",))
        self._months_indexed.add(month)

    def sims_page(self, query: SimQuery) -> tuple[list[SimRow], int]:
        if query.column == "this_month_mb":
            self._ensure_month_index(query.month)
        page, page_params = self.page_statement(query, self.live)
        total, total_params = self.total_statement(query, self.live)
        # ONE statement, one round trip: the total rides along as an uncorrelated scalar
        # subquery (evaluated once) in the page's select list, and both read one snapshot.
        # Prepared with a generic plan, on a connection of its own (``_pages_conn``), except
        # a search: its generic plan would not see that an ICCID prefix is a range.
        main_from = f" FROM {self.q(self.live.sims)} "  # not a subquery's FROM
        combined = page.replace(main_from, f", ({total}){main_from}", 1)
        searching = query.search is not None
        with self._conn() if searching else self._pages_conn() as conn:
            found = conn.execute(
                combined, [*total_params, *page_params], prepare=not searching, binary=True
            )
            values = found.fetchall()
            if not values:  # no page, so no total on it: the filtered set may still have some
                (count,) = conn.execute(total, total_params, prepare=False).fetchone() or (0,)
                return [], int(count)
        decode = self.sql.sims.decode
        return [decode(v[:-1]) for v in values], int(values[0][-1])

    # ---- rebuild and verify -------------------------------------------------------------
    def stage_sims(self, table: str, rows: Iterable[SimRow]) -> None:
        """Put ``rows`` in a new unlogged table ``table`` shaped like the SIM list, for an
        ``install`` of views whose ``staged_sims`` is ``table``, by another process (the
        parallel rebuild)."""
        with self._transaction() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {self.q(table)}")
            cursor.execute(
                f"CREATE UNLOGGED TABLE {self.q(table)} "
                f"(LIKE {self.q(self.live.sims)} INCLUDING DEFAULTS)"
            )
            self._copy_sims(cursor, self.q(table), rows)

    def drop_staged(self, table: str | None = None) -> None:
        """Drop the staged table ``table``, or (None) every one a rebuild left behind: a
        rebuild owns the scratch tables while it runs (it drops them first, as ``install``
        does its own), so one found when a rebuild starts belongs to a process that died."""
        names = [table] if table is not None else self._staged_tables()
        self._execute_each(f"DROP TABLE IF EXISTS {self.q(name)}" for name in names)

    def _staged_tables(self) -> list[str]:
        found = self._query(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s AND tablename LIKE %s",
            (self.schema, STAGED_PREFIX.replace("_", "\\_") + "%"),
        )
        return [name for (name,) in found]

    def _fill_scratch(self, built: BuiltViews) -> None:
        """One transaction: empty scratch tables, filled with COPY, plus the staged rows."""
        tables = self.scratch
        with self._transaction() as cursor:
            self._create_scratch(cursor)
            self._copy_sims(cursor, self.q(tables.sims), built.all_sims.values())
            copy_rows(
                cursor,
                self.q(tables.counts),
                COUNT_WRITE_COLUMNS,
                (self.sql.count_row(key, n) for key, n in built.all_counts.items()),
            )
            copy_rows(
                cursor,
                self.q(tables.groups),
                GROUP_TABLE_COLUMNS,
                map(self.sql.groups.encode, built.all_groups.values()),
            )
            copy_rows(
                cursor,
                self.q(tables.operations),
                OPERATION_COLUMNS,
                map(self.sql.operations.encode, built.all_operations.values()),
            )
            if built.staged_sims is not None:
                columns = ", ".join(SIM_TABLE_COLUMNS)
                cursor.execute(
                    f"INSERT INTO {self.q(tables.sims)} ({columns}) "
                    f"SELECT {columns} FROM {self.q(built.staged_sims)}"
                )
                cursor.execute(f"DROP TABLE {self.q(built.staged_sims)}")

    def _index_scratch(self, built: BuiltViews) -> None:
        """Each index of the filled scratch tables on a connection of its own, a few at
        once, with the status-led ones for the statuses few SIMs have; the SIM table's
        primary key is a unique index built alongside, then attached."""
        tables = self.scratch
        statuses: dict[str, int] = {}
        for (status, *_), n in built.all_counts.items():
            statuses[status] = statuses.get(status, 0) + n
        key = f"{tables.sims}_key_{secrets.token_hex(4)}"
        build_in_parallel(
            self._connect_kwargs,
            [
                f"CREATE UNIQUE INDEX {key} ON {self.q(tables.sims)} (iccid)",
                *self.index_statements(tables),
                *minority_index_statements(self.sql, tables, statuses),
            ],
        )
        self._execute_each(
            [
                f"ALTER TABLE {self.q(tables.sims)} "
                f"ADD CONSTRAINT {key} PRIMARY KEY USING INDEX {key}",
                *self._analyze_statements(tables),
            ]
        )

    def _installed(self) -> None:
        self._months_indexed.clear()  # the new tables have the current month's index only
        self._auto_analyze.analyzed(self._sim_rows())  # the install analyzed its tables

    def _sim_rows(self) -> float:
        found = self._query(
            "SELECT c.reltuples FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s",
            (self.schema, self.live.sims),
        )
        return float(found[0][0]) if found else -1.0

    def _analyze_now(self) -> float:
        """On a connection of its own: the main one stays free while it runs."""
        with self._connect()() as conn:
            for statement in self._analyze_statements(self.live):
                conn.execute(statement)
        return self._sim_rows()

    def close(self) -> None:
        super().close()
        for connection in (self._main, self._reader, self._pages):
            connection.close()


class LazyConnection:
    """One connection, opened on first use, used by one thread at a time (``lock``), and
    opened again on the next use after it failed."""

    def __init__(self, connect: Callable[[], Conn], lock: threading.Lock | threading.RLock) -> None:
        self._connect = connect
        self._lock = lock
        self._conn: Conn | None = None

    @contextmanager
    def use(self) -> Iterator[Conn]:
        with self._lock:
            conn = self._conn
            if conn is None or conn.closed:
                conn = self._conn = self._connect()
            try:
                yield conn
            except (psycopg.OperationalError, psycopg.InterfaceError):
                self._conn = None
                conn.close()
                raise

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
