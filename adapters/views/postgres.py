"""The PostgreSQL view store: the views as tables in the ledger's own database and schema.

Connections of its own (the ledger's settings, ``TimeZone`` UTC), opened on first use and
shared by the store's threads under locks: one for writes and most reads, one for reading
the log ahead, one for ``sims()`` pages (prepared, generic plans); no pool, so nothing
outlives the ledger.
A batch is one transaction that starts with ``SELECT … FOR UPDATE`` on the tracking row,
so projectors in any number of processes serialise on it and each folds only events after
the position it read. Text columns sort with ``COLLATE "C"`` (code-point order, as Python
and SQLite sort). Labels are a ``text[]`` with a GIN index. A page and its ``total`` are
one statement (one snapshot). Sorting by "this month's MB" uses an index of that month;
a rebuild adds status-led partial indexes for the statuses few SIMs have.
"""

from __future__ import annotations

import os
import re
import secrets
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psycopg
from eventsourcing.persistence import ApplicationRecorder, Notification
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import get_topic
from psycopg.rows import TupleRow

from simledger.adapters.logs import get_logger
from simledger.adapters.views.base import (
    ALL_VIEWS,
    PROJECTION_VERSION,
    TRACKING_NAME,
    ApplyRange,
    Partition,
    ViewSnapshot,
)
from simledger.adapters.views.sql import (
    COUNT_COLUMNS,
    GROUP_COLUMNS,
    LIVE,
    NULLABLE_TEXT,
    OPERATION_COLUMNS,
    REBUILD,
    SIM_COLUMNS,
    SIM_TABLE_COLUMNS,
    SORT_INDEXED,
    TRACKING_TABLE,
    SqlTx,
    SqlViewStore,
    Tables,
    sort_kind,
)
from simledger.domain.sim import Sim
from simledger.projections.batch import Changes, CountKey
from simledger.projections.listing import Kind, SimQuery
from simledger.projections.rows import GroupRow, OperationRow, SimRow

if TYPE_CHECKING:
    from simledger.adapters.views.memory import MemoryViewStore

log = get_logger("simledger.views")

_MONTH = re.compile(r"^[0-9]{1,4}-[0-9]{2}$")
_MONTH_INDEX = re.compile(r"_month_([0-9]{1,4}_[0-9]{2})_[0-9a-f]{8}$")


STAGED_PREFIX = "view_sims_staged_"
"""Name prefix of the tables a parallel rebuild's second process stages its rows in."""

SIM_TOPICS = get_topic(Sim) + ".%"
"""LIKE pattern of the topics of every SIM event class (``…sim:Sim.Received``)."""


def _notification(
    notification_id: int, originator_id: str, version: int, topic: str, state: bytes
) -> Notification:
    """``Notification(...)`` without the frozen dataclass's ``__init__`` (five
    ``object.__setattr__`` calls): the same object, a third of the cost, which a rebuild
    pays a million times."""
    notification = object.__new__(Notification)
    object.__setattr__(
        notification,
        "__dict__",
        {
            "originator_id": originator_id,
            "originator_version": version,
            "topic": topic,
            "state": state,
            "id": notification_id,
        },
    )
    return notification


def _literal(text: str) -> str:
    """``text`` as an SQL string literal (a status value: letters and underscores)."""
    return "'" + text.replace("'", "''") + "'"


def current_month() -> str:
    """``YYYY-MM`` now (UTC): the month whose "this month's MB" index a rebuild creates."""
    return datetime.now(UTC).strftime("%Y-%m")


def previous_month(month: str) -> str:
    """The month before ``month`` (``YYYY-MM``), as an index-name suffix ``YYYY_MM``."""
    year, number = (int(part) for part in month.split("-"))
    year, number = (year - 1, 12) if number == 1 else (year, number - 1)
    return f"{year:04d}_{number:02d}"


