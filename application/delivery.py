"""``simledger deliver``: every event of a subscription, in store order, to its URL, until the
receiver has it (R-WH3).

``Deliverer(ledger, poster).run_once()`` makes one attempt for each subscription that is due;
the process around it is ``simledger deliver`` / ``python -m simledger.runners.deliver``.

Exactly the forwarder's bookkeeping (application/forwarding.py), per subscription:

* **A batch.** From the subscription's position, the log is read in store order and filtered
  (its event types; a company's subscription, its company's events alone,
  application/webhook_scope.py) until ``batch`` events are found or the log ends. They go in
  ONE signed POST (adapters/webhook_http.py) as ``{"subscription", "events": [...]}``, each
  event with its ``position`` and a stable ``id`` (receivers drop repeats by either).
* **Position and record together.** After the POST, the delivery row (positions, attempt,
  status code, latency) and the subscription's new position (on a 2xx) are written in ONE
  transaction. A crash before it leaves the position where it was: the next deliverer sends
  the same batch again (the only repeat there can be); a crash after it never re-sends it.
  Events filtered out move the position on without a POST.
* **One deliverer per subscription.** On PostgreSQL the subscription's row is locked for the
  attempt (``FOR UPDATE SKIP LOCKED``): several ``deliver`` processes share the
  subscriptions, never one batch (adapters/store/webhooks_table.py).
* **Retries.** A POST without a 2xx (or without an answer) is retried after a pause that
  doubles from ``retry_base`` up to ``retry_cap``, each drawn at random from its upper half
  (jitter: receivers that come back are not hit by every deliverer at once). After
  ``give_up_after`` seconds (3 days) without a 2xx the subscription is paused with the
  reason; ``POST /v1/webhooks/{id}/replay`` resumes it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from eventsourcing.persistence import Notification

from simledger.adapters.logs import get_logger
from simledger.adapters.store.event_store import log_pages
from simledger.adapters.store.webhooks_table import Claim, DeliveryRow, Outcome, WebhookRow
from simledger.adapters.webhook_http import PostResult, WebhookPoster
from simledger.application.audit_log import audit_record
from simledger.application.event_sourced import create_tables_retrying
from simledger.application.ledger import SimLedger
from simledger.application.service_reads import store_position
from simledger.application.webhook_scope import CompanyScope
from simledger.application.webhooks import ALL, WebhookRing, event_id

log = get_logger("simledger.deliver")

GIVE_UP_S = 3 * 24 * 3600.0
SCAN_PAGES = 20
"""Pages of the log one attempt reads at most looking for matching events."""


@dataclass(frozen=True)
class RetryPolicy:
    retry_base: float = 1.0
    retry_cap: float = 3600.0
    give_up_after: float = GIVE_UP_S

    def pause(self, failures: int) -> float:
        """Seconds before the next attempt after ``failures`` failures in a row."""
        ceiling = min(self.retry_cap, self.retry_base * 2 ** min(failures - 1, 40))
        return float(ceiling * random.uniform(0.5, 1.0))


@dataclass
class DeliverStats:
    posted: int = 0
    delivered: int = 0
    failed: int = 0
    skipped: int = 0
    paused: list[str] = field(default_factory=list)

    @property
    def idle(self) -> bool:
        return not (self.posted or self.skipped)


MOVES = frozenset({"CompanyAssigned", "AssignedToCustomer"})
"""SIM events that carry its new company: a company's subscription reads them whatever its
event types, to know whose the SIM's next events are."""


def _named(record: dict[str, Any], wanted: frozenset[str]) -> bool:
    event = record["event"]
    return event in wanted or f"{record['aggregate']}.{event}" in wanted


def _kind(topic: str) -> tuple[str, str]:
    """``simledger.domain.sim:Sim.Paused`` → (``Sim``, ``Paused``)."""
    qualname = topic.rpartition(":")[2]
    aggregate, _, event = qualname.rpartition(".")
    return aggregate or qualname, event or qualname


