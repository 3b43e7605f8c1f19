"""The event feed in store order (JSON, or NDJSON with ``Accept: application/x-ndjson``):
audit export and downstream consumers. A company key sees its SIMs', groups' and
operations' events alone."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from simledger.application.audit_log import plain
from simledger.application.service_reads import FEED_LIMIT, event_page
from simledger.runners.http import tenancy
from simledger.runners.http.auth import AuditRead
from simledger.runners.http.reading import MinPosition, reach

router = APIRouter(prefix="/v1/events", tags=["events"])

NDJSON = "application/x-ndjson"


class EventPage(BaseModel):
    items: list[dict[str, Any]]
    next_after: int
    """Send as ``after`` for the next page (the position of the last event looked at)."""


@router.get(
    "",
    summary="the event feed after a position",
    response_model=EventPage,
    responses={200: {"content": {NDJSON: {"schema": {"type": "string"}}}}},
)
def events(
    caller: AuditRead,
    request: Request,
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=FEED_LIMIT)] = 100,
    min_position: MinPosition = None,
) -> Any:
    reach(caller, min_position)
    ledger, company = caller.service.ledger, caller.company

    def read() -> tuple[list[dict[str, Any]], int]:
        records = event_page(ledger, after, limit)
        last = records[-1]["position"] if records else after
        if company is not None:
            keep = tenancy.EventFilter(ledger, company)
            records = [r for r in records if keep(r)]
        return [plain(r) for r in records], last

    records, last = caller.run(read)
    if NDJSON in request.headers.get("accept", ""):
        lines = b"".join(orjson.dumps(r) + b"\n" for r in records)
        return Response(lines, media_type=NDJSON, headers={"X-Simledger-Next-After": str(last)})
    return EventPage(items=records, next_after=last)
