"""A SIM's life: receiving, the integration check, line and company, activation, swap, its
descriptive fields and the system's pause (R-SIM1..7)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from uuid import UUID

from simledger.adapters.logs import get_logger
from simledger.application.commands.base import Commands
from simledger.application.commands.company_rules import follow_company
from simledger.application.unit_of_work import UnitOfWork, command
from simledger.domain import values
from simledger.domain.base import LedgerAggregate
from simledger.domain.errors import (
    InvalidInput,
    InvalidValue,
    SimAlreadyExists,
    UnknownOrder,
    shown,
)
from simledger.domain.iccid import normalise_iccid
from simledger.domain.partner import SimOrder
from simledger.domain.sim import Sim
from simledger.domain.types import SimType

log = get_logger("simledger")


class LifecycleCommands(Commands):
    """``operators_without_integration``: their SIMs skip the integration check."""

    def __init__(
        self,
        uow: UnitOfWork,
        *,
        clock: Callable[[], datetime],
        operators_without_integration: frozenset[str],
    ) -> None:
        super().__init__(uow, clock=clock)
        self.operators_without_integration = operators_without_integration

    @command
    def receive_sims(
        self,
        iccids: Iterable[object],
        *,
        operator: str,
        sim_type: SimType | str,
        esim: bool = False,
        order_id: UUID | str | None = None,
        activation_codes: Mapping[str, str] | None = None,
    ) -> list[str]:
        """Add SIMs, each ``pending`` (R-SIM4); against an order, on the holding service."""
        keys = values.iccids(iccids)
        esim = values.flag(esim, "esim")
        if not keys:
            return []
        dupes = sorted({k for k in keys if keys.count(k) > 1}) if len(set(keys)) < len(keys) else []
        if dupes:
            raise InvalidInput(f"ICCIDs listed twice: {', '.join(dupes[:5])}", rule="R-SIM1")
        operator = values.text(operator, "operator", rule="R-SIM2")
        try:
            kind = SimType(sim_type)
        except (ValueError, TypeError):
            raise InvalidInput(
                f"unknown SIM type {shown(sim_type)}; one of {', '.join(t.value for t in SimType)}",
                rule="R-SIM7",
            ) from None
        existing = sorted(self.uow.existing(keys))
        if existing:
            raise SimAlreadyExists(existing)
        to_save: list[LedgerAggregate] = []
        order_key: str | None = None
        if order_id is not None:
            order_key = values.uuid_text(order_id, lambda v: UnknownOrder(f"no SIM order {v}"))
            order = self.uow.get(order_key, SimOrder)
            if order is None:
                raise UnknownOrder(f"no SIM order {order_id}")
            order.deliver(keys, operator)
            to_save.append(order)
        codes = _activation_codes(activation_codes)
        to_save.extend(self.new_sims(keys, operator, kind, esim, order_key, codes))
        self.uow.save(*to_save)
        log.info("sims.received", count=len(keys), operator=operator, order_id=order_key)
        return keys

    def new_sims(
        self,
        keys: Sequence[str],
        operator: str,
        kind: SimType,
        esim: bool,
        order_key: str | None = None,
        codes: Mapping[str, str] | None = None,
    ) -> list[Sim]:
        """Validated, not yet existing ICCIDs as newly received SIMs (unsaved); shared by
        ``receive_sims`` and the CSV import."""
        integrated = operator not in self.operators_without_integration
        sims: list[Sim] = []
        for key in keys:
            code = (codes or {}).get(key) or (
                f"LPA:1$smdp.simledger.local${uuid.uuid4().hex.upper()}"
            )
            sims.append(
                Sim.receive(
                    key,
                    operator=operator,
                    sim_type=kind,
                    esim=esim,
                    activation_code=code if esim else None,
                    integrated=integrated,
                    order_id=order_key,
                )
            )
        return sims

    @command
    def complete_integration_check(
        self, iccid: object, *, ok: bool, reason: str | None = None
    ) -> None:
        passed = values.flag(ok, "ok")
        why = values.optional_text(reason, "a reason")
        sim = self.uow.sim(iccid)
        sim.complete_integration_check(ok=passed, reason=why)
        self.uow.save(sim)

    @command
    def retry_integration_check(self, iccid: object) -> None:
        sim = self.uow.sim(iccid)
        sim.retry_integration_check()
        self.uow.save(sim)

    @command
    def mark_not_available(self, iccid: object, reason: str) -> None:
        sim = self.uow.sim(iccid)
        sim.mark_not_available(values.text(reason, "reason", rule="R-SIM3"))
        self.uow.save(sim)

    @command
    def assign_line(self, iccid: object, msisdn: str) -> None:
        number = values.msisdn(msisdn)
        sim = self.uow.sim(iccid)
        sim.assign_line(number)
        self.uow.save(sim)

    @command
    def assign_to_company(self, iccid: object, company: str) -> None:
        sim = self.uow.sim(iccid)
        previous = sim.company
        sim.assign_to_company(values.text(company, "company", rule="R-SIM5"))
        follow_company(self.uow, sim, previous)  # the company's rules (R-RU1)
        self.uow.save(sim)

    @command
    def mark_store_use(self, iccid: object) -> None:
        sim = self.uow.sim(iccid)
        sim.mark_store_use()
        self.uow.save(sim)

    @command
    def activate(self, iccid: object) -> None:
        sim = self.uow.sim(iccid)
        sim.activate()
        self.uow.save(sim)

    @command
    def start_sim_swap(self, iccid: object) -> None:
        sim = self.uow.sim(iccid)
        sim.start_sim_swap()
        self.uow.save(sim)

    @command
    def complete_sim_swap(self, iccid: object) -> None:
        sim = self.uow.sim(iccid)
        sim.complete_sim_swap()
        self.uow.save(sim)

    @command
    def set_labels(self, iccid: object, labels: Iterable[str]) -> None:
        clean = values.labels(labels)
        sim = self.uow.sim(iccid)
        sim.set_labels(clean)
        self.uow.save(sim)

    @command
    def set_note(self, iccid: object, note: str | None) -> None:
        text = values.note(note)
        sim = self.uow.sim(iccid)
        sim.set_note(text)
        self.uow.save(sim)

    @command
    def set_end_user(self, iccid: object, email: str | None) -> None:
        address = values.end_user(email)
        sim = self.uow.sim(iccid)
        sim.set_end_user(address)
        self.uow.save(sim)

    @command
    def suspend_by_system(self, iccid: object, cause: str) -> None:
        sim = self.uow.sim(iccid)
        sim.suspend_by_system(values.text(cause, "cause", rule="R-SIM6"))
        self.uow.save(sim)

    @command
    def clear_system_pause(self, iccid: object) -> None:
        """An operator's explicit override of a system pause (R-SIM6)."""
        sim = self.uow.sim(iccid)
        sim.clear_system_pause(by="operator")
        self.uow.save(sim)


def _activation_codes(codes: object) -> dict[str, str]:
    """eSIM activation codes by normalised ICCID (each a name-sized text, R-IN1)."""
    if codes is None:
        return {}
    if not isinstance(codes, Mapping):
        raise InvalidValue(
            f"activation codes map ICCIDs to codes, not {shown(codes)}", rule="R-IN4"
        )
    return {
        normalise_iccid(k): values.text(v, "an activation code", rule="R-IN1")
        for k, v in codes.items()
    }
