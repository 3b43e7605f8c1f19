"""The service's settings, read from the environment once when the app is built."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


def _number(environ: Mapping[str, str], key: str, default: float) -> float:
    raw = environ.get(key, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{key}={raw!r} is not a number") from None
    if value < 0:
        raise ValueError(f"{key}={raw!r} is negative")
    return value


@dataclass(frozen=True)
class Settings:
    rate_per_second: float = 50.0
    """Per key: requests per second over time (a token bucket); 0 turns the limit off."""
    rate_burst: float = 100.0
    """Per key: requests allowed at once before the rate applies."""
    max_body_bytes: int = 16 * 1024 * 1024
    """A request body over this size answers 413."""
    min_position_wait: float = 2.0
    """Seconds a read with ``min_position`` waits for the views before answering 503."""
    health_timeout: float = 3.0
    """Seconds ``/healthz`` waits for the store before answering 503."""
    carrier_secret: str | None = None
    """The carriers' shared secret for ``POST /v1/carrier/answers``; unset: the route answers
    401 to every call (no secret, no signature can be right)."""
    signature_max_age: float = 300.0
    """A carrier signature older (or newer) than this many seconds is stale."""
    key_cache_seconds: float = 1.0
    """A key checked against the store is trusted this long without asking again (a
    revocation counts within it); 0: every request asks the store."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        return cls(
            rate_per_second=_number(env, "SIMLEDGER_HTTP_RATE", cls.rate_per_second),
            rate_burst=_number(env, "SIMLEDGER_HTTP_BURST", cls.rate_burst),
            max_body_bytes=int(_number(env, "SIMLEDGER_HTTP_MAX_BODY", cls.max_body_bytes)),
            min_position_wait=_number(env, "SIMLEDGER_HTTP_POSITION_WAIT", cls.min_position_wait),
            carrier_secret=env.get("SIMLEDGER_CARRIER_SECRET") or None,
            signature_max_age=cls.signature_max_age,
            key_cache_seconds=_number(env, "SIMLEDGER_HTTP_KEY_CACHE", cls.key_cache_seconds),
        )
