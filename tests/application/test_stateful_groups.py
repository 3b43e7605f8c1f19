"""Stateful property tests of regular groups (R-RG1..3), session records (R-SS1..2) and
Always On (R-AO1..2): the fleet machine of ``test_stateful.py`` (SIMs through their
lifecycle, packages, shared pools, pauses, the clock, engine and model in step) with these
steps added, and their invariants checked after every step:

* deleting or emptying a regular group never removes a SIM: the SIM list holds every SIM
  the model has;
* each SIM's regular groups in the SIM list, each group's members (``regular_group``) and
  the list filtered by each group equal the model's;
* each SIM's in-session column equals the state of its latest session record by time
  (``n/a`` before any), each record counted once;
* each SIM's Always On equals the model's, and an Always On SIM is never paused by the
  system for a package that ran out (the base machine's status invariants, on a model that
  skips that pause for it).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from application.test_stateful import NO_INTEGRATION, POOL, FleetMachine
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, rule
from model import Model, ModelSim, Refused

from simledger.domain.types import SimType

group_index = st.integers(0, 5)  # 5: a group that does not exist
sim_index = st.integers(0, len(POOL) - 1)


@dataclasses.dataclass
class AlwaysOnSim(ModelSim):
    always_on: bool = False

    def suspend_for_package(self, cause: str) -> None:
        if not self.always_on:  # R-AO2: its data keeps working without a package
            super().suspend_for_package(cause)


class GroupsModel(Model):
    """The base model, whose SIMs may have Always On, with regular groups and sessions."""

    def __init__(self, base: Model) -> None:
        super().__init__(operators_without_integration=base.without_integration)
        self.packages = base.packages
        self.regular: dict[str, list[str]] = {}  # live groups: members in joining order
        self.deleted: set[str] = set()
        self.receipts: set[str] = set()
        self.session: dict[str, tuple[datetime, str]] = {}  # ICCID -> (latest at, yes/no)

    def receive(self, iccid: str, operator: str, sim_type: SimType) -> None:
        super().receive(iccid, operator, sim_type)
        plain = self.sims[iccid]
        self.sims[iccid] = AlwaysOnSim(
            **{f.name: getattr(plain, f.name) for f in dataclasses.fields(plain)}
        )

    def live(self, key: str) -> list[str]:
        if key not in self.regular:
            raise Refused("UnknownRegularGroup", "R-RG1", key)
        return self.regular[key]

    def create_group(self, key: str, iccids: list[str]) -> None:
        for iccid in dict.fromkeys(iccids):
            self.sim(iccid)
        self.regular[key] = list(dict.fromkeys(iccids))

    def add_to_group(self, key: str, iccid: str) -> None:
        members = self.live(key)
        self.sim(iccid)
        if iccid in members:
            raise Refused("RegularGroupMembership", "R-RG2", iccid)
        members.append(iccid)

    def remove_from_group(self, key: str, iccid: str) -> None:
        members = self.live(key)
        if iccid not in members:
            raise Refused("RegularGroupMembership", "R-RG2", iccid)
        members.remove(iccid)

    def delete_group(self, key: str, move_to: str | None) -> None:
        members = self.live(key)
        if move_to is None:
            del self.regular[key]
            self.deleted.add(key)
            return
        target = self.live(move_to)
        if move_to == key:
            raise Refused("InvalidInput", "R-RG3", key)
        target.extend(m for m in members if m not in target)
        members.clear()

    def record_session(self, record_id: str, iccid: str, kind: str, at: datetime) -> bool:
        if record_id in self.receipts:
            return False
        sim = self.sim(iccid)
        if sim.status.value == "not_available":
            raise Refused("InvalidInput", "R-SS1", iccid)
        self.receipts.add(record_id)
        latest = self.session.get(iccid)
        if latest is None or at >= latest[0]:
            self.session[iccid] = (at, "yes" if kind == "started" else "no")
        return True

    def set_always_on(self, iccid: str, on: bool) -> None:
        sim = self.sim(iccid)
        assert isinstance(sim, AlwaysOnSim)
        if sim.always_on == on:
            raise Refused("InvalidInput", "R-AO1", iccid)
        sim.always_on = on


class GroupsMachine(FleetMachine):
    def __init__(self) -> None:
        super().__init__()
        self.model = self.groups_model = GroupsModel(self.model)
        self.regular_ids: dict[str, UUID] = {"r?": UUID(int=3)}
        self.regular_keys: list[str] = []
        self.records = 0

    def regular_key(self, index: int) -> str:
        keys = self.regular_keys
        return "r?" if index == 5 or not keys else keys[index % len(keys)]

    # ---- regular groups -------------------------------------------------------------------------
    @initialize(first=st.lists(sim_index, max_size=3), second=st.lists(sim_index, max_size=3))
    def two_groups(self, first: list[int], second: list[int]) -> None:
        """Two regular groups from the start, so that their changes are most of the steps."""
        self.create_group(first)
        self.create_group(second)

    @rule(indexes=st.lists(sim_index, max_size=3))
    def create_group(self, indexes: list[int]) -> None:
        key = f"r{len(self.regular_keys) + 1}"
        keys = [POOL[i] for i in indexes]
        _, group_id = self.step(
            "create_group",
            lambda: self.groups_model.create_group(key, keys),
            lambda: self.ledger.create_group(key, keys),
        )
        if group_id is not None:
            self.regular_ids[key] = group_id
            self.regular_keys.append(key)

    @rule(g=group_index, i=sim_index, add=st.booleans(), aim=st.booleans())
    def change_members(self, g: int, i: int, add: bool, aim: bool) -> None:
        """With ``aim``: a SIM that can be added (one not in the group) or removed."""
        group = self.regular_key(g)
        model, ledger, group_id = self.groups_model, self.ledger, self.regular_ids[group]
        members = model.regular.get(group, [])
        outside = [k for k in model.sims if k not in members]
        iccid = self.pick(i, outside if add else members, aim)
        if add:
            self.step(
                "add_to_group",
                lambda: model.add_to_group(group, iccid),
                lambda: ledger.add_to_group(group_id, iccid),
            )
        else:
            self.step(
                "remove_from_group",
                lambda: model.remove_from_group(group, iccid),
                lambda: ledger.remove_from_group(group_id, iccid),
            )

    @rule(g=group_index, to=st.none() | group_index)
    def delete_group(self, g: int, to: int | None) -> None:
        group = self.regular_key(g)
        target = None if to is None else self.regular_key(to)
        self.step(
            "delete_group" + ("" if target is None else " (move_to)"),
            lambda: self.groups_model.delete_group(group, target),
            lambda: self.ledger.delete_group(
                self.regular_ids[group],
                move_to=None if target is None else self.regular_ids[target],
            ),
        )

    # ---- sessions and Always On ---------------------------------------------------------------
    @rule(i=sim_index, started=st.booleans(), minutes=st.integers(-30, 30), again=st.booleans())
    def record_session(self, i: int, started: bool, minutes: int, again: bool) -> None:
        """A session record at about the clock's time (late ones too); with ``again``, the
        id of the previous record: delivered twice."""
        if not again or not self.records:
            self.records += 1
        record_id, kind = f"s{self.records}", "started" if started else "ended"
        at = self.clock.now + timedelta(minutes=minutes)
        expected, counted = self.step(
            "record_session",
            lambda: self.groups_model.record_session(record_id, POOL[i], kind, at),
            lambda: self.ledger.record_session(record_id, POOL[i], kind, at=at),
        )
        assert expected == counted

    @rule(i=sim_index, on=st.booleans())
    def set_always_on(self, i: int, on: bool) -> None:
        self.step(
            "set_always_on",
            lambda: self.groups_model.set_always_on(POOL[i], on),
            lambda: self.ledger.set_always_on(POOL[i], on),
        )

    # ---- invariants -----------------------------------------------------------------------------
    @invariant()
    def the_sim_list_matches_the_model(self) -> None:
        model = self.groups_model
        items = {item.iccid: item for item in self.ledger.sims(limit=100).items}
        assert set(items) == set(model.sims), "a SIM appeared or vanished"
        for iccid, item in items.items():
            groups = {
                self.regular_ids[g] for g, members in model.regular.items() if iccid in members
            }
            assert len(item.regular_groups) == len(set(item.regular_groups)), iccid
            assert set(item.regular_groups) == groups, iccid
            session = model.session.get(iccid)
            assert item.in_session == (session[1] if session else "n/a"), iccid
            sim: Any = model.sims[iccid]
            assert item.always_on is sim.always_on, iccid

    @invariant()
    def groups_and_their_filter_match_the_model(self) -> None:
        model = self.groups_model
        for key in self.regular_keys:
            view = self.ledger.regular_group(self.regular_ids[key])
            assert view.deleted is (key in model.deleted), key
            members = [] if view.deleted else model.regular[key]
            assert view.members == members, key
            page = self.ledger.sims(regular_group_id=self.regular_ids[key], limit=100)
            assert [i.iccid for i in page.items] == sorted(members), key
            assert page.total == len(members), key


TestGroups = GroupsMachine.TestCase
TestGroups.settings = settings(
    max_examples=40,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

assert NO_INTEGRATION  # the base machine's operators without integration: sessions refused
