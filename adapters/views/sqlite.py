"""The SQLite view store: the views as tables in the ledger's own SQLite file.

One connection of its own (WAL mode, as eventsourcing sets the file up). A batch is one
``BEGIN IMMEDIATE`` transaction: it takes SQLite's write lock before reading the tracking
position, so two processes folding the same file serialise, and the second one only sees
events after the first one's position. Times are stored as fixed-width UTC text (so text
order is time order) and decimals as text (exact), sorted through ``CAST(… AS REAL)``.
Labels are also kept one per row in ``view_sim_labels`` for the label filter.
"""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from eventsourcing.persistence import ApplicationRecorder, Notification
from eventsourcing.sqlite import SQLiteApplicationRecorder

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
    LIVE,
    NULLABLE_TEXT,
    REBUILD,
    SIM_COLUMNS,
    SIM_TABLE_COLUMNS,
    TRACKING_TABLE,
    SqlTx,
    SqlViewStore,
    Tables,
    as_utc_text,
    labels_json,
    list_keys,
    sort_kind,
    stream,
)
from simledger.projections.batch import Changes, CountKey
from simledger.projections.listing import NO_TIME, Kind, SimQuery
from simledger.projections.rows import GroupRow, OperationRow, SimRow

if TYPE_CHECKING:
    from simledger.adapters.views.memory import MemoryViewStore

log = get_logger("simledger.views")

NO_TIME_TEXT = as_utc_text(NO_TIME)
_MONTH = re.compile(r"^[0-9]{1,4}-[0-9]{2}$")
SCRATCH_CHUNK = 20_000
"""Rows per transaction while a rebuild fills its scratch tables (writers interleave)."""


def _lower(value: str | None) -> str | None:
    return value.lower() if value is not None else None


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


def _dec(value: str | None) -> Decimal | None:
    return Decimal(value) if value is not None else None


def _text(value: Decimal | None) -> str | None:
    return str(value) if value is not None else None


