"""The SIM rules of docs/rules.md: R-SIM1 .. R-SIM7 (identity, attributes, statuses, the
lifecycle table, activation readiness, suspension reasons, SIM types)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from helpers import (
    COMPANY,
    MSISDN,
    OPERATOR,
    event_count,
    iccid,
    iccids,
    make_package,
    new_ledger,
    ready_sim,
    received_sim,
    sim_in_status,
    user_paused_sim,
)

from simledger import (
    IllegalTransition,
    InvalidIccid,
    InvalidInput,
    NotPrepaid,
    SimLedger,
    SimStatus,
    SimType,
    SuspendReason,
    UnknownSim,
)
from simledger.domain.iccid import make_iccid
from simledger.domain.lifecycle import TRANSITIONS, Cmd

S = SimStatus


# --------------------------------------------------------------------------- R-SIM1


def test_r_sim1_iccid_is_normalised_and_used_as_identity(ledger: SimLedger) -> None:
    key = iccid(7)
    spaced = f"{key[:4]} {key[4:8]}-{key[8:12]} {key[12:]}"
    assert ledger.receive_sims([spaced], operator=OPERATOR, sim_type="prepaid") == [key]
    assert ledger.sim(key).iccid == key
    assert ledger.sim(spaced).iccid == key


@pytest.mark.parametrize("body_len", [17, 21])
def test_r_sim1_accepts_18_to_22_digits(ledger: SimLedger, body_len: int) -> None:
    key = make_iccid("89" + "3" * (body_len - 2))
    assert ledger.receive_sims([key], operator=OPERATOR, sim_type="prepaid") == [key]


def _with_wrong_check_digit(key: str) -> str:
    return key[:-1] + str((int(key[-1]) + 1) % 10)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param(_with_wrong_check_digit(iccid(1)), "Luhn", id="bad-luhn"),
        pytest.param(make_iccid("89" + "1" * 14), "17 digits", id="too-short"),
        pytest.param(make_iccid("89" + "1" * 20), "23 digits", id="too-long"),
        pytest.param(make_iccid("88" + "1" * 17), "starts with 89", id="not-89"),
        pytest.param("8944A00000000000001", "digits", id="letter"),
        pytest.param("", "digits", id="empty"),
    ],
)
def test_r_sim1_rejects_invalid_iccid_naming_it_and_the_reason(
    ledger: SimLedger, raw: str, reason: str
) -> None:
    with pytest.raises(InvalidIccid) as caught:
        ledger.receive_sims([raw], operator=OPERATOR, sim_type="prepaid")
    err = caught.value
    assert err.rule == "R-SIM1"
    assert err.iccid == raw
    assert reason in err.reason
    assert repr(raw) in str(err) and reason in str(err)
    assert event_count(ledger) == 0


def test_r_sim1_unknown_sim_is_refused(ledger: SimLedger) -> None:
    with pytest.raises(UnknownSim) as caught:
        ledger.sim(iccid(3))
    assert caught.value.rule == "R-SIM1"
    assert iccid(3) in str(caught.value)


def test_r_sim1_esim_has_an_activation_code(ledger: SimLedger) -> None:
    [plain] = ledger.receive_sims(iccids(1, 0), operator=OPERATOR, sim_type="prepaid")
    esims = ledger.receive_sims(iccids(2, 10), operator=OPERATOR, sim_type="prepaid", esim=True)
    given = ledger.receive_sims(
        iccids(1, 20),
        operator=OPERATOR,
        sim_type="prepaid",
        esim=True,
        activation_codes={iccid(20): "LPA:1$smdp.example$ABC"},
    )
    assert not ledger.sim(plain).esim
    assert ledger.sim(plain).activation_code is None
    codes = [ledger.sim(k).activation_code for k in esims]
    assert all(ledger.sim(k).esim for k in esims)
    assert all(code for code in codes)
    assert len(set(codes)) == 2  # one code per eSIM
    assert ledger.sim(given[0]).activation_code == "LPA:1$smdp.example$ABC"


# --------------------------------------------------------------------------- R-SIM2


def test_r_sim2_a_label_cannot_hold_the_csv_label_separator(ledger: SimLedger) -> None:
    key = ready_sim(ledger, 2)
    before = event_count(ledger)
    with pytest.raises(InvalidInput) as caught:
        ledger.set_labels(key, ["fleet", "north;south"])
    assert caught.value.rule == "R-SIM2"
    assert event_count(ledger) == before
    assert ledger.sim(key).labels == []


def test_r_sim2_sim_list_attributes(ledger: SimLedger) -> None:
    package = make_package(ledger, data_mb=1000, validity_days=30, name="EU 1 GB")
    key = ready_sim(ledger, 1, sim_type=SimType.PAYGO, package_id=package)
    ledger.set_labels(key, ["fleet", "van-12", "fleet"])
    ledger.set_note(key, "spare unit")
    ledger.set_end_user(key, " driver@example.com ")
    ledger.record_usage(key, Decimal("120.5"))
    view = ledger.sim(key)
    assert (view.iccid, view.esim, view.status) == (key, False, S.ACTIVE)
    assert (view.operator, view.company, view.sim_type) == (OPERATOR, COMPANY, SimType.PAYGO)
    assert view.plan == "EU 1 GB"  # generated from the package
    assert view.package_id == package
    assert view.end_user == "driver@example.com"
    assert view.labels == ["fleet", "van-12"]
    assert view.note == "spare unit"
    assert view.data_left_mb == Decimal("879.5")
    assert view.days_left == 30
    assert view.this_month_mb == Decimal("120.5")
    assert view.group_id is None
    assert view.msisdn == MSISDN


@pytest.mark.parametrize("email", ["not-an-email", "a@b", "two words@example.com"])
def test_r_sim2_end_user_is_an_email_address(ledger: SimLedger, email: str) -> None:
    key = received_sim(ledger)
    before = event_count(ledger)
    with pytest.raises(InvalidInput) as caught:
        ledger.set_end_user(key, email)
    assert caught.value.rule == "R-SIM2"
    assert event_count(ledger) == before
    assert ledger.sim(key).end_user is None


# --------------------------------------------------------------------------- R-SIM3


def test_r_sim3_the_seven_statuses() -> None:
    assert {s.value for s in SimStatus} == {
        "not_available",
        "pending",
        "blank",
        "activation_ready",
        "active",
        "suspended",
        "invalid",
    }


@pytest.mark.parametrize("status", list(SimStatus))
def test_r_sim3_every_status_is_reachable(ledger: SimLedger, status: SimStatus) -> None:
    key = sim_in_status(ledger, status)  # asserts the status it reached
    assert ledger.sim(key).status is status


# --------------------------------------------------------------------------- R-SIM4


def test_r_sim4_core_path(store_env: dict[str, str]) -> None:
    """blank → activation_ready → active ⇄ suspended, on every store."""
    ledger, _ = new_ledger(store_env)
    key = received_sim(ledger)
    assert ledger.sim(key).status is S.PENDING
    ledger.complete_integration_check(key, ok=True)
    assert ledger.sim(key).status is S.BLANK
    ledger.assign_line(key, MSISDN)
    ledger.assign_to_company(key, COMPANY)
    assert ledger.sim(key).status is S.BLANK  # no plan yet (R-SIM5)
    ledger.assign_package(key, make_package(ledger))
    assert ledger.sim(key).status is S.ACTIVATION_READY
    ledger.activate(key)
    assert ledger.sim(key).status is S.ACTIVE
    for kind, after in ((ledger.pause, S.SUSPENDED), (ledger.resume, S.ACTIVE)) * 2:
        result = kind([key])
        assert result.accepted == [key]
        ledger.confirm(result.operation_id, key)
        assert ledger.sim(key).status is after
    if store_env["PERSISTENCE_MODULE"] != "eventsourcing.popo":  # state is in the store
        assert SimLedger(store_env).sim(key).status is S.ACTIVE


def test_r_sim4_received_sim_is_pending_or_not_available_without_integration() -> None:
    ledger, _ = new_ledger(operators_without_integration=("LegacyTel",))
    [with_integration] = ledger.receive_sims(iccids(1, 0), operator=OPERATOR, sim_type="prepaid")
    [without] = ledger.receive_sims(iccids(1, 1), operator="LegacyTel", sim_type="prepaid")
    assert ledger.sim(with_integration).status is S.PENDING
    assert ledger.sim(without).status is S.NOT_AVAILABLE


def test_r_sim4_integration_check_ok_failed_and_retry(ledger: SimLedger) -> None:
    ok, failed = ledger.receive_sims(iccids(2), operator=OPERATOR, sim_type="prepaid")
    ledger.complete_integration_check(ok, ok=True)
    ledger.complete_integration_check(failed, ok=False, reason="not on the operator's list")
    assert ledger.sim(ok).status is S.BLANK
    assert ledger.sim(failed).status is S.INVALID
    ledger.retry_integration_check(failed)
    assert ledger.sim(failed).status is S.PENDING
    ledger.complete_integration_check(failed, ok=True)
    assert ledger.sim(failed).status is S.BLANK


def test_r_sim4_mark_not_available_from_pending(ledger: SimLedger) -> None:
    key = received_sim(ledger)
    ledger.mark_not_available(key, "operator integration withdrawn")
    assert ledger.sim(key).status is S.NOT_AVAILABLE


@pytest.mark.parametrize("status", [S.BLANK, S.ACTIVATION_READY, S.ACTIVE, S.SUSPENDED])
def test_r_sim4_sim_swap_goes_to_pending_and_back(ledger: SimLedger, status: SimStatus) -> None:
    key = sim_in_status(ledger, status)
    before = ledger.sim(key)
    ledger.start_sim_swap(key)
    assert ledger.sim(key).status is S.PENDING
    # while the swap runs, the integration-check commands do not apply
    with pytest.raises(IllegalTransition) as caught:
        ledger.complete_integration_check(key, ok=True)
    assert caught.value.rule == "R-SIM4"
    ledger.complete_sim_swap(key)
    after = ledger.sim(key)
    assert after.status is status
    assert after.suspended_reason == before.suspended_reason
    assert after.package_id == before.package_id


def test_r_sim4_complete_sim_swap_without_a_swap_is_refused(ledger: SimLedger) -> None:
    key = received_sim(ledger)  # pending, but not because of a swap
    before = event_count(ledger)
    with pytest.raises(IllegalTransition) as caught:
        ledger.complete_sim_swap(key)
    assert caught.value.rule == "R-SIM4"
    assert caught.value.iccid == key and caught.value.status == S.PENDING
    assert event_count(ledger) == before


@dataclass(frozen=True)
class Ctx:
    package_id: UUID
    service_id: UUID


LedgerCall = Callable[[SimLedger, str, Ctx], Any]

# Every lifecycle command reachable through the ledger, as one call on one SIM.
# Left out: the two creation commands (a received ICCID is refused by SimAlreadyExists,
# see test_refusals_record_nothing), SET_DETAILS (allowed in every status) and
# LEAVE_SHARED_GROUP (only members leave, and a member is never invalid/not_available).
# PAUSE and RESUME are bulk requests: an illegal SIM is listed as rejected (R-BK2).
COMMANDS: dict[Cmd, LedgerCall] = {
    Cmd.PASS_INTEGRATION_CHECK: lambda led, k, c: led.complete_integration_check(k, ok=True),
    Cmd.FAIL_INTEGRATION_CHECK: lambda led, k, c: led.complete_integration_check(k, ok=False),
    Cmd.RETRY_INTEGRATION_CHECK: lambda led, k, c: led.retry_integration_check(k),
    Cmd.MARK_NOT_AVAILABLE: lambda led, k, c: led.mark_not_available(k, "gone"),
    Cmd.ASSIGN_LINE: lambda led, k, c: led.assign_line(k, "+447700900999"),
    Cmd.ASSIGN_COMPANY: lambda led, k, c: led.assign_to_company(k, "Other Co"),
    Cmd.MARK_STORE_USE: lambda led, k, c: led.mark_store_use(k),
    Cmd.ASSIGN_PACKAGE: lambda led, k, c: led.assign_package(k, c.package_id),
    Cmd.JOIN_SHARED_GROUP: lambda led, k, c: led.create_shared_group("pool", [k], c.package_id),
    Cmd.MIGRATE_PARTNER_SERVICE: lambda led, k, c: led.migrate_to_partner_service(k, "iot-eu"),
    Cmd.ASSIGN_TO_CUSTOMER: lambda led, k, c: led.assign_to_customer(k, "Cust", c.service_id),
    Cmd.ACTIVATE: lambda led, k, c: led.activate(k),
    Cmd.PAUSE: lambda led, k, c: led.pause([k]),
    Cmd.RESUME: lambda led, k, c: led.resume([k]),
    Cmd.SUSPEND_BY_SYSTEM: lambda led, k, c: led.suspend_by_system(k, "operator action"),
    Cmd.CLEAR_SYSTEM_PAUSE: lambda led, k, c: led.clear_system_pause(k),
    Cmd.START_SIM_SWAP: lambda led, k, c: led.start_sim_swap(k),
    Cmd.COMPLETE_SIM_SWAP: lambda led, k, c: led.complete_sim_swap(k),
    Cmd.RECORD_USAGE: lambda led, k, c: led.record_usage(k, 1),
    Cmd.TOP_UP: lambda led, k, c: led.top_up(k, 100),
}
BULK = {Cmd.PAUSE, Cmd.RESUME}
ILLEGAL_PAIRS = [
    pytest.param(status, cmd, id=f"{status.value}-{cmd.name.lower()}")
    for cmd in COMMANDS
    for status in SimStatus
    if (status, cmd) not in TRANSITIONS
]


def test_r_sim4_illegal_pairs_cover_every_status_and_command() -> None:
    statuses = {p.values[0] for p in ILLEGAL_PAIRS}
    commands = {p.values[1] for p in ILLEGAL_PAIRS}
    assert statuses == set(SimStatus)
    assert commands == set(COMMANDS)
    # and the table forbids what the lifecycle of docs/rules.md forbids
    for must_refuse in [
        (S.BLANK, Cmd.ACTIVATE),
        (S.PENDING, Cmd.ACTIVATE),
        (S.SUSPENDED, Cmd.ACTIVATE),
        (S.NOT_AVAILABLE, Cmd.ACTIVATE),
        (S.ACTIVE, Cmd.RESUME),
        (S.SUSPENDED, Cmd.PAUSE),
        (S.ACTIVATION_READY, Cmd.PAUSE),
        (S.BLANK, Cmd.PASS_INTEGRATION_CHECK),
        (S.INVALID, Cmd.PASS_INTEGRATION_CHECK),
        (S.BLANK, Cmd.RETRY_INTEGRATION_CHECK),
        (S.INVALID, Cmd.RECORD_USAGE),
        (S.PENDING, Cmd.START_SIM_SWAP),
    ]:
        assert must_refuse not in TRANSITIONS, must_refuse


@pytest.mark.parametrize(("status", "cmd"), ILLEGAL_PAIRS)
def test_r_sim4_command_not_in_table_is_refused(
    ledger: SimLedger, status: SimStatus, cmd: Cmd
) -> None:
    key = sim_in_status(ledger, status)
    ctx = Ctx(
        package_id=make_package(ledger),
        service_id=ledger.create_customer_service("IoT 10 GB", data_mb_per_month=10_000),
    )
    before_events = event_count(ledger)
    before = ledger.sim(key)
    if cmd in BULK:
        result = COMMANDS[cmd](ledger, key, ctx)
        assert result.accepted == []
        reason = result.rejected[key]
        assert reason.startswith("R-SIM4")
        assert key in reason and status.value in reason and cmd.value in reason
    else:
        with pytest.raises(IllegalTransition) as caught:
            COMMANDS[cmd](ledger, key, ctx)
        err = caught.value
        assert err.rule == "R-SIM4"
        assert (err.iccid, err.status, err.command) == (key, status, cmd.value)
        assert key in str(err) and status.value in str(err) and cmd.value in str(err)
        assert event_count(ledger) == before_events
    assert ledger.sim(key) == before


# --------------------------------------------------------------------------- R-SIM5


@pytest.mark.parametrize(
    "steps",
    [
        ("line", "company", "package"),
        ("package", "line", "company"),
        ("company", "package", "line"),
        ("store_use", "package", "line"),
    ],
)
def test_r_sim5_activation_ready_needs_line_plan_and_company_or_store_use(
    ledger: SimLedger, steps: tuple[str, ...]
) -> None:
    key = received_sim(ledger, checked=True)
    package = make_package(ledger)
    do: dict[str, Callable[[], None]] = {
        "line": lambda: ledger.assign_line(key, MSISDN),
        "company": lambda: ledger.assign_to_company(key, COMPANY),
        "store_use": lambda: ledger.mark_store_use(key),
        "package": lambda: ledger.assign_package(key, package),
    }
    for n, step in enumerate(steps, 1):
        do[step]()
        expected = S.ACTIVATION_READY if n == len(steps) else S.BLANK
        assert ledger.sim(key).status is expected, (step, n)
    ledger.activate(key)
    assert ledger.sim(key).status is S.ACTIVE


def test_r_sim5_a_sim_without_company_cannot_be_activated(ledger: SimLedger) -> None:
    key = received_sim(ledger, checked=True)
    ledger.assign_line(key, MSISDN)
    ledger.assign_package(key, make_package(ledger))
    before = event_count(ledger)
    with pytest.raises(IllegalTransition) as caught:
        ledger.activate(key)
    assert caught.value.status == S.BLANK
    assert event_count(ledger) == before


@pytest.mark.parametrize("msisdn", ["12", "not a number", "+0447700900123"])
def test_r_sim5_a_line_is_an_msisdn(ledger: SimLedger, msisdn: str) -> None:
    key = received_sim(ledger, checked=True)
    with pytest.raises(InvalidInput) as caught:
        ledger.assign_line(key, msisdn)
    assert caught.value.rule == "R-SIM5"
    assert ledger.sim(key).msisdn is None


# --------------------------------------------------------------------------- R-SIM6


def _resume_confirmed(ledger: SimLedger, key: str) -> None:
    result = ledger.resume([key])
    assert result.accepted == [key], result.rejected
    ledger.confirm(result.operation_id, key)
    assert ledger.sim(key).status is S.ACTIVE
    assert ledger.sim(key).suspended_reason is None


def test_r_sim6_user_pause_can_be_resumed(ledger: SimLedger) -> None:
    key = user_paused_sim(ledger)
    assert ledger.sim(key).suspended_reason is SuspendReason.USER
    _resume_confirmed(ledger, key)


def _system_paused(ledger: SimLedger, sim_type: SimType = SimType.SUBSCRIPTION) -> str:
    key = ready_sim(ledger, sim_type=sim_type)
    ledger.suspend_by_system(key, "operator action")
    view = ledger.sim(key)
    assert (view.status, view.suspended_reason) == (S.SUSPENDED, SuspendReason.SYSTEM)
    return key


def _assert_plain_resume_rejected(ledger: SimLedger, key: str) -> None:
    before = ledger.sim(key)
    result = ledger.resume([key])
    assert result.accepted == []
    assert result.rejected[key].startswith("R-SIM6")
    assert ledger.sim(key) == before


def test_r_sim6_system_pause_needs_an_operator_override(ledger: SimLedger) -> None:
    key = _system_paused(ledger)
    _assert_plain_resume_rejected(ledger, key)
    ledger.clear_system_pause(key)
    assert ledger.sim(key).status is S.SUSPENDED  # clearing is not resuming
    assert ledger.sim(key).cause_cleared
    _resume_confirmed(ledger, key)


def test_r_sim6_system_pause_cleared_by_a_new_package(ledger: SimLedger) -> None:
    key = ready_sim(ledger, data_mb=100)
    ledger.record_usage(key, 100)  # the copy runs out: paused by the system
    assert ledger.sim(key).system_cause == "depleted"
    _assert_plain_resume_rejected(ledger, key)
    ledger.assign_package(key, make_package(ledger, data_mb=500))
    assert ledger.sim(key).data_left_mb == 500
    _resume_confirmed(ledger, key)


def test_r_sim6_system_pause_cleared_by_a_top_up(ledger: SimLedger) -> None:
    key = ready_sim(ledger, sim_type=SimType.PREPAID, data_mb=100)
    ledger.record_usage(key, 100)
    _assert_plain_resume_rejected(ledger, key)
    ledger.top_up(key, 50)
    view = ledger.sim(key)
    assert (view.status, view.suspended_reason, view.data_left_mb) == (S.ACTIVE, None, Decimal(50))


def test_r_sim6_a_user_paused_sim_whose_package_runs_out_is_paused_by_the_system(
    ledger: SimLedger,
) -> None:
    """Late usage empties the copy of a SIM the user paused: a plain resume must not bring it
    back to data with no package (it would use data for free); a new package clears it."""
    key = user_paused_sim(ledger)
    ledger.record_usage(key, 1000)  # late usage record: the 1 GB copy runs out
    view = ledger.sim(key)
    assert (view.status, view.suspended_reason, view.system_cause) == (
        S.SUSPENDED,
        SuspendReason.SYSTEM,
        "depleted",
    )
    _assert_plain_resume_rejected(ledger, key)
    ledger.assign_package(key, make_package(ledger, name="refill"))
    _resume_confirmed(ledger, key)


def test_r_sim6_a_user_paused_sim_whose_package_expires_is_paused_by_the_system() -> None:
    ledger, clock = new_ledger()
    key = user_paused_sim(ledger)
    ledger.expire_packages(clock.advance(timedelta(days=30)))
    assert ledger.sim(key).system_cause == "expired"
    _assert_plain_resume_rejected(ledger, key)
    ledger.clear_system_pause(key)  # the operator's override
    _resume_confirmed(ledger, key)


def test_r_sim6_a_top_up_does_not_lift_the_users_own_pause(ledger: SimLedger) -> None:
    key = user_paused_sim(ledger, sim_type=SimType.PREPAID)
    ledger.record_usage(key, 1000)
    assert ledger.sim(key).suspended_reason is SuspendReason.SYSTEM
    ledger.top_up(key, 200)
    view = ledger.sim(key)
    assert (view.status, view.cause_cleared, view.data_left_mb) == (S.SUSPENDED, True, Decimal(200))
    _resume_confirmed(ledger, key)  # the user resumes when the user wants


def test_r_sim6_clearing_a_user_pause_is_refused(ledger: SimLedger) -> None:
    key = user_paused_sim(ledger)
    before = event_count(ledger)
    with pytest.raises(IllegalTransition) as caught:
        ledger.clear_system_pause(key)
    assert "not paused by the system" in str(caught.value)
    assert event_count(ledger) == before


# --------------------------------------------------------------------------- R-SIM7


def test_r_sim7_prepaid_stops_when_balance_runs_out_and_works_after_top_up(
    ledger: SimLedger,
) -> None:
    key = ready_sim(ledger, sim_type=SimType.PREPAID, data_mb=200)
    ledger.record_usage(key, 150)
    assert ledger.sim(key).data_left_mb == 50
    assert ledger.sim(key).status is S.ACTIVE
    ledger.record_usage(key, 80)
    view = ledger.sim(key)
    assert (view.status, view.system_cause, view.data_left_mb) == (
        S.SUSPENDED,
        "depleted",
        Decimal(0),
    )
    ledger.top_up(key, 300)
    assert ledger.sim(key).status is S.ACTIVE
    assert ledger.sim(key).data_left_mb == 300
    ledger.record_usage(key, 100)  # works again
    assert ledger.sim(key).data_left_mb == 200


@pytest.mark.parametrize("sim_type", [SimType.SUBSCRIPTION, SimType.PAYGO])
def test_r_sim7_only_prepaid_sims_top_up(ledger: SimLedger, sim_type: SimType) -> None:
    key = ready_sim(ledger, sim_type=sim_type)
    before, state = event_count(ledger), ledger.sim(key)
    with pytest.raises(NotPrepaid) as caught:
        ledger.top_up(key, 100)
    assert caught.value.rule == "R-SIM7"
    assert event_count(ledger) == before
    assert ledger.sim(key) == state


def test_r_sim7_unknown_sim_type_is_refused(ledger: SimLedger) -> None:
    with pytest.raises(InvalidInput) as caught:
        ledger.receive_sims(iccids(1), operator=OPERATOR, sim_type="pay-monthly")
    assert caught.value.rule == "R-SIM7"
    assert event_count(ledger) == 0


def test_r_sim7_subscription_usage_is_counted_per_month() -> None:
    ledger, clock = new_ledger()
    key = ready_sim(ledger, sim_type=SimType.SUBSCRIPTION, validity_days=90)
    ledger.record_usage(key, 40, at=datetime(2024, 1, 20, tzinfo=UTC))
    ledger.record_usage(key, 2, at=datetime(2024, 1, 31, 23, tzinfo=UTC))
    assert ledger.sim(key).this_month_mb == 42
    clock.set(datetime(2024, 2, 1, 0, 30, tzinfo=UTC))
    assert ledger.sim(key).this_month_mb == 0  # a new month: January is the invoice
    ledger.record_usage(key, 5)
    assert ledger.sim(key).this_month_mb == 5
    clock.advance(timedelta(days=1))
    assert ledger.sim(key).this_month_mb == 5


def test_r_sim7_paygo_usage_keeps_its_country(ledger: SimLedger) -> None:
    """PAYGO is charged per MB with prices per country: each usage record keeps the country."""
    key = ready_sim(ledger, sim_type=SimType.PAYGO)
    ledger.record_usage(key, 3, country="AT")
    ledger.record_usage(key, 4, country="FR")
    usage = [
        (h.data["mb"], h.data["country"]) for h in ledger.history(key) if h.event == "UsageRecorded"
    ]
    assert usage == [(3, "AT"), (4, "FR")]
