"""Stateful property tests: random command sequences run on a real ``SimLedger`` (in memory)
and on the plain model of ``tests/model.py`` side by side.

For every step the model predicts acceptance or the refusal (error class and rule) and the
engine must agree; a refusal must record nothing. After every step the invariants below
must hold:

* a SIM is in at most one shared group, and the groups' member lists say the same;
* a pool never goes below zero, and what was drawn from it (its ``UsageDrawn`` events) is
  exactly ``data_mb - data_left_mb``, each draw by a then-member (an expired pool shows
  0 MB left: then the draws are checked against the balance it kept);
* every status change of a SIM is a move of the lifecycle table (R-SIM4);
* status, group, package, data left (and a few more) of every SIM equal the model's.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID

import pytest
from helpers import FakeClock, iccids
from hypothesis import HealthCheck, currently_in_test_context, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from model import BulkAnswer, ExpiryAnswer, Model, Refused

from simledger import (
    SharedGroupView,
    SimLedger,
    SimledgerError,
    SimStatus,
    SimType,
    SimView,
    UnknownSim,
)
from simledger.domain.lifecycle import TRANSITIONS, Cmd, Target
from simledger.domain.shared_group import SharedGroup
from simledger.domain.sim import Sim
from simledger.domain.types import OperationKind

T = TypeVar("T")

POOL = iccids(5, start=700)
NO_INTEGRATION = ("LegacyNet",)
OPERATORS = ("3UK", "3UK", "LegacyNet")
MSISDN = "+447700900555"
CAUSE = "operator action"
PACKAGES: dict[str, tuple[str, int, int, bool]] = {
    # key: (name, data MB, validity days, auto-renew)
    "small": ("50 MB / 3 days", 50, 3, False),
    "big": ("300 MB / 7 days", 300, 7, False),
    "renewing": ("100 MB / 2 days, auto-renew", 100, 2, True),
}
UNKNOWN_PACKAGE = "unknown"
UNKNOWN_GROUP = "g?"

sim_index = st.integers(0, len(POOL) - 1)
sim_indexes = st.lists(sim_index, min_size=1, max_size=3)
package_key = st.sampled_from([*PACKAGES, *PACKAGES, UNKNOWN_PACKAGE])
group_index = st.integers(0, 9)  # 9: a group that does not exist
STAGES = (
    *("absent", "pending", "blank", "lined", "store use", "own package", "active"),
    *("group", "group, active", "group, active", "group 2", "group 2, active"),
)
READY_COMMANDS = (
    "integration check passes",
    "integration check fails",
    "retry_integration_check",
    "mark_not_available",
    "assign_line",
    "assign_to_company",
    "mark_store_use",
)
megabytes = st.decimals(min_value=Decimal("0.5"), max_value=Decimal(150), places=1)


def note(label: str) -> None:
    """Count an outcome for ``--hypothesis-show-statistics`` (when run by hypothesis)."""
    if currently_in_test_context():
        event(label)


class FleetMachine(RuleBasedStateMachine):
    """Five SIMs, three packages, shared groups and a clock, engine and model in step."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.ledger = SimLedger(
            clock=self.clock,
            carrier_deadline=timedelta(hours=24),
            operators_without_integration=NO_INTEGRATION,
        )
        self.model = Model(operators_without_integration=NO_INTEGRATION)
        self.package_ids: dict[str, UUID] = {UNKNOWN_PACKAGE: UUID(int=1)}
        for key, (name, data_mb, days, renews) in PACKAGES.items():
            self.package_ids[key] = self.ledger.create_package(
                name, data_mb=data_mb, validity_days=days, auto_renew=renews
            )
            self.model.create_package(key, name, data_mb, days, renews)
        self.group_ids: dict[str, UUID] = {UNKNOWN_GROUP: UUID(int=2)}
        self.group_keys: list[str] = []  # in creation order
        self.operation_ids: dict[str, UUID] = {}
        self.flights: list[tuple[str, str]] = []  # (operation, ICCID) ever accepted
        self.numbers = itertools.count(1)
        self.read: tuple[tuple[int, int], dict[str, SimView], dict[str, SharedGroupView]] | None
        self.read = None
        self.pool_walks: dict[str, PoolWalk] = {}
        self.status_walks: dict[str, StatusWalk] = {}

    def teardown(self) -> None:
        self.ledger.close()

    # ---- running one command on both sides ------------------------------------------------
    def step(
        self, command: str, predict: Callable[[], T], act: Callable[[], Any]
    ) -> tuple[T | None, Any]:
        """Run the model's prediction and the engine's command; they must agree on
        acceptance, on the refusal's class and rule, and a refusal records nothing."""
        before = self.stored()
        expected: T | None = None
        refusal: Refused | None = None
        try:
            expected = predict()
        except Refused as predicted:
            refusal = predicted
        try:
            got = act()
        except SimledgerError as error:
            assert refusal is not None, f"the engine refused what the model accepts: {error!r}"
            assert (type(error).__name__, error.rule) == (refusal.error, refusal.rule), (
                f"engine: {error!r}; model: {refusal}"
            )
            assert self.stored() == before, f"refused, yet recorded: {error!r}"
            note(f"{command}: {type(error).__name__}")
            return None, None
        assert refusal is None, f"the engine accepted what the model refuses: {refusal}"
        note(f"{command}: ok")
        return expected, got

    def group_key(self, index: int, *, open_ones: bool = False) -> str:
        """Index 9 is a group that does not exist; with ``open_ones``, prefer the groups
        that take changes (depleted, R-SG3)."""
        keys = self.group_keys
        if open_ones:
            keys = [k for k in keys if not self.model.groups[k].locked] or keys
        if index == 9 or not keys:
            return UNKNOWN_GROUP
        return keys[index % len(keys)]

    @staticmethod
    def pick(index: int, candidates: list[str], aim: bool) -> str:
        """With ``aim``, one of ``candidates`` (when there are any), else any SIM of the pool:
        aiming makes the commands that need a SIM in a given state succeed more often."""
        if aim and candidates:
            return candidates[index % len(candidates)]
        return POOL[index]

    def in_status(self, *statuses: SimStatus) -> list[str]:
        return [k for k, sim in self.model.sims.items() if sim.status in statuses]

    @initialize(
        stages=st.lists(st.sampled_from(STAGES), min_size=len(POOL), max_size=len(POOL)),
        prepaid=st.lists(st.booleans(), min_size=len(POOL), max_size=len(POOL)),
        packages=st.lists(st.sampled_from(list(PACKAGES)), min_size=len(POOL), max_size=len(POOL)),
        group_package=st.sampled_from(["small", "big"]),
    )
    def start_fleet(
        self, stages: list[str], prepaid: list[bool], packages: list[str], group_package: str
    ) -> None:
        """Bring each SIM of the pool some way along its lifecycle, through the commands,
        and put those whose stage says so in a first shared group."""
        for i, stage in enumerate(stages):
            if stage == "absent":
                continue
            kind = SimType.PREPAID if prepaid[i] else SimType.SUBSCRIPTION
            self.receive(i, "3UK", kind)
            if stage == "pending":
                continue
            self.getting_ready("integration check passes", i)
            if stage == "blank":
                continue
            self.getting_ready("assign_line", i)
            if stage == "store use":
                self.getting_ready("mark_store_use", i)
                continue
            self.getting_ready("assign_to_company", i)
            if stage in ("own package", "active"):
                self.assign_package(i, packages[i])
            if stage == "active":
                self.activate(i)
        for name, package in (("group", group_package), ("group 2", "small")):
            grouped = [i for i, stage in enumerate(stages) if stage.split(",")[0] == name]
            if grouped:
                self.create_shared_group(grouped, package, notify=False, aim=False)
            for i in grouped:
                if stages[i].endswith("active"):
                    self.activate(i)

    # ---- arrival, integration check, getting ready ----------------------------------------
    @rule(i=sim_index, operator=st.sampled_from(OPERATORS), sim_type=st.sampled_from(SimType))
    def receive(self, i: int, operator: str, sim_type: SimType) -> None:
        self.step(
            "receive",
            lambda: self.model.receive(POOL[i], operator, sim_type),
            lambda: self.ledger.receive_sims([POOL[i]], operator=operator, sim_type=sim_type),
        )

    @rule(which=st.sampled_from(READY_COMMANDS), i=sim_index)
    def getting_ready(self, which: str, i: int) -> None:
        """The commands before the core path (one rule, so that they are not drawn more
        often than the shared-group ones)."""
        key, model, ledger = POOL[i], self.model, self.ledger
        commands: dict[str, tuple[Callable[[], None], Callable[[], None]]] = {
            "integration check passes": (
                lambda: model.complete_integration_check(key, True),
                lambda: ledger.complete_integration_check(key, ok=True),
            ),
            "integration check fails": (
                lambda: model.complete_integration_check(key, False),
                lambda: ledger.complete_integration_check(key, ok=False, reason="unknown"),
            ),
            "retry_integration_check": (
                lambda: model.retry_integration_check(key),
                lambda: ledger.retry_integration_check(key),
            ),
            "mark_not_available": (
                lambda: model.mark_not_available(key),
                lambda: ledger.mark_not_available(key, "no integration yet"),
            ),
            "assign_line": (
                lambda: model.assign_line(key, MSISDN),
                lambda: ledger.assign_line(key, MSISDN),
            ),
            "assign_to_company": (
                lambda: model.assign_to_company(key, "ACME"),
                lambda: ledger.assign_to_company(key, "ACME"),
            ),
            "mark_store_use": (
                lambda: model.mark_store_use(key),
                lambda: ledger.mark_store_use(key),
            ),
        }
        self.step(which, *commands[which])

    @rule(i=sim_index, package=package_key)
    def assign_package(self, i: int, package: str) -> None:
        self.step(
            "assign_package",
            lambda: self.model.assign_package(POOL[i], package, self.clock.now),
            lambda: self.ledger.assign_package(POOL[i], self.package_ids[package]),
        )

    @rule(i=sim_index, aim=st.booleans())
    def activate(self, i: int, aim: bool = False) -> None:
        key = self.pick(i, self.in_status(SimStatus.ACTIVATION_READY), aim)
        self.step("activate", lambda: self.model.activate(key), lambda: self.ledger.activate(key))

    # ---- pause and resume -------------------------------------------------------------------
    @rule(pause=st.booleans(), indexes=sim_indexes, aim=st.booleans())
    def bulk(self, pause: bool, indexes: list[int], aim: bool) -> None:
        """``pause`` or ``resume`` of a few SIMs (with ``aim``: ones in the status for it)."""
        kind = OperationKind.PAUSE if pause else OperationKind.RESUME
        wanted = SimStatus.ACTIVE if pause else SimStatus.SUSPENDED
        operation = f"op{next(self.numbers)}"
        keys = [self.pick(i, self.in_status(wanted), aim) for i in indexes]
        call = self.ledger.pause if pause else self.ledger.resume
        answer, result = self.step(
            kind.value,
            lambda: self.model.bulk(operation, kind, keys, self.clock.now),
            lambda: call(keys),
        )
        assert isinstance(answer, BulkAnswer)
        assert result.accepted == answer.accepted
        assert set(result.rejected) == set(answer.rejected)
        note(f"{kind.value}: {len(answer.accepted)} accepted")
        self.operation_ids[operation] = result.operation_id
        self.flights.extend((operation, key) for key in answer.accepted)

    @precondition(lambda self: bool(self.flights))
    @rule(n=st.integers(0, 20), ok=st.booleans(), live=st.booleans())
    def confirm(self, n: int, ok: bool, live: bool) -> None:
        """A carrier's answer, to a request still waiting (``live``) or to any ever made."""
        waiting = [
            (sim.in_flight.operation, key)
            for key, sim in self.model.sims.items()
            if sim.in_flight is not None
        ]
        pairs = waiting if live and waiting else self.flights
        operation, key = pairs[n % len(pairs)]
        outcome, _ = self.step(
            "confirm",
            lambda: self.model.confirm(operation, key, ok),
            lambda: self.ledger.confirm(self.operation_ids[operation], key, ok=ok),
        )
        if outcome is not None:
            note(f"confirm: {outcome}")

    @rule(i=sim_index, clear=st.booleans())
    def system_pause(self, i: int, clear: bool) -> None:
        """R-SIM6: suspend by the system, or an operator's explicit override."""
        key = POOL[i]
        if clear:
            self.step(
                "clear_system_pause",
                lambda: self.model.clear_system_pause(key),
                lambda: self.ledger.clear_system_pause(key),
            )
        else:
            self.step(
                "suspend_by_system",
                lambda: self.model.suspend_by_system(key, CAUSE),
                lambda: self.ledger.suspend_by_system(key, CAUSE),
            )

    # ---- SIM swap ---------------------------------------------------------------------------
    @rule(i=sim_index, complete=st.booleans())
    def sim_swap(self, i: int, complete: bool) -> None:
        if complete:
            key = self.pick(i, [k for k, s in self.model.sims.items() if s.swap_from], True)
            self.step(
                "complete_sim_swap",
                lambda: self.model.complete_sim_swap(key),
                lambda: self.ledger.complete_sim_swap(key),
            )
        else:
            key = POOL[i]
            self.step(
                "start_sim_swap",
                lambda: self.model.start_sim_swap(key),
                lambda: self.ledger.start_sim_swap(key),
            )

    # ---- usage, balance, time ---------------------------------------------------------------
    @rule(i=sim_index, mb=megabytes, aim=st.booleans())
    def record_usage(self, i: int, mb: Decimal, aim: bool) -> None:
        """With ``aim``: a SIM in service, a member of an undepleted pool if there is one."""
        in_service = self.in_status(SimStatus.ACTIVE, SimStatus.SUSPENDED)
        drawing = [
            k
            for k in in_service
            if (group := self.model.sims[k].group) and not self.model.groups[group].depleted
        ]
        key = self.pick(i, drawing or in_service, aim)
        self.step(
            "record_usage",
            lambda: self.model.record_usage(key, mb, self.clock.now),
            lambda: self.ledger.record_usage(key, mb),
        )

    @rule(i=sim_index, mb=st.integers(1, 200))
    def top_up(self, i: int, mb: int) -> None:
        self.step(
            "top_up",
            lambda: self.model.top_up(POOL[i], Decimal(mb), self.clock.now),
            lambda: self.ledger.top_up(POOL[i], mb),
        )

    @rule(hours=st.integers(1, 96))
    def advance_clock(self, hours: int) -> None:
        self.clock.advance(timedelta(hours=hours))

    @rule()
    def expire_packages(self) -> None:
        answer, result = self.step(
            "expire_packages",
            lambda: self.model.expire_packages(self.clock.now),
            lambda: self.ledger.expire_packages(self.clock.now),
        )
        assert isinstance(answer, ExpiryAnswer)
        groups = {str(self.group_ids[g]) for g in answer.depleted_groups}
        assert groups <= set(result.depleted)
        assert len(result.depleted) == answer.depleted_copies + len(groups)
        assert len(result.renewed) == answer.renewed_copies
        if groups:
            note("expire_packages: a pool expired")

    # ---- shared groups ------------------------------------------------------------------------
    def free_sims(self) -> list[str]:
        return [k for k in POOL if self.model.may_join(k, self.clock.now)]

    @rule(
        indexes=st.lists(sim_index, min_size=0, max_size=4),
        package=package_key,
        notify=st.booleans(),
        aim=st.booleans(),
    )
    def create_shared_group(
        self, indexes: list[int], package: str, notify: bool, aim: bool
    ) -> None:
        key = f"g{next(self.numbers)}"
        free = self.free_sims()
        keys = [self.pick(i, free, aim) for i in indexes]
        _, group_id = self.step(
            "create_shared_group",
            lambda: self.model.create_shared_group(key, key, keys, package, self.clock.now),
            lambda: self.ledger.create_shared_group(
                key, keys, self.package_ids[package], notify_users=notify
            ),
        )
        if group_id is not None:
            self.group_ids[key] = group_id
            self.group_keys.append(key)
            assert self.ledger.shared_group(group_id).notify_users is notify

    @rule(g=group_index, i=sim_index, aim=st.booleans())
    def add_to_shared_group(self, g: int, i: int, aim: bool) -> None:
        group = self.group_key(g, open_ones=aim)
        key = self.pick(i, self.free_sims(), aim)
        self.step(
            "add_to_shared_group",
            lambda: self.model.add_to_shared_group(group, key, self.clock.now),
            lambda: self.ledger.add_to_shared_group(self.group_ids[group], key),
        )

    @rule(g=group_index, i=sim_index, aim=st.booleans())
    def remove_from_shared_group(self, g: int, i: int, aim: bool) -> None:
        group = self.group_key(g, open_ones=aim)
        members = self.model.groups[group].members if group in self.model.groups else []
        key = self.pick(i, members, aim)
        self.step(
            "remove_from_shared_group",
            lambda: self.model.remove_from_shared_group(group, key),
            lambda: self.ledger.remove_from_shared_group(self.group_ids[group], key),
        )

    @rule(g=group_index, to=st.none() | group_index, aim=st.booleans())
    def delete_shared_group(self, g: int, to: int | None, aim: bool = False) -> None:
        """Ungroup, or with ``to`` move the SIMs there (with ``aim``: an open target)."""
        group = self.group_key(g)
        target = None if to is None else self.group_key(to, open_ones=aim)
        self.step(
            "delete_shared_group" + ("" if target is None else " (move_to)"),
            lambda: self.model.delete_shared_group(group, target),
            lambda: self.ledger.delete_shared_group(
                self.group_ids[group],
                move_to=None if target is None else self.group_ids[target],
            ),
        )

    # ---- invariants -----------------------------------------------------------------------------
    def stored(self) -> int:
        """How many events the store holds (the in-memory store numbers them without gaps)."""
        return self.ledger.recorder.max_notification_id() or 0

    def read_side(self) -> tuple[dict[str, SimView], dict[str, SharedGroupView]]:
        """The engine's view of every SIM and group, read once per step for all invariants."""
        mark = (self.stored(), len(self.group_keys))
        if self.read is None or self.read[0] != mark:
            sims = {k: self.ledger.sim(k) for k in self.model.sims}
            groups = {g: self.ledger.shared_group(self.group_ids[g]) for g in self.group_keys}
            self.read = (mark, sims, groups)
        return self.read[1], self.read[2]

    @invariant()
    def sims_match_the_model(self) -> None:
        views, _ = self.read_side()
        for key in POOL:
            expected = self.model.sims.get(key)
            if expected is None:
                with pytest.raises(UnknownSim):
                    self.ledger.sim(key)
                continue
            view = views[key]
            assert view.status is expected.status, key
            assert view.group_id == (expected.group and self.group_ids[expected.group]), key
            assert view.package_id == (expected.package and self.package_ids[expected.package]), key
            assert view.data_left_mb == self.model.data_left(key), key
            assert (view.copy_id is None) == (expected.copy is None), key
            assert view.suspended_reason == expected.suspended_reason, key
            assert view.system_cause == expected.system_cause, key
            assert view.cause_cleared is expected.cause_cleared, key
            flight = view.operation_in_flight
            assert (flight and flight["operation_id"]) == (
                expected.in_flight and str(self.operation_ids[expected.in_flight.operation])
            ), key

    @invariant()
    def a_sim_is_in_at_most_one_shared_group(self) -> None:
        views, groups = self.read_side()
        listed: dict[str, set[UUID]] = {}
        for key, view in groups.items():
            expected = self.model.groups[key]
            assert view.members == expected.members, key
            assert (view.depleted, view.deleted, view.locked) == (
                expected.depleted,
                expected.deleted,
                expected.locked,
            ), key
            assert view.data_left_mb == expected.usable, key
            for member in view.members:
                listed.setdefault(member, set()).add(view.group_id)
        for key, sim in views.items():
            assert listed.get(key, set()) == (set() if sim.group_id is None else {sim.group_id})

    @invariant()
    def pools_are_drawn_by_members_only_and_never_below_zero(self) -> None:
        _, groups = self.read_side()
        for key, view in groups.items():
            walk = self.pool_walks.setdefault(key, PoolWalk())
            walk.read(self.ledger.events.get(str(view.group_id), gt=walk.version))
            expected = self.model.groups[key]
            assert view.data_left_mb >= 0, key
            # What was drawn is what the pool lost; an expired pool shows 0 left but kept
            # the rest of its balance.
            drawn = sum(mb for _, mb in walk.draws)
            assert drawn <= walk.data_mb, f"{key} drew more than its pool"
            assert drawn == walk.data_mb - expected.data_left, key
            if not expected.depleted:
                assert drawn == walk.data_mb - view.data_left_mb, key
            elif expected.data_left == 0:
                assert drawn == walk.data_mb, key  # depleted by usage: all of it was drawn
            assert walk.draws == expected.draws, key

    @invariant()
    def statuses_move_only_along_the_table(self) -> None:
        for key in self.model.sims:
            walk = self.status_walks.setdefault(key, StatusWalk())
            walk.read(self.ledger.events.get(key, gt=walk.version))


