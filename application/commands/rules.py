"""Rules on SIMs (R-RU1..5), operator contracts (R-PR1..3, R-PP2), auto-refill (R-PP1), the
contracts' housekeeping and the month's PAYGO charges.

A rule attached to a company or a shared group is attached to each of its SIMs, in one save
(domain/sim_rules.py says why: the usage paths then need nothing but the SIM). A company's
rules are also kept (domain/company_rules.py): a SIM that joins the company later takes
them, one that leaves drops them (commands/company_rules.py). A group's are not: a SIM
that joins the group later does not inherit them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from eventsourcing.utils import get_topic

from simledger.adapters.logs import get_logger
from simledger.application.charges import ChargeLine, ChargeStatement, HousekeepingResult
from simledger.application.commands.base import Commands
from simledger.application.csv_transfer import SimList
from simledger.application.unit_of_work import UnitOfWork, command
from simledger.domain import sim_rules, values
from simledger.domain.company_rules import CompanyRules, company_rules_id
from simledger.domain.contract import OperatorContract, contract_id
from simledger.domain.errors import InvalidInput
from simledger.domain.sim import Sim

log = get_logger("simledger")

PAGE = 1000
COUNTRY_MAX = 100
"""Countries one price version names, at most."""


class RuleCommands(Commands):
    """The rule, contract and refill commands; ``listing`` finds a company's SIMs."""

    def __init__(self, uow: UnitOfWork, listing: SimList, *, clock: Callable[[], datetime]) -> None:
        super().__init__(uow, clock=clock)
        self.listing = listing

    # ---- rules (R-RU1..5) -------------------------------------------------------------------
    @command
    def attach_rule(
        self,
        name: str,
        *,
        kind: str,
        limit: values.Number | None = None,
        percent: values.Number | None = None,
        of: str | None = None,
        iccid: object = None,
        company: str | None = None,
        group_id: object = None,
    ) -> list[str]:
        """Attach the rule ``name`` to one SIM, or to every SIM of ``company`` or of shared
        group ``group_id`` (exactly one of them); a rule of that name already there takes
        the new values. Returns the ICCIDs it was attached to."""
        key = values.text(name, "a rule's name", rule="R-RU1")
        what = values.text(kind, "a rule's kind", rule="R-RU1")
        amount = None if limit is None else values.number(limit, "a rule's limit")
        share = (
            None
            if percent is None
            else values.whole(percent, "a percentage", rule="R-RU1", low=1, high=100)
        )
        rule = sim_rules.check_rule(what, amount, share, of)
        sims, scope = self._targets(iccid, company, group_id)
        for sim in sims:
            sim_rules.attach(sim, key, rule, scope)
        shared = self._company_rules(scope)
        if shared is not None:  # for the SIMs that join the company later
            shared.set(key, rule)
        self.uow.save(*sims, *([shared] if shared is not None else []))
        return [sim.id for sim in sims]

    @command
    def detach_rule(
        self,
        name: str,
        *,
        iccid: object = None,
        company: str | None = None,
        group_id: object = None,
    ) -> list[str]:
        """Detach the rule ``name`` from one SIM (R-RU2: it must have it), or from every SIM
        of ``company`` or of shared group ``group_id`` that has it. A SIM the rule paused
        works again unless its user paused it too. Returns the ICCIDs it was detached from."""
        key = values.text(name, "a rule's name", rule="R-RU1")
        sims, _ = self._targets(iccid, company, group_id)
        if iccid is None:
            sims = [sim for sim in sims if key in sim.rules]
        for sim in sims:
            sim_rules.detach(sim, key)
        shared = self._company_rules(f"company:{company}" if company is not None else "")
        if shared is not None:
            shared.remove(key)
        self.uow.save(*sims, *([shared] if shared is not None else []))
        return [sim.id for sim in sims]

    def _company_rules(self, scope: str) -> CompanyRules | None:
        """The company's shared rules, for a scope ``company:NAME`` (else None)."""
        if not scope.startswith("company:"):
            return None
        name = scope.removeprefix("company:")
        found = self.uow.get(company_rules_id(name), CompanyRules)
        return found if found is not None else CompanyRules.open(name)

    def _targets(
        self, iccid: object, company: str | None, group_id: object
    ) -> tuple[list[Sim], str]:
        given = [x for x in (iccid, company, group_id) if x is not None]
        if len(given) != 1:
            raise InvalidInput(
                "a rule is attached to one of: a SIM (iccid), a company, a shared group",
                rule="R-RU1",
            )
        if iccid is not None:
            return [self.uow.sim(iccid)], "sim"
        if company is not None:
            name = values.text(company, "a company", rule="R-RU1")
            keys = list(self._iccids(company=name))
            return list(self.uow.sims(keys).values()), f"company:{name}"
        group = self.uow.group(group_id)
        return list(self.uow.sims(list(group.members)).values()), f"group:{group.id}"

    def _iccids(self, **filters: Any) -> Iterator[str]:
        """The ICCIDs the SIM list view selects with ``filters``, page by page."""
        cursor: str | None = None
        while True:
            page = self.listing.sims(limit=PAGE, cursor=cursor, **filters)
            yield from (item.iccid for item in page.items)
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    # ---- auto-refill (R-PP1) ----------------------------------------------------------------
    @command
    def set_auto_refill(
        self, iccid: object, *, amount: values.Number | None, threshold: values.Number = 0
    ) -> None:
        """A prepaid SIM's auto-refill: ``amount`` MB added when a usage record leaves its
        balance below ``threshold`` MB (``amount=None``: switched off)."""
        mb = None if amount is None else values.mb(amount, rule="R-PP1")
        below = None if mb is None else values.mb(threshold, rule="R-PP1", allow_zero=True)
        sim = self.uow.sim(iccid)
        sim_rules.set_auto_refill(sim, mb, below)
        self.uow.save(sim)

    # ---- operator contracts (R-PR1..2, R-PP2) -------------------------------------------------
    @command
    def set_prices(
        self,
        operator: str,
        *,
        default_per_mb: values.Number,
        per_country: Mapping[str, values.Number] | None = None,
        effective_from: datetime | None = None,
    ) -> None:
        """A new version of ``operator``'s PAYGO price list (R-PR1), in force from
        ``effective_from`` (default: now), after the latest version (R-PR2)."""
        name = values.text(operator, "an operator", rule="R-PR1")
        default = _price(default_per_mb)
        countries = {} if per_country is None else per_country
        if not isinstance(countries, Mapping) or len(countries) > COUNTRY_MAX:
            raise InvalidInput(
                f"prices per country are a mapping of at most {COUNTRY_MAX} countries",
                rule="R-PR1",
            )
        prices: dict[str, Decimal] = {}
        for country, price in countries.items():
            code = values.text(country, "a country", rule="R-PR1").upper()
            if len(code) != 2 or not code.isalpha() or not code.isascii():
                raise InvalidInput(f"a country is a 2-letter code: {country!r}", rule="R-PR1")
            prices[code] = _price(price)
        starts = values.event_time(effective_from, self.clock())
        contract = self._contract(name)
        contract.set_prices(starts, default, prices)
        self.uow.save(contract)

    @command
    def set_inactivity_period(self, operator: str, days: values.Number | None) -> None:
        """``operator``'s contract deactivates a prepaid SIM with no refill for ``days``
        (R-PP2; None: never)."""
        name = values.text(operator, "an operator", rule="R-PP2")
        period = (
            None if days is None else values.whole(days, "days", rule="R-PP2", low=1, high=36600)
        )
        contract = self._contract(name)
        contract.set_inactivity_period(period)
        self.uow.save(contract)

    def _contract(self, operator: str) -> OperatorContract:
        found = self.uow.get(contract_id(operator), OperatorContract)
        return found if found is not None else OperatorContract.open(operator)

    # ---- housekeeping --------------------------------------------------------------------------
    def run_contracts(self, now: datetime | None = None) -> HousekeepingResult:
        """As ``expire_packages``, run from time to time with a ``now``: lift the rule pauses
        of months before ``now``'s (a cap is monthly, R-RU4), and deactivate the prepaid SIMs
        with no refill for their operator contract's inactivity period (R-PP2)."""
        when = values.event_time(now, self.clock())
        month = when.strftime("%Y-%m")
        lifted: list[str] = []
        for keys in _chunks(self._iccids(status="suspended")):
            lifted += self._lift_old(keys, month)
        deactivated: list[str] = []
        for contract in self._contracts():
            if contract.inactivity_days is None:
                continue
            found = self._iccids(
                operator=contract.operator, sim_type="prepaid", status=["active", "suspended"]
            )
            for keys in _chunks(found):
                deactivated += self._deactivate(keys, when, contract.inactivity_days)
        log.info("contracts.done", lifted=len(lifted), deactivated=len(deactivated))
        return HousekeepingResult(lifted=lifted, deactivated=deactivated)

    @command
    def _lift_old(self, keys: list[str], month: str) -> list[str]:
        sims = [
            sim
            for sim in self.uow.sims(keys).values()
            if sim_rules.rule_paused(sim)
            and sim.rule_pause is not None
            and sim.rule_pause["month"] < month
        ]
        for sim in sims:
            sim_rules.lift(sim, "a new month")
        self.uow.save(*sims)
        return [sim.id for sim in sims]

    @command
    def _deactivate(self, keys: list[str], now: datetime, days: int) -> list[str]:
        sims = [
            sim
            for sim in self.uow.sims(keys).values()
            if sim_rules.deactivate_if_inactive(sim, now, days)
        ]
        self.uow.save(*sims)
        return [sim.id for sim in sims]

    def _contracts(self) -> list[OperatorContract]:
        ids = {str(note.originator_id) for note in self._notes(OperatorContract.Created)}
        found = [self.uow.get(key, OperatorContract) for key in sorted(ids)]
        return [c for c in found if c is not None]

    def _notes(self, event_class: type) -> Iterator[Any]:
        """Every stored event of ``event_class``, in log order (the notifications)."""
        recorder = self.uow.app.recorder
        start = 1
        while True:
            batch = recorder.select_notifications(
                start=start, limit=PAGE, topics=[get_topic(event_class)]
            )
            if not batch:
                return
            yield from batch
            start = batch[-1].id + 1

    # ---- the month's charges (R-PR3) -----------------------------------------------------------
    def month_charges(self, company: str, month: str) -> ChargeStatement:
        """``company``'s PAYGO charges of ``month`` (``YYYY-MM``): every priced usage record
        of its SIMs whose ``at`` falls in that month, in log order, and their total."""
        name = values.text(company, "a company", rule="R-PR3")
        period = values.text(month, "a month", rule="R-PR3")
        try:
            datetime.strptime(period, "%Y-%m")
        except ValueError:
            raise InvalidInput(f"a month is YYYY-MM: {period!r}", rule="R-PR3") from None
        mapper = self.uow.app.mapper
        lines: list[ChargeLine] = []
        for note in self._notes(sim_rules.UsageCharged):
            event = cast(sim_rules.UsageCharged, mapper.to_domain_event(note))
            if event.company != name or event.at.strftime("%Y-%m") != period:
                continue
            lines.append(
                ChargeLine(
                    iccid=event.originator_id,
                    at=event.at,
                    country=event.country,
                    mb=event.mb,
                    price_per_mb=event.price_per_mb,
                    amount=event.amount,
                )
            )
        total = sum((line.amount for line in lines), Decimal(0))
        return ChargeStatement(company=name, month=period, lines=lines, total=total)

    def export_charges_csv(self, company: str, month: str) -> str:
        """:meth:`month_charges` as CSV: a line per priced record, then ``total``."""
        return self.month_charges(company, month).csv()


def _price(value: object) -> Decimal:
    """A price per MB (R-PR1): a number not below zero."""
    price = values.number(value, "a price per MB")
    if price < 0:
        raise InvalidInput(f"a price per MB cannot be negative: {value!r}", rule="R-PR1")
    return price


def _chunks(keys: Iterator[str], size: int = PAGE) -> Iterator[list[str]]:
    chunk: list[str] = []
    for key in keys:
        chunk.append(key)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
