"""The partner flow: SIM orders, customer services, migration and customers (R-PF1..4)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from uuid import UUID

from simledger.application.commands.base import Commands
from simledger.application.commands.company_rules import follow_company
from simledger.application.unit_of_work import command
from simledger.domain import values
from simledger.domain.errors import (
    InvalidInput,
    InvalidValue,
    OrderQuantityInvalid,
    UnknownCustomerService,
    shown,
)
from simledger.domain.partner import CustomerService, SimOrder
from simledger.domain.types import HOLDING_SERVICE


class PartnerCommands(Commands):
    """The partner flow's commands."""

    @command
    def order_sims(self, operator: str, quantity: values.Number) -> UUID:
        order_id = uuid.uuid4()
        operator = values.text(operator, "operator", rule="R-PF1")
        count = values.number(quantity, "a quantity")
        if count != count.to_integral_value() or count <= 0:
            raise OrderQuantityInvalid(
                f"order quantity must be a positive whole number: {shown(quantity)}"
            )
        if count > values.COUNT_MAX:
            raise InvalidValue(f"an order holds at most {values.COUNT_MAX} SIMs", rule="R-IN2")
        order = SimOrder.place(str(order_id), operator, int(count))
        self.uow.save(order)
        return order_id

    @command
    def create_customer_service(
        self,
        name: str,
        *,
        data_mb_per_month: values.Number,
        networks: Iterable[str] = (),
        minimum_term_months: values.Number = 0,
    ) -> UUID:
        service_id = uuid.uuid4()
        service = CustomerService.create(
            str(service_id),
            name=values.text(name, "service name", rule="R-PF2"),
            data_mb_per_month=values.whole(
                data_mb_per_month,
                "data per month (MB)",
                rule="R-PF2",
                low=0,
                high=int(values.MB_MAX),
            ),
            networks=values.names(networks, "networks", limit=values.NETWORKS_MAX),
            minimum_term_months=values.whole(
                minimum_term_months,
                "the minimum term (months)",
                rule="R-PF2",
                low=0,
                high=values.MONTHS_MAX,
            ),
        )
        self.uow.save(service)
        return service_id

    @command
    def migrate_to_partner_service(self, iccid: object, partner_service: str) -> None:
        service = values.text(partner_service, "partner service", rule="R-PF3")
        if service == HOLDING_SERVICE:
            raise InvalidInput("the holding service is not a partner service", rule="R-PF3")
        sim = self.uow.sim(iccid)
        sim.migrate_to_partner_service(service)
        self.uow.save(sim)

    @command
    def assign_to_customer(self, iccid: object, company: str, service_id: UUID | str) -> None:
        company = values.text(company, "company", rule="R-PF4")
        key = values.uuid_text(
            service_id, lambda v: UnknownCustomerService(f"no customer service {v}")
        )
        service = self.uow.get(key, CustomerService)
        if service is None:
            raise UnknownCustomerService(f"no customer service {service_id}")
        sim = self.uow.sim(iccid)
        previous = sim.company
        sim.assign_to_customer(company, service.id, service.name)
        follow_company(self.uow, sim, previous)  # the company's rules (R-RU1)
        self.uow.save(sim)
