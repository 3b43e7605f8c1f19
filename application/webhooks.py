"""Webhook subscriptions (R-WH1..3): who wants which events, at which URL, signed with which
secret, and how far their delivery has got.

A subscription belongs to a company (it receives that company's events alone, R-WH2) or, made
with an operator key, to the platform (every event). Rows live in the store
(adapters/store/webhooks_table.py), so every ``serve`` and ``deliver`` process on it sees the
same ones; the delivery itself is application/delivery.py's.
"""

from __future__ import annotations

import builtins
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from eventsourcing.application import Application

from simledger.adapters.store.webhooks_table import (
    DeliveryRow,
    SqlWebhooks,
    WebhookRow,
    webhooks_for,
)
from simledger.domain import sim_rules, values
from simledger.domain.base import DomainEvent
from simledger.domain.bulk import BulkOperation
from simledger.domain.errors import InvalidInput, UnknownWebhook, shown
from simledger.domain.package import Package
from simledger.domain.partner import CustomerService, SimOrder
from simledger.domain.shared_group import SharedGroup
from simledger.domain.sim import Sim
from simledger.domain.usage_receipt import UsageReceipt

ALL = "*"
SECRET_MIN = 16
"""Characters of the shortest signing secret a subscription takes (R-WH1)."""
URL_MAX = 2000
EVENTS_MAX = 200
DELIVERIES_MAX = 1000
"""At most this many delivery rows in one answer of :meth:`WebhookRing.deliveries`."""

_DEFINED_APART = (sim_rules.RuleTriggered,)
"""Imported so that the SIM's events of domain/sim_rules.py are among the names below."""

_AGGREGATES: tuple[type[Any], ...] = (
    Sim,
    Package,
    SharedGroup,
    SimOrder,
    CustomerService,
    BulkOperation,
    UsageReceipt,
)


def event_names() -> frozenset[str]:
    """Every event type a subscription may name: ``Paused`` or ``Sim.Paused``."""
    names: set[str] = set()
    for aggregate in _AGGREGATES:
        for name, value in vars(aggregate).items():
            if isinstance(value, type) and issubclass(value, DomainEvent) and name != "Event":
                names.update((name, f"{aggregate.__name__}.{name}"))
        # and its events defined in modules of their own (domain/sim_rules.py: RuleTriggered)
        pending: list[type] = list(getattr(aggregate, "Event", DomainEvent).__subclasses__())
        while pending:
            kind = pending.pop()
            pending.extend(kind.__subclasses__())
            if "." not in kind.__qualname__:
                names.update((kind.__name__, f"{aggregate.__name__}.{kind.__name__}"))
    return frozenset(names)


EVENT_NAMES = event_names()


@dataclass(frozen=True)
class Webhook:
    """One subscription as its owner sees it (never its secret)."""

    id: str
    company: str | None
    url: str
    events: tuple[str, ...]
    created_at: datetime
    position: int
    """The store position delivered so far (every event up to it was sent or filtered out)."""
    status: str
    """``active``; ``retrying`` (the last attempt failed; ``failures`` in a row); ``paused``."""
    failures: int
    paused_reason: str | None
    delivered_at: datetime | None
    next_attempt_at: datetime | None

    def lag(self, store_position: int) -> int:
        """Positions of the store not yet delivered (or filtered out) for this subscription."""
        return max(0, store_position - self.position)

    def public(self, store_position: int | None = None) -> dict[str, Any]:
        shown_ = {
            "id": self.id,
            "company": self.company,
            "url": self.url,
            "events": list(self.events),
            "created_at": self.created_at.isoformat(),
            "position": self.position,
            "status": self.status,
            "failures": self.failures,
            "paused_reason": self.paused_reason,
            "delivered_at": None if self.delivered_at is None else self.delivered_at.isoformat(),
            "next_attempt_at": None
            if self.next_attempt_at is None
            else self.next_attempt_at.isoformat(),
        }
        if store_position is not None:
            shown_["lag"] = self.lag(store_position)
        return shown_


def webhook(row: WebhookRow) -> Webhook:
    status = "paused" if row.paused_reason else "retrying" if row.failures else "active"
    return Webhook(
        id=row.id,
        company=row.company,
        url=row.url,
        events=tuple(row.events.split()),
        created_at=datetime.fromisoformat(row.created_at),
        position=row.position,
        status=status,
        failures=row.failures,
        paused_reason=row.paused_reason,
        delivered_at=None if row.delivered_at is None else datetime.fromisoformat(row.delivered_at),
        next_attempt_at=datetime.fromtimestamp(row.next_attempt, UTC)
        if row.failures and not row.paused_reason
        else None,
    )


def delivery_record(row: DeliveryRow) -> dict[str, Any]:
    return {
        "seq": row.seq,
        "at": row.at,
        "first_position": row.first_position,
        "last_position": row.last_position,
        "events": row.events,
        "attempt": row.attempt,
        "status_code": row.status_code,
        "latency_ms": row.latency_ms,
        "ok": row.ok,
        "error": row.error,
    }


