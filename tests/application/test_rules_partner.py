"""The partner flow of seed 004: R-PF1 (orders in fixed multiples), R-PF2 (customer
services), R-PF3 (the holding service), R-PF4 (assign to a customer, then activate)."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import pytest
from helpers import MSISDN, event_count, iccids, new_ledger, sim_in_status

from simledger import (
    HoldingServiceNotMigrated,
    IllegalTransition,
    InvalidInput,
    OrderQuantityInvalid,
    SimLedger,
    SimStatus,
    UnknownCustomerService,
    UnknownOrder,
)
from simledger.domain.partner import SimOrder
from simledger.domain.types import HOLDING_SERVICE

S = SimStatus


def _service(ledger: SimLedger) -> UUID:
    return ledger.create_customer_service(
        "IoT 10 GB EU", data_mb_per_month=10_000, networks=["3UK", "Orange"], minimum_term_months=12
    )


# --------------------------------------------------------------------------- R-PF1


@pytest.mark.parametrize(
    ("operator", "quantity"),
    [("3UK", 50), ("3UK", 500), ("3Ireland", 100), ("Orange", 50), ("A1", 20), ("A1", 60)],
)
def test_r_pf1_orders_in_the_operators_multiple(
    ledger: SimLedger, operator: str, quantity: int
) -> None:
    order = ledger.order_sims(operator, quantity)
    assert isinstance(order, UUID)
    assert event_count(ledger) == 1


@pytest.mark.parametrize(
    ("operator", "quantity"),
    [
        ("3UK", 20),  # 20 is A1's multiple, not 3UK's
        ("3UK", 49),
        ("Orange", 75),
        ("A1", 50),
        ("A1", 10),
        ("3UK", 0),
        ("3UK", -50),
        ("A1", 20.5),
        ("A1", "25"),
    ],
)
def test_r_pf1_other_quantities_are_refused(
    ledger: SimLedger, operator: str, quantity: Any
) -> None:
    with pytest.raises(OrderQuantityInvalid) as caught:
        ledger.order_sims(operator, quantity)
    assert caught.value.rule == "R-PF1"
    assert event_count(ledger) == 0


@pytest.mark.parametrize("quantity", [True, None, float("inf"), 10**20, "lots"])
def test_r_pf1_a_quantity_outside_the_domain_of_numbers_is_r_in2(
    ledger: SimLedger, quantity: Any
) -> None:
    """One set of numeric types for every argument (R-IN2): 20.0 and "20" are 20 SIMs, a
    bool, NaN or a quantity beyond COUNT_MAX is no number of SIMs."""
    with pytest.raises(InvalidInput) as caught:
        ledger.order_sims("A1", quantity)
    assert caught.value.rule == "R-IN2"
    assert event_count(ledger) == 0
    assert isinstance(ledger.order_sims("A1", 20.0), UUID)
    assert isinstance(ledger.order_sims("A1", "40"), UUID)


def test_r_pf1_an_order_beyond_64_bits_reads_back_exactly_and_verifies(
    persistent_store_env: dict[str, str],
) -> None:
    """JSON numbers past 64 bits must come back as the same int (not a float), and the
    event's chain hash must verify after the store is reopened."""
    ledger, _ = new_ledger(persistent_store_env)
    # order_sims refuses such a quantity now (R-IN2); an event recorded before that bound
    # must still read back: written here by the domain, as it was then
    order = uuid4()
    ledger.unit_of_work.save(SimOrder.place(str(order), "3UK", 10**20))
    ledger.close()
    reopened, _ = new_ledger(persistent_store_env)
    try:
        quantity: object = reopened.repository.get(str(order)).quantity
        assert type(quantity) is int
        assert quantity == 10**20
        report = reopened.verify_store()
        assert report.problems == []
        assert report.chains_checked == 1
    finally:
        reopened.close()


def test_r_pf1_delivery_cannot_exceed_the_order_or_change_operator(ledger: SimLedger) -> None:
    order = ledger.order_sims("A1", 20)
    ledger.receive_sims(iccids(15), operator="A1", sim_type="prepaid", order_id=order)
    before = event_count(ledger)
    refusals: list[tuple[dict[str, Any], type[Exception]]] = [
        ({"iccids": iccids(6, 15), "operator": "A1", "order_id": order}, OrderQuantityInvalid),
        ({"iccids": iccids(2, 15), "operator": "3UK", "order_id": order}, OrderQuantityInvalid),
        ({"iccids": iccids(2, 15), "operator": "A1", "order_id": uuid4()}, UnknownOrder),
        ({"iccids": iccids(2, 15), "operator": "A1", "order_id": "nope"}, UnknownOrder),
    ]
    for kwargs, error in refusals:
        with pytest.raises(error) as caught:
            ledger.receive_sims(sim_type="prepaid", **kwargs)
        assert caught.value.rule == "R-PF1"  # type: ignore[attr-defined]
    assert event_count(ledger) == before
    # the rest of the order still fits
    assert (
        len(ledger.receive_sims(iccids(5, 15), operator="A1", sim_type="prepaid", order_id=order))
        == 5
    )


# --------------------------------------------------------------------------- R-PF2


