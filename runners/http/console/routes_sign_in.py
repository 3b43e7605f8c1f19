"""Signing in with a key, and out."""

from __future__ import annotations

import secrets
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from simledger.runners.http.auth import service_of
from simledger.runners.http.console.pages import Message, render
from simledger.runners.http.console.sessions import (
    COOKIE,
    PRE_COOKIE,
    Console,
    secure,
    sessions_of,
    signed_in,
    tokens_match,
)

router = APIRouter(prefix="/ui", include_in_schema=False)

HOME = "/ui/sims"


def _back_to(raw: str | None) -> str:
    """Only a console page of this site (no open redirect)."""
    if raw and raw.startswith("/ui/") and not raw.startswith("//") and "\\" not in raw:
        return raw
    return HOME


def _sign_in_page(
    request: Request, back_to: str, message: Message | None = None, status: int = 200
) -> HTMLResponse:
    token = secrets.token_urlsafe(32)
    response = render(
        request,
        "sign_in.html",
        status=status,
        pre_csrf=token,
        next=back_to,
        message=message,
    )
    response.set_cookie(
        PRE_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=secure(request),
        path="/ui/sign-in",
        max_age=3600,
    )
    return response


@router.get("", include_in_schema=False)
def home() -> RedirectResponse:
    return RedirectResponse(HOME, status_code=303)


@router.get("/sign-in")
def sign_in_page(request: Request, next: str | None = None, reason: str = "") -> HTMLResponse:
    message = Message(reason[:200]) if reason else None
    return _sign_in_page(request, _back_to(next), message)


@router.post("/sign-in")
async def sign_in(
    request: Request,
    key: Annotated[str, Form(max_length=500)] = "",
    csrf: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = HOME,
) -> Response:
    back_to = _back_to(next)
    if not tokens_match(csrf, request.cookies.get(PRE_COOKIE, "")):
        message = Message("the form's CSRF token is missing or wrong: try again", status=403)
        return _sign_in_page(request, back_to, message, status=403)
    service = service_of(request)
    found = await anyio.to_thread.run_sync(service.keys.authenticate, key.strip())
    if found is None or found.revoked_at is not None:
        message = Message("unknown or revoked key", tried="sign in", status=401)
        return _sign_in_page(request, back_to, message, status=401)
    if "sims:read" not in found.scopes:
        message = Message("this key lacks the scope 'sims:read'", tried="sign in", status=403)
        return _sign_in_page(request, back_to, message, status=403)
    company = None if found.operator else found.company
    session_id, _ = sessions_of(request).open(key.strip(), found.name, company)
    response = RedirectResponse(back_to, status_code=303)
    response.set_cookie(
        COOKIE,
        session_id,
        httponly=True,
        samesite="strict",
        secure=secure(request),
        path="/ui",
    )
    response.delete_cookie(PRE_COOKIE, path="/ui/sign-in")
    return response


@router.post("/sign-out")
def sign_out(
    request: Request, console: Annotated[Console, Depends(signed_in("sims:read"))]
) -> RedirectResponse:
    sessions_of(request).close(request.cookies.get(COOKIE))
    response = RedirectResponse("/ui/sign-in?reason=signed+out", status_code=303)
    response.delete_cookie(COOKIE, path="/ui")
    return response