@dataclass
class PoolWalk:
    """A group's events read so far: who is a member, and every draw on the pool."""

    version: int = 0
    data_mb: Decimal = Decimal(0)
    members: list[str] = field(default_factory=list)
    draws: list[tuple[str, Decimal]] = field(default_factory=list)

    def read(self, events: Iterable[Any]) -> None:
        for change in events:
            self.version = change.originator_version
            if isinstance(change, SharedGroup.Created):
                self.members, self.data_mb = list(change.members), change.data_mb
            elif isinstance(change, SharedGroup.MemberAdded):
                self.members.append(change.iccid)
            elif isinstance(change, SharedGroup.MemberRemoved):
                self.members.remove(change.iccid)
            elif isinstance(change, SharedGroup.MembersMovedIn):
                self.members.extend(change.iccids)
            elif isinstance(change, (SharedGroup.MembersMovedOut, SharedGroup.Deleted)):
                self.members = []
            elif isinstance(change, SharedGroup.UsageDrawn):
                assert change.iccid in self.members, f"{change.iccid} drew as a non-member"
                assert change.mb > 0
                self.draws.append((change.iccid, change.mb))


_STATUS_COMMANDS: dict[type[Any], Cmd] = {
    Sim.IntegrationRetried: Cmd.RETRY_INTEGRATION_CHECK,
    Sim.MarkedNotAvailable: Cmd.MARK_NOT_AVAILABLE,
    Sim.LineAssigned: Cmd.ASSIGN_LINE,
    Sim.CompanyAssigned: Cmd.ASSIGN_COMPANY,
    Sim.MarkedForStoreUse: Cmd.MARK_STORE_USE,
    Sim.PackageAssigned: Cmd.ASSIGN_PACKAGE,
    Sim.PackageShared: Cmd.JOIN_SHARED_GROUP,
    Sim.LeftSharedGroup: Cmd.LEAVE_SHARED_GROUP,
    Sim.AssignedToCustomer: Cmd.ASSIGN_TO_CUSTOMER,
    Sim.Activated: Cmd.ACTIVATE,
    Sim.Paused: Cmd.PAUSE,
    Sim.Resumed: Cmd.RESUME,
    Sim.SuspendedBySystem: Cmd.SUSPEND_BY_SYSTEM,
    Sim.SystemPauseCleared: Cmd.CLEAR_SYSTEM_PAUSE,
    Sim.SimSwapStarted: Cmd.START_SIM_SWAP,
    Sim.SimSwapCompleted: Cmd.COMPLETE_SIM_SWAP,
}
_GUARDED_COMMANDS: dict[type[Any], Cmd] = {  # events that keep the status, yet need the table
    Sim.UsageRecorded: Cmd.RECORD_USAGE,
    Sim.ToppedUp: Cmd.TOP_UP,
    Sim.PauseRequested: Cmd.PAUSE,
    Sim.ResumeRequested: Cmd.RESUME,
}


