"""The carrier forwarder: bulk requests out to the carrier, carrier answers back as ``confirm``.

``Forwarder(ledger, gateway).run_once()`` composes the ledger and a carrier gateway; the
process around it is ``python -m simledger.runners.forwarder``.

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

* **Through the service (optional).** With ``answers_via`` (``--answers-url``), each batch
  goes to ``POST /v1/carrier/answers`` of a running ``simledger serve``, signed as a real
  carrier signs it, ``answer_id`` = the request id; the service's applied / skipped list gives
  the outcomes exactly as ``confirm_many`` does. Unreachable after retries: deferred.

Bookkeeping lives next to the events (``adapters/carrier/forwarding_books.py``); with the
in-memory store, in memory, kept per store so that a second ``Forwarder`` on the same ledger
carries on where the first stopped. One forwarder process per store at a time.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from eventsourcing.persistence import Notification
from eventsourcing.utils import get_topic

from simledger.adapters.carrier.answers_http import (
    AnswersRefused,
    AnswersUnreachable,
    Delivered,
    HttpAnswers,
)
from simledger.adapters.carrier.forwarding_books import AnswerRow, books_for
from simledger.adapters.carrier.gateway import (
    CarrierAnswer,
    CarrierGateway,
    CarrierOperation,
    CarrierRequest,
)
from simledger.adapters.logs import get_logger
from simledger.application.ledger import SimLedger
from simledger.application.reconnect import Backoff, connection_lost
from simledger.application.results import ConfirmResult
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
        answers_via: HttpAnswers | None = None,
    ) -> None:
        """``answers_via``: deliver the carrier's answers through the HTTP service (signed,
        as a real carrier would) instead of calling the ledger directly (the default)."""
        if chunk_size < 1 or answer_batch < 1 or notification_batch < 1:
            raise ValueError("batch sizes must be positive")
        self.ledger = ledger
        self.gateway = gateway
        self.name = name
        self.chunk_size = chunk_size
        self.answer_batch = answer_batch
        self.notification_batch = notification_batch
        self.answers_via = answers_via
        self.books = books_for(ledger.recorder)

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
        self,
        *,
        interval: float = 1.0,
        stop: Callable[[], bool] = lambda: False,
        backoff: Backoff | None = None,
        reopen: Callable[[], SimLedger] | None = None,
    ) -> None:
        """Rounds until ``stop()``. A round that loses its database connection (a restart)
        is logged and run again after a pause that doubles up to a cap, on a ledger opened
        anew by ``reopen`` if given (its pool holds no dead connections): the books say
        what was sent, so nothing is sent or applied twice."""
        backoff = backoff or Backoff()
        while not stop():
            try:
                if backoff.attempts and reopen is not None:
                    self._reopen(reopen)
                idle = self.run_once().idle
            except Exception as error:
                if not connection_lost(error):
                    raise
                time.sleep(backoff.after(error, "forwarder.reconnecting"))
                continue
            backoff.reset()
            if idle:
                time.sleep(interval)

    def _reopen(self, reopen: Callable[[], SimLedger]) -> None:
        """Work on a new ledger from ``reopen`` (the old one is closed)."""
        ledger = reopen()
        old, self.ledger, self.books = self.ledger, ledger, books_for(ledger.recorder)
        try:
            old.close()
        except Exception as error:  # its connections are gone already
            log.info("forwarder.close_failed", error=f"{type(error).__name__}: {error}")

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
        if self.answers_via is not None:
            return self._deliver_batch(self.answers_via, operation_id, answers)
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
        return self._outcomes(operation_id, answers, result)

    def _deliver_batch(
        self, via: HttpAnswers, operation_id: str, answers: list[CarrierAnswer]
    ) -> dict[str, str]:
        """The batch through the service. Unreachable, or a conflict (409): left
        unacknowledged, the carrier delivers it again. A 401 (``AnswersUnauthorised``) is not
        caught: a wrong secret is the operator's to fix, not the forwarder's."""
        try:
            delivered = via.deliver(answers)
        except (AnswersUnreachable, AnswersRefused) as error:
            transient = isinstance(error, AnswersUnreachable) or error.status == 409
            outcome = DEFERRED if transient else REJECTED
            log.warning(
                f"forwarder.{outcome}",
                operation_id=operation_id,
                count=len(answers),
                error=str(error),
            )
            return dict.fromkeys((a.request_id for a in answers), outcome)
        return self._outcomes(operation_id, answers, delivered)

    def _outcomes(
        self,
        operation_id: str,
        answers: list[CarrierAnswer],
        result: ConfirmResult | Delivered,
    ) -> dict[str, str]:
        """Each answer's outcome from what ``confirm_many`` (or the service) reported."""
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
