"""Packages (R-PK1..3).

A *catalogue* package is created once (``Created``). Assigning it to a SIM makes the SIM
its own *copy*, a Package aggregate of its own that starts with ``Assigned`` and that the
SIM's usage draws down (R-PK2). A shared group's pool is not a copy: it lives in the
group (R-SG1).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from simledger.domain.base import CreatedEvent, DomainEvent, LedgerAggregate
from simledger.domain.errors import InvalidInput

MAX_RENEWALS_PER_RECORD = 1000


class Package(LedgerAggregate):
    class Event(DomainEvent):
        pass

    class Created(CreatedEvent, Event):
        name: str
        data_mb: Decimal
        validity_days: int
        auto_renew: bool
        price: Decimal | None

        def apply(self, package: Package) -> None:
            package.name = self.name
            package.data_mb = self.data_mb
            package.validity_days = self.validity_days
            package.auto_renew = self.auto_renew
            package.price = self.price

    class Assigned(CreatedEvent, Event):
        """A SIM's own copy of a catalogue package (R-PK2)."""

        source_id: str
        iccid: str
        name: str
        data_mb: Decimal
        validity_days: int
        auto_renew: bool
        price: Decimal | None
        starts_at: datetime
        expires_at: datetime

        def apply(self, package: Package) -> None:
            package.name = self.name
            package.data_mb = self.data_mb
            package.validity_days = self.validity_days
            package.auto_renew = self.auto_renew
            package.price = self.price
            package.source_id = self.source_id
            package.iccid = self.iccid
            package.data_left_mb = self.data_mb
            package.starts_at = self.starts_at
            package.expires_at = self.expires_at

    class UsageDrawn(Event):
        iccid: str
        mb: Decimal
        at: datetime

        def apply(self, package: Package) -> None:
            package.data_left_mb -= self.mb

    class Depleted(Event):
        cause: str  # "data" or "expired"

        def apply(self, package: Package) -> None:
            package.depleted = True
            package.depleted_cause = self.cause

    class Renewed(Event):
        starts_at: datetime
        expires_at: datetime
        data_mb: Decimal

        def apply(self, package: Package) -> None:
            package.starts_at = self.starts_at
            package.expires_at = self.expires_at
            package.data_left_mb = self.data_mb
            package.depleted = False
            package.depleted_cause = None

    class ToppedUp(Event):
        """A prepaid balance refilled (R-SIM7): more data, and no longer depleted by data."""

        mb: Decimal

        def apply(self, package: Package) -> None:
            package.data_left_mb += self.mb
            if package.depleted_cause == "data":
                package.depleted = False
                package.depleted_cause = None

    def __init__(self) -> None:
        self.name: str = ""
        self.data_mb: Decimal = Decimal(0)
        self.validity_days: int = 0
        self.auto_renew: bool = False
        self.price: Decimal | None = None
        self.source_id: str | None = None
        self.iccid: str | None = None
        self.data_left_mb: Decimal = Decimal(0)
        self.starts_at: datetime | None = None
        self.expires_at: datetime | None = None
        self.depleted: bool = False
        self.depleted_cause: str | None = None

    @property
    def is_copy(self) -> bool:
        return self.source_id is not None

    @classmethod
    def create(
        cls,
        package_id: str,
        *,
        name: str,
        data_mb: Decimal,
        validity_days: int,
        auto_renew: bool,
        price: Decimal | None,
    ) -> Package:
        return cls.start(
            cls.Created,
            id=package_id,
            name=name,
            data_mb=data_mb,
            validity_days=validity_days,
            auto_renew=auto_renew,
            price=price,
        )

    def copy_for(self, copy_id: str, iccid: str, starts_at: datetime) -> Package:
        """A SIM's own copy of this catalogue package, valid from ``starts_at``."""
        return type(self).start(
            self.Assigned,
            id=copy_id,
            source_id=self.id,
            iccid=iccid,
            name=self.name,
            data_mb=self.data_mb,
            validity_days=self.validity_days,
            auto_renew=self.auto_renew,
            price=self.price,
            starts_at=starts_at,
            expires_at=starts_at + timedelta(days=self.validity_days),
        )

    def is_active_at(self, now: datetime) -> bool:
        """Not depleted, and within its validity (R-PK3)."""
        return not self.depleted and (self.expires_at is None or now < self.expires_at)

    def draw(self, iccid: str, mb: Decimal, at: datetime) -> bool:
        """Draw ``mb`` (never below zero); True when this drained the copy.

        With auto-renew, what the old period could not cover is drawn from the new one.
        """
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
        if self.auto_renew:
            start = self.expires_at if cause == "expired" and self.expires_at else now
            self.trigger_event(
                self.Renewed,
                starts_at=start,
                expires_at=start + timedelta(days=self.validity_days),
                data_mb=self.data_mb,
            )
            return False
        self.trigger_event(self.Depleted, cause=cause)
        return True

    def top_up(self, mb: Decimal) -> None:
        self.trigger_event(self.ToppedUp, mb=mb)
