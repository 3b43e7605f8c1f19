"""The partner flow (R-PF1..4): SIM orders and customer services."""

from __future__ import annotations

from simledger.domain.base import CreatedEvent, DomainEvent, LedgerAggregate
from simledger.domain.errors import InvalidInput, OrderQuantityInvalid

ORDER_MULTIPLES: dict[str, int] = {"A1": 20}
"""R-PF1: SIMs are ordered in multiples of 50, of 20 for A1."""
DEFAULT_ORDER_MULTIPLE = 50


def order_multiple(operator: str) -> int:
    return ORDER_MULTIPLES.get(operator.strip(), DEFAULT_ORDER_MULTIPLE)


class SimOrder(LedgerAggregate):
    class Event(DomainEvent):
        pass

    class Placed(CreatedEvent, Event):
        operator: str
        quantity: int

        def apply(self, order: SimOrder) -> None:
            order.operator = self.operator
            order.quantity = self.quantity

    class Delivered(Event):
        iccids: list[str]

        def apply(self, order: SimOrder) -> None:
            order.delivered += len(self.iccids)

    def __init__(self) -> None:
        self.operator: str = ""
        self.quantity: int = 0
        self.delivered: int = 0

    @classmethod
    def place(cls, order_id: str, operator: str, quantity: int) -> SimOrder:
        multiple = order_multiple(operator)
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity <= 0:
            raise OrderQuantityInvalid(
                f"order quantity must be a positive whole number: {quantity!r}"
            )
        if quantity % multiple:
            raise OrderQuantityInvalid(
                f"{operator} SIMs are ordered in multiples of {multiple}, not {quantity}"
            )
        return cls.start(cls.Placed, id=order_id, operator=operator, quantity=quantity)

    def deliver(self, iccids: list[str], operator: str) -> None:
        if operator != self.operator:
            raise OrderQuantityInvalid(
                f"order {self.id} is for {self.operator} SIMs, not {operator}"
            )
        if self.delivered + len(iccids) > self.quantity:
            raise OrderQuantityInvalid(
                f"order {self.id} is for {self.quantity} SIMs; {self.delivered} delivered, "
                f"{len(iccids)} more would exceed it"
            )
        self.trigger_event(self.Delivered, iccids=iccids)


class CustomerService(LedgerAggregate):
    class Event(DomainEvent):
        pass

    class Created(CreatedEvent, Event):
        name: str
        data_mb_per_month: int
        networks: list[str]
        minimum_term_months: int

        def apply(self, service: CustomerService) -> None:
            service.name = self.name
            service.data_mb_per_month = self.data_mb_per_month
            service.networks = list(self.networks)
            service.minimum_term_months = self.minimum_term_months

    def __init__(self) -> None:
        self.name: str = ""
        self.data_mb_per_month: int = 0
        self.networks: list[str] = []
        self.minimum_term_months: int = 0

    @classmethod
    def create(
        cls,
        service_id: str,
        *,
        name: str,
        data_mb_per_month: int,
        networks: list[str],
        minimum_term_months: int,
    ) -> CustomerService:
        if not name.strip():
            raise InvalidInput("a customer service needs a name", rule="R-PF2")
        if data_mb_per_month < 0 or minimum_term_months < 0:
            raise InvalidInput("data per month and minimum term cannot be negative", rule="R-PF2")
        return cls.start(
            cls.Created,
            id=service_id,
            name=name,
            data_mb_per_month=data_mb_per_month,
            networks=networks,
            minimum_term_months=minimum_term_months,
        )
