"""The SIM list query (``sims()``) in SQL: filters, keyset paging, and the total.

Written once over :class:`~.sql.Statements` (sort keys) and its dialect (placeholders,
``IN`` lists, the label filter, lower case).
"""

from __future__ import annotations

from typing import Any

from simledger.adapters.views.sql import Statements, Tables
from simledger.projections.listing import CONSTANT_COLUMNS, SimQuery
from simledger.projections.rows import SIM_COLUMNS
from simledger.projections.sort_keys import escape_text


def where(sql: Statements, query: SimQuery, tables: Tables) -> tuple[list[str], list[Any]]:
    d = sql.dialect
    parts: list[str] = []
    params: list[Any] = []
    for column, values in (("status", query.statuses), ("sim_type", query.sim_types)):
        if values is not None:
            condition, bound = d.in_list(column, values)
            parts.append(condition)
            params += bound
    for column, value in (
        ("operator", query.operator),
        ("company", query.company),
        ("group_id", query.group_id),
    ):
        if value is not None:
            condition, bound = sql.text_equals(column, value)
            parts.append(condition)
            params += bound
    if query.label is not None:
        condition, bound = d.label_filter(tables.labels, query.label)
        parts.append(condition)
        params += bound
    if query.regular_group is not None:
        condition, bound = d.list_contains("regular_groups", query.regular_group)
        parts.append(condition)
        params += bound
    if query.search is not None:
        # Any length: no LIKE pattern is built from the text where a database limits one
        # (SQLite's 50,000 bytes); the dialect matches it as search_matches does.
        needle = query.search.lower()
        alternatives: list[str] = []
        digits = query.search_digits
        if digits is not None:
            condition, bound = d.starts_with("iccid", digits)
            alternatives.append(condition)
            params += bound
        for column in ("end_user", "note"):
            condition, bound = d.contains(column, needle)
            alternatives.append(f"({column} IS NOT NULL AND {condition})")
            params += bound
        parts.append("(" + " OR ".join(alternatives) + ")")
    return parts, params


def data_left(sql: Statements, tables: Tables) -> str:
    """A row's data left as the SIM list shows it: a member's is its group's pool, kept in
    the group's row only (projections/sim_list.py)."""
    sims = sql.q(tables.sims)
    pool = (
        f"(SELECT g.data_left_mb FROM {sql.q(tables.groups)} g WHERE g.group_id = {sims}.group_id)"
    )
    return f"(CASE WHEN {sims}.group_id IS NULL THEN {sims}.data_left_mb ELSE {pool} END)"


def data_left_key(sql: Statements, tables: Tables) -> str:
    """:func:`data_left`'s sort key: the row's own, or its group's."""
    sims = sql.q(tables.sims)
    pool = (
        f"(SELECT g.data_left_key FROM {sql.q(tables.groups)} g WHERE g.group_id = {sims}.group_id)"
    )
    return f"(CASE WHEN {sims}.group_id IS NULL THEN {sims}.data_left_key ELSE {pool} END)"


def page_statement(sql: Statements, query: SimQuery, tables: Tables) -> tuple[str, list[Any]]:
    p = sql.dialect.placeholder
    parts, params = where(sql, query, tables)
    shown = data_left(sql, tables)
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
        key = sql.key_expr(query.column, query.month)
        order = f"{key} {direction}, iccid {direction}"
        if query.after is not None:
            parts.append(f"iccid {compare} {p}")
            params.append(query.after[1])
    else:
        key = sql.key_expr(query.column, query.month)
        if query.column == "data_left_mb":  # the shown value's key: no index serves it
            key = f"COALESCE({data_left_key(sql, tables)}, -1)"
        order = f"{key} {direction}, iccid {direction}"
        if query.after is not None:
            value, iccid = query.after
            # "(key, iccid) > (v, i)" written as ">= (v, i) and not the cursor's row": the
            # same rows and index range, but planners estimate a row comparison by its
            # first column alone, and "key > v" for a common v (NULL-heavy columns) looks
            # so rare that PostgreSQL skipped the ordered index for a bitmap and a sort.
            bound = sql.dialect.key_param(value, query.kind)
            parts.append(
                f"({key}, iccid) {compare}= ({p}, {p}) AND NOT ({key} = {p} AND iccid = {p})"
            )
            params += [bound, iccid, bound, iccid]
    condition = f" WHERE {' AND '.join(parts)}" if parts else ""
    columns = [f"{shown} AS data_left_mb" if c == "data_left_mb" else c for c in SIM_COLUMNS]
    statement = (
        f"SELECT {', '.join(columns)} FROM {sql.q(tables.sims)}{condition} "
        f"ORDER BY {order} LIMIT {query.limit + 1}"
    )
    return statement, params


def total_statement(sql: Statements, query: SimQuery, tables: Tables) -> tuple[str, list[Any]]:
    if query.only_counted_filters:
        # A sum over the per-combination counts: those are the only filters.
        counted = SimQuery(
            statuses=query.statuses,
            sim_types=query.sim_types,
            operator=query.operator,
        )
        parts, params = where(sql, counted, tables)
        if query.company is not None:
            parts.append(f"company = {sql.dialect.placeholder}")
            params.append(escape_text(query.company))
        condition = f" WHERE {' AND '.join(parts)}" if parts else ""
        return f"SELECT COALESCE(SUM(n), 0) FROM {sql.q(tables.counts)}{condition}", params
    parts, params = where(sql, query, tables)
    return f"SELECT COUNT(*) FROM {sql.q(tables.sims)} WHERE {' AND '.join(parts)}", params


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


def escape_like(text: str) -> str:
    """``text`` as a LIKE pattern's literal (``ESCAPE '\\'``)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