def test_r_pf2_customer_service_is_a_named_tariff(ledger: SimLedger) -> None:
    service = _service(ledger)
    assert isinstance(service, UUID)
    assert event_count(ledger) == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": " ", "data_mb_per_month": 100},
        {"name": "x", "data_mb_per_month": -1},
        {"name": "x", "data_mb_per_month": 100, "minimum_term_months": -3},
    ],
)
def test_r_pf2_invalid_customer_services_are_refused(
    ledger: SimLedger, kwargs: dict[str, Any]
) -> None:
    name = kwargs.pop("name")
    with pytest.raises(InvalidInput) as caught:
        ledger.create_customer_service(name, **kwargs)
    assert caught.value.rule == "R-PF2"
    assert event_count(ledger) == 0


def test_r_pf2_assigning_an_unknown_service_is_refused(ledger: SimLedger) -> None:
    [key] = ledger.receive_sims(iccids(1), operator="3UK", sim_type="subscription")
    ledger.complete_integration_check(key, ok=True)
    before = event_count(ledger)
    for wrong in (uuid4(), "not-a-uuid"):
        with pytest.raises(UnknownCustomerService) as caught:
            ledger.assign_to_customer(key, "Acme", wrong)
        assert caught.value.rule == "R-PF2"
    assert event_count(ledger) == before


# --------------------------------------------------------------------------- R-PF3, R-PF4


def test_r_pf3_r_pf4_partner_flow(store_env: dict[str, str]) -> None:
    ledger, _ = new_ledger(store_env)
    order = ledger.order_sims("3UK", 50)
    service = _service(ledger)
    delivered = ledger.receive_sims(
        iccids(50), operator="3UK", sim_type="subscription", order_id=order
    )
    key = delivered[0]
    view = ledger.sim(key)
    assert (view.status, view.service, view.order_id) == (S.PENDING, HOLDING_SERVICE, order)
    ledger.complete_integration_check(key, ok=True)
    ledger.assign_line(key, MSISDN)

    # R-PF3: still on the holding service, so no customer yet
    before, state = event_count(ledger), ledger.sim(key)
    with pytest.raises(HoldingServiceNotMigrated) as caught:
        ledger.assign_to_customer(key, "Acme", service)
    assert caught.value.rule == "R-PF3"
    assert key in str(caught.value)
    assert event_count(ledger) == before
    assert ledger.sim(key) == state

    ledger.migrate_to_partner_service(key, "partner-iot-eu")
    assert ledger.sim(key).service == "partner-iot-eu"
    assert ledger.sim(key).status is S.BLANK

    # R-PF4: company and service at once make the SIM ready; data stays barred until activation
    ledger.assign_to_customer(key, "Acme", service)
    view = ledger.sim(key)
    assert (view.company, view.customer_service_id, view.plan) == ("Acme", service, "IoT 10 GB EU")
    assert view.status is S.ACTIVATION_READY
    with pytest.raises(IllegalTransition) as barred:
        ledger.record_usage(key, 1)
    assert barred.value.rule == "R-SIM4"
    ledger.activate(key)
    assert ledger.sim(key).status is S.ACTIVE
    ledger.record_usage(key, 1)  # the bars are removed: data flows
    assert ledger.sim(key).this_month_mb == 1
    # the other SIMs of the delivery are untouched, still on the holding service
    assert ledger.sim(delivered[1]).service == HOLDING_SERVICE


def test_r_pf3_holding_service_is_not_a_partner_service(ledger: SimLedger) -> None:
    order = ledger.order_sims("Orange", 50)
    [key] = ledger.receive_sims(iccids(1), operator="Orange", sim_type="prepaid", order_id=order)
    before = event_count(ledger)
    with pytest.raises(InvalidInput) as caught:
        ledger.migrate_to_partner_service(key, HOLDING_SERVICE)
    assert caught.value.rule == "R-PF3"
    assert event_count(ledger) == before


def test_r_pf3_sims_not_from_an_order_need_no_migration(ledger: SimLedger) -> None:
    [key] = ledger.receive_sims(iccids(1), operator="3UK", sim_type="subscription")
    ledger.complete_integration_check(key, ok=True)
    assert ledger.sim(key).service is None
    ledger.assign_to_customer(key, "Acme", _service(ledger))
    assert ledger.sim(key).company == "Acme"
    assert ledger.sim(key).status is S.BLANK  # no line yet (R-SIM5)


def test_r_pf4_customer_service_does_not_replace_a_package_plan(ledger: SimLedger) -> None:
    [key] = ledger.receive_sims(iccids(1), operator="3UK", sim_type="subscription")
    ledger.complete_integration_check(key, ok=True)
    package = ledger.create_package("EU 1 GB", data_mb=1000, validity_days=30)
    ledger.assign_package(key, package)
    ledger.assign_to_customer(key, "Acme", _service(ledger))
    assert ledger.sim(key).plan == "EU 1 GB"
    assert ledger.sim(key).package_id == package


@pytest.mark.parametrize("status", [S.ACTIVE, S.PENDING, S.INVALID])
def test_r_pf4_only_sims_not_yet_in_service_are_assigned(ledger: SimLedger, status: S) -> None:
    key = sim_in_status(ledger, status)
    service = _service(ledger)
    before = event_count(ledger)
    with pytest.raises(IllegalTransition) as caught:
        ledger.assign_to_customer(key, "Acme", service)
    assert caught.value.command == "assign_to_customer"
    assert event_count(ledger) == before