class SqliteViewStore(SqlViewStore):
    kind = "sqlite"
    has_label_table = True

    def __init__(self, db_name: str, *, lock_timeout: float = 60.0) -> None:
        self.db_name = db_name
        self._conn = sqlite3.connect(
            db_name,
            uri=True,
            check_same_thread=False,
            isolation_level=None,
            timeout=lock_timeout,
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.create_function("py_lower", 1, _lower, deterministic=True)
        self._lock = threading.RLock()
        self._ensure_schema()

    # ---- dialect ------------------------------------------------------------------------
    def q(self, table: str) -> str:
        return table

    def key_expr(self, column: str, month: str = "", alias: str = "") -> str:
        a = f"{alias}." if alias else ""
        if column == "this_month_mb":
            if not _MONTH.match(month):
                raise ValueError(f"not a month: {month!r}")
            return (
                f"(CASE WHEN {a}usage_month = '{month}' "
                f"THEN CAST({a}usage_month_mb AS REAL) ELSE 0 END)"
            )
        if column in ("labels", "rules"):
            return f"{a}{column}_key"
        kind = sort_kind(column)
        if kind is Kind.NUMBER:
            return f"COALESCE(CAST({a}{column} AS REAL), -1)"
        if kind is Kind.TIME:
            return f"COALESCE({a}{column}, '{NO_TIME_TEXT}')"
        if column in NULLABLE_TEXT:
            return f"COALESCE({a}{column}, '')"
        return f"{a}{column}"

    def key_param(self, value: Any, kind: Kind) -> Any:
        if kind is Kind.NUMBER:
            return float(value)
        if kind is Kind.TIME:
            return as_utc_text(value)
        if kind is Kind.BOOL:
            return int(value)
        return value

    def number_param(self, value: Decimal) -> Any:
        return str(value)

    def sim_params(self, row: SimRow) -> tuple[Any, ...]:
        labels_key, rules_key = list_keys(row)
        return (
            row.iccid,
            int(row.esim),
            row.status,
            row.operator,
            row.sim_type,
            row.in_session,
            row.plan,
            row.company,
            row.end_user,
            _text(row.data_left_mb),
            as_utc_text(row.expires_at),
            row.usage_month,
            str(row.usage_month_mb),
            row.note,
            labels_json(row.rules),
            labels_json(row.labels),
            row.group_id,
            row.package_id,
            row.copy_id,
            _text(row.copy_left_mb),
            row.copy_depleted,
            row.suspended_reason,
            row.version,
            as_utc_text(row.updated_at),
            labels_key,
            rules_key,
        )

    def sim_from_db(self, values: Sequence[Any]) -> SimRow:
        (
            iccid, esim, status, operator, sim_type, in_session, plan, company, end_user,
            data_left, expires_at, usage_month, usage_mb, note, rules, labels, group_id,
            package_id, copy_id, copy_left, copy_depleted, suspended_reason, version, updated_at,
        ) = values  # fmt: skip
        return SimRow(
            iccid=iccid,
            esim=bool(esim),
            status=status,
            operator=operator,
            sim_type=sim_type,
            in_session=in_session,
            plan=plan,
            company=company,
            end_user=end_user,
            data_left_mb=_dec(data_left),
            expires_at=_time(expires_at),
            usage_month=usage_month,
            usage_month_mb=Decimal(usage_mb),
            note=note,
            rules=json.loads(rules),
            labels=json.loads(labels),
            group_id=group_id,
            package_id=package_id,
            copy_id=copy_id,
            copy_left_mb=_dec(copy_left),
            copy_depleted=copy_depleted,
            suspended_reason=suspended_reason,
            version=version,
            updated_at=_time(updated_at),
        )

    def group_params(self, row: GroupRow) -> tuple[Any, ...]:
        return (
            row.group_id,
            row.name,
            row.package_id,
            row.package_name,
            str(row.data_mb),
            str(row.data_left_mb),
            as_utc_text(row.expires_at),
            row.member_count,
            int(row.depleted),
            int(row.deleted),
            row.version,
        )

    def group_from_db(self, values: Sequence[Any]) -> GroupRow:
        g, name, package, package_name, data_mb, left, expires, members, dep, dele, ver = values
        return GroupRow(
            group_id=g,
            name=name,
            package_id=package,
            package_name=package_name,
            data_mb=Decimal(data_mb),
            data_left_mb=Decimal(left),
            expires_at=_time(expires),
            member_count=members,
            depleted=bool(dep),
            deleted=bool(dele),
            version=ver,
        )

    def operation_params(self, row: OperationRow) -> tuple[Any, ...]:
        return (
            row.operation_id,
            row.kind,
            as_utc_text(row.requested_at),
            as_utc_text(row.deadline),
            row.requested,
            row.confirmed,
            row.refused,
        )

    def operation_from_db(self, values: Sequence[Any]) -> OperationRow:
        op, kind, requested_at, deadline, requested, confirmed, refused = values
        requested_time, deadline_time = _time(requested_at), _time(deadline)
        assert requested_time is not None and deadline_time is not None
        return OperationRow(
            operation_id=op,
            kind=kind,
            requested_at=requested_time,
            deadline=deadline_time,
            requested=requested,
            confirmed=confirmed,
            refused=refused,
        )

    def label_filter(self, tables: Tables) -> str:
        return f"iccid IN (SELECT iccid FROM {tables.labels} WHERE label = ?)"

    def lower(self, expression: str) -> str:
        return f"py_lower({expression})"

    def analyze(self) -> None:
        with self._lock:
            self._conn.execute("PRAGMA analysis_limit = 2000")
            for table in (LIVE.sims, LIVE.labels, LIVE.counts, LIVE.groups, LIVE.operations):
                self._conn.execute(f"ANALYZE {table}")

    def in_list(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        return f"{column} IN ({', '.join('?' for _ in values)})", list(values)

    # ---- schema -------------------------------------------------------------------------
    def _create(self, cursor: sqlite3.Cursor, tables: Tables, *, indexes: bool = True) -> None:
        cursor.execute(
            f"CREATE TABLE {tables.sims} ("
            "iccid TEXT NOT NULL PRIMARY KEY, esim INTEGER NOT NULL, status TEXT NOT NULL, "
            "operator TEXT NOT NULL, sim_type TEXT NOT NULL, in_session TEXT NOT NULL, "
            "plan TEXT, company TEXT, end_user TEXT, data_left_mb TEXT, expires_at TEXT, "
            "usage_month TEXT, usage_month_mb TEXT NOT NULL, note TEXT, rules TEXT NOT NULL, "
            "labels TEXT NOT NULL, group_id TEXT, package_id TEXT, copy_id TEXT, "
            "copy_left_mb TEXT, copy_depleted TEXT, "
            "suspended_reason TEXT, version INTEGER NOT NULL, updated_at TEXT, "
            "labels_key TEXT NOT NULL, rules_key TEXT NOT NULL) WITHOUT ROWID"
        )
        cursor.execute(
            f"CREATE TABLE {tables.labels} (iccid TEXT NOT NULL, label TEXT NOT NULL, "
            "PRIMARY KEY (iccid, label)) WITHOUT ROWID"
        )
        cursor.execute(
            f"CREATE TABLE {tables.counts} (status TEXT NOT NULL, sim_type TEXT NOT NULL, "
            "operator TEXT NOT NULL, company TEXT NOT NULL, n INTEGER NOT NULL, "
            "PRIMARY KEY (status, sim_type, operator, company)) WITHOUT ROWID"
        )
        cursor.execute(
            f"CREATE TABLE {tables.groups} (group_id TEXT NOT NULL PRIMARY KEY, "
            "name TEXT NOT NULL, package_id TEXT NOT NULL, package_name TEXT NOT NULL, "
            "data_mb TEXT NOT NULL, data_left_mb TEXT NOT NULL, expires_at TEXT, "
            "member_count INTEGER NOT NULL, depleted INTEGER NOT NULL, "
            "deleted INTEGER NOT NULL, version INTEGER NOT NULL) WITHOUT ROWID"
        )
        cursor.execute(
            f"CREATE TABLE {tables.operations} (operation_id TEXT NOT NULL PRIMARY KEY, "
            "kind TEXT NOT NULL, requested_at TEXT NOT NULL, deadline TEXT NOT NULL, "
            "requested INTEGER NOT NULL, confirmed INTEGER NOT NULL, "
            "refused INTEGER NOT NULL) WITHOUT ROWID"
        )
        if indexes:
            self._create_indexes(cursor, tables)

    def _index_statements(self, tables: Tables) -> list[str]:
        token = secrets.token_hex(4)
        statements = self.sim_index_statements(tables, token)
        statements.append(
            f"CREATE INDEX {tables.labels}_by_label_{token} ON {tables.labels} (label, iccid)"
        )
        statements.append(
            f"CREATE INDEX {tables.operations}_newest_{token} "
            f"ON {tables.operations} (requested_at, operation_id)"
        )
        return statements

    def _create_indexes(self, cursor: sqlite3.Cursor, tables: Tables) -> None:
        for statement in self._index_statements(tables):
            cursor.execute(statement)

    def _drop(self, cursor: sqlite3.Cursor, tables: Sequence[str]) -> None:
        for table in tables:
            cursor.execute(f"DROP TABLE IF EXISTS {table}")

    def _ensure_schema(self) -> None:
        with self._lock:
            cursor = self._conn.cursor()
            cursor.execute("BEGIN IMMEDIATE")
            try:
                cursor.execute(
                    f"CREATE TABLE IF NOT EXISTS {TRACKING_TABLE} (name TEXT PRIMARY KEY, "
                    "position INTEGER NOT NULL, version INTEGER NOT NULL)"
                )
                cursor.execute(
                    f"SELECT version FROM {TRACKING_TABLE} WHERE name = ?", (TRACKING_NAME,)
                )
                found = cursor.fetchone()
                if found is None or found[0] != PROJECTION_VERSION:
                    if found is not None:
                        log.info("views.schema.outdated", found=found[0], wanted=PROJECTION_VERSION)
                    self._drop(cursor, LIVE.all())
                    self._create(cursor, LIVE)
                    cursor.execute(
                        f"INSERT OR REPLACE INTO {TRACKING_TABLE} (name, position, version) "
                        "VALUES (?, 0, ?)",
                        (TRACKING_NAME, PROJECTION_VERSION),
                    )
                cursor.execute("COMMIT")
            except BaseException:
                cursor.execute("ROLLBACK")
                raise

    # ---- projecting ---------------------------------------------------------------------
    def notifications(
        self,
        recorder: ApplicationRecorder,
        start: int,
        limit: int,
        stop: int | None = None,
        partition: Partition | None = None,
    ) -> Sequence[Notification]:
        """The recorder's own query, through this store's connection: a batch reads its
        events inside its transaction, which holds the file's write lock, and a read through
        eventsourcing's pool could then wait for a command that waits for that lock."""
        if partition is not None:
            return super().notifications(recorder, start, limit, stop, partition)
        table = getattr(recorder, "events_table_name", None)
        convert = getattr(recorder, "convert_originator_id", None)
        if not isinstance(recorder, SQLiteApplicationRecorder) or table is None or convert is None:
            return super().notifications(recorder, start, limit, stop)
        statement = (
            f"SELECT rowid, originator_id, originator_version, topic, state FROM {table} "
            "WHERE rowid >= ?"
            + (" AND rowid <= ?" if stop is not None else "")
            + " ORDER BY rowid LIMIT ?"
        )
        params = (start, stop, limit) if stop is not None else (start, limit)
        with self._lock:
            rows = self._conn.execute(statement, params).fetchall()
        return [
            Notification(
                id=rowid,
                originator_id=convert(originator_id),
                originator_version=version,
                topic=topic,
                state=state,
            )
            for rowid, originator_id, version, topic, state in rows
        ]

    def position(self) -> int:
        with self._lock:
            row = self._conn.execute(
                f"SELECT position FROM {TRACKING_TABLE} WHERE name = ?", (TRACKING_NAME,)
            ).fetchone()
        return int(row[0]) if row else 0

    @contextmanager
    def _transaction(self, begin: str = "BEGIN IMMEDIATE") -> Iterator[sqlite3.Cursor]:
        with self._lock:
            cursor = self._conn.cursor()
            cursor.execute(begin)
            try:
                yield cursor
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
            cursor.execute("COMMIT")

    def _locked_position(self, cursor: sqlite3.Cursor) -> int:
        cursor.execute(f"SELECT position FROM {TRACKING_TABLE} WHERE name = ?", (TRACKING_NAME,))
        return int(cursor.fetchone()[0])

    @contextmanager
    def exclusive(self) -> Iterator[SqlTx]:
        with self._transaction() as cursor:
            yield SqlTx(self, cursor, LIVE, self._locked_position(cursor), track=True)

    # ---- queries ------------------------------------------------------------------------
    def sims_page(self, query: SimQuery) -> tuple[list[SimRow], int]:
        page, page_params = self.page_statement(query, LIVE)
        total, total_params = self.total_statement(query, LIVE)
        with self._transaction("BEGIN") as cursor:
            rows = [self.sim_from_db(v) for v in cursor.execute(page, page_params).fetchall()]
            count = int(cursor.execute(total, total_params).fetchone()[0])
        return rows, count

    def operations(self) -> list[OperationRow]:
        with self._transaction("BEGIN") as cursor:
            found = cursor.execute(self.operations_statement(LIVE)).fetchall()
        return [self.operation_from_db(v) for v in found]

    def groups(self, *, company: str | None, locked: bool | None) -> list[GroupRow]:
        statement, params = self.groups_statement(company, locked, LIVE)
        with self._transaction("BEGIN") as cursor:
            found = cursor.execute(statement, params).fetchall()
        return [self.group_from_db(v) for v in found]

    # ---- rebuild and verify -------------------------------------------------------------
    def install(
        self,
        built: MemoryViewStore,
        views: Sequence[str],
        apply: ApplyRange,
        staged: str | None = None,
    ) -> int:
        if staged is not None:
            raise NotImplementedError("staged SIM rows are PostgreSQL's")
        with self._lock:
            with self._transaction() as cursor:
                self._drop(cursor, REBUILD.all())
                self._create(cursor, REBUILD, indexes=False)
            self._fill(REBUILD, built)
            # One index per transaction: each holds the file's write lock only briefly, so
            # writers (5 s lock timeout by default) keep going beside a rebuild.
            for statement in self._index_statements(REBUILD):
                with self._transaction() as cursor:
                    cursor.execute(statement)
            with self._transaction() as cursor:
                live = self._locked_position(cursor)
                fresh = built.position()
                if live > fresh:
                    apply(SqlTx(self, cursor, REBUILD, fresh, track=False), fresh, live)
                elif live < fresh:
                    # The rebuilt views are ahead of every live one: swap them all in rather than
                    # fold the gap into the live tables row by row (a catch-up from far behind).
                    views = ALL_VIEWS
                swap = REBUILD.of_views(views)
                for scratch, table in zip(swap, LIVE.of_views(views), strict=True):
                    cursor.execute(f"DROP TABLE {table}")
                    cursor.execute(f"ALTER TABLE {scratch} RENAME TO {table}")
                self._drop(cursor, [t for t in REBUILD.all() if t not in swap])
                position = max(live, fresh)
                cursor.execute(
                    f"UPDATE {TRACKING_TABLE} SET position = ? WHERE name = ?",
                    (position, TRACKING_NAME),
                )
            self.analyze()
            return position

    def _fill(self, tables: Tables, built: MemoryViewStore) -> None:
        p = self.placeholder
        sims = list(built.all_sims.values())
        for start in range(0, len(sims), SCRATCH_CHUNK):
            chunk = sims[start : start + SCRATCH_CHUNK]
            with self._transaction() as cursor:
                cursor.executemany(
                    f"INSERT INTO {tables.sims} ({', '.join(SIM_TABLE_COLUMNS)}) "
                    f"VALUES ({', '.join(p for _ in SIM_TABLE_COLUMNS)})",
                    [self.sim_params(row) for row in chunk],
                )
                cursor.executemany(
                    f"INSERT INTO {tables.labels} (iccid, label) VALUES (?, ?)",
                    [(row.iccid, label) for row in chunk for label in row.labels],
                )
        with self._transaction() as cursor:
            cursor.executemany(
                f"INSERT INTO {tables.counts} ({', '.join(COUNT_COLUMNS)}, n) "
                "VALUES (?, ?, ?, ?, ?)",
                [(*key, n) for key, n in built.all_counts.items()],
            )
            self.write_changes(
                cursor,
                tables,
                Changes(groups=dict(built.all_groups), operations=dict(built.all_operations)),
            )

    @contextmanager
    def snapshot(self) -> Iterator[ViewSnapshot]:
        with self._transaction("BEGIN") as cursor:
            position = self._locked_position(cursor)

            def sims() -> Iterator[SimRow]:
                reader = self._conn.cursor()
                reader.execute(f"SELECT {', '.join(SIM_COLUMNS)} FROM {LIVE.sims} ORDER BY iccid")
                return (self.sim_from_db(v) for v in stream(lambda: reader.fetchmany(5000)))

            def groups() -> Iterator[GroupRow]:
                found = cursor.execute(self.groups_statement(None, None, LIVE)[0]).fetchall()
                return iter([self.group_from_db(v) for v in found])

            def operations() -> Iterator[OperationRow]:
                found = cursor.execute(self.operations_statement(LIVE)).fetchall()
                return iter([self.operation_from_db(v) for v in found])

            def counts() -> dict[CountKey, int]:
                found = cursor.execute(
                    f"SELECT {', '.join(COUNT_COLUMNS)}, n FROM {LIVE.counts} WHERE n != 0"
                ).fetchall()
                return {(s, t, o, c): n for s, t, o, c, n in found}

            def labels() -> list[tuple[str, str, object, object]]:
                kept: dict[str, set[str]] = {}
                for iccid, label in cursor.execute(f"SELECT iccid, label FROM {LIVE.labels}"):
                    kept.setdefault(iccid, set()).add(label)
                wrong: list[tuple[str, str, object, object]] = []
                for iccid, labels_text in cursor.execute(
                    f"SELECT iccid, labels FROM {LIVE.sims} WHERE labels != '[]' "
                    f"OR iccid IN (SELECT iccid FROM {LIVE.labels})"
                ).fetchall():
                    expected = set(json.loads(labels_text))
                    if kept.get(iccid, set()) != expected:
                        wrong.append(("sims", iccid, sorted(kept.get(iccid, ())), sorted(expected)))
                return wrong

            yield ViewSnapshot(
                position=position,
                sims=sims,
                groups=groups,
                operations=operations,
                counts=counts,
                extra_checks=labels,
            )

    def close(self) -> None:
        with self._lock:
            self._conn.close()
