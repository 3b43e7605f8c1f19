"""The audit log: every stored event, in log order, as plain JSON-safe records
(``simledger export-audit`` writes them as JSON Lines)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Notification
from pydantic import BaseModel

from simledger.adapters.store.event_store import log_pages
from simledger.application.history import actor_of, event_data
from simledger.application.ledger import SimLedger
from simledger.domain.base import aggregate_name

PAGE = 2000
"""Notifications read per ``select_notifications`` call."""


def _class_name(topic: str) -> str:
    """``simledger.domain.sim:Sim.Paused`` -> ``Paused``."""
    return topic.rpartition(":")[2].rpartition(".")[2]


def audit_record(notification: Notification, event: Any) -> dict[str, Any]:
    """One line of the export: where the event sits in the log and what it says."""
    return {
        "position": notification.id,
        "aggregate": aggregate_name(type(event)),
        "aggregate_id": str(event.originator_id),
        "version": event.originator_version,
        "event": type(event).__name__,
        "at": event.timestamp.isoformat(),
        "data": plain(event_data(event)),
        "chain": getattr(event, "chain", "") or None,
        "actor": _actor_record(event),
    }


def _actor_record(event: Any) -> dict[str, str] | None:
    """Who caused the event (R-KY3): ``{"id", "name"}``, or None when nobody was named."""
    actor = actor_of(event)
    return None if actor is None else actor.stored()


def audit_records(
    ledger: SimLedger,
    *,
    iccid: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    types: Collection[str] = (),
    on_page: Callable[[int, int], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Every event in log order, filtered: with ``iccid``, the events ``history(iccid)``
    shows (from any aggregate); ``since <= at < until``; ``types``: event class names.
    ``on_page(position, last position)`` is called after every page read."""
    wanted: set[tuple[str, int]] | None = None
    if iccid is not None:
        wanted = {(e.aggregate_id, e.version) for e in ledger.history(iccid)}
    ids = {key for key, _ in wanted} if wanted is not None else None
    last = ledger.recorder.max_notification_id() or 0
    for page in log_pages(ledger.recorder, 0, last, PAGE):
        for notification in page:
            if ids is not None and str(notification.originator_id) not in ids:
                continue
            if types and _class_name(notification.topic) not in types:
                continue
            event: Any = ledger.mapper.to_domain_event(notification)
            if wanted is not None and (str(event.originator_id), event.originator_version) not in (
                wanted
            ):
                continue
            if since is not None and event.timestamp < since:
                continue
            if until is not None and event.timestamp >= until:
                continue
            yield audit_record(notification, event)
        if on_page is not None:
            on_page(page[-1].id, last)


def plain(value: Any) -> Any:
    """``value`` with only JSON types: Decimals as strings, times in ISO 8601, UUIDs and enums
    as strings, sets as sorted lists, models as dicts."""
    if value is None or (isinstance(value, (bool, int, float)) and not isinstance(value, Enum)):
        return value
    if isinstance(value, Enum):
        return plain(value.value)
    if isinstance(value, str):
        return value
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, BaseModel):
        return plain(value.model_dump())
    if isinstance(value, Mapping):
        return {str(plain(k)): plain(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted((plain(v) for v in value), key=str)
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return str(value)
