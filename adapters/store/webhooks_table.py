"""Webhook subscriptions and their delivery log (application/webhooks.py), in the ledger's store.

``simledger_webhooks`` holds one row per subscription: its owner (company; NULL: an operator's,
every company), URL, event types, signing secret (kept as given: it signs every POST), the
position delivered so far, and the retry state (failures in a row, since when, the next
attempt, the reason it was paused). ``simledger_webhook_deliveries`` holds one row per POST
attempt, keyed by (subscription, sequence number). Both live beside the events in the SQLite
file or PostgreSQL schema, created on first use as the other side tables are.

**One subscription, one deliverer at a time.** :meth:`SqlWebhooks.claim` gives a
:class:`Claim` over one subscription's row. On PostgreSQL the row is locked
(``FOR UPDATE SKIP LOCKED``) in a transaction held for the whole attempt: another deliverer
skips it, and a deliverer that dies (``kill -9``) ends its transaction with its connection, so
the row is free again with the position it had before the batch. The delivery record and the
new position are written in that same transaction (one commit). On SQLite a transaction held
across a POST would block every writer of the events, so the claim reads the row, and the
record is one short transaction guarded by the position read (compare-and-set): nothing is
written twice, but only one ``deliver`` process per SQLite store is supported.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any

from simledger.adapters.store.side_tables import Render, Transaction, sql_access

TABLE = "simledger_webhooks"
LOG_TABLE = "simledger_webhook_deliveries"

_CREATE = (
    "CREATE TABLE IF NOT EXISTS {table} (id TEXT PRIMARY KEY, company TEXT, url TEXT NOT NULL, "
    "events TEXT NOT NULL, secret TEXT NOT NULL, created_at TEXT NOT NULL, deleted_at TEXT, "
    "position BIGINT NOT NULL, failures INTEGER NOT NULL, failing_since DOUBLE PRECISION, "
    "next_attempt DOUBLE PRECISION NOT NULL, paused_reason TEXT, attempts INTEGER NOT NULL, "
    "delivered_at TEXT)"
)
_CREATE_LOG = (
    "CREATE TABLE IF NOT EXISTS {table} (webhook_id TEXT NOT NULL, seq INTEGER NOT NULL, "
    "at TEXT NOT NULL, first_position BIGINT NOT NULL, last_position BIGINT NOT NULL, "
    "events INTEGER NOT NULL, attempt INTEGER NOT NULL, status_code INTEGER, "
    "latency_ms DOUBLE PRECISION NOT NULL, ok BOOLEAN NOT NULL, error TEXT, "
    "PRIMARY KEY (webhook_id, seq))"
)
_COLUMNS = (
    "id, company, url, events, secret, created_at, deleted_at, position, failures, "
    "failing_since, next_attempt, paused_reason, attempts, delivered_at"
)
_LOG_COLUMNS = (
    "webhook_id, seq, at, first_position, last_position, events, attempt, status_code, "
    "latency_ms, ok, error"
)
_ALL = "SELECT " + _COLUMNS + " FROM {table} WHERE deleted_at IS NULL ORDER BY created_at, id"
_BY_ID = "SELECT " + _COLUMNS + " FROM {table} WHERE id = %s AND deleted_at IS NULL"
_INSERT = (
    "INSERT INTO {table} (" + _COLUMNS + ") VALUES "
    "(%s, %s, %s, %s, %s, %s, NULL, %s, 0, NULL, 0, NULL, 0, NULL)"
)
_DELETE = "UPDATE {table} SET deleted_at = %s WHERE id = %s AND deleted_at IS NULL"
_REPLAY = (
    "UPDATE {table} SET position = %s, failures = 0, failing_since = NULL, next_attempt = 0, "
    "paused_reason = NULL WHERE id = %s AND deleted_at IS NULL"
)
_DUE = (
    "SELECT id FROM {table} WHERE deleted_at IS NULL AND paused_reason IS NULL "
    "AND next_attempt <= %s AND position < %s ORDER BY next_attempt, id"
)
_UPDATE = (
    "UPDATE {table} SET position = %s, failures = %s, failing_since = %s, next_attempt = %s, "
    "paused_reason = %s, attempts = %s, delivered_at = %s WHERE id = %s"
)
_GUARD = " AND position = %s AND attempts = %s"
_LOG_INSERT = "INSERT INTO {table} (" + _LOG_COLUMNS + ") VALUES (%s" + ", %s" * 10 + ")"
_LOG_PAGE = (
    "SELECT " + _LOG_COLUMNS + " FROM {table} WHERE webhook_id = %s ORDER BY seq DESC LIMIT %s"
)


@dataclass(frozen=True)
class WebhookRow:
    """One subscription as stored (times as ISO 8601 text; ``next_attempt`` and
    ``failing_since`` as unix seconds)."""

    id: str
    company: str | None
    url: str
    events: str
    secret: str
    created_at: str
    deleted_at: str | None
    position: int
    failures: int
    failing_since: float | None
    next_attempt: float
    paused_reason: str | None
    attempts: int
    delivered_at: str | None


@dataclass(frozen=True)
class DeliveryRow:
    """One POST attempt of a batch: which positions, how it went, how long it took."""

    webhook_id: str
    seq: int
    at: str
    first_position: int
    last_position: int
    events: int
    attempt: int
    status_code: int | None
    latency_ms: float
    ok: bool
    error: str | None


def _values(row: Any, names: list[str]) -> list[Any]:
    if isinstance(row, dict):
        return [row[name] for name in names]
    return [row[i] for i in range(len(names))]


_HOOK_FIELDS = [f.name for f in fields(WebhookRow)]
_LOG_FIELDS = [f.name for f in fields(DeliveryRow)]


def _hook(row: Any) -> WebhookRow:
    values = _values(row, _HOOK_FIELDS)
    for i in (7, 8, 12):  # SQLite gives ints; PostgreSQL too, but keep them plain
        values[i] = int(values[i])
    return WebhookRow(*values)


def _delivery(row: Any) -> DeliveryRow:
    values = _values(row, _LOG_FIELDS)
    values[9] = bool(values[9])
    return DeliveryRow(*values)


@dataclass
class Outcome:
    """What an attempt changes on its subscription's row (written with its delivery row)."""

    position: int
    failures: int
    failing_since: float | None
    next_attempt: float
    paused_reason: str | None
    delivered_at: str | None


