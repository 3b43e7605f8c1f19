"""R-ES2: a refused command records nothing and raises a typed error naming its rule; and
R-ES1: every change is an event, appended, never updated or deleted.

The table below lists every refusing command path reachable through the ledger: for each,
the number of stored events and the state of the SIMs involved are the same after the
refusal as before, and SIMs a refused ``receive_sims`` named do not exist.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from helpers import (
    OPERATOR,
    FakeClock,
    event_count,
    iccid,
    iccids,
    make_package,
    new_ledger,
    ready_sim,
    received_sim,
    user_paused_sim,
)

import simledger
from simledger import (
    AlreadyInSharedGroup,
    AutoRenewNotAllowed,
    BulkLimitExceeded,
    HoldingServiceNotMigrated,
    IllegalTransition,
    InvalidIccid,
    InvalidInput,
    InvalidValue,
    NoOperationInFlight,
    NotAMember,
    NotPrepaid,
    OrderQuantityInvalid,
    PackageStillActive,
    RegularGroupMembership,
    SharedGroupLocked,
    SimAlreadyExists,
    SimLedger,
    SimledgerError,
    SimNotYetReceived,
    SimType,
    UnknownCustomerService,
    UnknownGroup,
    UnknownOrder,
    UnknownPackage,
    UnknownRegularGroup,
    UnknownSim,
)
from simledger.domain.bulk import BULK_LIMIT


@dataclass
class Ctx:
    """What a case's setup made: the SIM(s) to watch, and ids the bad command uses."""

    sims: list[str]
    absent: list[str] = field(default_factory=list)  # ICCIDs that must stay unknown
    ids: dict[str, Any] = field(default_factory=dict)


Setup = Callable[[SimLedger, FakeClock], Ctx]
Bad = Callable[[SimLedger, Ctx], object]


@dataclass(frozen=True)
class Case:
    id: str
    setup: Setup
    bad: Bad
    error: type[SimledgerError]
    rule: str


# ---- setups ---------------------------------------------------------------------------------


def _pending(ledger: SimLedger, clock: FakeClock) -> Ctx:
    return Ctx([received_sim(ledger, 1)])


def _blank(ledger: SimLedger, clock: FakeClock) -> Ctx:
    return Ctx([received_sim(ledger, 1, checked=True)])


def _active(ledger: SimLedger, clock: FakeClock) -> Ctx:
    return Ctx([ready_sim(ledger, 1)], ids={"package": make_package(ledger, name="other")})


def _prepaid_active(ledger: SimLedger, clock: FakeClock) -> Ctx:
    return Ctx([ready_sim(ledger, 1, sim_type=SimType.PREPAID)])


def _user_paused(ledger: SimLedger, clock: FakeClock) -> Ctx:
    return Ctx([user_paused_sim(ledger, 1)])


def _system_paused(ledger: SimLedger, clock: FakeClock) -> Ctx:
    key = ready_sim(ledger, 1)
    ledger.suspend_by_system(key, "operator action")
    return Ctx([key])


def _pause_in_flight(ledger: SimLedger, clock: FakeClock) -> Ctx:
    key, other = ready_sim(ledger, 1), ready_sim(ledger, 2)
    result = ledger.pause([key], idempotency_key="req-1")
    return Ctx([key, other], ids={"op": result.operation_id})


def _swapping(ledger: SimLedger, clock: FakeClock) -> Ctx:
    key = ready_sim(ledger, 1)
    ledger.start_sim_swap(key)
    return Ctx([key])


def _delivered(ledger: SimLedger, clock: FakeClock) -> Ctx:
    order = ledger.order_sims("A1", 20)
    keys = ledger.receive_sims(iccids(18, 1), operator="A1", sim_type="prepaid", order_id=order)
    ledger.complete_integration_check(keys[0], ok=True)
    service = ledger.create_customer_service("IoT 1 GB", data_mb_per_month=1000)
    return Ctx([keys[0]], absent=iccids(3, 30), ids={"order": order, "service": service})


