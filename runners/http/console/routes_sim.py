"""A SIM's page: its state, its package or pool and what is left, its history as a timeline,
and "as it was" at a moment or a version beside now. An eSIM's activation code is drawn as
a QR code on the server (segno: SVG inline, no script, no image request).

Reads are the API's route functions (``routes_reads.get_sim`` / ``sim_history``): another
company's SIM is unknown here exactly as it is there."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import segno
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup

from simledger.application.results import HistoryEntry, SimView
from simledger.domain.errors import SimledgerError
from simledger.runners.http import routes_reads
from simledger.runners.http.console.pages import Message, refusal, render
from simledger.runners.http.console.sessions import Console, signed_in
from simledger.runners.http.problems import Problem

router = APIRouter(prefix="/ui", include_in_schema=False)

Reader = Annotated[Console, Depends(signed_in("sims:read"))]

SHOWN = (
    "status",
    "sim_type",
    "operator",
    "esim",
    "msisdn",
    "company",
    "store_use",
    "end_user",
    "note",
    "labels",
    "plan",
    "package_id",
    "group_id",
    "data_left_mb",
    "expires_at",
    "days_left",
    "this_month_mb",
    "suspended_reason",
    "system_cause",
    "operation_in_flight",
    "service",
    "version",
    "updated_at",
)
"""The fields of a SIM's page, in order (``SimView``'s; its activation code is the QR)."""


def _moment(raw: str) -> datetime | None:
    """A moment from the page's picker (``datetime-local``: no zone, read as UTC) or ISO 8601."""
    text = raw.strip()
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        detail = f"not a time: {text[:40]!r} (e.g. 2024-05-01T12:00)"
        raise Problem(422, detail, rule="R-IN3") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _version(raw: str) -> int | None:
    text = raw.strip()
    if not text:
        return None
    if not text.isdigit() or not 1 <= int(text) <= 2**62:
        raise Problem(422, f"a version is a whole number from 1: {text[:40]!r}", rule="R-IN4")
    return int(text)


def _sim(console: Console, iccid: str, at: datetime | None, version: int | None) -> SimView:
    response = routes_reads.get_sim(console.caller, iccid, at, version, None)
    return SimView.model_validate_json(bytes(response.body))


def qr_svg(code: str) -> Markup:
    """The activation code as an inline SVG QR code (escaped by segno, so safe to embed)."""
    svg = segno.make(code, error="m").svg_inline(scale=4, title=f"QR code: {code}")
    return Markup(svg)  # segno's own SVG: it escapes the text it embeds (the title)


@router.get("/sims/{iccid}", response_class=HTMLResponse)
def sim_page(
    request: Request, console: Reader, iccid: str, as_of: str = "", version: str = ""
) -> HTMLResponse:
    iccid = iccid[:100]
    as_of, version = as_of[:64], version[:24]
    try:
        now = _sim(console, iccid, None, None)
        history: list[HistoryEntry] = routes_reads.sim_history(console.caller, now.iccid, None)
    except (SimledgerError, Problem) as error:
        refused = refusal(error, f"open the SIM {iccid}")
        return render(request, "message.html", console, status=refused.status, message=refused)
    then: SimView | None = None
    message: Message | None = None
    try:
        moment, number = _moment(as_of), _version(version)
        if moment is not None or number is not None:
            then = _sim(console, now.iccid, moment, number)
    except (SimledgerError, Problem) as error:
        what = f"version {version}" if version else as_of
        message = refusal(error, f"see the SIM as it was at {what}")
    fields: list[dict[str, Any]] = [
        {
            "name": name,
            "now": getattr(now, name),
            "then": getattr(then, name) if then else None,
            "changed": then is not None and getattr(then, name) != getattr(now, name),
        }
        for name in SHOWN
    ]
    qr = qr_svg(now.activation_code) if now.esim and now.activation_code else None
    return render(
        request,
        "sim.html",
        console,
        sim=now,
        then=then,
        fields=fields,
        history=list(reversed(history)),
        qr=qr,
        as_of=as_of,
        version=version,
        message=message,
    )
