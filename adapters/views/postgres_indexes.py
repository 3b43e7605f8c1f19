"""The PostgreSQL view store's own indexes and bulk loads.

Beyond the sort indexes every SQL store has (:meth:`~.sql.Statements.sim_indexes`):
an index per month for sorting by "this month's MB", status-led partial indexes for the
statuses few SIMs have, a GIN index on labels and (with ``pg_trgm``) trigram indexes for
the search. A rebuild builds its indexes on several connections at once, and loads rows
with ``COPY``.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import TupleRow

from simledger.adapters.logs import get_logger
from simledger.adapters.views.sql import SORT_INDEXED, Statements, Tables

log = get_logger("simledger.views")

Conn = psycopg.Connection[TupleRow]

REBUILD_MEMORY = "256MB"
"""``maintenance_work_mem`` while a rebuild creates its indexes (sorts in memory)."""
INDEX_BUILDERS = max(2, min(4, os.cpu_count() or 2))
"""Connections building a rebuild's indexes at once."""
HAS_LABELS = "labels <> '{}'::text[]"
"""The GIN index on labels leaves out SIMs without any (most, and every new one)."""
MONTH_INDEX = re.compile(r"_month_([0-9]{1,4}_[0-9]{2})_[0-9a-f]{8}$")
"""The name of a "this month's MB" index; group 1: its month as ``YYYY_MM``."""


def literal(text: str) -> str:
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


def month_index_statement(sql: Statements, tables: Tables, month: str) -> str:
    """The B-tree that sorts by "this month's MB" for ``month``: the key changes with the
    month of the query, so each month gets its own expression index (the same expression
    the page query sorts by, which is how the planner matches them)."""
    name = f"{tables.sims}_month_{month.replace('-', '_')}_{secrets.token_hex(4)}"
    return (
        f"CREATE INDEX {name} ON {sql.q(tables.sims)} "
        f"({sql.key_expr('this_month_mb', month)}, iccid)"
    )


def own_index_statements(
    sql: Statements, tables: Tables, token: str, trigram_ops: str | None
) -> list[str]:
    """The labels' GIN index (on their bounded keys), the search's trigram indexes (with
    ``trigram_ops``, for the SIMs that have an end user or a note), and the current
    month's index."""
    sims = sql.q(tables.sims)
    statements = [
        f"CREATE INDEX {tables.sims}_labels_{token} ON {sims} "
        f"USING gin (label_keys) WHERE {HAS_LABELS}"
    ]
    if trigram_ops is not None:
        for column in ("end_user", "note"):
            statements.append(
                f"CREATE INDEX {tables.sims}_{column}_text_{token} ON {sims} "
                f"USING gin (lower({column}) {trigram_ops}) WHERE {column} IS NOT NULL"
            )
    statements.append(month_index_statement(sql, tables, current_month()))
    return statements


def minority_index_statements(
    sql: Statements, tables: Tables, counts: Mapping[str, int]
) -> list[str]:
    """Indexes for a filter on a status few SIMs have, sorted by any column.

    A sort index walked for a rare status (blank, suspended, or active in a stock of new
    SIMs) skips many rows per row it returns. So a rebuild, which knows how the fleet's
    statuses are spread (``counts``, SIMs per status), adds one partial index per sort led
    by the status, over the SIMs whose status is not a majority one (held by 20 % of SIMs
    or more): small, and chosen by the planner for any filter on those statuses. Between
    rebuilds they stay correct as SIMs move; a status that becomes common only makes them
    bigger."""
    total = sum(counts.values())
    common = sorted(status for status, n in counts.items() if n * 5 >= total)
    if not total or not common or len(common) == len(counts):
        return []
    token = secrets.token_hex(4)
    where = "status NOT IN (" + ", ".join(literal(status) for status in common) + ")"
    keys = [sql.key_expr(c) for c in SORT_INDEXED if c != "status"]
    keys.append(sql.key_expr("this_month_mb", current_month()))
    return [
        f"CREATE INDEX {tables.sims}_few_{n}_{token} ON {sql.q(tables.sims)} "
        f"(status, {key}, iccid) WHERE {where}"
        for n, key in enumerate(keys)
    ]


def build_in_parallel(connect: Mapping[str, Any], statements: Sequence[str]) -> None:
    """Run ``statements`` (index builds) on connections of their own, a few at once."""

    def build(share: list[str]) -> None:
        with psycopg.connect(**connect, autocommit=True) as conn:
            conn.execute(f"SET maintenance_work_mem = '{REBUILD_MEMORY}'")
            for statement in share:
                conn.execute(statement)

    workers = max(1, min(INDEX_BUILDERS, len(statements)))
    shares = [list(statements[k::workers]) for k in range(workers)]
    with ThreadPoolExecutor(workers, thread_name_prefix="simledger-index") as pool:
        for done in [pool.submit(build, share) for share in shares]:
            done.result()


def copy_rows(
    cursor: psycopg.Cursor[TupleRow],
    table: str,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    binary_types: Sequence[str] | None = None,
) -> None:
    """``rows`` into ``table`` with one COPY; binary (given the columns' types) where
    psycopg's text conversion of the values costs most (the SIM rows)."""
    statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
    if binary_types is not None:
        statement += " (FORMAT BINARY)"
    with cursor.copy(statement) as copy:
        if binary_types is not None:
            copy.set_types(list(binary_types))
        for row in rows:
            copy.write_row(row)


def find_trigram_ops(conn: Conn) -> str | None:
    """pg_trgm's GIN operator class, installing the extension if allowed: it indexes the
    substring search on end users and notes. Without it, search scans."""
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
