"""The app: ``create_app(open_ledger)`` → FastAPI, and the frame every request passes through.

The frame (an ASGI middleware, outermost) gives each request an id, refuses a body over the
size limit (413) before the app reads it, adds ``X-Simledger-Position`` to every response and
writes one access log line (JSON) per request. ``/healthz``, ``/openapi.json`` and ``/docs``
need no key."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from simledger.adapters.logs import get_logger
from simledger.application.ledger import SimLedger
from simledger.application.service_reads import store_position, views_position
from simledger.runners.http import (
    openapi_doc,
    problems,
    routes_carrier,
    routes_commands,
    routes_events,
    routes_groups,
    routes_operations,
    routes_reads,
    routes_regular_groups,
    routes_rules,
    routes_usage,
    routes_webhooks,
)
from simledger.runners.http.console import install as install_console
from simledger.runners.http.service import Service
from simledger.runners.http.settings import Settings

log = get_logger("simledger.http")

POSITION_HEADER = "X-Simledger-Position"


class _TooLarge(StarletteHTTPException):
    """A body over the limit: an HTTP error, so FastAPI's body parsing passes it on as is."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is over {limit} bytes")


class Frame:
    """Request id, body limit, position header, access log (see the module docstring)."""

    def __init__(self, app: ASGIApp, get_service: Callable[[], Service | None]) -> None:
        self.app = app
        self.get_service = get_service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = uuid.uuid4().hex
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        service = self.get_service()
        limit = service.settings.max_body_bytes if service else 16 * 1024 * 1024
        status = 500
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length", b"").decode("latin-1").strip()
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge(limit)
            return message

        async def framed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                extra = [(b"x-request-id", request_id.encode())]
                position = await self._position(state)
                if position is not None:
                    extra.append((POSITION_HEADER.lower().encode(), str(position).encode()))
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        try:
            if declared.isdigit() and int(declared) > limit:
                raise _TooLarge(limit)
            await self.app(scope, limited_receive, framed_send)
        except _TooLarge:
            response = problems.Problem(413, f"the request body is over {limit} bytes").response()
            await response(scope, receive, framed_send)
        finally:
            log.info(
                "http.request",
                request_id=request_id,
                key_id=state.get("key_id"),
                method=scope.get("method"),
                path=scope.get("path"),
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
            )

    async def _position(self, state: dict[str, Any]) -> int | None:
        """The position the request's own ledger calls saw; else the views' position now."""
        if "position" in state:  # None: the route says the store did not answer
            return None if state["position"] is None else int(state["position"])
        service = self.get_service()
        if service is None:
            return None
        ledger = service.ledger
        try:
            return await anyio.to_thread.run_sync(
                lambda: service.call(lambda: views_position(ledger))
            )
        except Exception:  # the store does not answer: the answer goes out without it
            return None


def create_app(open_ledger: Callable[[], SimLedger], settings: Settings | None = None) -> FastAPI:
    """The service over the ledger ``open_ledger()`` makes when the app starts (closed when
    it stops)."""
    settings = settings or Settings.from_env()
    holder: dict[str, Service] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ledger = await anyio.to_thread.run_sync(open_ledger)
        service = Service(ledger, settings)
        holder["service"] = service
        app.state.service = service
        try:
            yield
        finally:
            holder.pop("service", None)
            await anyio.to_thread.run_sync(lambda: service.call(ledger.close))

    app = FastAPI(
        title="simledger",
        version="1",
        summary="The SIM lifecycle ledger over HTTP (HTTP.md)",
        lifespan=lifespan,
    )
    problems.install(app)
    openapi_doc.install(app)

    @app.get("/healthz", tags=["service"], summary="200 while the store answers, 503 if not")
    async def healthz(request: Request) -> JSONResponse:
        service: Service = request.app.state.service
        # The store's recorder serves threads on its own (no ledger lock), and a store that
        # hangs answers 503 after the wait: the probe thread is left to end by itself.
        request.state.position = None
        try:
            with anyio.fail_after(settings.health_timeout):
                position = await anyio.to_thread.run_sync(
                    store_position, service.ledger, abandon_on_cancel=True
                )
        except Exception as error:
            detail = f"the store does not answer: {type(error).__name__}"
            return problems.Problem(503, detail).response()
        request.state.position = position
        body: dict[str, Any] = {"status": "ok", "position": position}
        with contextlib.suppress(Exception):  # no webhooks on this store: none shown
            body["webhooks"] = await anyio.to_thread.run_sync(
                routes_webhooks.health, service.ledger, position
            )
        return JSONResponse(body)

    for module in (
        routes_reads,
        routes_commands,
        routes_operations,
        routes_groups,
        routes_regular_groups,
        routes_usage,
        routes_events,
        routes_carrier,
        routes_webhooks,
        routes_rules,
    ):
        app.include_router(module.router)
    install_console(app)  # the web console under /ui (runners/http/console/)
    app.add_middleware(Frame, get_service=lambda: holder.get("service"))
    return app
