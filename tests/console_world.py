"""The store the web console's tests look at: two companies, their SIMs, a shared group and
a bulk operation each, and keys; made in-process (no HTTP) before a console serves it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx

from simledger.application.keys import SCOPES
from simledger.application.ledger import SimLedger
from simledger.domain.iccid import make_iccid
from simledger.runners.http.tenancy import idempotency_scope

A, B = "acme-a", "acme-b"
MSISDN = "4915112345678"


def console_iccids(n: int, start: int) -> list[str]:
    """ICCIDs of the console's tests (their own range: ``89 35 …``)."""
    return [make_iccid(f"8935{number:015d}") for number in range(start, start + n)]


@dataclass
class ConsoleWorld:
    env: dict[str, str]
    operator_key: str
    a_key: str
    b_key: str
    a_active: list[str]
    a_blank: list[str]
    a_esim: str
    package: str
    b_sims: list[str]
    b_group: str
    b_operation: str
    b_private: set[str] = field(default_factory=set)
    """Every identifier of company B that company A must never see."""


def _activate(ledger: SimLedger, iccids: list[str], company: str, package: str) -> None:
    for iccid in iccids:
        ledger.complete_integration_check(iccid, ok=True)
        ledger.assign_line(iccid, MSISDN)
        ledger.assign_to_company(iccid, company)
        ledger.assign_package(iccid, package)
        ledger.activate(iccid)


def _lined(ledger: SimLedger, iccids: list[str], company: str) -> None:
    for iccid in iccids:
        ledger.complete_integration_check(iccid, ok=True)
        ledger.assign_line(iccid, MSISDN)
        ledger.assign_to_company(iccid, company)


def seed(env: Mapping[str, str], a_active: int = 14) -> ConsoleWorld:
    ledger = SimLedger(env=dict(env))
    try:
        staff, operator_key = ledger.keys.create(name="staff", scopes=SCOPES, operator=True)
        _, a_key = ledger.keys.create(name="alice at A", scopes=SCOPES, company=A)
        _, b_key = ledger.keys.create(name="bob at B", scopes=SCOPES, company=B)
        with ledger.acting_as(staff.actor()):  # the histories say who: the platform's staff
            world = _fill(ledger, a_active)
        world.env, world.operator_key, world.a_key, world.b_key = (
            dict(env),
            operator_key,
            a_key,
            b_key,
        )
        world.b_private = {*world.b_sims, world.b_group, world.b_operation, B, "b-pool"}
        world.b_private.add("bob at B")
        return world
    finally:
        ledger.close()


def _fill(ledger: SimLedger, a_active: int) -> ConsoleWorld:
    package = str(ledger.create_package("1 GB / 30 days", data_mb=1000, validity_days=30))
    esim, *active = console_iccids(a_active, 0)
    ledger.receive_sims(
        [esim],
        operator="Vodafone UK",
        sim_type="prepaid",
        esim=True,
        activation_codes={esim: "LPA:1$smdp.example.com$ACME-0001"},
    )
    ledger.receive_sims(active, operator="Telefonica", sim_type="subscription")
    _activate(ledger, [esim, *active], A, package)
    blank = console_iccids(4, 100)
    ledger.receive_sims(blank, operator="Orange France", sim_type="paygo")
    _lined(ledger, blank, A)
    b_active, b_one, b_two = console_iccids(3, 200)
    ledger.receive_sims([b_active, b_one, b_two], operator="Telefonica", sim_type="prepaid")
    _activate(ledger, [b_active], B, package)
    _lined(ledger, [b_one, b_two], B)
    b_group = str(ledger.create_shared_group("b-pool", [b_one, b_two], package))
    b_operation = str(
        ledger.pause([b_active], idempotency_key=idempotency_scope(B, "b-1")).operation_id
    )
    return ConsoleWorld(
        env={},
        operator_key="",
        a_key="",
        b_key="",
        a_active=[esim, *active],
        a_blank=blank,
        a_esim=esim,
        package=package,
        b_sims=[b_active, b_one, b_two],
        b_group=b_group,
        b_operation=b_operation,
    )


CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def sign_in(client: httpx.Client, key: str) -> str:
    """Signs ``client`` in with ``key`` through the sign-in form; the session's CSRF token."""
    form = client.get("/ui/sign-in")
    token = CSRF.search(form.text)
    assert token, form.text
    answer = client.post(
        "/ui/sign-in", data={"key": key, "csrf": token.group(1), "next": "/ui/sims"}
    )
    assert answer.status_code == 200 and "/ui/sims" in str(answer.url), answer.text[:500]
    found = CSRF.search(answer.text)
    assert found
    return found.group(1)