class Claim:
    """One subscription held by this deliverer for one attempt (see the module docstring)."""

    def __init__(self, table: SqlWebhooks, row: WebhookRow, cursor: Any | None) -> None:
        self.row = row
        self._table = table
        self._cursor = cursor
        self.recorded = False

    def record(self, outcome: Outcome, delivery: DeliveryRow | None) -> bool:
        """The new state and (when a POST was made) its delivery row, in one transaction;
        False when another process moved the subscription meanwhile (SQLite only)."""
        row = self.row
        params = [
            outcome.position,
            outcome.failures,
            outcome.failing_since,
            outcome.next_attempt,
            outcome.paused_reason,
            row.attempts + (1 if delivery else 0),
            outcome.delivered_at,
            row.id,
        ]
        render = self._table.render
        if self._cursor is not None:  # PostgreSQL: inside the claim's transaction
            if delivery is not None:
                self._cursor.execute(render(_LOG_INSERT, log=True), _log_params(delivery))
            self._cursor.execute(render(_UPDATE), params)
            self.recorded = True
            return True
        with self._table.transaction(True) as cur:
            cur.execute(render(_UPDATE + _GUARD), [*params, row.position, row.attempts])
            cur.execute(render(_BY_ID), [row.id])
            after = cur.fetchone()
            moved = (
                after is None
                or _hook(after).attempts != params[5]
                or (_hook(after).position != outcome.position)
            )
            if moved:
                return False
            if delivery is not None:
                cur.execute(render(_LOG_INSERT, log=True), _log_params(delivery))
        self.recorded = True
        return True