_NO_TIME_SQL = "'0001-01-01 00:00:00+00'::timestamptz"
SIM_TYPES: dict[str, str] = {
    "iccid": "text",
    "esim": "boolean",
    "status": "text",
    "operator": "text",
    "sim_type": "text",
    "in_session": "text",
    "plan": "text",
    "company": "text",
    "end_user": "text",
    "data_left_mb": "numeric",
    "expires_at": "timestamptz",
    "usage_month": "text",
    "usage_month_mb": "numeric",
    "note": "text",
    "rules": "text[]",
    "labels": "text[]",
    "group_id": "text",
    "package_id": "text",
    "copy_id": "text",
    "copy_left_mb": "numeric",
    "copy_depleted": "text",
    "suspended_reason": "text",
    "version": "bigint",
    "updated_at": "timestamptz",
    "labels_key": "text",
    "rules_key": "text",
}
"""The SIM list table's columns (in ``SIM_TABLE_COLUMNS`` order) and their types."""
_SIM_NOT_NULL = frozenset(
    {"esim", "status", "operator", "sim_type", "in_session", "usage_month_mb", "rules", "labels"}
    | {"version", "labels_key", "rules_key"}
)
REBUILD_MEMORY = "256MB"
INDEX_BUILDERS = max(2, min(4, os.cpu_count() or 2))
"""Connections building a rebuild's indexes at once."""
"""``maintenance_work_mem`` while a rebuild creates its indexes (sorts in memory)."""

COPY_FROM = 200
"""A batch writing at least this many SIM rows stages them with COPY."""
_HAS_LABELS = "labels <> '{}'::text[]"
"""The GIN index on labels leaves out SIMs without any (most, and every new one)."""
Conn = psycopg.Connection[TupleRow]


