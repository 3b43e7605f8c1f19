"""The web console under ``/ui``: server-rendered pages (Jinja2) over the HTTP service's own
routes, htmx for the parts that change without a reload (vendored in ``static/``, 0BSD).

``install(app)`` adds it to the service's app: the routes (kept out of the OpenAPI
document: they are pages, not the API), the static files, the sessions, and the two answers
a page gives before it is drawn (sign in first; refused, with the reason)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from simledger.runners.http.console import (
    routes_bulk,
    routes_groups,
    routes_list,
    routes_sign_in,
    routes_sim,
)
from simledger.runners.http.console.pages import STATIC, Message, is_htmx, render
from simledger.runners.http.console.sessions import Refused, Sessions, SignInNeeded, sign_in_url


def install(app: FastAPI) -> None:
    app.state.console_sessions = Sessions()
    for module in (routes_sign_in, routes_list, routes_bulk, routes_sim, routes_groups):
        app.include_router(module.router)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="console-static")

    @app.exception_handler(SignInNeeded)
    async def _sign_in(request: Request, error: SignInNeeded) -> Response:
        url = sign_in_url(error.back_to, error.reason)
        if is_htmx(request):  # a part of a page: the whole browser goes to the sign-in page
            return Response(status_code=204, headers={"HX-Redirect": url})
        return RedirectResponse(url, status_code=303)

    @app.exception_handler(Refused)
    async def _refused(request: Request, error: Refused) -> HTMLResponse:
        message = Message(error.detail, f"{request.method} {request.url.path}", error.rule)
        if is_htmx(request):  # the part of the page it was asked for: the message alone
            return render(request, "_message.html", status=error.status, message=message)
        return render(request, "message.html", status=error.status, message=message)
