"""The e-mail outbox of "notify users" (application/notify.py), in the ledger's store.

``simledger_mail_outbox`` holds one row per notice (id derived from the event that caused it,
so a notice is queued once however often the log is read): the SIM, the address, the text,
and ``sent_at`` once the mail server took it. ``simledger_mail_position`` holds how far the
notifier has read the log. A notice and the new position are written in ONE transaction, so a
crash never skips an event nor queues one twice. Beside the events in the SQLite file or
PostgreSQL schema, created on first use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from simledger.adapters.store.side_tables import Render, Transaction, sql_access

TABLE = "simledger_mail_outbox"
POSITION_TABLE = "simledger_mail_position"
_CREATE = (
    "CREATE TABLE IF NOT EXISTS {table} (id TEXT PRIMARY KEY, iccid TEXT NOT NULL, "
    "to_addr TEXT NOT NULL, subject TEXT NOT NULL, body TEXT NOT NULL, "
    "position BIGINT NOT NULL, queued_at TEXT NOT NULL, sent_at TEXT)"
)
_CREATE_POSITION = (
    "CREATE TABLE IF NOT EXISTS {table} (name TEXT PRIMARY KEY, position BIGINT NOT NULL)"
)
_COLUMNS = "id, iccid, to_addr, subject, body, position, queued_at, sent_at"
_QUEUE = (
    "INSERT INTO {table} (" + _COLUMNS + ") VALUES (%s, %s, %s, %s, %s, %s, %s, NULL) "
    "ON CONFLICT (id) DO NOTHING"
)
_GET_POSITION = "SELECT position FROM {table} WHERE name = %s"
_SET_POSITION = (
    "INSERT INTO {table} (name, position) VALUES (%s, %s) "
    "ON CONFLICT (name) DO UPDATE SET position = excluded.position"
)
_UNSENT = (
    "SELECT " + _COLUMNS + " FROM {table} WHERE sent_at IS NULL ORDER BY position, id LIMIT %s"
)
_ALL = "SELECT " + _COLUMNS + " FROM {table} ORDER BY position, id"
_MARK_SENT = "UPDATE {table} SET sent_at = %s WHERE id = %s AND sent_at IS NULL"


@dataclass(frozen=True)
class Notice:
    id: str
    iccid: str
    to_addr: str
    subject: str
    body: str
    position: int
    queued_at: str
    sent_at: str | None


def _notice(row: Any) -> Notice:
    names = list(Notice.__dataclass_fields__)
    values = [row[n] for n in names] if isinstance(row, dict) else [row[i] for i in range(8)]
    values[5] = int(values[5])
    return Notice(*values)


class SqlOutbox:
    def __init__(self, transaction: Transaction, render: Render, render_position: Render) -> None:
        self._transaction = transaction
        self._render = render
        self._render_position = render_position
        with transaction(True) as cur:
            cur.execute(render(_CREATE))
            cur.execute(render_position(_CREATE_POSITION))

    def position(self, name: str) -> int:
        with self._transaction(False) as cur:
            cur.execute(self._render_position(_GET_POSITION), [name])
            row = cur.fetchone()
        if not row:
            return 0
        return int(row["position"] if isinstance(row, dict) else row[0])

    def queue(self, notices: list[Notice], name: str, position: int) -> None:
        """The notices (each once: a known id is left as it is) and the new position, in one
        transaction."""
        with self._transaction(True) as cur:
            for n in notices:
                cur.execute(
                    self._render(_QUEUE),
                    [n.id, n.iccid, n.to_addr, n.subject, n.body, n.position, n.queued_at],
                )
            cur.execute(self._render_position(_SET_POSITION), [name, position])

    def unsent(self, limit: int) -> list[Notice]:
        with self._transaction(False) as cur:
            cur.execute(self._render(_UNSENT), [limit])
            return [_notice(r) for r in cur.fetchall()]

    def all(self) -> list[Notice]:
        with self._transaction(False) as cur:
            cur.execute(self._render(_ALL))
            return [_notice(r) for r in cur.fetchall()]

    def mark_sent(self, notice_id: str, at: str) -> None:
        with self._transaction(True) as cur:
            cur.execute(self._render(_MARK_SENT), [at, notice_id])


def outbox_for(recorder: Any) -> SqlOutbox | None:
    """The outbox of the store of ``recorder``, created if missing; None in memory."""
    access = sql_access(recorder, TABLE)
    position = sql_access(recorder, POSITION_TABLE)
    if access is None or position is None:
        return None
    return SqlOutbox(access[0], access[1], position[1])
