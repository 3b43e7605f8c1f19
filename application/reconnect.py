"""Long-running processes (the projection worker, the carrier forwarder) outlive a database
restart: work that fails because the connection was lost is tried again after a pause that
doubles up to a cap, and from where the store says it got to (a tracking position, the
forwarder's books), never from memory."""

from __future__ import annotations

from simledger.adapters.logs import get_logger
from simledger.adapters.store.connect_check import connection_lost

log = get_logger("simledger")

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

    def after(self, error: BaseException, event: str) -> float:
        """:meth:`next`, with the failure logged as ``event`` (a warning: the process goes
        on after the pause)."""
        pause = self.next()
        log.warning(
            event,
            error=f"{type(error).__name__}: {error}",
            attempt=self.attempts,
            retry_in_s=pause,
        )
        return pause

    def reset(self) -> None:
        """After a success: the next failure starts from ``first`` again."""
        self.attempts = 0