def _existing_plus_new(ledger: SimLedger, clock: FakeClock) -> Ctx:
    return Ctx([received_sim(ledger, 1)], absent=iccids(3, 30))


def _shared_group(ledger: SimLedger, clock: FakeClock) -> Ctx:
    members = [received_sim(ledger, n, checked=True) for n in (1, 2)]
    outsider = received_sim(ledger, 3, checked=True)
    group = ledger.create_shared_group("pool", members, make_package(ledger, name="shared"))
    renewing = make_package(ledger, auto_renew=True, name="renewing")
    plain = make_package(ledger, name="plain")
    return Ctx(
        [*members, outsider],
        ids={"group": group, "renewing": renewing, "plain": plain},
    )


def _depleted_group(ledger: SimLedger, clock: FakeClock) -> Ctx:
    members = [received_sim(ledger, n, checked=True) for n in (1, 2)]
    outsider = received_sim(ledger, 3, checked=True)
    for key in members:
        ledger.assign_line(key, "+447700900123")
        ledger.assign_to_company(key, "Acme")
    group = ledger.create_shared_group("pool", members, make_package(ledger, data_mb=10))
    ledger.activate(members[0])
    ledger.record_usage(members[0], 10)  # the pool runs out: the group unlocks (R-SG3)
    deleted = ledger.create_shared_group("gone", [outsider], make_package(ledger, data_mb=10))
    ledger.delete_shared_group(deleted)
    return Ctx([*members, outsider], ids={"group": group, "deleted": deleted})


def _regular_group(ledger: SimLedger, clock: FakeClock) -> Ctx:
    keys = [received_sim(ledger, n, checked=True) for n in (1, 2)]
    group = ledger.create_group("north", keys[:1])
    deleted = ledger.create_group("gone", keys[1:])
    ledger.delete_group(deleted)
    return Ctx(keys, ids={"group": group, "deleted": deleted})


def _not_available(ledger: SimLedger, clock: FakeClock) -> Ctx:
    key = received_sim(ledger, 1)
    ledger.mark_not_available(key, "no integration")
    return Ctx([key])


def _with_packages(ledger: SimLedger, clock: FakeClock) -> Ctx:
    key = ready_sim(ledger, 1)
    copy_id = ledger.sim(key).copy_id
    return Ctx([key, received_sim(ledger, 2, checked=True)], ids={"copy": copy_id})


# ---- the table --------------------------------------------------------------------------------

BAD_LUHN = iccid(40)[:-1] + str((int(iccid(40)[-1]) + 1) % 10)

