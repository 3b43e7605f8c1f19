"""Packages (R-PK1..3).

A *catalogue* package is created once (``Created``). Assigning it to a SIM makes the SIM
its own *copy*, a Package aggregate of its own that starts with ``Assigned`` and that the
SIM's usage draws down (R-PK2): a :class:`~simledger.domain.pool.Pool`. A shared group's
pool is not a copy: it lives in the group (R-SG1).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from simledger.domain.base import CreatedEvent, DomainEvent, LedgerAggregate
from simledger.domain.pool import Pool


class Package(LedgerAggregate, Pool):
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

    def _renew(self, start: datetime) -> None:
        self.trigger_event(
            self.Renewed,
            starts_at=start,
            expires_at=start + timedelta(days=self.validity_days),
            data_mb=self.data_mb,
        )

    def top_up(self, mb: Decimal) -> None:
        self.trigger_event(self.ToppedUp, mb=mb)
