"""The statements of the SQL view stores, written once for every :class:`~.dialect.Dialect`.

Tables (live names; a rebuild builds the same set with the suffix ``_rebuild``):

* ``view_sims`` -- one row per SIM (every :class:`SimRow` column, plus the keys computed
  from them: :data:`~.dialect.SIM_COMPUTED`). One B-tree per sortable column on
  ``(sort key, iccid)``, the sort key being the column with "not set" mapped to the lowest
  value (see :mod:`simledger.projections.listing`): filters and keyset paging walk it. A
  text's key is its first characters and a decimal's a float, so any value fits a B-tree
  entry (:mod:`simledger.projections.sort_keys`); text is kept escaped (no NUL).
* ``view_sim_labels`` -- the labels one per row, where the dialect filters on them so.
* ``view_sim_counts`` -- SIMs per (status, SIM type, operator, company), keyed by a hash of
  the four: ``total`` of a query filtered only on those columns is a sum over a few rows,
  not a count over millions.
* ``view_groups``, ``view_operations`` -- the shared groups and the pending activity.
* ``view_tracking`` -- one row: the position (last notification id folded) and the
  projection version the tables were built by.

A batch is four statements per table at most whatever its size: rows are loaded with one
``IN``/``ANY`` query and written with ``executemany`` upserts; a pool change of a shared
group is one set-based ``UPDATE … WHERE group_id = …`` for all its members.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from simledger.adapters.store.batch_load import chunked
from simledger.adapters.views.base import (
    PENDING_ACTIVITY,
    SHARED_GROUPS,
    SIM_TOPICS,
    SIMS,
    IccidRange,
    Partition,
)
from simledger.adapters.views.dialect import (
    COUNT_TABLE,
    GROUP_TABLE,
    GROUP_TABLE_COLUMNS,
    LABEL_TABLE,
    OPERATION_TABLE,
    SIM_TABLE,
    TRACKING_COLUMNS,
    Column,
    ColumnType,
    Dialect,
    RowCodec,
)
from simledger.projections.batch_state import Changes, CountKey, Keys, Touched
from simledger.projections.listing import CONSTANT_COLUMNS, SORTS, Kind
from simledger.projections.rows import GROUP_COLUMNS, OPERATION_COLUMNS, SIM_COLUMNS
from simledger.projections.sort_keys import escape_text, text_key, unescape_text

TRACKING_TABLE = "view_tracking"
SCRATCH = "_rebuild"

SIM_TABLE_COLUMNS: tuple[str, ...] = tuple(c.name for c in SIM_TABLE)
COUNT_COLUMNS: tuple[str, ...] = ("status", "sim_type", "operator", "company")
COUNT_WRITE_COLUMNS: tuple[str, ...] = (*COUNT_COLUMNS, "combination", "n")
UNPREFIXED = frozenset({"status", "sim_type"})
"""Text sort columns keyed by their whole value: the domain's enum values (short), which the
status-led indexes and ``IN`` filters compare as they are."""

NULLABLE_TEXT = frozenset(
    {"plan", "company", "end_user", "note", "group_id", "package_id", "suspended_reason"}
)
SORT_INDEXED: tuple[str, ...] = tuple(
    dict.fromkeys(
        column
        for column, _ in SORTS.values()
        if column not in ("iccid", "this_month_mb") and column not in CONSTANT_COLUMNS
    )
)
"""Columns with a ``(sort key, iccid)`` index (``iccid`` has its primary key; ``this_month_mb``
depends on the month of the query; constant columns sort by ``iccid``)."""

_MONTH = re.compile(r"^[0-9]{1,4}-[0-9]{2}$")


@dataclass(frozen=True)
class Tables:
    sims: str
    labels: str | None
    """None where the dialect keeps no label table."""
    counts: str
    groups: str
    operations: str

    @classmethod
    def named(cls, suffix: str = "") -> Tables:
        return cls(
            sims=f"view_sims{suffix}",
            labels=f"view_sim_labels{suffix}",
            counts=f"view_sim_counts{suffix}",
            groups=f"view_groups{suffix}",
            operations=f"view_operations{suffix}",
        )

    def of_views(self, views: Iterable[str]) -> list[str]:
        tables: list[str] = []
        for view in views:
            if view == SIMS:
                tables += [t for t in (self.sims, self.labels, self.counts) if t is not None]
            elif view == SHARED_GROUPS:
                tables.append(self.groups)
            elif view == PENDING_ACTIVITY:
                tables.append(self.operations)
        return tables

    def all(self) -> list[str]:
        return self.of_views((SIMS, SHARED_GROUPS, PENDING_ACTIVITY))


LIVE = Tables.named()
REBUILD = Tables.named(SCRATCH)


class Statements:
    """Every statement of a SQL view store, in ``dialect``'s terms, and the row codecs."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = d = dialect
        self.sims = d.sims_codec()
        self.groups = d.groups_codec()
        self.operations = d.operations_codec()
        self.live = LIVE if d.label_table else replace(LIVE, labels=None)
        self.scratch = REBUILD if d.label_table else replace(REBUILD, labels=None)
        self._number = d.encoders.get(ColumnType.DECIMAL) or (lambda value: value)
        p = d.placeholder
        tracking = d.q(TRACKING_TABLE)
        self.read_position = f"SELECT position FROM {tracking} WHERE name = {p}"
        self.lock_position = self.read_position + d.lock_suffix
        self.set_position = f"UPDATE {tracking} SET position = {p} WHERE name = {p}"
        self._tracking = tracking
        self.read_version = f"SELECT version FROM {tracking} WHERE name = {p}"
        self.reset_tracking = (
            f"INSERT INTO {tracking} (name, position, version) VALUES ({p}, 0, {p}) "
            "ON CONFLICT (name) DO UPDATE SET position = 0, version = excluded.version"
        )
        self.create_tracking = self.create_table(
            TRACKING_TABLE, TRACKING_COLUMNS, ("name",), if_not_exists=True
        )

    def set_position_to(self, position_sql: str) -> str:
        """The tracking row's position set to the value of ``position_sql`` (SQL)."""
        p = self.dialect.placeholder
        return f"UPDATE {self._tracking} SET position = {position_sql} WHERE name = {p}"

    def q(self, table: str) -> str:
        return self.dialect.q(table)

    # ---- schema -------------------------------------------------------------------------
    def create_table(
        self,
        name: str,
        columns: Sequence[Column],
        key: Sequence[str],
        options: str = "",
        *,
        if_not_exists: bool = False,
    ) -> str:
        d = self.dialect
        defined = ", ".join(
            f"{c.name} {d.types[c.type]}{' NOT NULL' if c.required or c.name in key else ''}"
            for c in columns
        )
        primary = f", PRIMARY KEY ({', '.join(key)})" if key else ""
        exists = "IF NOT EXISTS " if if_not_exists else ""
        return f"CREATE TABLE {exists}{d.q(name)} ({defined}{primary}){options}{d.table_options}"

    def create_tables(self, tables: Tables, *, keyed: bool) -> list[str]:
        """The tables of the views; ``keyed`` False leaves the SIM table's primary key to be
        added after a bulk load, where the dialect does so (the load maintains no index)."""
        sim_key = ("iccid",) if keyed or not self.dialect.key_after_fill else ()
        statements = [
            self.create_table(tables.sims, SIM_TABLE, sim_key, self.dialect.sims_options),
            self.create_table(tables.counts, COUNT_TABLE, ("combination",)),
            self.create_table(tables.groups, GROUP_TABLE, ("group_id",)),
            self.create_table(tables.operations, OPERATION_TABLE, ("operation_id",)),
        ]
        if tables.labels is not None:
            statements.append(self.create_table(tables.labels, LABEL_TABLE, ("iccid", "label")))
        return statements

    def index_statements(self, tables: Tables, token: str, own: Sequence[str] = ()) -> list[str]:
        """``CREATE INDEX`` of each of :meth:`sim_indexes` on ``tables.sims``, then ``own``
        (the dialect store's), then the pending activity's order. Index names are unique
        per schema (and survive a table's rename on SQLite): ``token`` keeps a rebuild's
        indexes from colliding with those of the table it replaces."""
        sims = self.q(tables.sims)
        return [
            *(
                f"CREATE INDEX {tables.sims}_{suffix}_{token} ON {sims} ({columns})"
                + (f" WHERE {where}" if where else "")
                for suffix, columns, where in self.sim_indexes()
            ),
            *own,
            f"CREATE INDEX {tables.operations}_newest_{token} "
            f"ON {self.q(tables.operations)} (requested_at, operation_id)",
        ]

    def sim_indexes(self) -> list[tuple[str, str, str]]:
        """(index suffix, columns, partial-index condition) of the SIM list's B-trees: one
        per sorted column; the package copies (batch loads) and the (group, company) pairs
        (``shared_groups(company=…)``) index only the SIMs that have one."""
        indexes = [(f"by_{c}", f"{self.key_expr(c)}, iccid", "") for c in SORT_INDEXED]
        indexes.append(("by_copy", "copy_id", "copy_id IS NOT NULL"))
        indexes.append(
            ("group_company", f"group_id, {self.key_expr('company')}", "group_id IS NOT NULL")
        )
        return indexes

    def key_expr(self, column: str, month: str = "", alias: str = "") -> str:
        """The sort key of ``column`` as an SQL expression (index and query alike);
        ``alias`` qualifies the column."""
        a = f"{alias}." if alias else ""
        d = self.dialect
        if column == "this_month_mb":
            if not _MONTH.match(month):
                raise ValueError(f"not a month: {month!r}")
            return f"(CASE WHEN {a}usage_month = '{month}' THEN {a}usage_month_key ELSE 0 END)"
        if column in ("labels", "rules"):
            return d.prefix(f"{a}{column}_key")
        kind = sort_kind(column)
        if kind is Kind.NUMBER:
            return f"COALESCE({a}data_left_key, -1)"
        if kind is Kind.TIME:
            return f"COALESCE({a}{column}, {d.no_time})"
        if column in NULLABLE_TEXT:
            return d.prefix(f"COALESCE({a}{column}, '')")
        if kind is Kind.TEXT and column not in UNPREFIXED and column != "iccid":
            return d.prefix(f"{a}{column}")
        return f"{a}{column}"

    def text_equals(self, column: str, value: str, alias: str = "") -> tuple[str, list[Any]]:
        """``column`` (a text sort column) equals ``value``: its sort key first (what the
        column's index holds), then the whole stored value."""
        p = self.dialect.placeholder
        a = f"{alias}." if alias else ""
        stored = escape_text(value)
        return (
            f"{self.key_expr(column, alias=alias)} = {p} AND {a}{column} = {p}",
            [text_key(value), stored],
        )

    def count_row(self, key: tuple[str, ...], n: int) -> tuple[Any, ...]:
        """A row of the counts table: the combination stored, its hash, the count."""
        stored = [escape_text(value) for value in key]
        digest = hashlib.blake2b("\x00".join(stored).encode(), digest_size=16).hexdigest()
        return (*stored, digest, n)

    # ---- writing ------------------------------------------------------------------------
    def insert(self, table: str, columns: Sequence[str]) -> str:
        values = ", ".join(self.dialect.placeholder for _ in columns)
        return f"INSERT INTO {self.q(table)} ({', '.join(columns)}) VALUES ({values})"

    def upsert(self, table: str, columns: Sequence[str], key: Sequence[str]) -> str:
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
        return (
            f"{self.insert(table, columns)} ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
        )

    def upsert_from(self, table: str, source: str) -> str:
        """Every SIM row of table ``source`` into ``table``, replacing those it has."""
        columns = ", ".join(SIM_TABLE_COLUMNS)
        updates = ", ".join(f"{c} = excluded.{c}" for c in SIM_TABLE_COLUMNS if c != "iccid")
        return (
            f"INSERT INTO {self.q(table)} ({columns}) SELECT {columns} FROM {source} "
            f"ON CONFLICT (iccid) DO UPDATE SET {updates}"
        )

    def write_changes(self, cursor: Any, tables: Tables, changes: Changes) -> None:
        """The batch's rows, in one open transaction (the caller writes the position)."""
        p = self.dialect.placeholder
        upserts: list[tuple[str, Sequence[str], str, Any, Mapping[str, Any]]] = [
            (tables.sims, SIM_TABLE_COLUMNS, "iccid", self.sims.encode, changes.sims),
            (tables.groups, GROUP_TABLE_COLUMNS, "group_id", self.groups.encode, changes.groups),
            (
                tables.operations,
                OPERATION_COLUMNS,
                "operation_id",
                self.operations.encode,
                changes.operations,
            ),
        ]
        for table, columns, key, encode, rows in upserts:
            if rows:
                cursor.executemany(
                    self.upsert(table, columns, (key,)), [encode(row) for row in rows.values()]
                )
        if tables.labels is not None and changes.labels:
            cursor.executemany(
                f"DELETE FROM {self.q(tables.labels)} WHERE iccid = {p}",
                [(iccid,) for iccid in changes.labels],
            )
            cursor.executemany(
                self.insert(tables.labels, ("iccid", "label")),
                [
                    (iccid, escape_text(label))
                    for iccid, labels in changes.labels.items()
                    for label in labels
                ],
            )
        if changes.counts:
            cursor.executemany(
                f"{self.insert(tables.counts, COUNT_WRITE_COLUMNS)} "
                "ON CONFLICT (combination) "
                f"DO UPDATE SET n = {self.q(tables.counts)}.n + excluded.n",
                [self.count_row(key, n) for key, n in changes.counts.items()],
            )

    def load_rows(self, new_cursor: Callable[[], Any], tables: Tables, keys: Keys) -> Touched:
        """The rows of ``keys``, read on cursors from ``new_cursor`` (one per statement)."""
        return self.send_loads(new_cursor, tables, keys)()

    def send_loads(
        self, new_cursor: Callable[[], Any], tables: Tables, keys: Keys
    ) -> Callable[[], Touched]:
        """Send the statements reading the rows of ``keys``, each on a cursor of its own
        (``new_cursor``); returns what fetches and decodes their rows. In a pipeline the
        statements all leave at once, and the rows come back in one round trip."""
        sims: dict[str, Any] = {}
        groups: dict[str, Any] = {}
        operations: dict[str, Any] = {}
        loads: list[tuple[dict[str, Any], RowCodec[Any], str, Sequence[str], str, set[str]]] = [
            (sims, self.sims, tables.sims, SIM_COLUMNS, "iccid", keys.iccids),
            (sims, self.sims, tables.sims, SIM_COLUMNS, "copy_id", keys.copy_ids),
            (groups, self.groups, tables.groups, GROUP_COLUMNS, "group_id", keys.group_ids),
            (
                operations,
                self.operations,
                tables.operations,
                OPERATION_COLUMNS,
                "operation_id",
                keys.operation_ids,
            ),
        ]
        sent: list[tuple[dict[str, Any], RowCodec[Any], str, Any]] = []
        for into, codec, table, columns, by, wanted in loads:
            if by != "iccid":  # the ICCID alone is stored as it is
                wanted = {escape_text(value) for value in wanted}
            for chunk in chunked(sorted(wanted), self.dialect.chunk_size):
                condition, params = self.dialect.in_list(by, chunk)
                cursor = new_cursor()
                cursor.execute(
                    f"SELECT {', '.join(columns)} FROM {self.q(table)} WHERE {condition}", params
                )
                sent.append((into, codec, columns[0], cursor))

        def receive() -> Touched:
            # The key of each row is its first field (iccid, group_id, operation_id), as
            # decoded (stored text is escaped).
            for into, codec, key, cursor in sent:
                rows = map(codec.decode, cursor.fetchall())
                into.update({getattr(row, key): row for row in rows})
            return Touched(sims=sims, groups=groups, operations=operations)

        return receive

    # ---- reading ------------------------------------------------------------------------
    def all_sims(self, tables: Tables) -> str:
        return f"SELECT {', '.join(SIM_COLUMNS)} FROM {self.q(tables.sims)} ORDER BY iccid"

    def all_counts(self, tables: Tables) -> str:
        return f"SELECT {', '.join(COUNT_COLUMNS)}, n FROM {self.q(tables.counts)} WHERE n != 0"

    @staticmethod
    def decode_counts(found: Iterable[Sequence[Any]]) -> dict[CountKey, int]:
        """The rows of :meth:`all_counts` as counts per combination."""
        return {
            (unescape_text(s), unescape_text(t), unescape_text(o), unescape_text(c)): int(n)
            for s, t, o, c, n in found
        }

    def operations_statement(self, tables: Tables) -> str:
        return (
            f"SELECT {', '.join(OPERATION_COLUMNS)} FROM {self.q(tables.operations)} "
            "ORDER BY requested_at DESC, operation_id DESC"
        )

    def groups_statement(
        self, company: str | None, locked: bool | None, tables: Tables
    ) -> tuple[str, list[Any]]:
        parts: list[str] = []
        params: list[Any] = []
        if locked is not None:
            parts.append(("" if locked else "NOT ") + "(NOT depleted AND NOT deleted)")
        if company is not None:
            condition, bound = self.text_equals("company", company, alias="s")
            parts.append(
                f"EXISTS (SELECT 1 FROM {self.q(tables.sims)} s WHERE s.group_id = g.group_id "
                f"AND {condition})"
            )
            params += bound
        where = f" WHERE {' AND '.join(parts)}" if parts else ""
        columns = ", ".join(f"g.{c}" for c in GROUP_COLUMNS)
        return (
            f"SELECT {columns} FROM {self.q(tables.groups)} g{where} ORDER BY g.name, g.group_id",
            params,
        )

    def log(
        self,
        table: str,
        start: int,
        limit: int,
        stop: int | None,
        partition: Partition | None,
    ) -> tuple[str, list[Any]]:
        """Notifications of the event table ``table`` from id ``start`` on (at most
        ``limit``, none after ``stop``); ``partition``: only the SIM events of those SIMs
        (and every other event), see :meth:`Dialect.partition_filter` and
        :class:`IccidRange`."""
        p, id_ = self.dialect.placeholder, self.dialect.log_id
        conditions = [f"{id_} >= {p}"]
        params: list[Any] = [start]
        if stop is not None:
            conditions.append(f"{id_} <= {p}")
            params.append(stop)
        if isinstance(partition, IccidRange):
            # A SIM's originator id is its ICCID: a range of ICCIDs is a range of ids.
            ends = [(op, end) for op, end in ((">=", partition.low), ("<", partition.high))]
            within = [(f"originator_id {op} {p}", end) for op, end in ends if end is not None]
            if within:
                inside = " AND ".join(condition for condition, _ in within)
                conditions.append(f"(topic NOT LIKE {p} OR ({inside}))")
                params += [SIM_TOPICS, *(end for _, end in within)]
        elif partition is not None:
            split = self.dialect.partition_filter()
            if split is not None:
                conditions.append(split)
                params += [SIM_TOPICS, partition[1], partition[0]]
        statement = (
            f"SELECT {id_}, originator_id, originator_version, topic, state "
            f"FROM {self.q(table)} WHERE {' AND '.join(conditions)} ORDER BY {id_} LIMIT {p}"
        )
        return statement, [*params, limit]

    def sim_bound(self, table: str) -> str:
        """The ICCID ``OFFSET`` SIMs after one (bound to: SIM topics, after, offset)."""
        p = self.dialect.placeholder
        return (
            f"SELECT originator_id FROM {self.q(table)} WHERE originator_version = 1 "
            f"AND topic LIKE {p} AND originator_id > {p} "
            f"ORDER BY originator_id LIMIT 1 OFFSET {p}"
        )

    def head_and_position(self, table: str) -> str:
        return (
            f"SELECT (SELECT MAX({self.dialect.log_id}) FROM {self.q(table)}), "
            f"({self.read_position})"
        )


def sort_kind(column: str) -> Kind:
    for name, kind in SORTS.values():
        if name == column:
            return kind
    return Kind.TEXT
