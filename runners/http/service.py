"""What every request shares: the ledger, the settings, one lock, the rate limits.

The ledger is one object per process; its unit of work, caches and view runner are not
written for concurrent threads, so the service's worker threads take turns on it (``lock``).
Several ``serve`` processes on one PostgreSQL store are the way to more throughput."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from simledger.application.keys import KeyCache
from simledger.application.ledger import SimLedger
from simledger.runners.http.settings import Settings

T = TypeVar("T")


class RateLimits:
    """A token bucket per key: ``burst`` requests at once, refilled at ``rate`` per second."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key_id: str) -> float:
        """0 when the request may go on; else the seconds until it could."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        with self._lock:
            tokens, then = self._buckets.get(key_id, (self.burst, now))
            tokens = min(self.burst, tokens + (now - then) * self.rate)
            if tokens >= 1:
                self._buckets[key_id] = (tokens - 1, now)
                return 0.0
            self._buckets[key_id] = (tokens, now)
            return (1 - tokens) / self.rate


@dataclass
class Service:
    ledger: SimLedger
    settings: Settings
    lock: threading.Lock = field(default_factory=threading.Lock)
    limits: RateLimits = field(init=False)
    keys: KeyCache = field(init=False)

    def __post_init__(self) -> None:
        self.limits = RateLimits(self.settings.rate_per_second, self.settings.rate_burst)
        # The key table is read through the recorder's own connections (no ledger lock).
        self.keys = KeyCache(self.ledger.keys.authenticate, self.settings.key_cache_seconds)

    def call(self, fn: Callable[[], T]) -> T:
        """``fn()`` with the ledger to itself."""
        with self.lock:
            return fn()