@dataclass
class StatusWalk:
    """A SIM's events read so far; each status change must be a pair of the lifecycle
    table (R-SIM4), and a swap must return where it started."""

    version: int = 0
    status: SimStatus | None = None
    back_to: SimStatus | None = None  # where a running SIM swap returns

    def read(self, events: Iterable[Any]) -> None:
        for change in events:
            self.version = change.originator_version
            self.step(change)

    def step(self, change: Any) -> None:
        where = f"{change.originator_id} v{change.originator_version} {type(change).__name__}"
        if isinstance(change, Sim.Received):
            received = (
                Cmd.RECEIVE
                if change.status == SimStatus.PENDING
                else Cmd.RECEIVE_WITHOUT_INTEGRATION
            )
            assert TRANSITIONS[(None, received)] == change.status, where
            self.status = SimStatus(change.status)
            return
        status = self.status
        assert status is not None, where
        guarded = _GUARDED_COMMANDS.get(type(change))
        if guarded is not None:
            assert (status, guarded) in TRANSITIONS, f"{where} in status {status}"
        if not isinstance(change, Sim.StatusChanged):
            return
        if isinstance(change, Sim.IntegrationChecked):
            command = Cmd.PASS_INTEGRATION_CHECK if change.ok else Cmd.FAIL_INTEGRATION_CHECK
        else:
            command = _STATUS_COMMANDS[type(change)]
        new = SimStatus(change.status)
        assert (status, command) in TRANSITIONS, f"{where}: {status} has no {command}"
        target = TRANSITIONS[(status, command)]
        if target is Target.READINESS:
            assert new in (SimStatus.BLANK, SimStatus.ACTIVATION_READY), where
        elif target is Target.PREVIOUS:
            assert new is self.back_to, f"{where}: swap from {self.back_to}, back to {new}"
        else:
            assert new is target, f"{where}: {status} --{command}--> {new}, table: {target}"
        if isinstance(change, Sim.SimSwapStarted):
            self.back_to = status
        elif isinstance(change, Sim.SimSwapCompleted):
            self.back_to = None
        elif isinstance(change, Sim.LeftSharedGroup) and self.back_to is SimStatus.ACTIVATION_READY:
            self.back_to = SimStatus.BLANK  # its plan left with the group (R-SIM5)
        self.status = new


