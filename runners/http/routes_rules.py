"""Rules on SIMs (R-RU1..5), auto-refill (R-PP1), operator contracts (R-PR1..2, R-PP2, an
operator key's), their housekeeping, and the month's PAYGO charges (R-PR3).

A company key reaches its own: a rule on one of its SIMs, on its company (its own name, the
default), or on one of its shared groups; its own charges."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import PlainTextResponse
from pydantic import Field

from simledger.application.charges import ChargeStatement, HousekeepingResult
from simledger.application.ledger import SimLedger
from simledger.runners.http import bodies, tenancy
from simledger.runners.http.auth import Admin, SimsRead, SimsWrite, operator_only

router = APIRouter(tags=["rules, contracts, charges"])

TEXT = bodies.TEXT_MAX


class RuleBody(bodies.Body):
    name: str = Field(max_length=TEXT)
    kind: str = Field(max_length=TEXT)
    limit: Decimal | None = Field(default=None, max_digits=40)
    percent: int | None = Field(default=None, ge=-(2**62), le=2**62)
    of: str | None = Field(default=None, max_length=TEXT)
    iccid: str | None = Field(default=None, max_length=TEXT)
    company: str | None = Field(default=None, max_length=TEXT)
    group_id: str | None = Field(default=None, max_length=TEXT)


class Target(bodies.Body):
    iccid: str | None = Field(default=None, max_length=TEXT)
    company: str | None = Field(default=None, max_length=TEXT)
    group_id: str | None = Field(default=None, max_length=TEXT)


class AutoRefill(bodies.Body):
    amount: Decimal | None = Field(max_digits=40)
    threshold: Decimal = Field(default=Decimal(0), max_digits=40)


class Prices(bodies.Body):
    operator: str = Field(max_length=TEXT)
    default_per_mb: Decimal = Field(max_digits=40)
    per_country: dict[str, Decimal] = Field(default_factory=dict, max_length=1000)
    effective_from: datetime | None = None


class Inactivity(bodies.Body):
    operator: str = Field(max_length=TEXT)
    days: int | None = Field(ge=-(2**62), le=2**62)


class Housekeeping(bodies.Body):
    now: datetime | None = None


class Attached(bodies.Body):
    iccids: list[str]


def _scoped(ledger: SimLedger, own: str | None, target: Target) -> dict[str, str | None]:
    """The rule's target as the caller may name it: a company key's SIM or group must be
    its own (404 otherwise, as for any SIM it cannot see), its company its own name."""
    if own is None:
        return {"iccid": target.iccid, "company": target.company, "group_id": target.group_id}
    if target.iccid is not None:
        return {"iccid": tenancy.sim(ledger, own, target.iccid).iccid}
    if target.group_id is not None:
        return {"group_id": str(tenancy.group(ledger, own, target.group_id).group_id)}
    if target.company not in (None, own):
        raise HTTPException(403, "a company key sets rules on its own company only")
    return {"company": own}


@router.post("/v1/rules", summary="attach_rule (R-RU1)")
def attach_rule(caller: Admin, body: RuleBody) -> Attached:
    ledger, own = caller.service.ledger, caller.company

    def run() -> Attached:
        where = _scoped(
            ledger, own, Target(**body.model_dump(include={"iccid", "company", "group_id"}))
        )
        keys = ledger.attach_rule(
            body.name, kind=body.kind, limit=body.limit, percent=body.percent, of=body.of, **where
        )
        return Attached(iccids=keys)

    return caller.run(run)


@router.delete("/v1/rules", summary="detach_rule (R-RU2)")
def detach_rule(
    caller: Admin,
    name: Annotated[str, Query(max_length=TEXT)],
    iccid: Annotated[str | None, Query(max_length=TEXT)] = None,
    company: Annotated[str | None, Query(max_length=TEXT)] = None,
    group_id: Annotated[str | None, Query(max_length=TEXT)] = None,
) -> Attached:
    ledger, own = caller.service.ledger, caller.company

    def run() -> Attached:
        where = _scoped(ledger, own, Target(iccid=iccid, company=company, group_id=group_id))
        return Attached(iccids=ledger.detach_rule(name, **where))

    return caller.run(run)


@router.put("/v1/sims/{iccid}/auto-refill", summary="set_auto_refill (R-PP1)")
def set_auto_refill(caller: SimsWrite, iccid: str, body: AutoRefill) -> None:
    ledger, own = caller.service.ledger, caller.company

    def run() -> None:
        key = tenancy.sim(ledger, own, iccid).iccid
        ledger.set_auto_refill(key, amount=body.amount, threshold=body.threshold)

    caller.run(run)


@router.put("/v1/contracts/prices", summary="set_prices (R-PR1, R-PR2)")
def set_prices(caller: Admin, body: Prices) -> None:
    operator_only(caller, "operator contracts")
    ledger = caller.service.ledger
    caller.run(
        lambda: ledger.set_prices(
            body.operator,
            default_per_mb=body.default_per_mb,
            per_country=body.per_country,
            effective_from=body.effective_from,
        )
    )


@router.put("/v1/contracts/inactivity", summary="set_inactivity_period (R-PP2)")
def set_inactivity(caller: Admin, body: Inactivity) -> None:
    operator_only(caller, "operator contracts")
    ledger = caller.service.ledger
    caller.run(lambda: ledger.set_inactivity_period(body.operator, body.days))


@router.post("/v1/contracts/run", summary="run_contracts: the housekeeping (R-RU4, R-PP2)")
def run_contracts(caller: Admin, body: Housekeeping) -> HousekeepingResult:
    operator_only(caller, "the contracts' housekeeping")
    ledger = caller.service.ledger
    return caller.run(lambda: ledger.run_contracts(body.now))


def _statement(caller: SimsRead, company: str | None, month: str) -> ChargeStatement:
    own = caller.company
    if own is not None and company not in (None, own):
        raise HTTPException(403, "a company key reads its own charges only")
    name = own or company
    if name is None:
        raise HTTPException(422, "an operator key names the company")
    ledger = caller.service.ledger
    return caller.run(lambda: ledger.month_charges(name, month))


Month = Annotated[str, Query(max_length=TEXT, description="YYYY-MM")]
Company = Annotated[str | None, Query(max_length=TEXT)]


@router.get("/v1/charges", summary="month_charges (R-PR3)")
def month_charges(caller: SimsRead, month: Month, company: Company = None) -> ChargeStatement:
    return _statement(caller, company, month)


@router.get(
    "/v1/charges.csv", summary="export_charges_csv (R-PR3)", response_class=PlainTextResponse
)
def charges_csv(caller: SimsRead, month: Month, company: Company = None) -> PlainTextResponse:
    statement = _statement(caller, company, month)
    return PlainTextResponse(statement.csv(), media_type="text/csv")
