"""Package rules of docs/rules.md: R-PK1 (created once, then assigned), R-PK2 (the SIM's own
copy: usage, depletion, auto-renew, expiry), R-PK3 (one active package per SIM), and the
prepaid top-up that refills a copy (R-SIM7)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from helpers import (
    event_count,
    make_package,
    new_ledger,
    ready_sim,
    received_sim,
)

from simledger import (
    AlreadyInSharedGroup,
    InvalidInput,
    PackageStillActive,
    SimLedger,
    SimStatus,
    SimType,
    SuspendReason,
    UnknownPackage,
)


def package_events(ledger: SimLedger, key: str) -> list[tuple[str, dict[str, Any]]]:
    """The events of the SIM's package copies, oldest first: (event name, data)."""
    return [(h.event, h.data) for h in ledger.history(key) if h.aggregate == "Package"]


# --------------------------------------------------------------------------- R-PK1


def test_r_pk1_package_is_created_once_and_each_sim_gets_its_own_copy(ledger: SimLedger) -> None:
    package = ledger.create_package(
        "EU 500 MB", data_mb=500, validity_days=30, auto_renew=False, price=Decimal("4.99")
    )
    assert isinstance(package, uuid.UUID)
    first, second = (
        ready_sim(ledger, 1, package_id=package),
        ready_sim(ledger, 2, package_id=package),
    )
    a, b = ledger.sim(first), ledger.sim(second)
    assert a.package_id == b.package_id == package
    assert a.copy_id is not None and b.copy_id is not None and a.copy_id != b.copy_id
    assert a.plan == b.plan == "EU 500 MB"
    assigned = dict(package_events(ledger, first))["Assigned"]
    assert assigned["source_id"] == str(package)
    assert (assigned["data_mb"], assigned["validity_days"], assigned["price"]) == (
        500,
        30,
        Decimal("4.99"),
    )
    # usage of copies never changes the catalogue package: a later SIM gets it whole
    ledger.record_usage(first, 200)
    third = ready_sim(ledger, 3, package_id=package)
    assert ledger.sim(third).data_left_mb == 500


@pytest.mark.parametrize(
    ("kwargs", "rule"),
    [
        pytest.param({"name": "  "}, "R-PK1", id="blank-name"),
        pytest.param({"data_mb": 0}, "R-PK1", id="zero-mb"),
        pytest.param({"data_mb": -5}, "R-PK1", id="negative-mb"),
        pytest.param({"validity_days": 0}, "R-PK1", id="zero-days"),
        pytest.param({"validity_days": 1.5}, "R-PK1", id="fractional-days"),
        pytest.param({"price": -1}, "R-PK1", id="negative-price"),
        # outside the domain of values: no number at all, or out of range (R-IN2)
        pytest.param({"data_mb": "lots"}, "R-IN2", id="mb-not-a-number"),
        pytest.param({"data_mb": float("nan")}, "R-IN2", id="mb-nan"),
        pytest.param({"validity_days": True}, "R-IN2", id="bool-days"),
        pytest.param({"validity_days": 10**20}, "R-IN2", id="days-beyond-36500"),
        pytest.param({"price": "free"}, "R-IN2", id="price-not-a-number"),
        pytest.param({"name": "1\x00GB"}, "R-IN1", id="nul-in-name"),
        pytest.param({"auto_renew": "no"}, "R-IN4", id="auto-renew-as-text"),
    ],
)
def test_r_pk1_invalid_package_definitions_are_refused(
    ledger: SimLedger, kwargs: dict[str, Any], rule: str
) -> None:
    args: dict[str, Any] = {"name": "1 GB", "data_mb": 1000, "validity_days": 30, **kwargs}
    name = args.pop("name")
    with pytest.raises(InvalidInput) as caught:
        ledger.create_package(name, **args)
    assert caught.value.rule == rule
    assert event_count(ledger) == 0


def test_r_pk1_numbers_are_one_set_of_types(ledger: SimLedger) -> None:
    """Every numeric argument takes the same types (R-IN2): "10" days as 10 MB do."""
    package = ledger.create_package("1 GB", data_mb="10", validity_days="10", price="1.50")
    assert isinstance(package, uuid.UUID)
    with pytest.raises(InvalidInput, match="price cannot be negative") as caught:
        ledger.create_package("1 GB", data_mb=10, validity_days=10, price=-1)
    assert caught.value.rule == "R-PK1"