TestFleet = FleetMachine.TestCase
TestFleet.settings = settings(
    max_examples=100,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


# ---- fixed scenarios: sequences the machine found, or that reach deep states, kept as tests


def run_scenario(steps: list[tuple[str, dict[str, Any]]]) -> FleetMachine:
    """Run ``steps`` (rule name, arguments) on a fresh machine, checking the invariants after
    each one, as hypothesis does."""
    machine = FleetMachine()
    try:
        for name, arguments in steps:
            getattr(machine, name)(**arguments)
            machine.sims_match_the_model()
            machine.a_sim_is_in_at_most_one_shared_group()
            machine.pools_are_drawn_by_members_only_and_never_below_zero()
            machine.statuses_move_only_along_the_table()
    finally:
        machine.teardown()
    return machine


ALONE = ["absent"] * (len(POOL) - 1)


def test_scenario_a_sim_leaving_its_group_during_a_swap_comes_back_without_a_plan() -> None:
    """R-SIM4 + R-SIM5: the swap returns the SIM to where it was, but its plan left with the
    group meanwhile, so it cannot come back as ``activation_ready``."""
    run_scenario(
        [
            (
                "start_fleet",
                {
                    "stages": ["group", *ALONE],
                    "prepaid": [False] * len(POOL),
                    "packages": ["small"] * len(POOL),
                    "group_package": "big",
                },
            ),
            ("sim_swap", {"i": 0, "complete": False}),
            ("delete_shared_group", {"g": 0, "to": None}),
            ("sim_swap", {"i": 0, "complete": True}),
            ("activate", {"i": 0}),
        ]
    )


def test_scenario_a_topped_up_copy_still_expires() -> None:
    """R-PK2 + R-SIM7: a copy drained, then topped up, runs out again when its validity ends."""
    machine = run_scenario(
        [
            (
                "start_fleet",
                {
                    "stages": ["active", *ALONE],
                    "prepaid": [True] * len(POOL),
                    "packages": ["small"] * len(POOL),
                    "group_package": "big",
                },
            ),
            ("record_usage", {"i": 0, "mb": Decimal(50), "aim": False}),
            ("top_up", {"i": 0, "mb": 10}),
            ("advance_clock", {"hours": 4 * 24}),
            ("expire_packages", {}),
        ]
    )
    assert machine.model.sims[POOL[0]].system_cause == "expired"


def test_scenario_a_user_paused_member_is_paused_by_the_system_when_the_pool_runs_out() -> None:
    """R-SIM6: once the pool is empty, a plain resume must not bring a member back."""
    run_scenario(
        [
            (
                "start_fleet",
                {
                    "stages": ["group, active"] * 2 + ALONE[1:],
                    "prepaid": [False] * len(POOL),
                    "packages": ["small"] * len(POOL),
                    "group_package": "small",
                },
            ),
            ("bulk", {"pause": True, "indexes": [1], "aim": False}),
            ("confirm", {"n": 0, "ok": True, "live": True}),
            ("record_usage", {"i": 0, "mb": Decimal(60), "aim": False}),
            ("bulk", {"pause": False, "indexes": [1], "aim": False}),
            ("remove_from_shared_group", {"g": 0, "i": 1, "aim": False}),
            ("add_to_shared_group", {"g": 0, "i": 1, "aim": False}),
            ("bulk", {"pause": False, "indexes": [1], "aim": False}),
        ]
    )
