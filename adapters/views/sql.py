"""What the SQLite and PostgreSQL view stores share: tables, statements, the batch write.

Tables (live names; a rebuild builds the same set with the suffix ``_rebuild``):

* ``view_sims`` -- one row per SIM (every :class:`SimRow` column, plus ``labels_key`` and
  ``rules_key``, the text a list column sorts by). One B-tree per sortable column on
  ``(sort key, iccid)``, the sort key being the column with "not set" mapped to the lowest
  value (see :mod:`simledger.projections.listing`): filters and keyset paging walk it.
* ``view_sim_counts`` -- SIMs per (status, SIM type, operator, company): ``total`` of a
  query filtered only on those columns is a sum over a few rows, not a count over millions.
* ``view_groups``, ``view_operations`` -- the shared groups and the pending activity.
* ``view_tracking`` -- one row: the position (last notification id folded) and the
  projection version the tables were built by.

A batch is four statements per table at most whatever its size: rows are loaded with one
``IN``/``ANY`` query and written with ``executemany`` upserts; a pool change of a shared
group is one set-based ``UPDATE … WHERE group_id = …`` for all its members.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from simledger.adapters.store.batch_load import chunked
from simledger.adapters.views.base import (
    PENDING_ACTIVITY,
    SHARED_GROUPS,
    SIMS,
    TRACKING_NAME,
    ViewStore,
)
from simledger.projections.batch import Changes, Keys, Touched
from simledger.projections.listing import (
    CONSTANT_COLUMNS,
    SORTS,
    Kind,
    SimQuery,
    list_key,
)
from simledger.projections.rows import (
    GROUP_COLUMNS,
    OPERATION_COLUMNS,
    SIM_COLUMNS,
    GroupRow,
    OperationRow,
    SimRow,
)

TRACKING_TABLE = "view_tracking"
SCRATCH = "_rebuild"

SIM_TABLE_COLUMNS: tuple[str, ...] = (*SIM_COLUMNS, "labels_key", "rules_key")
COUNT_COLUMNS: tuple[str, ...] = ("status", "sim_type", "operator", "company")

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


@dataclass(frozen=True)
class Tables:
    sims: str
    labels: str
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
                tables += [self.sims, self.labels, self.counts]
            elif view == SHARED_GROUPS:
                tables.append(self.groups)
            elif view == PENDING_ACTIVITY:
                tables.append(self.operations)
        return tables

    def all(self) -> list[str]:
        return [self.sims, self.labels, self.counts, self.groups, self.operations]


LIVE = Tables.named()
REBUILD = Tables.named(SCRATCH)


class SqlViewStore(ViewStore):
    """Statements built once per store from the dialect hooks below."""

    placeholder = "?"
    has_label_table = False
    chunk_size = 500

    # ---- dialect hooks ------------------------------------------------------------------
    @abstractmethod
    def q(self, table: str) -> str:
        """The qualified, quoted name of ``table``."""

    @abstractmethod
    def key_expr(self, column: str, month: str = "", alias: str = "") -> str:
        """The sort key of ``column`` as an SQL expression (index and query alike);
        ``alias`` qualifies the column."""

    @abstractmethod
    def key_param(self, value: Any, kind: Kind) -> Any:
        """A cursor's decoded key as a parameter comparable with :meth:`key_expr`."""

    @abstractmethod
    def sim_params(self, row: SimRow) -> tuple[Any, ...]:
        """A row as parameters in ``SIM_TABLE_COLUMNS`` order."""

    @abstractmethod
    def sim_from_db(self, values: Sequence[Any]) -> SimRow:
        """A row read in ``SIM_COLUMNS`` order."""

    @abstractmethod
    def group_params(self, row: GroupRow) -> tuple[Any, ...]: ...

    @abstractmethod
    def group_from_db(self, values: Sequence[Any]) -> GroupRow: ...

    @abstractmethod
    def operation_params(self, row: OperationRow) -> tuple[Any, ...]: ...

    @abstractmethod
    def operation_from_db(self, values: Sequence[Any]) -> OperationRow: ...

    @abstractmethod
    def label_filter(self, tables: Tables) -> str:
        """SQL true when the SIM row has the label bound to the one placeholder."""

    @abstractmethod
    def lower(self, expression: str) -> str: ...

    @abstractmethod
    def in_list(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """``column`` is one of ``values``."""

    # ---- statements ---------------------------------------------------------------------
    def _upsert(self, table: str, columns: Sequence[str], key: Sequence[str]) -> str:
        p = self.placeholder
        names = ", ".join(columns)
        values = ", ".join(p for _ in columns)
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
        return (
            f"INSERT INTO {self.q(table)} ({names}) VALUES ({values}) "
            f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
        )

    def write_changes(self, cursor: Any, tables: Tables, changes: Changes) -> None:
        """The batch's rows, in one open transaction (the caller writes the position)."""
        p = self.placeholder
        if changes.sims:
            cursor.executemany(
                self._upsert(tables.sims, SIM_TABLE_COLUMNS, ("iccid",)),
                [self.sim_params(row) for row in changes.sims.values()],
            )
        if changes.pools:
            cursor.executemany(
                f"UPDATE {self.q(tables.sims)} SET data_left_mb = {p} "
                f"WHERE {self.key_expr('group_id')} = {p}",
                [(self.number_param(pool), group_id) for group_id, pool in changes.pools.items()],
            )
        if self.has_label_table and changes.labels:
            cursor.executemany(
                f"DELETE FROM {self.q(tables.labels)} WHERE iccid = {p}",
                [(iccid,) for iccid in changes.labels],
            )
            cursor.executemany(
                f"INSERT INTO {self.q(tables.labels)} (iccid, label) VALUES ({p}, {p})",
                [(iccid, label) for iccid, labels in changes.labels.items() for label in labels],
            )
        if changes.counts:
            cursor.executemany(
                f"INSERT INTO {self.q(tables.counts)} ({', '.join(COUNT_COLUMNS)}, n) "
                f"VALUES ({p}, {p}, {p}, {p}, {p}) "
                f"ON CONFLICT ({', '.join(COUNT_COLUMNS)}) "
                f"DO UPDATE SET n = {self.q(tables.counts)}.n + excluded.n",
                [(*key, n) for key, n in changes.counts.items()],
            )
        if changes.groups:
            cursor.executemany(
                self._upsert(tables.groups, GROUP_COLUMNS, ("group_id",)),
                [self.group_params(row) for row in changes.groups.values()],
            )
        if changes.operations:
            cursor.executemany(
                self._upsert(tables.operations, OPERATION_COLUMNS, ("operation_id",)),
                [self.operation_params(row) for row in changes.operations.values()],
            )

    def number_param(self, value: Decimal) -> Any:
        return value

    def load_rows(self, cursor: Any, tables: Tables, keys: Keys) -> Touched:
        sims: dict[str, SimRow] = {}
        columns = ", ".join(SIM_COLUMNS)
        for column, wanted in (("iccid", keys.iccids), ("copy_id", keys.copy_ids)):
            for chunk in chunked(sorted(wanted), self.chunk_size):
                condition, params = self.in_list(column, chunk)
                cursor.execute(
                    f"SELECT {columns} FROM {self.q(tables.sims)} WHERE {condition}", params
                )
                for values in cursor.fetchall():
                    row = self.sim_from_db(values)
                    sims[row.iccid] = row
        groups: dict[str, GroupRow] = {}
        for chunk in chunked(sorted(keys.group_ids), self.chunk_size):
            condition, params = self.in_list("group_id", chunk)
            cursor.execute(
                f"SELECT {', '.join(GROUP_COLUMNS)} FROM {self.q(tables.groups)} WHERE {condition}",
                params,
            )
            for values in cursor.fetchall():
                group = self.group_from_db(values)
                groups[group.group_id] = group
        operations: dict[str, OperationRow] = {}
        for chunk in chunked(sorted(keys.operation_ids), self.chunk_size):
            condition, params = self.in_list("operation_id", chunk)
            cursor.execute(
                f"SELECT {', '.join(OPERATION_COLUMNS)} FROM {self.q(tables.operations)} "
                f"WHERE {condition}",
                params,
            )
            for values in cursor.fetchall():
                operation = self.operation_from_db(values)
                operations[operation.operation_id] = operation
        return Touched(sims=sims, groups=groups, operations=operations)

    # ---- the SIM list query -------------------------------------------------------------
    def where(self, query: SimQuery, tables: Tables) -> tuple[list[str], list[Any]]:
        p = self.placeholder
        parts: list[str] = []
        params: list[Any] = []
        if query.statuses is not None:
            condition, values = self.in_list("status", query.statuses)
            parts.append(condition)
            params += values
        if query.sim_types is not None:
            condition, values = self.in_list("sim_type", query.sim_types)
            parts.append(condition)
            params += values
        if query.operator is not None:
            parts.append(f"operator = {p}")
            params.append(query.operator)
        if query.company is not None:
            parts.append(f"{self.key_expr('company')} = {p}")
            params.append(query.company)
        if query.group_id is not None:
            parts.append(f"{self.key_expr('group_id')} = {p}")
            params.append(query.group_id)
        if query.label is not None:
            parts.append(self.label_filter(tables))
            params.append(query.label)
        if query.search is not None:
            needle = "%" + _escape_like(query.search.lower()) + "%"
            alternatives = [
                f"(end_user IS NOT NULL AND {self.lower('end_user')} LIKE {p} ESCAPE '\\')",
                f"(note IS NOT NULL AND {self.lower('note')} LIKE {p} ESCAPE '\\')",
            ]
            params += [needle, needle]
            digits = query.search_digits
            if digits is not None:
                alternatives.insert(0, f"iccid LIKE {p}")
                params.insert(len(params) - 2, digits + "%")
            parts.append("(" + " OR ".join(alternatives) + ")")
        return parts, params

    def page_statement(self, query: SimQuery, tables: Tables) -> tuple[str, list[Any]]:
        p = self.placeholder
        parts, params = self.where(query, tables)
        direction = "DESC" if query.descending else "ASC"
        compare = "<" if query.descending else ">"
        if query.column in CONSTANT_COLUMNS or query.column == "iccid":
            order = f"iccid {direction}"
            if query.after is not None:
                parts.append(f"iccid {compare} {p}")
                params.append(query.after[1])
        elif _pinned(query):
            # The filter leaves the key one value: (key, iccid) order is the ICCID's, and the
            # cursor needs only the ICCID. Ordered by both, the planner reads the range
            # "key = v AND iccid > i" of the column's own index.
            key = self.key_expr(query.column, query.month)
            order = f"{key} {direction}, iccid {direction}"
            if query.after is not None:
                parts.append(f"iccid {compare} {p}")
                params.append(query.after[1])
        else:
            key = self.key_expr(query.column, query.month)
            order = f"{key} {direction}, iccid {direction}"
            if query.after is not None:
                value, iccid = query.after
                # "(key, iccid) > (v, i)" written as ">= (v, i) and not the cursor's row": the
                # same rows and index range, but planners estimate a row comparison by its
                # first column alone, and "key > v" for a common v (NULL-heavy columns) looks
                # so rare that PostgreSQL skipped the ordered index for a bitmap and a sort.
                bound = self.key_param(value, query.kind)
                parts.append(
                    f"({key}, iccid) {compare}= ({p}, {p}) AND NOT ({key} = {p} AND iccid = {p})"
                )
                params += [bound, iccid, bound, iccid]
        where = f" WHERE {' AND '.join(parts)}" if parts else ""
        statement = (
            f"SELECT {', '.join(SIM_COLUMNS)} FROM {self.q(tables.sims)}{where} "
            f"ORDER BY {order} LIMIT {query.limit + 1}"
        )
        return statement, params

    def total_statement(self, query: SimQuery, tables: Tables) -> tuple[str, list[Any]]:
        p = self.placeholder
        if query.only_counted_filters:
            parts: list[str] = []
            params: list[Any] = []
            for column, values in (("status", query.statuses), ("sim_type", query.sim_types)):
                if values is not None:
                    condition, bound = self.in_list(column, values)
                    parts.append(condition)
                    params += bound
            for column, value in (("operator", query.operator), ("company", query.company)):
                if value is not None:
                    parts.append(f"{column} = {p}")
                    params.append(value)
            where = f" WHERE {' AND '.join(parts)}" if parts else ""
            return f"SELECT COALESCE(SUM(n), 0) FROM {self.q(tables.counts)}{where}", params
        parts, params = self.where(query, tables)
        return (
            f"SELECT COUNT(*) FROM {self.q(tables.sims)} WHERE {' AND '.join(parts)}",
            params,
        )

    def groups_statement(
        self, company: str | None, locked: bool | None, tables: Tables
    ) -> tuple[str, list[Any]]:
        p = self.placeholder
        parts: list[str] = []
        params: list[Any] = []
        if locked is not None:
            parts.append(("" if locked else "NOT ") + "(NOT depleted AND NOT deleted)")
        if company is not None:
            parts.append(
                f"EXISTS (SELECT 1 FROM {self.q(tables.sims)} s "
                f"WHERE s.group_id = g.group_id AND {self.key_expr('company', alias='s')} = {p})"
            )
            params.append(company)
        where = f" WHERE {' AND '.join(parts)}" if parts else ""
        columns = ", ".join(f"g.{c}" for c in GROUP_COLUMNS)
        return (
            f"SELECT {columns} FROM {self.q(tables.groups)} g{where} ORDER BY g.name, g.group_id",
            params,
        )

    def operations_statement(self, tables: Tables) -> str:
        return (
            f"SELECT {', '.join(OPERATION_COLUMNS)} FROM {self.q(tables.operations)} "
            "ORDER BY requested_at DESC, operation_id DESC"
        )

    # ---- index definitions --------------------------------------------------------------
    def sim_index_statements(self, tables: Tables, token: str) -> list[str]:
        """``CREATE INDEX`` of each of :meth:`sim_indexes` on ``tables.sims``. Index names
        are unique per schema (and survive a table's rename on SQLite): ``token`` keeps a
        rebuild's indexes from colliding with those of the table it replaces."""
        return [
            f"CREATE INDEX {tables.sims}_{suffix}_{token} ON {self.q(tables.sims)} ({columns})"
            + (f" WHERE {where}" if where else "")
            for suffix, columns, where in self.sim_indexes()
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


def _pinned(query: SimQuery) -> bool:
    """Whether the filters leave the sort key one value (``operator="A1"`` sorted by
    operator): then (key, iccid) order is the ICCID order."""
    column = query.column
    if column == "status":
        return query.statuses is not None and len(query.statuses) == 1
    if column == "sim_type":
        return query.sim_types is not None and len(query.sim_types) == 1
    filtered = {"operator": query.operator, "company": query.company, "group_id": query.group_id}
    return filtered.get(column) is not None


def sort_kind(column: str) -> Kind:
    for name, kind in SORTS.values():
        if name == column:
            return kind
    return Kind.TEXT


def labels_json(values: list[str]) -> str:
    return json.dumps(values, separators=(",", ":"), ensure_ascii=False)


def list_keys(row: SimRow) -> tuple[str, str]:
    return list_key(row.labels), list_key(row.rules)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def stream(fetch: Callable[[], Sequence[Any]]) -> Iterator[Any]:
    """Rows of a cursor, ``fetchmany`` at a time."""
    while True:
        rows = fetch()
        if not rows:
            return
        yield from rows


def as_utc_text(value: datetime | None) -> str | None:
    from datetime import UTC

    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


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
    ) -> None:
        self._store = store
        self._cursor = cursor
        self._tables = tables
        self._position = position
        self._track = track

    @property
    def position(self) -> int:
        return self._position

    def load(self, keys: Keys) -> Touched:
        return self._store.load_rows(self._cursor, self._tables, keys)

    def write(self, changes: Changes, position: int) -> None:
        self._store.write_changes(self._cursor, self._tables, changes)
        if self._track and position > self._position:
            mark = self._store.placeholder
            self._cursor.execute(
                f"UPDATE {self._store.q(TRACKING_TABLE)} SET position = {mark} WHERE name = {mark}",
                (position, TRACKING_NAME),
            )
        self._position = max(self._position, position)