def test_r_pk1_only_catalogue_packages_are_assigned(ledger: SimLedger) -> None:
    key = ready_sim(ledger, data_mb=100)
    ledger.record_usage(key, 100)  # depleted: a new package may be assigned (R-PK3)
    copy_id = ledger.sim(key).copy_id
    before = event_count(ledger)
    for wrong in (uuid.uuid4(), "not-a-uuid", copy_id):
        with pytest.raises(UnknownPackage) as caught:
            ledger.assign_package(key, wrong)  # type: ignore[arg-type]
        assert caught.value.rule == "R-PK1"
    assert event_count(ledger) == before


# --------------------------------------------------------------------------- R-PK2


def test_r_pk2_usage_draws_only_the_sims_own_copy(ledger: SimLedger) -> None:
    package = make_package(ledger, data_mb=1000)
    a, b = ready_sim(ledger, 1, package_id=package), ready_sim(ledger, 2, package_id=package)
    ledger.record_usage(a, Decimal("300.25"))
    ledger.record_usage(a, 100)
    assert ledger.sim(a).data_left_mb == Decimal("599.75")
    assert ledger.sim(b).data_left_mb == 1000
    drawn = [d["mb"] for e, d in package_events(ledger, a) if e == "UsageDrawn"]
    assert drawn == [Decimal("300.25"), 100]
    assert [e for e, _ in package_events(ledger, b)] == ["Assigned"]


def test_r_pk2_copy_depleted_at_zero_and_never_below(ledger: SimLedger) -> None:
    key = ready_sim(ledger, data_mb=100)
    ledger.record_usage(key, 60)
    assert "Depleted" not in [e for e, _ in package_events(ledger, key)]
    ledger.record_usage(key, 70)  # 40 left: draws 40, not 70
    view = ledger.sim(key)
    assert view.data_left_mb == 0
    assert (view.status, view.suspended_reason, view.system_cause) == (
        SimStatus.SUSPENDED,
        SuspendReason.SYSTEM,
        "depleted",
    )
    events = package_events(ledger, key)
    assert [e for e, _ in events] == ["Assigned", "UsageDrawn", "UsageDrawn", "Depleted"]
    assert events[2][1]["mb"] == 40
    assert events[3][1]["cause"] == "data"
    # late usage of the suspended SIM is recorded but draws nothing more
    ledger.record_usage(key, 10)
    assert ledger.sim(key).data_left_mb == 0
    assert len(package_events(ledger, key)) == 4


def test_r_pk2_exactly_used_up_is_depleted(ledger: SimLedger) -> None:
    key = ready_sim(ledger, data_mb=100)
    ledger.record_usage(key, 100)
    assert [e for e, _ in package_events(ledger, key)][-1] == "Depleted"
    assert ledger.sim(key).status is SimStatus.SUSPENDED


def test_r_pk2_auto_renew_starts_a_new_period_instead() -> None:
    ledger, clock = new_ledger()
    key = ready_sim(ledger, data_mb=100, validity_days=30, auto_renew=True)
    clock.advance(timedelta(days=3))
    ledger.record_usage(key, 100)
    view = ledger.sim(key)
    assert view.status is SimStatus.ACTIVE
    assert view.data_left_mb == 100
    assert view.expires_at == clock() + timedelta(days=30)
    names = [e for e, _ in package_events(ledger, key)]
    assert names == ["Assigned", "UsageDrawn", "Renewed"]
    ledger.record_usage(key, 40)  # the new period is drawn
    assert ledger.sim(key).data_left_mb == 60


def test_r_pk2_expire_packages_depletes_and_suspends(store_env: dict[str, str]) -> None:
    ledger, clock = new_ledger(store_env)
    active = ready_sim(ledger, 1, validity_days=10)
    ready = ready_sim(ledger, 2, validity_days=10, activate=False)
    later = ready_sim(ledger, 3, validity_days=20)
    renewing = ready_sim(ledger, 4, validity_days=10, auto_renew=True)
    ledger.record_usage(renewing, 400)

    assert ledger.expire_packages(clock.advance(timedelta(days=9, hours=23))).depleted == []
    assert ledger.sim(active).status is SimStatus.ACTIVE

    result = ledger.expire_packages(clock.advance(timedelta(hours=1)))
    copy = {k: str(ledger.sim(k).copy_id) for k in (active, ready, later, renewing)}
    assert sorted(result.depleted) == sorted([copy[active], copy[ready]])
    assert result.renewed == [copy[renewing]]

    view = ledger.sim(active)
    assert (view.status, view.suspended_reason, view.system_cause) == (
        SimStatus.SUSPENDED,
        SuspendReason.SYSTEM,
        "expired",
    )
    assert package_events(ledger, active)[-1] == ("Depleted", {"cause": "expired"})
    assert ledger.sim(ready).status is SimStatus.ACTIVATION_READY  # not active: not suspended
    assert ledger.sim(later).status is SimStatus.ACTIVE
    renewed = ledger.sim(renewing)
    assert renewed.status is SimStatus.ACTIVE
    assert renewed.data_left_mb == 1000
    assert renewed.expires_at == clock() + timedelta(days=10)

    # nothing left to do: a second run records nothing
    before = event_count(ledger)
    again = ledger.expire_packages(clock())
    assert (again.depleted, again.renewed) == ([], [])
    assert event_count(ledger) == before


