"""Keys, scopes and tenants: who calls, what they may call, and what they may see.

``Bearer`` keys are checked against the store (``ledger.keys.authenticate``, a live key
remembered for ``key_cache_seconds``, 1 s by default: a revocation counts within it): missing,
unknown or revoked → 401; a scope the key lacks → 403. A company key sees its company's SIMs
alone (anything else is 404, as if unknown); an operator key sees everything. Every ledger
call of a request runs under ``ledger.acting_as(key.actor())``, so the events it causes
record the key."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from simledger.application.keys import ApiKey
from simledger.application.service_reads import position_marks, views_position_after
from simledger.runners.http.problems import Problem
from simledger.runners.http.service import Service

T = TypeVar("T")

bearer = HTTPBearer(auto_error=False, description="an API key: `simledger keys create`")


def service_of(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


@dataclass(frozen=True)
class Caller:
    """The key of a request, and the ledger it acts on."""

    key: ApiKey
    service: Service
    state: Any
    """The request's ``state``: ``position`` is set after each ledger call (the header)."""

    @property
    def company(self) -> str | None:
        """The company the key is confined to; None for an operator key (sees all)."""
        return None if self.key.operator else self.key.company

    def run(self, fn: Callable[[], T]) -> T:
        """``fn()`` on the ledger, every event it causes recorded as this key's."""
        ledger = self.service.ledger

        def acting() -> T:
            with ledger.acting_as(self.key.actor()):
                marks: tuple[int, int] | None = None
                with contextlib.suppress(Exception):  # the store may not answer
                    marks = position_marks(ledger)
                try:
                    return fn()
                finally:  # the header's position; none when the store does not answer
                    with contextlib.suppress(Exception):
                        self.state.position = views_position_after(ledger, marks)

        return self.service.call(acting)


async def _authenticate(
    request: Request, credentials: HTTPAuthorizationCredentials | None
) -> Caller:
    service = service_of(request)
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise Problem(
            401, "send Authorization: Bearer <key>", headers={"WWW-Authenticate": "Bearer"}
        )
    secret = credentials.credentials
    # A key seen within the cache's age is checked on the event loop: no worker thread, no
    # query (the list route's hop and round trip per request, ARCHITECTURE.md).
    key = service.keys.cached(secret)
    if key is None:
        key = await anyio.to_thread.run_sync(service.keys.authenticate, secret)
    if key is None or key.revoked_at is not None:
        raise Problem(401, "unknown or revoked key", headers={"WWW-Authenticate": "Bearer"})
    request.state.key_id = str(key.id)
    wait = service.limits.take(str(key.id))
    if wait > 0:
        raise Problem(
            429,
            "this key is over its rate limit",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
    return Caller(key, service, request.state)


def scoped(scope: str) -> Callable[..., Awaitable[Caller]]:
    """The dependency of a route that needs ``scope``."""

    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Caller:
        caller = await _authenticate(request, credentials)
        if scope not in caller.key.scopes:
            raise Problem(403, f"this key lacks the scope {scope!r}")
        return caller

    dependency.__name__ = f"scope_{scope.replace(':', '_')}"
    return dependency


def operator_only(caller: Caller, what: str) -> None:
    """A call that only the platform's own staff make (receiving stock, moving a SIM between
    companies): 403 for a company key."""
    if caller.company is not None:
        raise Problem(403, f"{what} needs an operator key")


SimsRead = Annotated[Caller, Depends(scoped("sims:read"))]
SimsWrite = Annotated[Caller, Depends(scoped("sims:write"))]
Bulk = Annotated[Caller, Depends(scoped("bulk"))]
UsageWrite = Annotated[Caller, Depends(scoped("usage:write"))]
AuditRead = Annotated[Caller, Depends(scoped("audit:read"))]
Admin = Annotated[Caller, Depends(scoped("admin"))]
