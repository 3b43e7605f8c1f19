"""Drawing pages: the Jinja2 templates shipped beside this module, and the message a refusal
becomes (the rule's id and message beside what was tried, never a stack trace)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio
from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from simledger.domain.errors import SimledgerError
from simledger.runners.http.console.columns import STATUS_NAMES, cell, field
from simledger.runners.http.console.sessions import Console, Refused
from simledger.runners.http.problems import Problem, status_of

T = TypeVar("T")

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

environment = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
    auto_reload=False,  # templates ship with the package: read once per process
)
environment.filters["cell"] = cell
environment.filters["field"] = field
environment.globals["status_names"] = STATUS_NAMES


@dataclass(frozen=True)
class Message:
    """What a page says about an action: ``ok`` or a refusal with its rule."""

    text: str
    tried: str = ""
    rule: str | None = None
    ok: bool = False
    status: int = 200


def refusal(error: Exception, tried: str) -> Message:
    """A ledger refusal or an API problem as a message beside what was tried."""
    if isinstance(error, SimledgerError):
        return Message(error.message, tried, error.rule, status=status_of(error))
    if isinstance(error, Problem):
        return Message(error.detail, tried, error.rule, status=error.status)
    if isinstance(error, Refused):
        return Message(error.detail, tried, error.rule, status=error.status)
    raise error


def is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def render(
    request: Request,
    template: str,
    console: Console | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    page = environment.get_template(template).render(
        request=request,
        csrf=console.session.csrf if console else "",
        who=console.session.key_name if console else None,
        company=console.session.company if console else None,
        htmx=is_htmx(request),
        **context,
    )
    response = HTMLResponse(page, status_code=status, headers=headers)
    # The pages hold a company's data: never kept by a shared cache or the back-forward one
    # after sign-out.
    response.headers["Cache-Control"] = "no-store"
    return response


def render_part(
    request: Request,
    part: str,
    console: Console | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    """A part of a page (a dialog, an answer): alone for htmx, which swaps it in; inside the
    whole frame for a browser without JavaScript."""
    if is_htmx(request):
        return render(request, part, console, status, headers, **context)
    return render(request, "page.html", console, status, headers, part=part, **context)


async def in_thread(fn: Callable[[], T]) -> T:
    """``fn()`` in a worker thread: ledger calls wait for the service's lock, never on the
    event loop."""
    return await anyio.to_thread.run_sync(fn)