def _log_params(d: DeliveryRow) -> list[Any]:
    return [
        d.webhook_id,
        d.seq,
        d.at,
        d.first_position,
        d.last_position,
        d.events,
        d.attempt,
        d.status_code,
        d.latency_ms,
        d.ok,
        d.error,
    ]


class SqlWebhooks:
    """The two tables on the ledger's SQLite or PostgreSQL datastore."""

    def __init__(
        self, transaction: Transaction, render: Render, render_log: Render, postgres: bool
    ) -> None:
        self.transaction = transaction
        self._render = render
        self._render_log = render_log
        self.postgres = postgres
        with self.transaction(True) as cur:
            cur.execute(render(_CREATE))
            cur.execute(render_log(_CREATE_LOG))

    def render(self, statement: str, *, log: bool = False) -> Any:
        return (self._render_log if log else self._render)(statement)

    def insert(self, row: WebhookRow) -> None:
        with self.transaction(True) as cur:
            cur.execute(
                self.render(_INSERT),
                [
                    row.id,
                    row.company,
                    row.url,
                    row.events,
                    row.secret,
                    row.created_at,
                    row.position,
                ],
            )

    def all(self) -> list[WebhookRow]:
        with self.transaction(False) as cur:
            cur.execute(self.render(_ALL))
            return [_hook(r) for r in cur.fetchall()]

    def by_id(self, webhook_id: str) -> WebhookRow | None:
        with self.transaction(False) as cur:
            cur.execute(self.render(_BY_ID), [webhook_id])
            found = cur.fetchone()
        return _hook(found) if found else None

    def delete(self, webhook_id: str, at: str) -> None:
        with self.transaction(True) as cur:
            cur.execute(self.render(_DELETE), [at, webhook_id])

    def replay(self, webhook_id: str, position: int) -> None:
        """Deliver again from after ``position``; on PostgreSQL this waits for a batch in
        flight (its row lock), so the replay is never overwritten by it."""
        with self.transaction(True) as cur:
            cur.execute(self.render(_REPLAY), [position, webhook_id])

    def due(self, now: float, last_position: int) -> list[str]:
        """Live, unpaused subscriptions behind ``last_position`` whose next attempt is due."""
        with self.transaction(False) as cur:
            cur.execute(self.render(_DUE), [now, last_position])
            return [str(_values(r, ["id"])[0]) for r in cur.fetchall()]

    def deliveries(self, webhook_id: str, limit: int) -> list[DeliveryRow]:
        with self.transaction(False) as cur:
            cur.execute(self.render(_LOG_PAGE, log=True), [webhook_id, limit])
            return [_delivery(r) for r in cur.fetchall()]

    @contextmanager
    def claim(self, webhook_id: str) -> Iterator[Claim | None]:
        """The subscription held for one attempt; None when another deliverer holds it (or
        it is gone, or paused). See the module docstring."""
        if not self.postgres:
            row = self.by_id(webhook_id)
            yield None if row is None or row.paused_reason else Claim(self, row, None)
            return
        statement = self.render(_BY_ID + " AND paused_reason IS NULL FOR UPDATE SKIP LOCKED")
        with self.transaction(True) as cur:
            cur.execute(statement, [webhook_id])
            found = cur.fetchone()
            yield Claim(self, _hook(found), cur) if found else None


def webhooks_for(recorder: Any) -> SqlWebhooks | None:
    """The webhook tables of the store of ``recorder``, created if missing; None for a store
    in memory (webhooks need a store other processes can reach)."""
    from eventsourcing.postgres import PostgresApplicationRecorder

    access = sql_access(recorder, TABLE)
    log_access = sql_access(recorder, LOG_TABLE)
    if access is None or log_access is None:
        return None
    return SqlWebhooks(
        access[0], access[1], log_access[1], isinstance(recorder, PostgresApplicationRecorder)
    )
