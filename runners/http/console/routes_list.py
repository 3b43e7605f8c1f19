"""The SIM list page (seed 002), its CSV export, and the pending activity panel (seed 003)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, StreamingResponse

from simledger.adapters.csv_format import EXPORT_COLUMNS, export_row
from simledger.domain.errors import SimledgerError
from simledger.domain.types import SimType
from simledger.projections.models import Page
from simledger.runners.http import routes_operations
from simledger.runners.http.console.columns import row_cells, shown_columns
from simledger.runners.http.console.pages import Message, refusal, render
from simledger.runners.http.console.query import ListQuery, every_item, fetch, status_counts
from simledger.runners.http.console.sessions import Console, signed_in
from simledger.runners.http.problems import Problem

router = APIRouter(prefix="/ui", include_in_schema=False)

Reader = Annotated[Console, Depends(signed_in("sims:read"))]


@router.get("/sims", response_class=HTMLResponse)
def sim_list(request: Request, console: Reader) -> HTMLResponse:
    query = ListQuery.parse(request.query_params)
    columns = shown_columns()
    page = Page(items=[], next_cursor=None, total=0)
    message: Message | None = None
    status = 200
    try:
        page = fetch(console.caller, query)
    except (SimledgerError, Problem) as error:
        message = refusal(error, f"list the SIMs with {query.selection() or 'no filter'}")
        status = message.status
    return render(
        request,
        "sims.html",
        console,
        status=status,
        query=query,
        page=page,
        columns=columns,
        rows=[(item.iccid, row_cells(item, columns)) for item in page.items],
        sim_types=[t.value for t in SimType],
        message=message,
        activity=_activity(console),
    )


@router.get("/sims/counts", response_class=HTMLResponse)
def chip_counts(request: Request, console: Reader) -> HTMLResponse:
    """The status chips with their counts under the page's other filters: one count per
    status, fetched by the page after it is shown (htmx), so the rows never wait for them."""
    query = ListQuery.parse(request.query_params)
    try:
        counts = status_counts(console.caller, query)
    except (SimledgerError, Problem):
        counts = {}
    return render(request, "_chips.html", console, query=query, counts=counts, loaded=True)


@router.get("/sims.csv", response_model=None)
def export(request: Request, console: Reader) -> StreamingResponse | HTMLResponse:
    """The SIMs of the page's query, every page of them, in the export's columns (R-BK4)."""
    query = ListQuery.parse(request.query_params)
    try:  # a refused query is refused before the first row
        fetch(console.caller, query, cursor="", limit=1)
    except (SimledgerError, Problem) as error:
        message = refusal(error, f"export the SIMs with {query.selection() or 'no filter'}")
        return render(request, "message.html", console, status=message.status, message=message)

    def rows() -> Iterator[str]:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(EXPORT_COLUMNS)
        for count, item in enumerate(every_item(console.caller, query), 1):
            writer.writerow(export_row(item))
            if count % 1000 == 0:
                yield out.getvalue()
                out.seek(0)
                out.truncate()
        yield out.getvalue()

    return StreamingResponse(
        rows(),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": 'attachment; filename="sims.csv"',
            "Cache-Control": "no-store",
        },
    )


def _activity(console: Console) -> list[object]:
    try:
        return list(routes_operations.list_operations(console.caller, None))
    except (SimledgerError, Problem):
        return []


@router.get("/activity", response_class=HTMLResponse)
def activity(request: Request, console: Reader) -> HTMLResponse:
    """The pending activity panel alone: the page polls it (htmx)."""
    return render(request, "_activity.html", console, activity=_activity(console))
