"""Webhook batches POSTed to a subscriber, signed as HTTP.md signs the carrier's answers:
``X-Simledger-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">`` under the subscription's
secret. :func:`verify` is the receiving side's check (the tests' receiver uses it; a
subscriber in Python may too)."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from simledger.adapters.carrier.answers_http import SIGNATURE_HEADER, sign

__all__ = ["SIGNATURE_HEADER", "PostResult", "WebhookPoster", "sign", "verify"]

TOLERANCE_S = 300
"""A signature older (or newer) than this is refused by :func:`verify`: a replayed capture."""


@dataclass(frozen=True)
class PostResult:
    """One POST: the status (None: no answer), the time it took, what went wrong if anything."""

    status_code: int | None
    latency_ms: float
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class WebhookPoster:
    """One HTTP client (connections kept alive) for every subscription of a deliverer."""

    def __init__(
        self,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._client = httpx.Client(timeout=timeout, transport=transport)
        self._clock = clock

    def post(self, url: str, secret: str, body: bytes) -> PostResult:
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(secret, int(self._clock()), body),
        }
        started = time.perf_counter()
        try:
            response = self._client.post(url, content=body, headers=headers)
            status: int | None = response.status_code
            error = None if 200 <= response.status_code < 300 else response.text[:200] or None
        except httpx.HTTPError as failure:
            status, error = None, f"{type(failure).__name__}: {failure}"[:200]
        return PostResult(status, round((time.perf_counter() - started) * 1000, 3), error)

    def close(self) -> None:
        self._client.close()


def verify(
    secret: str,
    header: str | None,
    body: bytes,
    *,
    now: float | None = None,
    tolerance: float = TOLERANCE_S,
) -> bool:
    """Whether ``header`` (the ``X-Simledger-Signature`` value) signs ``body`` under
    ``secret`` at a time within ``tolerance`` seconds of ``now``."""
    if not header:
        return False
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    stamp, given = parts.get("t", ""), parts.get("v1", "")
    if not stamp.isdigit() or not given:
        return False
    if abs((time.time() if now is None else now) - int(stamp)) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256)
    return hmac.compare_digest(expected.hexdigest(), given)
