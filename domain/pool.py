"""A data pool (R-PK2, R-PK3, R-SG1): what a SIM's package copy and a shared group share.

A pool is an allowance of data valid until a moment. Usage draws it down, never below
zero; it is depleted when its data runs out or its validity ends, unless it renews: a SIM's
copy of an auto-renew package starts a new period instead, and what the old period could
not cover is drawn from the new one.

Each aggregate records its pool's changes with its own event classes (``UsageDrawn``,
``Depleted`` and, for a renewing pool, ``Renewed``): they are stored under the aggregate's
topics, so only the rules live here.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from simledger.domain.errors import InvalidInput

MAX_RENEWALS_PER_RECORD = 1000
"""Periods one usage record may renew a pool through; more is surely a wrong record."""


class Pool:
    """The pool rules, mixed into an aggregate that holds these attributes and defines
    the event classes ``UsageDrawn`` (``iccid``, ``mb``, ``at``) and ``Depleted``
    (``cause``); one that renews overrides :meth:`_renew`."""

    name: str
    data_mb: Decimal
    """The allowance of one period."""
    data_left_mb: Decimal
    expires_at: datetime | None
    depleted: bool
    depleted_cause: str | None
    """``"data"`` or ``"expired"`` while depleted."""
    auto_renew: bool = False
    """Whether the pool starts a new period instead of being depleted (a class default:
    only an aggregate whose pools may renew holds it)."""

    if TYPE_CHECKING:
        UsageDrawn: ClassVar[type[Any]]
        Depleted: ClassVar[type[Any]]

        def trigger_event(self, event_class: type[Any], **kwargs: Any) -> None: ...

    def is_active_at(self, now: datetime) -> bool:
        """Not depleted, and within its validity (R-PK3)."""
        return not self.depleted and (self.expires_at is None or now < self.expires_at)

    def draw(self, iccid: str, mb: Decimal, at: datetime) -> bool:
        """Draw ``mb`` for ``iccid`` (never below zero); True when this depleted the pool."""
        if self.auto_renew and mb > self.data_mb * MAX_RENEWALS_PER_RECORD:
            raise InvalidInput(
                f"{mb} MB in one usage record would renew {self.name} more than "
                f"{MAX_RENEWALS_PER_RECORD} times; split the record",
                rule="R-PK2",
            )
        remaining = mb
        while True:
            drawn = min(remaining, self.data_left_mb)
            if drawn > 0:
                self.trigger_event(self.UsageDrawn, iccid=iccid, mb=drawn, at=at)
                remaining -= drawn
            if self.data_left_mb > 0 or self.depleted:
                return False
            if self._run_out("data", at):
                return True
            if remaining <= 0 or self.data_mb <= 0:
                return False

    def expire(self, now: datetime) -> bool:
        """Deplete (or renew) when the validity has ended by ``now``; True when depleted."""
        if self.depleted or self.expires_at is None or now < self.expires_at:
            return False
        return self._run_out("expired", now)

    def _run_out(self, cause: str, now: datetime) -> bool:
        """Renew, or be depleted by ``cause``: True when depleted. An expired period's
        successor starts when it ended; one emptied by usage, ``now``."""
        if self.auto_renew:
            start = self.expires_at if cause == "expired" and self.expires_at else now
            self._renew(start)
            return False
        self.trigger_event(self.Depleted, cause=cause)
        return True

    def _renew(self, start: datetime) -> None:
        """Start a new period at ``start`` (only a pool with ``auto_renew`` renews)."""
        raise NotImplementedError(f"{type(self).__name__} does not renew")
