"""An operator contract (R-PR1..2, R-PP2): the PAYGO price list, versioned in time, and the
prepaid inactivity period after which a SIM with no refill is deactivated.

One contract per operator, its id derived from the operator's name (:func:`contract_id`),
so a usage command finds the contract of a SIM's operator without a lookup table. A price
version is added, never changed: a usage record is priced with the version in force at its
``at`` (R-PR2), so a version may only start after the latest one (the past is never
re-priced: a record already charged keeps its price).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid5

from simledger.domain.base import CreatedEvent, DomainEvent, LedgerAggregate
from simledger.domain.errors import InvalidInput

CONTRACT_NAMESPACE = UUID("0c7e4d1a-92b4-5d8e-a1f3-4b6c8e2d9f17")
"""The namespace of the contracts' ids (uuid5 of the operator). Never change it."""


def contract_id(operator: str) -> str:
    return str(uuid5(CONTRACT_NAMESPACE, operator))


class OperatorContract(LedgerAggregate):
    class Event(DomainEvent):
        pass

    class Created(CreatedEvent, Event):
        operator: str

        def apply(self, contract: OperatorContract) -> None:
            contract.operator = self.operator

    class PricesSet(Event):
        """A new version of the PAYGO price list, in force from ``effective_from``."""

        effective_from: datetime
        default_per_mb: Decimal
        per_country: dict[str, Decimal]

        def apply(self, contract: OperatorContract) -> None:
            version = {
                "from": self.effective_from,
                "default": self.default_per_mb,
                "countries": dict(self.per_country),
            }
            contract.prices = [*contract.prices, version]

    class InactivityPeriodSet(Event):
        """Prepaid SIMs with no refill for ``days`` are deactivated (R-PP2); None: never."""

        days: int | None

        def apply(self, contract: OperatorContract) -> None:
            contract.inactivity_days = self.days

    def __init__(self) -> None:
        self.operator: str = ""
        self.prices: list[dict[str, Any]] = []
        self.inactivity_days: int | None = None

    @classmethod
    def open(cls, operator: str) -> OperatorContract:
        return cls.start(cls.Created, id=contract_id(operator), operator=operator)

    def set_prices(
        self, effective_from: datetime, default_per_mb: Decimal, per_country: Mapping[str, Decimal]
    ) -> None:
        """R-PR2: a version starts after the latest one, never in its past."""
        if self.prices and effective_from <= self.prices[-1]["from"]:
            raise InvalidInput(
                f"the price list of {self.operator} has a version from "
                f"{self.prices[-1]['from'].isoformat()}; a new one must start after it",
                rule="R-PR2",
            )
        self.trigger_event(
            self.PricesSet,
            effective_from=effective_from,
            default_per_mb=default_per_mb,
            per_country=dict(per_country),
        )

    def set_inactivity_period(self, days: int | None) -> None:
        self.trigger_event(self.InactivityPeriodSet, days=days)

    def price_per_mb(self, country: str | None, at: datetime) -> Decimal | None:
        """The price of one MB used in ``country`` at ``at`` (R-PR2): the version in force
        then, its country's price or else its default; None before the first version."""
        for version in reversed(self.prices):
            if version["from"] <= at:
                countries: Mapping[str, Decimal] = version["countries"]
                price = countries.get(country.upper()) if country else None
                return Decimal(price if price is not None else version["default"])
        return None