class PostgresViewStore(SqlViewStore):
    kind = "postgres"
    concurrent_reads = True
    placeholder = "%s"
    chunk_size = 20_000

    def __init__(self, connect: Mapping[str, Any], schema: str) -> None:
        self.schema = schema or "public"
        self._connect_kwargs = {k: v for k, v in connect.items() if k != "row_factory"}
        self._lock = threading.RLock()
        self._connection: Conn | None = None
        self._read_lock = threading.Lock()
        self._reader: Conn | None = None
        self._trigram_ops: str | None = None
        self._months_indexed: set[str] = set()
        self._pages_lock = threading.Lock()
        self._pages: Conn | None = None
        self._ensure_schema()

    @contextmanager
    def _conn(self) -> Iterator[Conn]:
        with self._lock:
            conn = self._connection
            if conn is None or conn.closed:
                conn = psycopg.connect(**self._connect_kwargs, autocommit=True)
                conn.execute("SET TIME ZONE 'UTC'")
                self._connection = conn
            try:
                yield conn
            except (psycopg.OperationalError, psycopg.InterfaceError):
                self._connection = None
                conn.close()
                raise

    @contextmanager
    def _pages_conn(self) -> Iterator[Conn]:
        """The connection for ``sims()`` pages: its statements are prepared on first use
        with a generic plan (``force_generic_plan``), so the next pages of a listing are
        not planned again (a plan weighs up about 35 indexes: 1-2 ms). The values a plan
        depends on are written into the statement (statuses and SIM types, from the
        enums) or are cursor bounds; searches are not prepared."""
        with self._pages_lock:
            conn = self._pages
            if conn is None or conn.closed:
                conn = psycopg.connect(**self._connect_kwargs, autocommit=True)
                conn.execute("SET TIME ZONE 'UTC'")
                conn.execute("SET plan_cache_mode = force_generic_plan")
                self._pages = conn
            try:
                yield conn
            except (psycopg.OperationalError, psycopg.InterfaceError):
                self._pages = None
                conn.close()
                raise

    def notifications(
        self,
        recorder: ApplicationRecorder,
        start: int,
        limit: int,
        stop: int | None = None,
        partition: Partition | None = None,
    ) -> Sequence[Notification]:
        """The recorder's own query with plain tuple rows, on a second connection of this
        store's (so the runner can read the next batch while the first one writes)."""
        table = getattr(recorder, "events_table_name", None)
        if not isinstance(recorder, PostgresApplicationRecorder) or table is None:
            return super().notifications(recorder, start, limit, stop, partition)
        conditions = ["notification_id >= %s"]
        params: list[Any] = [start]
        if stop is not None:
            conditions.append("notification_id <= %s")
            params.append(stop)
        if partition is not None:
            # SIM events of this part's SIMs (hashtext is stable: a SIM always lands in the
            # same part), and every other event (package copies, groups, operations).
            conditions.append(
                "(topic NOT LIKE %s OR mod(hashtext(originator_id)::bigint + 2147483648, %s) = %s)"
            )
            params += [SIM_TOPICS, partition[1], partition[0]]
        statement = (
            "SELECT notification_id, originator_id, originator_version, topic, state "
            f"FROM {self.q(table)} WHERE {' AND '.join(conditions)} "
            "ORDER BY notification_id LIMIT %s"
        )
        params.append(limit)
        with self._read_lock:
            reader = self._reader
            if reader is None or reader.closed:
                reader = self._reader = psycopg.connect(**self._connect_kwargs, autocommit=True)
            try:
                rows = reader.execute(statement, params, prepare=True, binary=True).fetchall()
            except (psycopg.OperationalError, psycopg.InterfaceError):
                self._reader = None
                reader.close()
                raise
        return [
            _notification(notification_id, originator_id, version, topic, state)
            for notification_id, originator_id, version, topic, state in rows
        ]

    # ---- dialect ------------------------------------------------------------------------
    def q(self, table: str) -> str:
        return '"' + self.schema.replace('"', '""') + '"."' + table + '"'

    def key_expr(self, column: str, month: str = "", alias: str = "") -> str:
        a = f"{alias}." if alias else ""
        if column == "this_month_mb":
            if not _MONTH.match(month):
                raise ValueError(f"not a month: {month!r}")
            return f"(CASE WHEN {a}usage_month = '{month}' THEN {a}usage_month_mb ELSE 0 END)"
        if column in ("labels", "rules"):
            return f"{a}{column}_key"
        kind = sort_kind(column)
        if kind is Kind.NUMBER:
            return f"COALESCE({a}{column}, -1)"
        if kind is Kind.TIME:
            return f"COALESCE({a}{column}, {_NO_TIME_SQL})"
        if column in NULLABLE_TEXT:
            return f"COALESCE({a}{column}, '')"
        return f"{a}{column}"

    def key_param(self, value: Any, kind: Kind) -> Any:
        return value

    def sim_params(self, row: SimRow) -> tuple[Any, ...]:
        return (
            row.iccid,
            row.esim,
            row.status,
            row.operator,
            row.sim_type,
            row.in_session,
            row.plan,
            row.company,
            row.end_user,
            row.data_left_mb,
            row.expires_at,
            row.usage_month,
            row.usage_month_mb,
            row.note,
            row.rules,
            row.labels,
            row.group_id,
            row.package_id,
            row.copy_id,
            row.copy_left_mb,
            row.copy_depleted,
            row.suspended_reason,
            row.version,
            row.updated_at,
            ",".join(row.labels),
            ",".join(row.rules),
        )

    def sim_from_db(self, values: Sequence[Any]) -> SimRow:
        return SimRow(*values)

    def _copy_sims(
        self, cursor: psycopg.Cursor[TupleRow], table: str, rows: Iterable[SimRow]
    ) -> None:
        """Binary COPY: about twice as fast as text for these rows."""
        columns = ", ".join(SIM_TABLE_COLUMNS)
        params = self.sim_params
        with cursor.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types([SIM_TYPES[c] for c in SIM_TABLE_COLUMNS])
            for row in rows:
                copy.write_row(params(row))

    def write_changes(self, cursor: Any, tables: Tables, changes: Changes) -> None:
        if len(changes.sims) >= COPY_FROM:
            # Many rows: one COPY into a session-local staging table and one set-based
            # upsert beat a statement per row (executemany) on the server.
            stage = f"{tables.sims}_stage"
            columns = ", ".join(SIM_TABLE_COLUMNS)
            cursor.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {stage} "
                f"(LIKE {self.q(tables.sims)}) ON COMMIT DELETE ROWS"
            )
            self._copy_sims(cursor, stage, changes.sims.values())
            updates = ", ".join(f"{c} = excluded.{c}" for c in SIM_TABLE_COLUMNS if c != "iccid")
            cursor.execute(
                f"INSERT INTO {self.q(tables.sims)} ({columns}) SELECT {columns} FROM {stage} "
                f"ON CONFLICT (iccid) DO UPDATE SET {updates}"
            )
            cursor.execute(f"TRUNCATE {stage}")
            changes = replace(changes, sims={})
        super().write_changes(cursor, tables, changes)

    def group_params(self, row: GroupRow) -> tuple[Any, ...]:
        return (
            row.group_id,
            row.name,
            row.package_id,
            row.package_name,
            row.data_mb,
            row.data_left_mb,
            row.expires_at,
            row.member_count,
            row.depleted,
            row.deleted,
            row.version,
        )

    def group_from_db(self, values: Sequence[Any]) -> GroupRow:
        return GroupRow(*values)

    def operation_params(self, row: OperationRow) -> tuple[Any, ...]:
        return (
            row.operation_id,
            row.kind,
            row.requested_at,
            row.deadline,
            row.requested,
            row.confirmed,
            row.refused,
        )

    def operation_from_db(self, values: Sequence[Any]) -> OperationRow:
        return OperationRow(*values)

    def label_filter(self, tables: Tables) -> str:
        return f"(labels @> ARRAY[%s]::text[] AND {_HAS_LABELS})"

    def lower(self, expression: str) -> str:
        return f"lower({expression})"

    def in_list(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        if column in ("status", "sim_type"):
            # Enum values (checked by make_query), written into the statement: a prepared
            # generic plan then still sees which status it is for (partial indexes).
            literals = [_literal(str(value)) for value in values]
            if len(literals) == 1:
                return f"{column} = {literals[0]}", []
            return f"{column} IN ({', '.join(literals)})", []
        if len(values) == 1:  # "=": an index on (column, iccid) then also gives the order
            return f"{column} = %s", [values[0]]
        return f"{column} = ANY(%s)", [list(values)]

    def analyze(self) -> None:
        with self._conn() as conn:
            for table in (LIVE.sims, LIVE.counts, LIVE.groups, LIVE.operations):
                conn.execute(f"ANALYZE {self.q(table)}")

    # ---- schema -------------------------------------------------------------------------
    def _create(self, cursor: psycopg.Cursor[TupleRow], tables: Tables, *, indexes: bool) -> None:
        c = 'COLLATE "C"'
        columns = ", ".join(
            f"{name} {kind}{' ' + c if kind == 'text' else ''}"
            f"{' NOT NULL' if name in _SIM_NOT_NULL else ''}"
            # A rebuild's scratch table gets its key after the bulk load (a unique index
            # built beside the other indexes, then attached): the COPY maintains no index.
            f"{(' PRIMARY KEY' if indexes else ' NOT NULL') if name == 'iccid' else ''}"
            for name, kind in SIM_TYPES.items()
        )
        # fillfactor: room on each page for updates that change no indexed column (HOT).
        cursor.execute(f"CREATE TABLE {self.q(tables.sims)} ({columns}) WITH (fillfactor = 80)")
        cursor.execute(
            f"CREATE TABLE {self.q(tables.counts)} (status text {c} NOT NULL, "
            f"sim_type text {c} NOT NULL, operator text {c} NOT NULL, "
            f"company text {c} NOT NULL, n bigint NOT NULL, "
            "PRIMARY KEY (status, sim_type, operator, company))"
        )
        cursor.execute(
            f"CREATE TABLE {self.q(tables.groups)} (group_id text {c} PRIMARY KEY, "
            f"name text {c} NOT NULL, package_id text NOT NULL, package_name text NOT NULL, "
            "data_mb numeric NOT NULL, data_left_mb numeric NOT NULL, expires_at timestamptz, "
            "member_count integer NOT NULL, depleted boolean NOT NULL, "
            "deleted boolean NOT NULL, version bigint NOT NULL)"
        )
        cursor.execute(
            f"CREATE TABLE {self.q(tables.operations)} (operation_id text {c} PRIMARY KEY, "
            "kind text NOT NULL, requested_at timestamptz NOT NULL, "
            "deadline timestamptz NOT NULL, requested integer NOT NULL, "
            "confirmed integer NOT NULL, refused integer NOT NULL)"
        )
        if indexes:
            self._create_indexes(cursor, tables)

    def _index_statements(self, tables: Tables) -> list[str]:
        token = secrets.token_hex(4)
        statements = self.sim_index_statements(tables, token)
        statements.append(
            f"CREATE INDEX {tables.sims}_labels_{token} ON {self.q(tables.sims)} "
            f"USING gin (labels) WHERE {_HAS_LABELS}"
        )
        if self._trigram_ops is not None:
            # search: substrings of end users and notes, for the SIMs that have one
            for column in ("end_user", "note"):
                statements.append(
                    f"CREATE INDEX {tables.sims}_{column}_text_{token} ON {self.q(tables.sims)} "
                    f"USING gin (lower({column}) {self._trigram_ops}) WHERE {column} IS NOT NULL"
                )
        statements.append(self._month_index_statement(tables, current_month()))
        statements.append(
            f"CREATE INDEX {tables.operations}_newest_{token} "
            f"ON {self.q(tables.operations)} (requested_at, operation_id)"
        )
        return statements

    def _create_indexes(self, cursor: psycopg.Cursor[TupleRow], tables: Tables) -> None:
        for statement in self._index_statements(tables):
            cursor.execute(statement)

    def _minority_index_statements(self, tables: Tables, counts: Mapping[str, int]) -> list[str]:
        """Indexes for a filter on a status few SIMs have, sorted by any column.

        A sort index walked for a rare status (2 % of SIMs: blank, suspended, or active in
        a stock of new SIMs) skips about 50 rows per row it returns. So a rebuild, which
        knows how the fleet's statuses are spread (``counts``, SIMs per status), adds one
        partial index per sort led by the status, over the SIMs whose status is not a
        majority one (held by 20 % of SIMs or more): small, and chosen by the planner for
        any filter on those statuses. Between rebuilds they stay correct as SIMs move;
        a status that becomes common only makes them bigger."""
        total = sum(counts.values())
        common = sorted(status for status, n in counts.items() if n * 5 >= total)
        if not total or not common or len(common) == len(counts):
            return []
        token = secrets.token_hex(4)
        where = "status NOT IN (" + ", ".join(_literal(status) for status in common) + ")"
        keys = [self.key_expr(c) for c in SORT_INDEXED if c != "status"]
        keys.append(self.key_expr("this_month_mb", current_month()))
        statements = []
        for n, key in enumerate(keys):
            statements.append(
                f"CREATE INDEX {tables.sims}_few_{n}_{token} ON {self.q(tables.sims)} "
                f"(status, {key}, iccid) WHERE {where}"
            )
        return statements

    def _create_indexes_in_parallel(
        self, tables: Tables, statuses: Mapping[str, int] | None = None
    ) -> None:
        """Each index of a filled scratch table on a connection of its own, a few at once;
        the SIM table's primary key is a unique index built alongside, then attached."""
        key = f"{tables.sims}_key_{secrets.token_hex(4)}"
        statements = [
            f"CREATE UNIQUE INDEX {key} ON {self.q(tables.sims)} (iccid)",
            *self._index_statements(tables),
            *self._minority_index_statements(tables, statuses or {}),
        ]

        def build(share: list[str]) -> None:
            with psycopg.connect(**self._connect_kwargs, autocommit=True) as conn:
                conn.execute(f"SET maintenance_work_mem = '{REBUILD_MEMORY}'")
                for statement in share:
                    conn.execute(statement)

        workers = max(1, min(INDEX_BUILDERS, len(statements)))
        with ThreadPoolExecutor(workers, thread_name_prefix="simledger-index") as pool:
            for done in [pool.submit(build, statements[k::workers]) for k in range(workers)]:
                done.result()
        with self._conn() as conn:
            conn.execute(
                f"ALTER TABLE {self.q(tables.sims)} "
                f"ADD CONSTRAINT {key} PRIMARY KEY USING INDEX {key}"
            )

    def _drop(self, cursor: psycopg.Cursor[TupleRow], tables: Sequence[str]) -> None:
        for table in tables:
            if table.startswith("view_sim_labels"):
                continue  # SQLite only
            cursor.execute(f"DROP TABLE IF EXISTS {self.q(table)}")

    def _advisory_lock(self, cursor: psycopg.Cursor[TupleRow]) -> None:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
            (f"{self.schema}.simledger.views",),
        )

    def _find_trigram_ops(self, conn: Conn) -> str | None:
        """pg_trgm's GIN operator class, installing the extension if allowed: it indexes
        the substring search on end users and notes. Without it, search scans."""
        query = "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = %s"
        found = conn.execute(query, ("pg_trgm",)).fetchone()
        if found is None:
            try:
                with conn.transaction():
                    conn.execute(
                        "SELECT pg_advisory_xact_lock(hashtextextended('simledger.pg_trgm', 0))"
                    )
                    conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
            except psycopg.Error as error:
                log.info("views.search.unindexed", reason=str(error).strip())
                return None
            found = conn.execute(query, ("pg_trgm",)).fetchone()
        return f"{found[0]}.gin_trgm_ops" if found is not None else None

    def _ensure_schema(self) -> None:
        with self._conn() as conn:
            self._trigram_ops = self._find_trigram_ops(conn)
        with self._conn() as conn, conn.transaction():
            cursor = conn.cursor()
            self._advisory_lock(cursor)
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {self.q(TRACKING_TABLE)} (name text PRIMARY KEY, "
                "position bigint NOT NULL, version integer NOT NULL)"
            )
            cursor.execute(
                f"SELECT version FROM {self.q(TRACKING_TABLE)} WHERE name = %s", (TRACKING_NAME,)
            )
            found = cursor.fetchone()
            if found is None or found[0] != PROJECTION_VERSION:
                if found is not None:
                    log.info("views.schema.outdated", found=found[0], wanted=PROJECTION_VERSION)
                self._drop(cursor, LIVE.all())
                self._create(cursor, LIVE, indexes=True)
                cursor.execute(
                    f"INSERT INTO {self.q(TRACKING_TABLE)} (name, position, version) "
                    "VALUES (%s, 0, %s) ON CONFLICT (name) DO UPDATE "
                    "SET position = 0, version = excluded.version",
                    (TRACKING_NAME, PROJECTION_VERSION),
                )

    # ---- projecting ---------------------------------------------------------------------
    def position(self) -> int:
        with self._conn() as conn:
            row = conn.execute(
                f"SELECT position FROM {self.q(TRACKING_TABLE)} WHERE name = %s",
                (TRACKING_NAME,),
            ).fetchone()
        return int(row[0]) if row else 0

    def head_and_position(self, recorder: ApplicationRecorder) -> tuple[int, int]:
        table = getattr(recorder, "events_table_name", None)
        if not isinstance(recorder, PostgresApplicationRecorder) or table is None:
            return super().head_and_position(recorder)
        with self._conn() as conn:
            row = conn.execute(
                f"SELECT (SELECT MAX(notification_id) FROM {self.q(table)}), "
                f"(SELECT position FROM {self.q(TRACKING_TABLE)} WHERE name = %s)",
                (TRACKING_NAME,),
            ).fetchone()
        return (int(row[0] or 0), int(row[1] or 0)) if row else (0, 0)

    def _locked_position(self, cursor: psycopg.Cursor[TupleRow]) -> int:
        cursor.execute(
            f"SELECT position FROM {self.q(TRACKING_TABLE)} WHERE name = %s FOR UPDATE",
            (TRACKING_NAME,),
        )
        found = cursor.fetchone()
        assert found is not None
        return int(found[0])

    @contextmanager
    def exclusive(self) -> Iterator[SqlTx]:
        with self._conn() as conn, conn.transaction():
            cursor = conn.cursor()
            yield SqlTx(self, cursor, LIVE, self._locked_position(cursor), track=True)

    @contextmanager
    def _snapshot_cursor(self) -> Iterator[tuple[Conn, psycopg.Cursor[TupleRow]]]:
        with self._conn() as conn, conn.transaction():
            cursor = conn.cursor()
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            # A plan per call: the best index depends on the values (an ICCID prefix is a
            # range only when the planner sees it), which a cached generic plan ignores.
            cursor.execute("SET LOCAL plan_cache_mode = force_custom_plan")
            yield conn, cursor

    # ---- queries ------------------------------------------------------------------------
    def _month_index_statement(self, tables: Tables, month: str) -> str:
        """The B-tree that sorts by "this month's MB" for ``month``: the key changes with the
        month of the query, so each month gets its own expression index (the same
        expression the page query sorts by, which is how the planner matches them)."""
        name = f"{tables.sims}_month_{month.replace('-', '_')}_{secrets.token_hex(4)}"
        return (
            f"CREATE INDEX {name} ON {self.q(tables.sims)} "
            f"({self.key_expr('this_month_mb', month)}, iccid)"
        )

    def _ensure_month_index(self, month: str) -> None:
        """Create the live SIM table's index for ``month`` the first time a page is sorted
        by this month's MB (rebuilds create the current month's; once a month here, a few
        seconds per million SIMs), and drop those of months before the previous one."""
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
                        (self.schema, LIVE.sims),
                    ).fetchall()
                    if (found := _MONTH_INDEX.search(name)) is not None
                }  # a rebuild's index keeps its scratch table's name: view_sims_rebuild_month_…
                if suffix not in months.values():
                    conn.execute(self._month_index_statement(LIVE, month))
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
        page, page_params = self.page_statement(query, LIVE)
        total, total_params = self.total_statement(query, LIVE)
        # ONE statement, one round trip: the total rides along as an uncorrelated scalar
        # subquery (evaluated once) in the page's select list, and both read one snapshot.
        # Prepared with a generic plan, on a connection of its own (``_pages_conn``), except
        # a search: its generic plan would not see that an ICCID prefix is a range.
        combined = page.replace(" FROM ", f", ({total}) FROM ", 1)
        searching = query.search is not None
        with self._conn() if searching else self._pages_conn() as conn:
            found = conn.execute(
                combined, [*total_params, *page_params], prepare=not searching, binary=True
            )
            values = found.fetchall()
            if not values:  # no page, so no total on it: the filtered set may still have some
                (count,) = conn.execute(total, total_params, prepare=False).fetchone() or (0,)
                return [], int(count)
        return [SimRow(*v[:-1]) for v in values], int(values[0][-1])

    def operations(self) -> list[OperationRow]:
        with self._conn() as conn:
            found = conn.execute(self.operations_statement(LIVE)).fetchall()
        return [OperationRow(*v) for v in found]

    def groups(self, *, company: str | None, locked: bool | None) -> list[GroupRow]:
        statement, params = self.groups_statement(company, locked, LIVE)
        with self._conn() as conn:
            found = conn.execute(statement, params).fetchall()
        return [GroupRow(*v) for v in found]

    # ---- rebuild and verify -------------------------------------------------------------
    def stage_sims(self, table: str, rows: Iterable[SimRow]) -> None:
        """Put ``rows`` in a new unlogged table ``table`` shaped like the SIM list, for an
        ``install(..., staged=table)`` by another process (the parallel rebuild)."""
        with self._conn() as conn, conn.transaction():
            cursor = conn.cursor()
            cursor.execute(f"DROP TABLE IF EXISTS {self.q(table)}")
            cursor.execute(
                f"CREATE UNLOGGED TABLE {self.q(table)} "
                f"(LIKE {self.q(LIVE.sims)} INCLUDING DEFAULTS)"
            )
            self._copy_sims(cursor, self.q(table), rows)

    def drop_staged(self, table: str | None = None) -> None:
        """Drop the staged table ``table``, or (None) every one a rebuild left behind: a
        rebuild owns the scratch tables while it runs (it drops them first, as ``install``
        does its own), so one found when a rebuild starts belongs to a process that died."""
        with self._conn() as conn:
            names = (
                [table]
                if table is not None
                else [
                    name
                    for (name,) in conn.execute(
                        "SELECT tablename FROM pg_tables WHERE schemaname = %s "
                        "AND tablename LIKE %s",
                        (self.schema, STAGED_PREFIX.replace("_", "\\_") + "%"),
                    ).fetchall()
                ]
            )
            for name in names:
                conn.execute(f"DROP TABLE IF EXISTS {self.q(name)}")

    def install(
        self,
        built: MemoryViewStore,
        views: Sequence[str],
        apply: ApplyRange,
        staged: str | None = None,
    ) -> int:
        with self._conn() as conn:
            # The scratch tables are committed (under names no query reads) so that their
            # indexes can be built on several connections; a rebuild that dies leaves them
            # behind for the next one to drop.
            started = time.monotonic()
            with conn.transaction():
                cursor = conn.cursor()
                self._drop(cursor, REBUILD.all())
                self._create(cursor, REBUILD, indexes=False)
                self._fill(cursor, REBUILD, built)
                if staged is not None:
                    columns = ", ".join(SIM_TABLE_COLUMNS)
                    cursor.execute(
                        f"INSERT INTO {self.q(REBUILD.sims)} ({columns}) "
                        f"SELECT {columns} FROM {self.q(staged)}"
                    )
                    cursor.execute(f"DROP TABLE {self.q(staged)}")
            filled = time.monotonic()
            statuses: dict[str, int] = {}
            for (status, *_), n in built.all_counts.items():
                statuses[status] = statuses.get(status, 0) + n
            self._create_indexes_in_parallel(REBUILD, statuses)
            for table in (REBUILD.sims, REBUILD.counts, REBUILD.groups, REBUILD.operations):
                conn.execute(f"ANALYZE {self.q(table)}")
            indexed = time.monotonic()
            log.info(
                "views.rebuild.tables",
                rows=len(built.all_sims),
                copy_s=round(filled - started, 3),
                index_s=round(indexed - filled, 3),
            )
            with conn.transaction():
                cursor = conn.cursor()
                live = self._locked_position(cursor)
                fresh = built.position()
                if live > fresh:
                    apply(SqlTx(self, cursor, REBUILD, fresh, track=False), fresh, live)
                elif live < fresh:
                    # The rebuilt views are ahead of every live one: swap them all in rather than
                    # fold the gap into the live tables row by row (a catch-up from far behind).
                    views = ALL_VIEWS
                swap = [t for t in REBUILD.of_views(views) if not t.startswith("view_sim_labels")]
                for scratch in swap:
                    table = scratch.removesuffix("_rebuild")
                    cursor.execute(f"DROP TABLE {self.q(table)}")
                    cursor.execute(f"ALTER TABLE {self.q(scratch)} RENAME TO {table}")
                self._drop(cursor, [t for t in REBUILD.all() if t not in swap])
                position = max(live, fresh)
                cursor.execute(
                    f"UPDATE {self.q(TRACKING_TABLE)} SET position = %s WHERE name = %s",
                    (position, TRACKING_NAME),
                )
            log.info("views.rebuild.swapped", swap_s=round(time.monotonic() - indexed, 3))
        self._months_indexed.clear()  # the new tables have the current month's index only
        return position

    def _fill(
        self, cursor: psycopg.Cursor[TupleRow], tables: Tables, built: MemoryViewStore
    ) -> None:
        self._copy_sims(cursor, self.q(tables.sims), built.all_sims.values())
        with cursor.copy(
            f"COPY {self.q(tables.counts)} ({', '.join(COUNT_COLUMNS)}, n) FROM STDIN"
        ) as copy:
            for key, n in built.all_counts.items():
                copy.write_row((*key, n))
        with cursor.copy(
            f"COPY {self.q(tables.groups)} ({', '.join(GROUP_COLUMNS)}) FROM STDIN"
        ) as copy:
            for group in built.all_groups.values():
                copy.write_row(self.group_params(group))
        with cursor.copy(
            f"COPY {self.q(tables.operations)} ({', '.join(OPERATION_COLUMNS)}) FROM STDIN"
        ) as copy:
            for operation in built.all_operations.values():
                copy.write_row(self.operation_params(operation))

    @contextmanager
    def snapshot(self) -> Iterator[ViewSnapshot]:
        with self._snapshot_cursor() as (conn, cursor):
            cursor.execute(
                f"SELECT position FROM {self.q(TRACKING_TABLE)} WHERE name = %s",
                (TRACKING_NAME,),
            )
            found = cursor.fetchone()
            position = int(found[0]) if found else 0

            def sims() -> Iterator[SimRow]:
                reader = conn.cursor(name="simledger_verify_sims")
                reader.itersize = 5000
                reader.execute(
                    f"SELECT {', '.join(SIM_COLUMNS)} FROM {self.q(LIVE.sims)} ORDER BY iccid"
                )
                return (SimRow(*v) for v in reader)

            def groups() -> Iterator[GroupRow]:
                statement = self.groups_statement(None, None, LIVE)[0]
                return iter([GroupRow(*v) for v in cursor.execute(statement).fetchall()])

            def operations() -> Iterator[OperationRow]:
                statement = self.operations_statement(LIVE)
                return iter([OperationRow(*v) for v in cursor.execute(statement).fetchall()])

            def counts() -> dict[CountKey, int]:
                found = cursor.execute(
                    f"SELECT {', '.join(COUNT_COLUMNS)}, n FROM {self.q(LIVE.counts)} WHERE n != 0"
                ).fetchall()
                return {(s, t, o, c): int(n) for s, t, o, c, n in found}

            yield ViewSnapshot(
                position=position, sims=sims, groups=groups, operations=operations, counts=counts
            )

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None
        with self._read_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
        with self._pages_lock:
            if self._pages is not None:
                self._pages.close()
                self._pages = None