CASES = [
    # R-SIM1: identity
    Case(
        "receive-one-bad-among-many",
        _existing_plus_new,
        lambda led, c: led.receive_sims(
            [*c.absent, BAD_LUHN], operator=OPERATOR, sim_type="prepaid"
        ),
        InvalidIccid,
        "R-SIM1",
    ),
    Case(
        "receive-too-short",
        _existing_plus_new,
        lambda led, c: led.receive_sims(
            [c.absent[0], "8944123"], operator=OPERATOR, sim_type="prepaid"
        ),
        InvalidIccid,
        "R-SIM1",
    ),
    Case(
        "receive-existing-iccid",
        _existing_plus_new,
        lambda led, c: led.receive_sims(
            [*c.absent, c.sims[0]], operator=OPERATOR, sim_type="prepaid"
        ),
        SimAlreadyExists,
        "R-SIM1",
    ),
    Case(
        "receive-same-iccid-twice",
        _existing_plus_new,
        lambda led, c: led.receive_sims(
            [c.absent[0], c.absent[1], c.absent[0]], operator=OPERATOR, sim_type="prepaid"
        ),
        InvalidInput,
        "R-SIM1",
    ),
    Case(
        "receive-one-string",
        _existing_plus_new,
        lambda led, c: led.receive_sims(c.absent[0], operator=OPERATOR, sim_type="prepaid"),
        InvalidInput,
        "R-SIM1",
    ),
    Case(
        "command-on-unknown-sim",
        _pending,
        lambda led, c: led.complete_integration_check(iccid(99), ok=True),
        UnknownSim,
        "R-SIM1",
    ),
    # R-SIM2 / R-SIM7: attributes and types
    Case(
        "receive-empty-operator",
        _existing_plus_new,
        lambda led, c: led.receive_sims(c.absent, operator=" ", sim_type="prepaid"),
        InvalidInput,
        "R-SIM2",
    ),
    Case(
        "receive-unknown-sim-type",
        _existing_plus_new,
        lambda led, c: led.receive_sims(c.absent, operator=OPERATOR, sim_type="monthly"),
        InvalidInput,
        "R-SIM7",
    ),
    Case(
        "end-user-not-an-email",
        _active,
        lambda led, c: led.set_end_user(c.sims[0], "nobody"),
        InvalidInput,
        "R-SIM2",
    ),
    Case(
        "labels-as-one-string",
        _active,
        lambda led, c: led.set_labels(c.sims[0], "fleet"),
        InvalidInput,
        "R-SIM2",
    ),
    Case(
        "top-up-subscription",
        _active,
        lambda led, c: led.top_up(c.sims[0], 100),
        NotPrepaid,
        "R-SIM7",
    ),
    Case(
        "top-up-negative",
        _prepaid_active,
        lambda led, c: led.top_up(c.sims[0], -5),
        InvalidInput,
        "R-SIM7",
    ),
    # R-SIM4: the lifecycle table
    Case(
        "check-a-blank-sim",
        _blank,
        lambda led, c: led.complete_integration_check(c.sims[0], ok=False),
        IllegalTransition,
        "R-SIM4",
    ),
    Case(
        "activate-a-blank-sim",
        _blank,
        lambda led, c: led.activate(c.sims[0]),
        IllegalTransition,
        "R-SIM4",
    ),
    Case(
        "usage-of-a-blank-sim",
        _blank,
        lambda led, c: led.record_usage(c.sims[0], 5),
        IllegalTransition,
        "R-SIM4",
    ),
    Case(
        "retry-a-pending-sim",
        _pending,
        lambda led, c: led.retry_integration_check(c.sims[0]),
        IllegalTransition,
        "R-SIM4",
    ),
    Case(
        "system-suspend-a-pending-sim",
        _pending,
        lambda led, c: led.suspend_by_system(c.sims[0], "expired"),
        IllegalTransition,
        "R-SIM4",
    ),
    Case(
        "complete-swap-without-swap",
        _pending,
        lambda led, c: led.complete_sim_swap(c.sims[0]),
        IllegalTransition,
        "R-SIM4",
    ),
    Case(
        "second-swap-while-swapping",
        _swapping,
        lambda led, c: led.start_sim_swap(c.sims[0]),
        IllegalTransition,
        "R-SIM4",
    ),
    Case(
        "integration-check-while-swapping",
        _swapping,
        lambda led, c: led.complete_integration_check(c.sims[0], ok=True),
        IllegalTransition,
        "R-SIM4",
    ),
    Case(
        "clear-a-user-pause",
        _user_paused,
        lambda led, c: led.clear_system_pause(c.sims[0]),
        IllegalTransition,
        "R-SIM4",
    ),
    # R-SIM5: readiness
    Case(
        "line-not-an-msisdn",
        _blank,
        lambda led, c: led.assign_line(c.sims[0], "call me"),
        InvalidInput,
        "R-SIM5",
    ),
    Case(
        "empty-company",
        _blank,
        lambda led, c: led.assign_to_company(c.sims[0], ""),
        InvalidInput,
        "R-SIM5",
    ),
    # R-PK1..3
    Case(
        "package-without-name",
        _blank,
        lambda led, c: led.create_package("", data_mb=100, validity_days=30),
        InvalidInput,
        "R-PK1",
    ),
    Case(
        "package-negative-mb",
        _blank,
        lambda led, c: led.create_package("x", data_mb=-1, validity_days=30),
        InvalidInput,
        "R-PK1",
    ),
    Case(
        "assign-unknown-package",
        _blank,
        lambda led, c: led.assign_package(c.sims[0], uuid.uuid4()),
        UnknownPackage,
        "R-PK1",
    ),
    Case(
        "assign-a-copy-as-package",
        _with_packages,
        lambda led, c: led.assign_package(c.sims[1], c.ids["copy"]),
        UnknownPackage,
        "R-PK1",
    ),
    Case(
        "usage-negative",
        _active,
        lambda led, c: led.record_usage(c.sims[0], -1),
        InvalidInput,
        "R-PK2",
    ),
    Case(
        "second-package-while-active",
        _active,
        lambda led, c: led.assign_package(c.sims[0], c.ids["package"]),
        PackageStillActive,
        "R-PK3",
    ),
    Case(
        "own-package-for-group-member",
        _shared_group,
        lambda led, c: led.assign_package(c.sims[0], c.ids["plain"]),
        AlreadyInSharedGroup,
        "R-PK3",
    ),
    # R-BK3: carrier answers
    Case(
        "confirm-with-nothing-in-flight",
        _system_paused,
        lambda led, c: led.confirm(uuid.uuid4(), c.sims[0]),
        NoOperationInFlight,
        "R-BK3",
    ),
    # R-BK1, R-BK3, R-BK6
    Case(
        "pause-10001-sims",
        _active,
        lambda led, c: led.pause([c.sims[0], *iccids(BULK_LIMIT, 1000)]),
        BulkLimitExceeded,
        "R-BK1",
    ),
    Case(
        "pause-one-string",
        _active,
        lambda led, c: led.pause(c.sims[0]),
        InvalidInput,
        "R-BK1",
    ),
    Case(
        "confirm-unknown-operation",
        _pause_in_flight,
        lambda led, c: led.confirm(uuid.uuid4(), c.sims[0]),
        NoOperationInFlight,
        "R-BK3",
    ),
    Case(
        "confirm-for-another-sim",
        _pause_in_flight,
        lambda led, c: led.confirm(c.ids["op"], c.sims[1]),
        NoOperationInFlight,
        "R-BK3",
    ),
    Case(
        "idempotency-key-reused-for-other-sims",
        _pause_in_flight,
        lambda led, c: led.pause(c.sims, idempotency_key="req-1"),
        InvalidInput,
        "R-BK6",
    ),
    Case(
        "idempotency-key-reused-for-resume",
        _pause_in_flight,
        lambda led, c: led.resume([c.sims[0]], idempotency_key="req-1"),
        InvalidInput,
        "R-BK6",
    ),
    Case(
        "empty-idempotency-key",
        _active,
        lambda led, c: led.pause(c.sims, idempotency_key=" "),
        InvalidInput,
        "R-BK6",
    ),
    # R-PF1..3
    Case(
        "order-not-a-multiple",
        _blank,
        lambda led, c: led.order_sims("3UK", 30),
        OrderQuantityInvalid,
        "R-PF1",
    ),
    Case(
        "delivery-beyond-order",
        _delivered,
        lambda led, c: led.receive_sims(
            c.absent, operator="A1", sim_type="prepaid", order_id=c.ids["order"]
        ),
        OrderQuantityInvalid,
        "R-PF1",
    ),
    Case(
        "delivery-for-another-operator",
        _delivered,
        lambda led, c: led.receive_sims(
            c.absent[:1], operator="3UK", sim_type="prepaid", order_id=c.ids["order"]
        ),
        OrderQuantityInvalid,
        "R-PF1",
    ),
    Case(
        "delivery-for-unknown-order",
        _delivered,
        lambda led, c: led.receive_sims(
            c.absent[:1], operator="A1", sim_type="prepaid", order_id=uuid.uuid4()
        ),
        UnknownOrder,
        "R-PF1",
    ),
    Case(
        "service-without-name",
        _blank,
        lambda led, c: led.create_customer_service(" ", data_mb_per_month=10),
        InvalidInput,
        "R-PF2",
    ),
    Case(
        "assign-unknown-customer-service",
        _delivered,
        lambda led, c: led.assign_to_customer(c.sims[0], "Acme", uuid.uuid4()),
        UnknownCustomerService,
        "R-PF2",
    ),
    Case(
        "assign-customer-on-holding-service",
        _delivered,
        lambda led, c: led.assign_to_customer(c.sims[0], "Acme", c.ids["service"]),
        HoldingServiceNotMigrated,
        "R-PF3",
    ),
    Case(
        "migrate-to-holding-service",
        _delivered,
        lambda led, c: led.migrate_to_partner_service(c.sims[0], "holding"),
        InvalidInput,
        "R-PF3",
    ),
    # R-SG2..4 (their rules are tested elsewhere; here: that the refusals record nothing)
    Case(
        "shared-group-with-auto-renew",
        _shared_group,
        lambda led, c: led.create_shared_group("g2", [c.sims[2]], c.ids["renewing"]),
        AutoRenewNotAllowed,
        "R-SG2",
    ),
    Case(
        "shared-group-with-a-member-of-another",
        _shared_group,
        lambda led, c: led.create_shared_group("g2", [c.sims[2], c.sims[0]], c.ids["plain"]),
        AlreadyInSharedGroup,
        "R-SG2",
    ),
    Case(
        "add-to-locked-shared-group",
        _shared_group,
        lambda led, c: led.add_to_shared_group(c.ids["group"], c.sims[2]),
        SharedGroupLocked,
        "R-SG3",
    ),
    Case(
        "remove-from-locked-shared-group",
        _shared_group,
        lambda led, c: led.remove_from_shared_group(c.ids["group"], c.sims[0]),
        SharedGroupLocked,
        "R-SG3",
    ),
    Case(
        "move-to-unknown-group",
        _shared_group,
        lambda led, c: led.delete_shared_group(c.ids["group"], move_to=uuid.uuid4()),
        UnknownGroup,
        "R-SG4",
    ),
    Case(
        "remove-a-non-member",
        _depleted_group,
        lambda led, c: led.remove_from_shared_group(c.ids["group"], c.sims[2]),
        NotAMember,
        "R-SG1",
    ),
    Case(
        "add-to-deleted-group",
        _depleted_group,
        lambda led, c: led.add_to_shared_group(c.ids["deleted"], c.sims[2]),
        UnknownGroup,
        "R-SG4",
    ),
    # R-RG1..2, R-AO1, R-SS1: regular groups, Always On, session records
    Case(
        "regular-group-add-a-member-twice",
        _regular_group,
        lambda led, c: led.add_to_group(c.ids["group"], c.sims),
        RegularGroupMembership,
        "R-RG2",
    ),
    Case(
        "regular-group-deleted",
        _regular_group,
        lambda led, c: led.rename_group(c.ids["deleted"], "again"),
        UnknownRegularGroup,
        "R-RG1",
    ),
    Case(
        "always-on-as-it-is",
        _active,
        lambda led, c: led.set_always_on(c.sims[0], False),
        InvalidInput,
        "R-AO1",
    ),
    Case(
        "session-of-a-sim-without-integration",
        _not_available,
        lambda led, c: led.record_session("s1", c.sims[0], "started"),
        InvalidInput,
        "R-SS1",
    ),
    # R-ES3 inputs
    Case(
        "usage-with-naive-time",
        _active,
        lambda led, c: led.record_usage(c.sims[0], 1, at=led.clock().replace(tzinfo=None)),
        InvalidInput,
        "R-ES3",
    ),
    Case(
        "as-of-before-the-sim-was-received",
        _pending,
        lambda led, c: led.sim_as_of(c.sims[0], at=datetime(1, 1, 1, tzinfo=UTC)),
        SimNotYetReceived,
        "R-ES3",
    ),
    # R-IN1..4: the domain of values
    Case(
        "note-with-a-nul",
        _pending,
        lambda led, c: led.set_note(c.sims[0], "a\x00b"),
        InvalidValue,
        "R-IN1",
    ),
    Case(
        "usage-of-nan-mb",
        _active,
        lambda led, c: led.record_usage(c.sims[0], float("nan")),
        InvalidValue,
        "R-IN2",
    ),
    Case(
        "usage-in-the-year-9950",
        _active,
        lambda led, c: led.record_usage(c.sims[0], 1, at=datetime(9950, 1, 1, tzinfo=UTC)),
        InvalidValue,
        "R-IN3",
    ),
    Case(
        "receive-with-esim-as-text",
        _existing_plus_new,
        lambda led, c: led.receive_sims(
            c.absent,
            operator=OPERATOR,
            sim_type="prepaid",
            esim="no",  # type: ignore[arg-type]
        ),
        InvalidValue,
        "R-IN4",
    ),
]