class WebhookRing:
    """The subscriptions of a ledger's store. ``company`` arguments confine a call to one
    company's subscriptions (None: the operator's view, every one); another company's id
    answers :class:`UnknownWebhook` exactly as an unknown one (R-WH2)."""

    def __init__(
        self,
        app: Application[str],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        create_table: Callable[[Callable[[], Any]], Any] = lambda make: make(),
    ) -> None:
        self._app = app
        self._clock = clock
        self._create_table = create_table
        self._table: SqlWebhooks | None = None

    @property
    def table(self) -> SqlWebhooks:
        if self._table is None:
            recorder = self._app.recorder
            table = self._create_table(lambda: webhooks_for(recorder))
            if table is None:
                raise InvalidInput(
                    "webhooks need a SQLite or PostgreSQL store (a deliver process reads it)",
                    rule="R-WH1",
                )
            self._table = table
        return self._table

    def create(
        self,
        *,
        url: object,
        events: object,
        secret: object,
        company: str | None,
        from_position: int | None = None,
    ) -> Webhook:
        """A new subscription (R-WH1): an http(s) URL with a host, event types (``*`` or
        names of event classes, ``Paused`` or ``Sim.Paused``), a secret of at least
        :data:`SECRET_MIN` characters. It receives events recorded from now on, or after
        ``from_position`` when given (0: the whole log)."""
        target = _url(url)
        kinds = _events(events)
        key = values.text(secret, "a webhook's secret", rule="R-WH1", limit=500)
        if len(key) < SECRET_MIN:
            raise InvalidInput(
                f"a webhook's secret needs at least {SECRET_MIN} characters", rule="R-WH1"
            )
        start = _position(self._app, from_position)
        row = WebhookRow(
            id="wh_" + secrets.token_hex(8),
            company=company,
            url=target,
            events=" ".join(kinds),
            secret=key,
            created_at=self._clock().astimezone(UTC).isoformat(),
            deleted_at=None,
            position=start,
            failures=0,
            failing_since=None,
            next_attempt=0.0,
            paused_reason=None,
            attempts=0,
            delivered_at=None,
        )
        self.table.insert(row)
        return webhook(row)

    def list(self, company: str | None = None) -> builtins.list[Webhook]:
        return [
            webhook(row) for row in self.table.all() if company is None or row.company == company
        ]

    def get(self, webhook_id: object, company: str | None = None) -> Webhook:
        return webhook(self._row(webhook_id, company))

    def delete(self, webhook_id: object, company: str | None = None) -> None:
        row = self._row(webhook_id, company)
        self.table.delete(row.id, self._clock().astimezone(UTC).isoformat())

    def replay(
        self, webhook_id: object, from_position: object, company: str | None = None
    ) -> Webhook:
        """Deliver again every event from ``from_position`` on (R-WH3); a paused subscription
        resumes."""
        row = self._row(webhook_id, company)
        if (
            isinstance(from_position, bool)
            or not isinstance(from_position, int)
            or from_position < 1
        ):
            raise InvalidInput(
                f"from must be a position of 1 or more: {shown(from_position)}", rule="R-WH3"
            )
        self.table.replay(row.id, from_position - 1)
        return webhook(self._row(row.id, company))

    def deliveries(
        self, webhook_id: object, company: str | None = None, limit: int = 100
    ) -> builtins.list[dict[str, Any]]:
        """The latest delivery attempts, newest first: positions, attempt, status, latency."""
        row = self._row(webhook_id, company)
        return [
            delivery_record(d)
            for d in self.table.deliveries(row.id, max(1, min(limit, DELIVERIES_MAX)))
        ]

    def _row(self, webhook_id: object, company: str | None) -> WebhookRow:
        if not isinstance(webhook_id, str) or len(webhook_id) > 100:
            raise UnknownWebhook(webhook_id)
        row = self.table.by_id(webhook_id.strip())
        if row is None or (company is not None and row.company != company):
            raise UnknownWebhook(webhook_id)
        return row


def _url(value: object) -> str:
    url = values.text(value, "a webhook's url", rule="R-WH1", limit=URL_MAX)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(
            f"a webhook's url must be http(s) with a host: {shown(url)}", rule="R-WH1"
        )
    return url


def _events(value: object) -> builtins.list[str]:
    items = (
        [value] if isinstance(value, str) else values.collection(value, "events", limit=EVENTS_MAX)
    )
    if not items:
        raise InvalidInput("a webhook needs at least one event type, or '*'", rule="R-WH1")
    kinds: builtins.list[str] = []
    for item in items:
        if not isinstance(item, str) or (item != ALL and item not in EVENT_NAMES):
            raise InvalidInput(
                f"unknown event type {shown(item)}: '*' or an event's name (Paused, Sim.Paused)",
                rule="R-WH1",
            )
        if item not in kinds:
            kinds.append(item)
    return [ALL] if ALL in kinds else kinds


def _position(app: Application[str], given: int | None) -> int:
    last = int(app.recorder.max_notification_id() or 0)
    if given is None:
        return last
    if isinstance(given, bool) or not isinstance(given, int) or given < 0:
        raise InvalidInput(f"from_position must be 0 or more: {shown(given)}", rule="R-WH1")
    return min(given, last)


def event_id(aggregate_id: str, version: int) -> str:
    """A stable id of one event, ``<aggregate id>/<version>`` (the same on every delivery:
    receivers drop repeats by it; unique, as the store's own key of an event is)."""
    return f"{aggregate_id}/{version}"
