"""Long-running processes (the projection worker, the carrier forwarder) outlive a database
restart: work that fails because the connection was lost is tried again after a pause that
doubles up to a cap, and from where the store says it got to (a tracking position, the
forwarder's books), never from memory."""

from __future__ import annotations

from simledger.adapters.store.connect_check import connection_lost

__all__ = ["Backoff", "connection_lost"]

FIRST_S = 0.25
CAP_S = 5.0


class Backoff:
    """Pauses between attempts: ``first`` seconds, doubled each time, at most ``cap``."""

    def __init__(self, first: float = FIRST_S, cap: float = CAP_S) -> None:
        self.first = first
        self.cap = cap
        self.attempts = 0

    def next(self) -> float:
        """The pause before the next attempt (and count this one)."""
        self.attempts += 1
        return float(min(self.cap, self.first * 2 ** min(self.attempts - 1, 30)))

    def reset(self) -> None:
        """After a success: the next failure starts from ``first`` again."""
        self.attempts = 0
