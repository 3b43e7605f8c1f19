"""The carrier forwarder: bulk requests out to the carrier, carrier answers back as ``confirm``.

    python -m simledger.runners.forwarder [--carrier-db PATH] [--once | --until-idle]

The ledger store comes from eventsourcing's settings in the process environment, exactly as
``SimLedger()`` reads them. In-process: ``Forwarder(ledger, gateway).run_once()``.

Exactly once, across restarts (SIGKILL included):

* **Out.** The forwarder follows the ledger's notification log (``BulkOperation.Requested``
  events only) from its own position. Each accepted SIM of a request becomes one
  :class:`CarrierRequest` whose ``request_id`` is derived from (operation, ICCID), so it is the
  same every time it is rebuilt. Requests are sent in chunks; after each chunk the forwarder
  records, in ONE transaction of the ledger's own store, the chunk's request ids and (with the
  operation's last chunk) the new position. A request already recorded is never sent again. A
  crash between ``send`` and that transaction re-sends at most that one chunk, with the same
  request ids, which the carrier ignores (it acts on a request id once): no duplicate effect.
  Requests whose operation's deadline (R-BK3) had already passed when they would be sent are
  recorded as ``expired`` and not sent: a carrier must not act on an answer window that is over.
* **Back.** Answers are pulled in batches; each batch's answers to one operation are applied
  with ONE ``ledger.confirm_many`` (one transaction), recorded in the forwarder's answer
  table, and only then acknowledged to the carrier. A crash anywhere before the
  acknowledgement makes the carrier deliver the answer again; the forwarder skips it when its
  table has it, and otherwise the ledger itself refuses a second application (the SIM no
  longer has that operation in flight: ``NoOperationInFlight``, rule R-BK3, listed in
  ``skipped``), which is recorded as a ``duplicate`` (or ``stale`` when the operation was
  never answered but replaced by a newer one after its deadline). Either way the SIM changes
  once. An answer the ledger refuses for good (an unknown SIM, say) is recorded as
  ``rejected`` and acknowledged; a batch that kept colliding with concurrent writers
  (``ConcurrencyConflict``) is left unacknowledged, all of it, and comes again in a later
  round.
* **Silence.** Nothing is made up for a SIM whose carrier never answers: it stays with its
  operation in flight; after the deadline the read models flag it overdue.

Bookkeeping lives next to the events (SQLite file / PostgreSQL schema of the ledger), in the
tables ``simledger_forwarder_position``, ``simledger_forwarder_sent`` and
``simledger_forwarder_answers``; with the in-memory store, in memory, kept per store so that
a second ``Forwarder`` on the same ledger carries on where the first stopped. One forwarder
process per store at a time.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from eventsourcing.persistence import Notification
from eventsourcing.utils import get_topic

from simledger.adapters.carrier.gateway import (
    CarrierAnswer,
    CarrierConfig,
    CarrierGateway,
    CarrierOperation,
    CarrierRequest,
    SimulatedCarrier,
)
from simledger.adapters.logs import get_logger
from simledger.application.ledger import SimLedger
from simledger.domain.bulk import BULK_LIMIT, BulkOperation
from simledger.domain.errors import ConcurrencyConflict, NoOperationInFlight, SimledgerError
from simledger.domain.iccid import normalise_iccid
from simledger.domain.sim import Sim

log = get_logger("simledger.forwarder")

REQUESTED_TOPIC = get_topic(BulkOperation.Requested)

SENT = "sent"
EXPIRED = "expired"

APPLIED = "applied"
DUPLICATE = "duplicate"
STALE = "stale"
REJECTED = "rejected"
DEFERRED = "deferred"


def request_id(operation_id: str, iccid: str) -> str:
    """The carrier idempotency key of one SIM's part of an operation (stable across runs)."""
    return str(uuid.uuid5(uuid.UUID(str(operation_id)), iccid))


