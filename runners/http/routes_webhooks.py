"""Webhook subscriptions (R-WH1..3): create, list, delete, their delivery log, replay.

A company key (scope ``admin``) manages its company's subscriptions, which receive its
company's events alone; an operator key sees every subscription, and its own receive every
event. Another company's subscription answers 404, as an unknown one. Delivery is the
``simledger deliver`` process's (application/delivery.py)."""

from __future__ import annotations

import weakref
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import Field

from simledger.application.event_sourced import create_tables_retrying
from simledger.application.ledger import SimLedger
from simledger.application.service_reads import store_position
from simledger.application.webhooks import DELIVERIES_MAX, EVENTS_MAX, WebhookRing
from simledger.runners.http.auth import Admin
from simledger.runners.http.bodies import TEXT_MAX, Body

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

_RINGS: weakref.WeakKeyDictionary[SimLedger, WebhookRing] = weakref.WeakKeyDictionary()


def ring_of(ledger: SimLedger) -> WebhookRing:
    """The ledger's subscriptions (one ring per ledger: its table is created once)."""
    ring = _RINGS.get(ledger)
    if ring is None:
        ring = _RINGS[ledger] = WebhookRing(ledger, create_table=create_tables_retrying)
    return ring


class NewWebhook(Body):
    url: str = Field(max_length=TEXT_MAX)
    events: list[str] = Field(default_factory=lambda: ["*"], max_length=EVENTS_MAX)
    secret: str = Field(max_length=TEXT_MAX)
    from_position: int | None = Field(default=None, ge=0, le=2**62)
    """Deliver from after this position (0: the whole log); default: from now on."""


def health(ledger: SimLedger, position: int) -> list[dict[str, Any]]:
    """``/healthz``'s view of the subscriptions: id, status and lag (no URL, no owner)."""
    return [
        {"id": hook.id, "status": hook.status, "lag": hook.lag(position)}
        for hook in ring_of(ledger).list()
    ]


@router.post("", status_code=201, summary="subscribe a URL to events (R-WH1)")
def create(caller: Admin, body: NewWebhook) -> dict[str, Any]:
    ledger = caller.service.ledger
    hook = ring_of(ledger).create(
        url=body.url,
        events=body.events,
        secret=body.secret,
        company=caller.company,
        from_position=body.from_position,
    )
    return hook.public(store_position(ledger))


@router.get("", summary="the subscriptions the key may see, with status and lag")
def list_webhooks(caller: Admin) -> dict[str, Any]:
    ledger = caller.service.ledger
    last = store_position(ledger)
    return {"items": [h.public(last) for h in ring_of(ledger).list(caller.company)]}


@router.get("/{webhook_id}", summary="one subscription")
def get_webhook(caller: Admin, webhook_id: str) -> dict[str, Any]:
    ledger = caller.service.ledger
    return ring_of(ledger).get(webhook_id, caller.company).public(store_position(ledger))


@router.delete("/{webhook_id}", status_code=204, summary="unsubscribe")
def delete_webhook(caller: Admin, webhook_id: str) -> Response:
    ring_of(caller.service.ledger).delete(webhook_id, caller.company)
    return Response(status_code=204)


@router.get("/{webhook_id}/deliveries", summary="the delivery log, newest first (R-WH3)")
def deliveries(
    caller: Admin,
    webhook_id: str,
    limit: Annotated[int, Query(ge=1, le=DELIVERIES_MAX)] = 100,
) -> dict[str, Any]:
    ring = ring_of(caller.service.ledger)
    return {"items": ring.deliveries(webhook_id, caller.company, limit)}


@router.post("/{webhook_id}/replay", summary="deliver again from a position (R-WH3)")
def replay(
    caller: Admin,
    webhook_id: str,
    start: Annotated[int, Query(alias="from", ge=1, le=2**62)],
) -> dict[str, Any]:
    ledger = caller.service.ledger
    return ring_of(ledger).replay(webhook_id, start, caller.company).public(store_position(ledger))
