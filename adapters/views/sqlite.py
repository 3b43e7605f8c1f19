"""The SQLite view store: the views as tables in the ledger's own SQLite file.

One connection of its own (WAL mode, as eventsourcing sets the file up). A batch is one
``BEGIN IMMEDIATE`` transaction: it takes SQLite's write lock before reading the tracking
position, so two processes folding the same file serialise, and the second one only sees
events after the first one's position. Times are stored as fixed-width UTC text (so text
order is time order) and decimals as text (exact), sorted by their float keys. Labels are
also kept one per row in ``view_sim_labels`` for the label filter. The search is a Python
function (``py_contains``): the same test as the in-memory store's, for a text of any
length (a LIKE pattern is limited to 50,000 bytes).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

from eventsourcing.persistence import ApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder

from simledger.adapters.views.base import BuiltViews
from simledger.adapters.views.dialect import (
    ColumnType,
    Convert,
    Dialect,
    as_utc_text,
    decimal_text,
    escaped_list,
    from_time_text,
    labels_json,
    text_decimal,
    unescaped_list,
)
from simledger.adapters.views.sql import SIM_TABLE_COLUMNS, Tables
from simledger.adapters.views.sql_store import LogSource, SqlViewStore, Stream
from simledger.projections.listing import NO_TIME, Kind
from simledger.projections.sort_keys import escape_text, unescape_text

SCRATCH_CHUNK = 20_000
"""Rows per transaction while a rebuild fills its scratch tables (writers interleave)."""


def _contains(stored: str | None, needle: str) -> bool:
    """``search_matches`` on one stored (escaped) text: ``needle`` is already lower case."""
    return stored is not None and needle in unescape_text(stored).lower()


def _labels_in(values: list[str]) -> str:
    return labels_json(escaped_list(values))


def _labels_out(stored: str) -> list[str]:
    return unescaped_list(json.loads(stored))


class SqliteDialect(Dialect):
    """Every value a plain SQLite type: text for times, decimals and lists (JSON)."""

    label_table = True
    label_keys = False
    lock_suffix = ""  # ``BEGIN IMMEDIATE`` has taken the file's write lock already
    log_id = "rowid"
    types: ClassVar[Mapping[ColumnType, str]] = {
        ColumnType.TEXT: "TEXT",
        ColumnType.BOOL: "INTEGER",
        ColumnType.INT: "INTEGER",
        ColumnType.DECIMAL: "TEXT",
        ColumnType.TIME: "TEXT",
        ColumnType.LIST: "TEXT",
        ColumnType.REAL: "REAL",
    }
    table_options = " WITHOUT ROWID"
    encoders: ClassVar[Mapping[ColumnType, Convert]] = {
        ColumnType.BOOL: int,
        ColumnType.DECIMAL: decimal_text,
        ColumnType.TIME: as_utc_text,
        ColumnType.LIST: _labels_in,
    }
    decoders: ClassVar[Mapping[ColumnType, Convert]] = {
        ColumnType.BOOL: bool,
        ColumnType.DECIMAL: text_decimal,
        ColumnType.TIME: from_time_text,
        ColumnType.LIST: _labels_out,
    }
    no_time = f"'{as_utc_text(NO_TIME)}'"
    analyze_first = ("PRAGMA analysis_limit = 2000",)

    def q(self, table: str) -> str:
        return table

    def key_param(self, value: Any, kind: Kind) -> Any:
        if kind is Kind.TIME:
            return as_utc_text(value)
        if kind is Kind.BOOL:
            return int(value)
        return value

    def label_filter(self, labels_table: str | None, label: str) -> tuple[str, list[Any]]:
        return f"iccid IN (SELECT iccid FROM {labels_table} WHERE label = ?)", [escape_text(label)]

    def contains(self, column: str, needle: str) -> tuple[str, list[Any]]:
        return f"py_contains({column}, ?)", [needle]

    def stored_list(self, values: list[str]) -> Any:
        return labels_json(values)


class SqliteViewStore(SqlViewStore):
    kind = "sqlite"

    def __init__(self, db_name: str, *, lock_timeout: float = 60.0) -> None:
        super().__init__(SqliteDialect())
        self.db_name = db_name
        self._conn = sqlite3.connect(
            db_name,
            uri=True,
            check_same_thread=False,
            isolation_level=None,
            timeout=lock_timeout,
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.create_function("py_contains", 2, _contains, deterministic=True)
        self._ensure_schema()
        self._start_counting(apart=False)  # sampled (analysis_limit): milliseconds

    # ---- connection hooks ---------------------------------------------------------------
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

    def _query(self, statement: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        with self._lock:
            return self._conn.execute(statement, params).fetchall()

    @contextmanager
    def _consistent(self) -> Iterator[tuple[sqlite3.Cursor, Stream]]:
        with self._transaction("BEGIN") as cursor:

            def stream(statement: str) -> Iterator[Sequence[Any]]:
                reader = self._conn.cursor()
                reader.execute(statement)
                while rows := reader.fetchmany(5000):
                    yield from rows

            yield cursor, stream

    def _execute_each(self, statements: Iterable[str]) -> None:
        # One statement per transaction: each holds the file's write lock only briefly, so
        # writers, who wait for it no longer than their lock timeout, keep going beside a
        # rebuild's index builds.
        for statement in statements:
            with self._transaction() as cursor:
                cursor.execute(statement)

    def _log_source(self, recorder: ApplicationRecorder) -> LogSource | None:
        table = getattr(recorder, "events_table_name", None)
        convert = getattr(recorder, "convert_originator_id", None)
        if not isinstance(recorder, SQLiteApplicationRecorder) or table is None or convert is None:
            return None
        return table, convert

    def _own_indexes(self, tables: Tables, token: str) -> list[str]:
        return [f"CREATE INDEX {tables.labels}_by_label_{token} ON {tables.labels} (label, iccid)"]

    # ---- rebuild and verify -------------------------------------------------------------
    def _fill_scratch(self, built: BuiltViews) -> None:
        if built.staged_sims is not None:
            raise NotImplementedError("staged SIM rows are PostgreSQL's")
        with self._transaction() as cursor:
            self._create_scratch(cursor)
        tables, encode = self.scratch, self.sql.sims.encode
        assert tables.labels is not None
        sims = list(built.all_sims.values())
        for start in range(0, len(sims), SCRATCH_CHUNK):
            chunk = sims[start : start + SCRATCH_CHUNK]
            with self._transaction() as cursor:
                cursor.executemany(
                    self.sql.insert(tables.sims, SIM_TABLE_COLUMNS), [encode(row) for row in chunk]
                )
                cursor.executemany(
                    self.sql.insert(tables.labels, ("iccid", "label")),
                    [(row.iccid, escape_text(label)) for row in chunk for label in row.labels],
                )
        with self._transaction() as cursor:
            self._fill_rest(cursor, built)

    def _installed(self) -> None:
        self.analyze()

    def _sim_rows(self) -> float:
        try:  # sqlite_stat1 exists once anything was analyzed; a table's row has no index
            found = self._query(
                "SELECT stat FROM sqlite_stat1 WHERE tbl = ? ORDER BY idx IS NOT NULL LIMIT 1",
                (self.live.sims,),
            )
        except sqlite3.OperationalError:
            return 0.0
        return float(str(found[0][0]).split()[0]) if found else 0.0

    def _extra_checks(self, cursor: Any) -> list[tuple[str, str, object, object]]:
        """The label table against the labels of each SIM row."""
        live = self.live
        kept: dict[str, set[str]] = {}
        for iccid, label in cursor.execute(f"SELECT iccid, label FROM {live.labels}"):
            kept.setdefault(iccid, set()).add(label)
        wrong: list[tuple[str, str, object, object]] = []
        for iccid, labels_text in cursor.execute(
            f"SELECT iccid, labels FROM {live.sims} WHERE labels != '[]' "
            f"OR iccid IN (SELECT iccid FROM {live.labels})"
        ).fetchall():
            expected = set(json.loads(labels_text))
            if kept.get(iccid, set()) != expected:
                wrong.append(("sims", iccid, sorted(kept.get(iccid, ())), sorted(expected)))
        return wrong

    def close(self) -> None:
        super().close()
        with self._lock:
            self._conn.close()