def _state(ledger: SimLedger, ctx: Ctx) -> list[Any]:
    return [ledger.sim(key) for key in ctx.sims]


def _check_refusal_records_nothing(ledger: SimLedger, clock: FakeClock, case: Case) -> None:
    ctx = case.setup(ledger, clock)
    for key in ctx.absent:
        with pytest.raises(UnknownSim):
            ledger.sim(key)
    before_events, before_state = event_count(ledger), _state(ledger, ctx)
    with pytest.raises(case.error) as caught:
        case.bad(ledger, ctx)
    assert caught.value.rule == case.rule
    assert str(caught.value).startswith(f"{case.rule}: ")
    assert event_count(ledger) == before_events
    assert _state(ledger, ctx) == before_state
    for key in ctx.absent:
        with pytest.raises(UnknownSim):
            ledger.sim(key)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_r_es2_refusal_records_nothing(case: Case) -> None:
    ledger, clock = new_ledger()
    _check_refusal_records_nothing(ledger, clock, case)


STORE_SUBSET = [
    c
    for c in CASES
    if c.id
    in {
        "receive-one-bad-among-many",
        "receive-existing-iccid",
        "second-package-while-active",
        "idempotency-key-reused-for-other-sims",
        "assign-customer-on-holding-service",
    }
]