@dataclass
class ForwardStats:
    """What one :meth:`Forwarder.run_once` did."""

    sent: int = 0
    expired: int = 0
    applied: int = 0
    duplicates: int = 0
    stale: int = 0
    rejected: int = 0
    redelivered: int = 0
    deferred: int = 0
    outcomes: dict[str, str] = field(default_factory=dict, repr=False)
    """request id → outcome of each answer handled in this round."""

    @property
    def idle(self) -> bool:
        return not (self.sent or self.expired or self.outcomes or self.redelivered)

    def add(self, other: ForwardStats) -> None:
        for name in ("sent", "expired", "applied", "duplicates", "stale", "rejected"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.redelivered += other.redelivered
        self.deferred += other.deferred
        self.outcomes.update(other.outcomes)


@dataclass(frozen=True)
class AnswerRow:
    request_id: str
    operation_id: str
    iccid: str
    ok: bool
    reason: str | None
    outcome: str


# ---- bookkeeping --------------------------------------------------------------------------


class Books(Protocol):
    """The forwarder's own records, in the ledger's store."""

    def position(self, name: str) -> int: ...

    def sent(self, operation_id: str) -> dict[str, str]:
        """Request id → ``sent`` / ``expired`` of the operation's recorded requests."""
        ...

    def record_sent(
        self,
        requests: Sequence[CarrierRequest],
        status: str,
        at: datetime,
        position: int | None,
        name: str,
    ) -> None: ...

    def answered(self, request_ids: Sequence[str]) -> set[str]: ...

    def record_answers(self, rows: Sequence[AnswerRow], at: datetime) -> None: ...

    def answer_outcomes(self) -> dict[str, str]: ...


class MemoryBooks:
    def __init__(self) -> None:
        self.positions: dict[str, int] = {}
        self.by_operation: dict[str, dict[str, str]] = {}  # op → request id → status
        self.answers: dict[str, AnswerRow] = {}

    def position(self, name: str) -> int:
        return self.positions.get(name, 0)

    def sent(self, operation_id: str) -> dict[str, str]:
        return dict(self.by_operation.get(operation_id, {}))

    def record_sent(
        self,
        requests: Sequence[CarrierRequest],
        status: str,
        at: datetime,
        position: int | None,
        name: str,
    ) -> None:
        for request in requests:
            recorded = self.by_operation.setdefault(request.operation_id, {})
            recorded.setdefault(request.request_id, status)
        if position is not None:
            self.positions[name] = position

    def answered(self, request_ids: Sequence[str]) -> set[str]:
        return {k for k in request_ids if k in self.answers}

    def record_answers(self, rows: Sequence[AnswerRow], at: datetime) -> None:
        for row in rows:
            self.answers.setdefault(row.request_id, row)

    def answer_outcomes(self) -> dict[str, str]:
        return {k: v.outcome for k, v in self.answers.items()}


_MEMORY_BOOKS: weakref.WeakKeyDictionary[Any, MemoryBooks] = weakref.WeakKeyDictionary()

_TABLES = {
    "position": "simledger_forwarder_position",
    "sent": "simledger_forwarder_sent",
    "answers": "simledger_forwarder_answers",
}
_CREATE = (
    "CREATE TABLE IF NOT EXISTS {position} (name TEXT PRIMARY KEY, "
    "notification_id BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS {sent} (request_id TEXT PRIMARY KEY, operation_id TEXT NOT NULL, "
    "iccid TEXT NOT NULL, kind TEXT NOT NULL, status TEXT NOT NULL, recorded_at TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS simledger_forwarder_sent_op ON {sent} (operation_id)",
    "CREATE TABLE IF NOT EXISTS {answers} (request_id TEXT PRIMARY KEY, "
    "operation_id TEXT NOT NULL, iccid TEXT NOT NULL, ok BOOLEAN NOT NULL, reason TEXT, "
    "outcome TEXT NOT NULL, recorded_at TEXT NOT NULL)",
)
_GET_POSITION = "SELECT notification_id FROM {position} WHERE name = %s"
_SET_POSITION = (
    "INSERT INTO {position} (name, notification_id) VALUES (%s, %s) "
    "ON CONFLICT (name) DO UPDATE SET notification_id = excluded.notification_id"
)
_SENT = "SELECT request_id, status FROM {sent} WHERE operation_id = %s"
_INSERT_SENT = (
    "INSERT INTO {sent} (request_id, operation_id, iccid, kind, status, recorded_at) "
    "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (request_id) DO NOTHING"
)
_INSERT_ANSWER = (
    "INSERT INTO {answers} (request_id, operation_id, iccid, ok, reason, outcome, recorded_at) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (request_id) DO NOTHING"
)
_ALL_ANSWERS = "SELECT request_id, outcome FROM {answers}"


class SqlBooks:
    """The bookkeeping tables on the ledger's SQLite or PostgreSQL datastore."""

    def __init__(
        self,
        transaction: Callable[[bool], AbstractContextManager[Any]],
        render: Callable[[str], Any],
        answered_query: Callable[[Sequence[str]], tuple[Any, Sequence[Any]]],
    ) -> None:
        self._transaction = transaction
        self._render = render
        self._answered_query = answered_query
        with self._transaction(True) as cur:
            for statement in _CREATE:
                cur.execute(self._render(statement))

    @classmethod
    def for_recorder(cls, recorder: Any) -> SqlBooks | None:
        from eventsourcing.postgres import PostgresApplicationRecorder
        from eventsourcing.sqlite import SQLiteApplicationRecorder

        if isinstance(recorder, SQLiteApplicationRecorder):
            sqlite_store = recorder.datastore

            def sqlite_render(statement: str) -> str:
                return statement.format(**_TABLES).replace("%s", "?")

            def sqlite_in(ids: Sequence[str]) -> tuple[Any, Sequence[Any]]:
                marks = ",".join("?" for _ in ids)
                query = f"SELECT request_id FROM {_TABLES['answers']} WHERE request_id IN ({marks})"
                return query, list(ids)

            return cls(
                lambda commit: sqlite_store.transaction(commit=commit), sqlite_render, sqlite_in
            )
        if isinstance(recorder, PostgresApplicationRecorder):
            from psycopg import sql

            pg_store = recorder.datastore
            tables = {k: sql.Identifier(pg_store.schema, v) for k, v in _TABLES.items()}

            def pg_render(statement: str) -> Any:
                return sql.SQL(statement).format(**tables)

            def pg_in(ids: Sequence[str]) -> tuple[Any, Sequence[Any]]:
                query = pg_render("SELECT request_id FROM {answers} WHERE request_id = ANY(%s)")
                return query, [list(ids)]

            return cls(lambda commit: pg_store.transaction(commit=commit), pg_render, pg_in)
        return None

    def position(self, name: str) -> int:
        with self._transaction(False) as cur:
            cur.execute(self._render(_GET_POSITION), [name])
            row = cur.fetchone()
        return int(row[0] if not isinstance(row, dict) else row["notification_id"]) if row else 0

    def sent(self, operation_id: str) -> dict[str, str]:
        with self._transaction(False) as cur:
            cur.execute(self._render(_SENT), [operation_id])
            rows = cur.fetchall()
        return {_first(row): _second(row, "status") for row in rows}

    def record_sent(
        self,
        requests: Sequence[CarrierRequest],
        status: str,
        at: datetime,
        position: int | None,
        name: str,
    ) -> None:
        with self._transaction(True) as cur:
            if requests:
                cur.executemany(
                    self._render(_INSERT_SENT),
                    [
                        (
                            r.request_id,
                            r.operation_id,
                            r.iccid,
                            r.kind.value,
                            status,
                            at.isoformat(),
                        )
                        for r in requests
                    ],
                )
            if position is not None:
                cur.execute(self._render(_SET_POSITION), [name, position])

    def answered(self, request_ids: Sequence[str]) -> set[str]:
        if not request_ids:
            return set()
        query, params = self._answered_query(request_ids)
        with self._transaction(False) as cur:
            cur.execute(query, params)
            return {_first(row) for row in cur.fetchall()}

    def record_answers(self, rows: Sequence[AnswerRow], at: datetime) -> None:
        if not rows:
            return
        with self._transaction(True) as cur:
            cur.executemany(
                self._render(_INSERT_ANSWER),
                [
                    (
                        r.request_id,
                        r.operation_id,
                        r.iccid,
                        r.ok,
                        r.reason,
                        r.outcome,
                        at.isoformat(),
                    )
                    for r in rows
                ],
            )

    def answer_outcomes(self) -> dict[str, str]:
        with self._transaction(False) as cur:
            cur.execute(self._render(_ALL_ANSWERS))
            rows = cur.fetchall()
        return {_first(row): _second(row, "outcome") for row in rows}


def _first(row: Any) -> str:
    return str(row["request_id"] if isinstance(row, dict) else row[0])


def _second(row: Any, name: str) -> str:
    return str(row[name] if isinstance(row, dict) else row[1])


def books_for(ledger: SimLedger) -> Books:
    """The bookkeeping of the forwarder on ``ledger``'s store."""
    books = SqlBooks.for_recorder(ledger.recorder)
    if books is not None:
        return books
    memory = _MEMORY_BOOKS.get(ledger.recorder)
    if memory is None:
        memory = _MEMORY_BOOKS[ledger.recorder] = MemoryBooks()
    return memory


# ---- the forwarder ------------------------------------------------------------------------


class Forwarder:
    """Forwards requested pause/resume operations to ``gateway`` and its answers back."""

    def __init__(
        self,
        ledger: SimLedger,
        gateway: CarrierGateway,
        *,
        name: str = "carrier-forwarder",
        chunk_size: int = 500,
        answer_batch: int = 500,
        notification_batch: int = 100,
    ) -> None:
        if chunk_size < 1 or answer_batch < 1 or notification_batch < 1:
            raise ValueError("batch sizes must be positive")
        self.ledger = ledger
        self.gateway = gateway
        self.name = name
        self.chunk_size = chunk_size
        self.answer_batch = answer_batch
        self.notification_batch = notification_batch
        self.books = books_for(ledger)

    # ---- rounds ---------------------------------------------------------------------------
    def run_once(self) -> ForwardStats:
        """Forward every request recorded so far, then relay every answer due now."""
        stats = ForwardStats()
        self.forward_requests(stats)
        self.relay_answers(stats)
        if not stats.idle:
            log.info(
                "forwarder.round",
                sent=stats.sent,
                expired=stats.expired,
                applied=stats.applied,
                duplicates=stats.duplicates,
                stale=stats.stale,
                rejected=stats.rejected,
                redelivered=stats.redelivered,
                deferred=stats.deferred,
            )
        return stats

    def run_until_idle(self, *, max_rounds: int | None = None) -> ForwardStats:
        """Rounds until one finds nothing to send and no answer due."""
        total = ForwardStats()
        rounds = 0
        while max_rounds is None or rounds < max_rounds:
            stats = self.run_once()
            rounds += 1
            total.add(stats)
            if stats.idle:
                break
        return total

    def run_forever(
        self, *, interval: float = 1.0, stop: Callable[[], bool] = lambda: False
    ) -> None:
        while not stop():
            if self.run_once().idle:
                time.sleep(interval)

    # ---- out ------------------------------------------------------------------------------
    def forward_requests(self, stats: ForwardStats | None = None) -> ForwardStats:
        stats = stats if stats is not None else ForwardStats()
        while True:
            start = self.books.position(self.name) + 1
            notes = self.ledger.recorder.select_notifications(
                start=start, limit=self.notification_batch, topics=[REQUESTED_TOPIC]
            )
            if not notes:
                return stats
            for note in notes:
                self._forward(note, stats)

    def _forward(self, note: Notification, stats: ForwardStats) -> None:
        event = self.ledger.mapper.to_domain_event(note)
        assert isinstance(event, BulkOperation.Requested)
        operation_id = str(event.originator_id)
        kind = CarrierOperation(event.kind)
        done = self.books.sent(operation_id)
        every = [
            CarrierRequest(request_id(operation_id, iccid), operation_id, kind, iccid)
            for iccid in event.accepted
        ]
        todo = [r for r in every if r.request_id not in done]
        now = self.ledger.clock()
        if todo and now >= event.deadline:
            self.books.record_sent(todo, EXPIRED, now, note.id, self.name)
            stats.expired += len(todo)
            log.warning(
                "forwarder.expired",
                operation_id=operation_id,
                count=len(todo),
                deadline=event.deadline.isoformat(),
            )
            return
        if not todo:
            self.books.record_sent([], SENT, now, note.id, self.name)
            return
        chunks = [todo[i : i + self.chunk_size] for i in range(0, len(todo), self.chunk_size)]
        for n, chunk in enumerate(chunks, 1):
            self.gateway.send(chunk)
            last = n == len(chunks)
            self.books.record_sent(chunk, SENT, now, note.id if last else None, self.name)
            stats.sent += len(chunk)
        log.info("forwarder.sent", operation_id=operation_id, kind=kind.value, count=len(todo))

    # ---- back -----------------------------------------------------------------------------
    def relay_answers(self, stats: ForwardStats | None = None) -> ForwardStats:
        stats = stats if stats is not None else ForwardStats()
        while True:
            answers = self.gateway.poll_answers(self.answer_batch)
            if not answers:
                return stats
            known = self.books.answered([a.request_id for a in answers])
            rows: list[AnswerRow] = []
            handled: list[str] = []
            fresh: dict[str, CarrierAnswer] = {}
            again: list[CarrierAnswer] = []  # delivered twice in this very batch
            for answer in answers:
                if answer.request_id in known:
                    stats.redelivered += 1
                    handled.append(answer.request_id)
                elif answer.request_id in fresh:
                    again.append(answer)
                else:
                    fresh[answer.request_id] = answer
            outcomes = self._apply_all(list(fresh.values()))
            for answer in fresh.values():
                outcome = outcomes[answer.request_id]
                if outcome == DEFERRED:
                    stats.deferred += 1
                    continue
                known.add(answer.request_id)
                handled.append(answer.request_id)
                rows.append(
                    AnswerRow(
                        answer.request_id,
                        answer.operation_id,
                        answer.iccid,
                        answer.ok,
                        answer.reason,
                        outcome,
                    )
                )
                stats.outcomes[answer.request_id] = outcome
                if outcome == APPLIED:
                    stats.applied += 1
                elif outcome == DUPLICATE:
                    stats.duplicates += 1
                elif outcome == STALE:
                    stats.stale += 1
                else:
                    stats.rejected += 1
            for answer in again:  # acknowledged with its first copy, unless that was deferred
                if answer.request_id in known:
                    stats.redelivered += 1
                    handled.append(answer.request_id)
            self.books.record_answers(rows, self.ledger.clock())
            self.gateway.ack(handled)
            if len(handled) < len(answers):
                return stats  # the deferred ones come again in a later round

    def _apply_all(self, answers: Sequence[CarrierAnswer]) -> dict[str, str]:
        """Apply ``answers`` (distinct request ids): request id → outcome. The answers to one
        operation go to the ledger together, one ``confirm_many`` (one transaction) per at
        most BULK_LIMIT distinct SIMs."""
        outcomes: dict[str, str] = {}
        by_operation: dict[str, list[CarrierAnswer]] = {}
        for answer in answers:
            by_operation.setdefault(answer.operation_id, []).append(answer)
        for operation_id, group in by_operation.items():
            for batch in _distinct_sims(group):
                outcomes.update(self._apply_batch(operation_id, batch))
        return outcomes

    def _apply_batch(self, operation_id: str, answers: list[CarrierAnswer]) -> dict[str, str]:
        try:
            result = self.ledger.confirm_many(
                operation_id, [(a.iccid, a.ok, a.reason) for a in answers]
            )
        except ConcurrencyConflict as error:
            # Transient: left unacknowledged, so the carrier delivers them again.
            log.warning(
                "forwarder.deferred",
                operation_id=operation_id,
                count=len(answers),
                error=str(error),
            )
            return dict.fromkeys((a.request_id for a in answers), DEFERRED)
        except SimledgerError as error:
            # The call as a whole was refused: each answer on its own, as confirm takes it.
            log.warning("forwarder.batch_refused", operation_id=operation_id, error=str(error))
            return {a.request_id: self._apply(a) for a in answers}
        applied = set(result.applied)
        outcomes: dict[str, str] = {}
        for answer in answers:
            key = _key(answer.iccid)
            if key in applied:
                log.debug("forwarder.applied", operation_id=operation_id, iccid=key, ok=answer.ok)
                outcomes[answer.request_id] = APPLIED
                continue
            reason = result.skipped.get(key, "not applied")
            if reason.startswith(f"{NoOperationInFlight.rule}:"):  # NoOperationInFlight
                outcome = self._no_longer_in_flight(answer)
            else:
                outcome = REJECTED
                log.warning(
                    "forwarder.rejected",
                    operation_id=operation_id,
                    iccid=answer.iccid,
                    request_id=answer.request_id,
                    error=reason,
                    rule=reason.split(":", 1)[0],
                )
            outcomes[answer.request_id] = outcome
        return outcomes

    def _apply(self, answer: CarrierAnswer) -> str:
        try:
            self.ledger.confirm(
                answer.operation_id, answer.iccid, ok=answer.ok, reason=answer.reason
            )
        except ConcurrencyConflict as error:
            # Transient: left unacknowledged, so the carrier delivers it again.
            log.warning(
                "forwarder.deferred",
                operation_id=answer.operation_id,
                iccid=answer.iccid,
                request_id=answer.request_id,
                error=str(error),
            )
            return DEFERRED
        except NoOperationInFlight:
            return self._no_longer_in_flight(answer)
        except SimledgerError as error:
            log.warning(
                "forwarder.rejected",
                operation_id=answer.operation_id,
                iccid=answer.iccid,
                request_id=answer.request_id,
                error=str(error),
                rule=error.rule,
            )
            return REJECTED
        log.debug(
            "forwarder.applied",
            operation_id=answer.operation_id,
            iccid=answer.iccid,
            ok=answer.ok,
        )
        return APPLIED

    def _no_longer_in_flight(self, answer: CarrierAnswer) -> str:
        """The outcome of an answer the ledger refused because its SIM no longer has the
        operation in flight (R-BK3): ``duplicate`` when the SIM's log already holds an answer to
        it, else ``stale`` (replaced by a newer operation). Logged."""
        outcome = DUPLICATE if self._answered_before(answer) else STALE
        log.info(
            f"forwarder.{outcome}",
            operation_id=answer.operation_id,
            iccid=answer.iccid,
            request_id=answer.request_id,
        )
        return outcome

    def _answered_before(self, answer: CarrierAnswer) -> bool:
        """Whether the SIM's log already holds an answer to this operation (newest first)."""
        for event in self.ledger.events.get(answer.iccid, desc=True):
            if getattr(event, "operation_id", None) != answer.operation_id:
                continue
            return not isinstance(event, Sim.OperationRequested)
        return False

    def answer_outcomes(self) -> dict[str, str]:
        """Every answer recorded so far: request id → outcome."""
        return self.books.answer_outcomes()


def _key(iccid: str) -> str:
    """The ICCID as ``confirm_many`` reports it: normalised, or as given when invalid."""
    try:
        return normalise_iccid(iccid)
    except SimledgerError:
        return str(iccid)


def _distinct_sims(answers: list[CarrierAnswer]) -> Iterator[list[CarrierAnswer]]:
    """``answers`` in order, cut into batches of at most BULK_LIMIT, each SIM at most once
    per batch (``confirm_many`` keys its answers by ICCID)."""
    batch: list[CarrierAnswer] = []
    seen: set[str] = set()
    for answer in answers:
        key = _key(answer.iccid)
        if key in seen or len(batch) == BULK_LIMIT:
            yield batch
            batch, seen = [], set()
        batch.append(answer)
        seen.add(key)
    if batch:
        yield batch


# ---- command line -------------------------------------------------------------------------


@contextmanager
def _stop_on_signals() -> Iterator[Callable[[], bool]]:
    stopping = {"now": False}

    def handler(signum: int, frame: object) -> None:
        stopping["now"] = True

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield lambda: stopping["now"]
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m simledger.runners.forwarder",
        description="Forward bulk pause/resume requests to a (simulated) carrier and its "
        "answers back to the ledger. The store comes from eventsourcing's settings in the "
        "environment.",
    )
    parser.add_argument(
        "--carrier-db",
        help="SQLite file of the simulated carrier (created if absent; shared with other "
        "processes). Without it, an in-memory simulated carrier.",
    )
    config = parser.add_argument_group(
        "simulated carrier", "when any is given, the carrier's stored settings are replaced"
    )
    config.add_argument("--delay", type=float, help="seconds before an answer")
    config.add_argument("--jitter", type=float, help="extra random seconds of delay, at most")
    config.add_argument("--refusal-rate", type=float)
    config.add_argument("--silence-rate", type=float)
    config.add_argument("--seed", type=int)
    config.add_argument("--latency", type=float, help="seconds each carrier call takes")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="one round, then exit")
    mode.add_argument("--until-idle", action="store_true", help="rounds until nothing to do")
    parser.add_argument("--interval", type=float, default=1.0, help="idle sleep, seconds")
    parser.add_argument("--chunk-size", type=int, default=500, help="requests per send")
    parser.add_argument("--answer-batch", type=int, default=500, help="answers per poll")
    return parser


def _carrier(args: argparse.Namespace) -> SimulatedCarrier:
    given = {
        name: getattr(args, name)
        for name in ("delay", "jitter", "refusal_rate", "silence_rate", "seed", "latency")
        if getattr(args, name) is not None
    }
    config = CarrierConfig(**given) if given else None
    if args.carrier_db is None:
        return SimulatedCarrier(config or CarrierConfig())
    return SimulatedCarrier(config, path=args.carrier_db)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    ledger = SimLedger()
    carrier = _carrier(args)
    forwarder = Forwarder(
        ledger, carrier, chunk_size=args.chunk_size, answer_batch=args.answer_batch
    )
    log.info("forwarder.started", carrier=carrier.path, pid=os.getpid())
    try:
        if args.once:
            forwarder.run_once()
        elif args.until_idle:
            forwarder.run_until_idle()
        else:
            with _stop_on_signals() as stop:
                forwarder.run_forever(interval=args.interval, stop=stop)
    finally:
        carrier.close()
        ledger.close()
    log.info("forwarder.stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
