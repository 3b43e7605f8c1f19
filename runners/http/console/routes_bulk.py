"""Bulk pause and resume from a selection (seed 003): the confirmation with the count, then
the answer, each refused SIM with its reason. The request is the API's own route function
(``routes_operations.request_operation``: the company's SIMs only, per-company idempotency
keys); the confirmation carries an idempotency key, so a second click is the same
operation, never a second one."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from simledger.domain.errors import SimledgerError
from simledger.runners.http import bodies, routes_operations
from simledger.runners.http.console.pages import Message, in_thread, refusal, render_part
from simledger.runners.http.console.query import checked
from simledger.runners.http.console.selection import Selection, selected
from simledger.runners.http.console.sessions import Console, signed_in
from simledger.runners.http.problems import Problem

router = APIRouter(prefix="/ui", include_in_schema=False)

BulkUser = Annotated[Console, Depends(signed_in("bulk"))]

KINDS = {"pause": "Pause", "resume": "Resume"}
ASK_ABOVE = 10
"""Above this many SIMs the confirmation needs its "Yes, I want to …" box ticked (seed 003)."""
PREVIEW = 10


def _kind(raw: object) -> str:
    kind = str(raw)
    if kind not in KINDS:
        raise Problem(422, f"kind must be pause or resume, not {kind[:40]!r}", rule="R-IN4")
    return kind


@router.post("/bulk/confirm", response_class=HTMLResponse)
async def confirm(request: Request, console: BulkUser) -> HTMLResponse:
    form = await request.form()
    tried = f"{form.get('kind', '')} the selected SIMs"
    try:
        kind = _kind(form.get("kind"))
        selection: Selection = await in_thread(lambda: selected(console.caller, form))
    except (SimledgerError, Problem) as error:
        message = refusal(error, tried)
        return render_part(request, "_message.html", console, message.status, message=message)
    if not selection.iccids:
        message = Message("select at least one SIM", tried, status=422)
        return render_part(request, "_message.html", console, 422, message=message)
    return render_part(
        request,
        "_bulk_confirm.html",
        console,
        kind=kind,
        verb=KINDS[kind],
        count=len(selection.iccids),
        preview=selection.iccids[:PREVIEW],
        fields=selection.hidden_fields(),
        ask=len(selection.iccids) > ASK_ABOVE,
        # seed 003: the selection can be downloaded from the confirmation; "all matching"
        # is the query's own export (ticked boxes are on the page already)
        csv_url=selection.query.url("/ui/sims.csv") if selection.all_matching else None,
        idempotency=str(uuid.uuid4()),
    )


@router.post("/bulk", response_class=HTMLResponse)
async def run(request: Request, console: BulkUser) -> HTMLResponse:
    form = await request.form()
    tried = f"{form.get('kind', '')} the selected SIMs"
    try:
        kind = _kind(form.get("kind"))
        selection = await in_thread(lambda: selected(console.caller, form))
        if len(selection.iccids) > ASK_ABOVE and not checked(form, "yes"):
            raise Problem(422, f"tick 'Yes, I want to {kind} these SIMs' first")
        body = bodies.BulkRequest(kind=kind, iccids=selection.iccids)  # type: ignore[arg-type]
        key = str(form.get("idempotency", ""))[:100] or None
        result = await in_thread(
            lambda: routes_operations.request_operation(console.caller, body, key)
        )
    except (SimledgerError, Problem) as error:
        message = refusal(error, tried)
        return render_part(request, "_message.html", console, message.status, message=message)
    return render_part(
        request,
        "_bulk_result.html",
        console,
        headers={"HX-Trigger": "activity-changed"},
        result=result,
        verb=KINDS[kind],
        back=selection.query.url(),
    )