class Deliverer:
    """Delivers the subscriptions of ``ledger``'s store through ``poster``."""

    def __init__(
        self,
        ledger: SimLedger,
        poster: WebhookPoster,
        *,
        batch: int = 500,
        policy: RetryPolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if batch < 1:
            raise ValueError("batch must be positive")
        self.ledger = ledger
        self.poster = poster
        self.batch = batch
        self.policy = policy or RetryPolicy()
        self.clock = clock
        self.ring = WebhookRing(ledger, create_table=create_tables_retrying)
        self._scopes: dict[str, CompanyScope] = {}

    def run_once(self) -> DeliverStats:
        """One attempt for every subscription due now (behind the store, not waiting)."""
        stats = DeliverStats()
        last = store_position(self.ledger)
        for webhook_id in self.ring.table.due(self.clock(), last):
            self._attempt(webhook_id, last, stats)
        return stats

    def run_until_idle(self, max_rounds: int = 1000) -> DeliverStats:
        total = DeliverStats()
        for _ in range(max_rounds):
            stats = self.run_once()
            for name in ("posted", "delivered", "failed", "skipped"):
                setattr(total, name, getattr(total, name) + getattr(stats, name))
            total.paused += stats.paused
            if stats.idle:
                break
        return total

    def run_forever(
        self, *, interval: float = 0.2, stop: Callable[[], bool] = lambda: False
    ) -> None:
        """Rounds until ``stop()``; a round that found nothing to do sleeps ``interval``."""
        while not stop():
            if self.run_once().idle:
                time.sleep(interval)

    # ---- one subscription ---------------------------------------------------------------
    def _attempt(self, webhook_id: str, last: int, stats: DeliverStats) -> None:
        with self.ring.table.claim(webhook_id) as claim:
            if claim is None:
                return
            row, now = claim.row, self.clock()
            if row.position >= last or row.next_attempt > now:
                return  # another deliverer got there first
            events, scanned = self._batch(row, last)
            if not events:
                self._record(claim, self._moved(row, scanned), None)
                stats.skipped += 1
                return
            body = orjson.dumps({"subscription": row.id, "events": events})
            result = self.poster.post(row.url, row.secret, body)
            stats.posted += 1
            first, end = events[0]["position"], events[-1]["position"]
            attempt = row.failures + 1
            delivery = DeliveryRow(
                webhook_id=row.id,
                seq=row.attempts + 1,
                at=datetime.fromtimestamp(now, UTC).isoformat(),
                first_position=first,
                last_position=end,
                events=len(events),
                attempt=attempt,
                status_code=result.status_code,
                latency_ms=result.latency_ms,
                ok=result.ok,
                error=result.error,
            )
            if result.ok:
                stats.delivered += len(events)
                # A full batch stops at its last event; a short one read to ``scanned``.
                position = end if len(events) >= self.batch else max(end, scanned)
                outcome = self._moved(row, position)
                outcome.delivered_at = delivery.at
            else:
                stats.failed += 1
                outcome = self._failed(row, result, now)
                if outcome.paused_reason:
                    stats.paused.append(row.id)
            self._record(claim, outcome, delivery)

    @staticmethod
    def _record(claim: Claim, outcome: Outcome, delivery: DeliveryRow | None) -> None:
        if not claim.record(outcome, delivery):
            log.info("deliver.moved_meanwhile", webhook=claim.row.id)

    @staticmethod
    def _moved(row: WebhookRow, position: int) -> Outcome:
        return Outcome(
            position=position,
            failures=0,
            failing_since=None,
            next_attempt=0.0,
            paused_reason=None,
            delivered_at=row.delivered_at,
        )

    def _failed(self, row: WebhookRow, result: PostResult, now: float) -> Outcome:
        failures = row.failures + 1
        since = row.failing_since if row.failing_since is not None else now
        reason = None
        if now - since >= self.policy.give_up_after:
            what = f"status {result.status_code}" if result.status_code else result.error
            reason = (
                f"R-WH3: no 2xx for {round(now - since)} s ({failures} attempts); last: {what}"
            )[:500]
            log.warning("deliver.paused", webhook=row.id, reason=reason)
        return Outcome(
            position=row.position,
            failures=failures,
            failing_since=since,
            next_attempt=now + self.policy.pause(failures),
            paused_reason=reason,
            delivered_at=row.delivered_at,
        )

    def _batch(self, row: WebhookRow, last: int) -> tuple[list[dict[str, Any]], int]:
        """Up to ``batch`` matching events after the row's position, and the last position
        read (every event up to it was looked at)."""
        wanted = frozenset(row.events.split())
        every = ALL in wanted
        scoped = row.company is not None
        found: list[dict[str, Any]] = []
        scanned = row.position
        for pages, page in enumerate(
            log_pages(self.ledger.recorder, row.position, last, self.batch)
        ):
            picked: list[Notification] = []
            for note in page:
                aggregate, event = _kind(note.topic)
                if (
                    every
                    or event in wanted
                    or f"{aggregate}.{event}" in wanted
                    or (scoped and event in MOVES)  # the scope follows SIMs between companies
                ):
                    picked.append(note)
            records = [audit_record(n, self.ledger.mapper.to_domain_event(n)) for n in picked]
            if scoped and records:
                scope = self._scope(row)
                owners = scope.owners(records)
                scope.position = page[-1].id  # its memory is as of the page's end
                records = [
                    r
                    for r, owner in zip(records, owners, strict=True)
                    if owner == row.company and (every or _named(r, wanted))
                ]
            for record in records:
                found.append(_shown(record))
                if len(found) >= self.batch:
                    return found, found[-1]["position"]
            scanned = page[-1].id
            if pages + 1 >= SCAN_PAGES:
                break
        return found, scanned

    def _scope(self, row: WebhookRow) -> CompanyScope:
        """The company scope following this subscription's scan; a new one when the scan
        does not go on where the last one stopped (webhook_scope.py)."""
        scope = self._scopes.get(row.id)
        if scope is None or scope.position != row.position:
            if len(self._scopes) > 1000:
                self._scopes.clear()
            scope = self._scopes[row.id] = CompanyScope(self.ledger, row.position)
        return scope


def _shown(record: dict[str, Any]) -> dict[str, Any]:
    # audit_record's values are JSON-safe already (its data made plain): no second walk.
    record["id"] = event_id(record["aggregate_id"], record["version"])
    return record