def test_r_pk2_naive_expiry_time_is_refused(ledger: SimLedger) -> None:
    ready_sim(ledger)
    with pytest.raises(InvalidInput):
        ledger.expire_packages(ledger.clock().replace(tzinfo=None))


# --------------------------------------------------------------------------- R-PK3


def test_r_pk3_second_package_while_one_is_active_is_refused(ledger: SimLedger) -> None:
    key = ready_sim(ledger, data_mb=100)
    ledger.record_usage(key, 99)  # one MB left: still active
    other = make_package(ledger, name="other")
    before, state = event_count(ledger), ledger.sim(key)
    with pytest.raises(PackageStillActive) as caught:
        ledger.assign_package(key, other)
    assert caught.value.rule == "R-PK3"
    assert key in str(caught.value)
    assert event_count(ledger) == before
    assert ledger.sim(key) == state


def test_r_pk3_new_package_allowed_once_depleted_by_data(ledger: SimLedger) -> None:
    key = ready_sim(ledger, data_mb=100)
    first_copy = ledger.sim(key).copy_id
    ledger.record_usage(key, 100)
    other = make_package(ledger, data_mb=2000, name="2 GB")
    ledger.assign_package(key, other)
    view = ledger.sim(key)
    assert view.copy_id != first_copy
    assert (view.package_id, view.plan, view.data_left_mb) == (other, "2 GB", Decimal(2000))
    assert view.cause_cleared  # the new package cleared the system pause (R-SIM6)
    with pytest.raises(PackageStillActive):
        ledger.assign_package(key, other)


def test_r_pk3_new_package_allowed_once_validity_ended() -> None:
    ledger, clock = new_ledger()
    key = ready_sim(ledger, validity_days=7)
    other = make_package(ledger, name="next")
    with pytest.raises(PackageStillActive):
        ledger.assign_package(key, other)
    clock.advance(timedelta(days=7))  # ended, even before expire_packages ran
    ledger.assign_package(key, other)
    assert ledger.sim(key).plan == "next"


def test_r_pk3_a_shared_group_member_takes_no_own_package(ledger: SimLedger) -> None:
    key = received_sim(ledger, checked=True)
    ledger.create_shared_group("pool", [key], make_package(ledger, name="shared"))
    before = event_count(ledger)
    with pytest.raises(AlreadyInSharedGroup) as caught:
        ledger.assign_package(key, make_package(ledger, name="own"))
    assert caught.value.rule == "R-PK3"
    assert event_count(ledger) == before + 1  # only the second catalogue package


# --------------------------------------------------------------------------- top-up (R-SIM7)


def test_top_up_adds_to_the_prepaid_copy(ledger: SimLedger) -> None:
    key = ready_sim(ledger, sim_type=SimType.PREPAID, data_mb=100)
    ledger.record_usage(key, 30)
    ledger.top_up(key, Decimal("25.5"))
    assert ledger.sim(key).data_left_mb == Decimal("95.5")
    assert ledger.sim(key).status is SimStatus.ACTIVE
    assert package_events(ledger, key)[-1] == ("ToppedUp", {"mb": Decimal("25.5")})


def test_top_up_does_not_revive_an_expired_copy() -> None:
    """A top-up adds data; it does not extend validity. An expired copy stays depleted and
    the SIM stays paused by the system until a new package (R-PK2, R-SIM6)."""
    ledger, clock = new_ledger()
    key = ready_sim(ledger, sim_type=SimType.PREPAID, validity_days=5)
    ledger.expire_packages(clock.advance(timedelta(days=5)))
    ledger.top_up(key, 100)
    view = ledger.sim(key)
    assert (view.status, view.system_cause, view.cause_cleared) == (
        SimStatus.SUSPENDED,
        "expired",
        False,
    )
    assert ledger.resume([key]).rejected[key].startswith("R-SIM6")


@pytest.mark.parametrize("amount", [0, -10, "-1"])
def test_top_up_amount_must_be_positive(ledger: SimLedger, amount: Any) -> None:
    key = ready_sim(ledger, sim_type=SimType.PREPAID)
    before = event_count(ledger)
    with pytest.raises(InvalidInput) as caught:
        ledger.top_up(key, amount)
    assert caught.value.rule == "R-SIM7"
    assert event_count(ledger) == before