@pytest.mark.parametrize("case", STORE_SUBSET, ids=[c.id for c in STORE_SUBSET])
def test_r_es2_refusal_records_nothing_in_every_store(
    store_env: dict[str, str], case: Case
) -> None:
    ledger, clock = new_ledger(store_env)
    _check_refusal_records_nothing(ledger, clock, case)


def test_r_es2_the_table_covers_every_error_class() -> None:
    """Every public refusal class appears in the table above, except: ConcurrencyConflict
    and CsvImportError (tested with concurrency and import); OperationInFlight and
    SystemPauseNotCleared, which no command raises: they are the reasons a bulk answer gives
    for a rejected SIM (R-BK2; see test_rules_bulk and test_rules_sim); NotActivationReady,
    which the lifecycle table pre-empts (activate is only in the table from
    activation_ready)."""
    public = {
        obj
        for name in simledger.__all__
        if isinstance(obj := getattr(simledger, name), type)
        and issubclass(obj, SimledgerError)
        and obj is not SimledgerError
    }
    untested_here = {
        simledger.ConcurrencyConflict,
        simledger.CsvImportError,
        simledger.OperationInFlight,
        simledger.SystemPauseNotCleared,
        simledger.NotActivationReady,
    }
    assert public - untested_here <= {c.error for c in CASES}


