"""Shared groups (seeds 000/001): the list with members, pool left and locked; one created
from the list's selection (R-SG1/R-SG2 refusals shown as messages); delete with "move to".
Every call is the API's own route function (``routes_groups``), under the same scopes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from pydantic import ValidationError

from simledger.application.results import SharedGroupView
from simledger.domain.errors import SimledgerError
from simledger.projections.models import SharedGroupSummary
from simledger.runners.http import bodies, routes_groups
from simledger.runners.http.console.pages import Message, in_thread, refusal, render, render_part
from simledger.runners.http.console.query import checked
from simledger.runners.http.console.selection import selected
from simledger.runners.http.console.sessions import Console, signed_in
from simledger.runners.http.problems import Problem

router = APIRouter(prefix="/ui", include_in_schema=False)

Reader = Annotated[Console, Depends(signed_in("sims:read"))]
AdminUser = Annotated[Console, Depends(signed_in("admin"))]


def _groups(console: Console) -> list[tuple[SharedGroupSummary, SharedGroupView]]:
    summaries = routes_groups.list_groups(console.caller, None, None, None)
    return [(g, routes_groups.get_group(console.caller, str(g.group_id), None)) for g in summaries]


def _page(
    request: Request, console: Console, message: Message | None = None, status: int = 200
) -> HTMLResponse:
    groups: list[Any] = []
    try:
        groups = _groups(console)
    except (SimledgerError, Problem) as error:
        message = message or refusal(error, "list the shared groups")
    return render(request, "groups.html", console, status, groups=groups, message=message)


@router.get("/groups", response_class=HTMLResponse)
def group_list(request: Request, console: Reader) -> HTMLResponse:
    return _page(request, console)


@router.post("/groups/new", response_class=HTMLResponse)
async def new_group(request: Request, console: AdminUser) -> HTMLResponse:
    """The create dialog for the list's selection."""
    form = await request.form()
    try:
        selection = await in_thread(lambda: selected(console.caller, form))
    except (SimledgerError, Problem) as error:
        message = refusal(error, "create a shared group from the selection")
        return render_part(request, "_message.html", console, message.status, message=message)
    return render_part(
        request,
        "_group_new.html",
        console,
        count=len(selection.iccids),
        fields=selection.hidden_fields(),
    )


@router.post("/groups", response_class=HTMLResponse)
async def create_group(request: Request, console: AdminUser) -> HTMLResponse:
    form = await request.form()
    name = str(form.get("name", ""))[:1000]
    tried = f"create the shared group {name!r}"
    try:
        selection = await in_thread(lambda: selected(console.caller, form))
        try:
            body = bodies.NewSharedGroup(
                name=name,
                iccids=selection.iccids,
                package_id=str(form.get("package_id", "")).strip(),  # type: ignore[arg-type]
                notify_users=checked(form, "notify_users"),
            )
        except ValidationError:
            raise Problem(422, "the package id is not a UUID", rule="R-IN4") from None
        created = await in_thread(lambda: routes_groups.create_group(console.caller, body))
    except (SimledgerError, Problem) as error:
        message = refusal(error, tried)
        return render_part(request, "_message.html", console, message.status, message=message)
    message = Message(
        f"created with {len(selection.iccids)} SIMs: {created.id}", tried, ok=True, status=201
    )
    return render_part(request, "_message.html", console, 200, message=message, groups_link=True)


@router.post("/groups/{group_id}/delete", response_class=HTMLResponse)
async def delete_group(request: Request, console: AdminUser, group_id: str) -> HTMLResponse:
    form = await request.form()
    move_to = str(form.get("move_to", "")).strip()[:100] or None
    tried = f"delete the shared group {group_id[:100]}"
    if move_to:
        tried += f", moving its members to {move_to}"
    message: Message
    try:
        await in_thread(lambda: routes_groups.delete_group(console.caller, group_id[:100], move_to))
        message = Message("deleted", tried, ok=True)
    except (SimledgerError, Problem) as error:
        message = refusal(error, tried)
    page = await in_thread(lambda: _page(request, console, message, message.status))
    return page