RULE_IDS = re.compile(
    # R-RG (regular groups) details R-SG5: their ids are docs/rules.md's
    r"^R-(SIM[1-7]|PK[1-3]|SG[1-5]|BK[1-6]|IO1|PF[1-4]|ES[1-3]|IN[1-4]|RG[1-3])$"
)


def test_r_es2_every_error_names_a_rule_of_domain_md() -> None:
    for name in simledger.__all__:
        obj = getattr(simledger, name)
        if isinstance(obj, type) and issubclass(obj, SimledgerError):
            assert RULE_IDS.match(obj.rule), (name, obj.rule)


# ---- R-BK1 limits, precisely -----------------------------------------------------------------


def test_r_bk1_over_the_limit_is_refused_before_loading_anything(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ledger, _ = new_ledger()
    key = ready_sim(ledger)
    before = event_count(ledger)

    def no_loading(*args: object, **kwargs: object) -> object:
        raise AssertionError("a refused bulk request loaded a SIM")

    monkeypatch.setattr(ledger.repository, "get", no_loading)
    requested = [key, *iccids(BULK_LIMIT, 1000)]
    for send in (ledger.pause, ledger.resume):
        with pytest.raises(BulkLimitExceeded) as caught:
            send(requested)
        assert caught.value.rule == "R-BK1"
        with pytest.raises(BulkLimitExceeded):
            send(requested, idempotency_key="big-1")
    monkeypatch.undo()
    assert event_count(ledger) == before


# ---- R-ES1 ---------------------------------------------------------------------------------------


def _stored(ledger: SimLedger) -> list[tuple[Any, ...]]:
    return [
        (n.id, n.originator_id, n.originator_version, n.topic, bytes(n.state))
        for n in ledger.recorder.select_notifications(start=None, limit=10**9)
    ]


def test_r_es1_events_are_only_ever_appended(store_env: dict[str, str]) -> None:
    ledger, clock = new_ledger(store_env)
    key = ready_sim(ledger, 1, sim_type=SimType.PREPAID, data_mb=100)
    members = [received_sim(ledger, n, checked=True) for n in (2, 3)]
    group = ledger.create_shared_group("pool", members, make_package(ledger, data_mb=10))
    earlier = _stored(ledger)

    steps: list[Callable[[], object]] = [
        lambda: ledger.record_usage(key, 100),  # depletes the copy: SIM paused by system
        lambda: ledger.top_up(key, 50),  # resumes it
        lambda: ledger.set_note(key, "n1"),
        lambda: ledger.set_note(key, None),
        lambda: ledger.confirm(ledger.pause([key]).operation_id, key),
        lambda: ledger.delete_shared_group(group),
        lambda: ledger.expire_packages(clock.advance(timedelta(days=31))),
    ]
    for step in steps:
        count = event_count(ledger)
        step()
        assert event_count(ledger) > count  # every change is (at least) one new event
        now = _stored(ledger)
        assert now[: len(earlier)] == earlier  # nothing updated in place, nothing deleted
        earlier = now
    before = event_count(ledger)
    with pytest.raises(IllegalTransition):
        ledger.activate(key)  # suspended: refused
    assert _stored(ledger) == earlier
    assert event_count(ledger) == before


def test_r_es1_state_is_derived_from_the_events_alone(
    persistent_store_env: dict[str, str],
) -> None:
    """A second ledger on the same store, sharing no memory with the first, derives the
    same state from the stored events."""
    ledger, clock = new_ledger(persistent_store_env)
    key = ready_sim(ledger, sim_type=SimType.PREPAID, data_mb=100)
    ledger.record_usage(key, 70)
    ledger.set_labels(key, ["a", "b"])
    ledger.top_up(key, 5)
    ledger.confirm(ledger.pause([key]).operation_id, key)
    other = SimLedger(persistent_store_env, clock=clock)
    assert other.sim(key) == ledger.sim(key)
    assert other.sim(key).data_left_mb == 35
    assert other.history(key) == ledger.history(key)
