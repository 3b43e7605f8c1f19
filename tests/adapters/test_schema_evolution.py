"""Schema evolution (issue 5, item 4): stored events of the first release still load.

The fixtures (tests/fixtures/) were written once, by make_first_release.py, from a store
built through the public API: every event class of every aggregate, a snapshot, and
``BulkOperation.Requested`` records in their first form (class version 1, before
``requested_at``). These tests decode them with today's classes and load the whole store
into fresh SQLite and PostgreSQL stores. The schema lock (event_schema.json) makes a
change to a stored event class fail here unless its ``class_version`` was bumped.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
import types
import typing
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic, resolve_topic
from helpers import AGGREGATES

from simledger import SimLedger
from simledger.adapters.store.batch_load import load_many
from simledger.application.audit import verify_store
from simledger.domain.base import Snapshot
from simledger.domain.bulk import BulkOperation
from simledger.domain.iccid import make_iccid
from simledger.domain.package import Package
from simledger.domain.sim import Sim
from simledger.domain.types import SimStatus

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
REQUESTED = get_topic(BulkOperation.Requested)
FIXTURE_T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
"""make_first_release.py's clock when the fleet was built."""


@cache
def first_release() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / "first_release_events.json").read_text())
    return data


def _load_script(name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, FIXTURES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fixture_sim(number: int) -> str:
    """The ICCIDs make_first_release.py gave its SIMs."""
    return make_iccid(f"8944100{number:012d}")


def stored_event(record: dict[str, Any]) -> StoredEvent:
    return StoredEvent(
        originator_id=record["originator_id"],
        originator_version=record["originator_version"],
        topic=record["topic"],
        state=record["state"].encode("utf8"),
    )


def _conforms(value: Any, hint: Any) -> bool:
    """Whether ``value`` has the type ``hint`` declares (unions, lists and dicts walked)."""
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, arg) for arg in typing.get_args(hint))
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_conforms(v, item) for v in value)
    if origin is dict:
        key, val = typing.get_args(hint)
        return isinstance(value, dict) and all(
            _conforms(k, key) and _conforms(v, val) for k, v in value.items()
        )
    if hint is int and isinstance(value, bool):
        return False
    return isinstance(value, hint)


def _fields(cls: type) -> dict[str, Any]:
    """Each dataclass field of ``cls`` with its declared type, evaluated in the module of
    the class that declares it (the annotations are strings)."""
    hints: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        owner = next(c for c in cls.__mro__ if field.name in vars(c).get("__annotations__", {}))
        hint = field.type
        hints[field.name] = (
            eval(hint, vars(sys.modules[owner.__module__])) if isinstance(hint, str) else hint
        )
    return hints


# ---- every stored event decodes ------------------------------------------------------------
@pytest.fixture(scope="module")
def mapper() -> Any:
    ledger = SimLedger()
    return ledger.mapper


@pytest.mark.parametrize("part", ["events", "v1_records"])
def test_every_first_release_event_decodes_into_its_class_with_typed_fields(
    mapper: Any, part: str
) -> None:
    records = first_release()[part]
    assert records
    for record in records:
        event = mapper.to_domain_event(stored_event(record))
        cls = resolve_topic(record["topic"])
        assert type(event) is cls, record["topic"]
        assert event.originator_id == record["originator_id"]
        assert event.originator_version == record["originator_version"]
        for name, hint in _fields(cls).items():
            where = f"{record['topic']} {record['originator_id']} v{record['originator_version']}"
            assert name in vars(event) or name == "chain", f"{where}: no {name}"
            assert _conforms(getattr(event, name), hint), f"{where}: {name} is not {hint}"
        assert event.timestamp.tzinfo is not None
        state = json.loads(record["state"])
        if state.get("class_version", 1) == getattr(cls, "class_version", 1):
            # Not upcast: written again it is the very record that was stored.
            again = json.loads(mapper.to_stored_event(event).state)
            assert again == state, record["topic"]


def test_first_release_events_cover_every_aggregate_and_carry_their_values(mapper: Any) -> None:
    events = [mapper.to_domain_event(stored_event(r)) for r in first_release()["events"]]
    aggregates = {type(e).__qualname__.split(".")[0] for e in events}
    assert aggregates == AGGREGATES

    def the(cls: type, **match: Any) -> Any:
        found = [
            e
            for e in events
            if type(e) is cls and all(getattr(e, k) == v for k, v in match.items())
        ]
        assert len(found) == 1, (cls, match, found)
        return found[0]

    usage = the(Sim.UsageRecorded, originator_id=fixture_sim(0))
    assert (usage.mb, usage.country) == (Decimal("12.5"), "GB")
    assert the(Sim.EndUserSet, originator_id=fixture_sim(0)).end_user == "ada@example.com"
    legacy = the(Sim.Received, originator_id=fixture_sim(2))
    assert (legacy.operator, legacy.esim, legacy.status) == ("LegacyTel", True, "not_available")
    assert legacy.activation_code.startswith("LPA:1$")
    catalogue = the(Package.Created, name="1 GB / 30 days")
    assert (catalogue.data_mb, catalogue.price, catalogue.validity_days) == (
        Decimal(1000),
        Decimal("9.90"),
        30,
    )
    pause = the(BulkOperation.Requested, idempotency_key="first-pause")
    assert (pause.kind, pause.accepted, pause.rejected) == ("pause", [fixture_sim(0)], {})
    # Version 2 records the ledger's clock, which is not the event's own timestamp.
    assert pause.requested_at == FIXTURE_T0 != pause.timestamp


def test_a_first_form_bulk_request_is_upcast_with_its_timestamp_as_requested_at(
    mapper: Any,
) -> None:
    v1 = first_release()["v1_records"]
    assert v1
    for record in v1:
        state = json.loads(record["state"])
        assert "requested_at" not in state and "class_version" not in state  # truly version 1
        event = mapper.to_domain_event(stored_event(record))
        assert isinstance(event, BulkOperation.Requested)
        assert event.requested_at == event.timestamp
        assert event.kind in ("pause", "resume")
        # Written again, it is a version 2 record.
        rewritten = json.loads(mapper.to_stored_event(event).state)
        assert rewritten["class_version"] == 2
        assert "requested_at" in rewritten


def test_the_first_release_snapshot_rebuilds_its_sim(mapper: Any) -> None:
    [record] = first_release()["snapshots"]
    snapshot = mapper.to_domain_event(stored_event(record))
    assert isinstance(snapshot, Snapshot)
    sim = snapshot.mutate(None)
    assert isinstance(sim, Sim)
    assert sim.id == record["originator_id"] == fixture_sim(16)
    assert sim.version == record["originator_version"]
    assert sim.status is SimStatus.PENDING
    assert sim.note == f"note {sim.version - 2}"  # Received, then 105 notes


# ---- a whole first-release store loads ------------------------------------------------------
def _subset(expected: Any, actual: Any) -> Any:
    """``actual`` cut to the keys ``expected`` has (fields added later are not compared)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        return {k: _subset(v, actual.get(k)) for k, v in expected.items()}
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        return [_subset(e, a) for e, a in zip(expected, actual, strict=True)]
    return actual


def test_a_first_release_store_loads_into_a_fresh_store(
    persistent_store_env: dict[str, str],
) -> None:
    data = first_release()
    expected = data["expected"]
    now = datetime.fromisoformat(data["clock"])
    ledger = SimLedger(persistent_store_env, clock=lambda: now)
    try:
        ledger.recorder.insert_events(
            [stored_event(r) for r in [*data["events"], *data["v1_records"]]]
        )
        assert ledger.snapshots is not None
        ledger.snapshots.recorder.insert_events([stored_event(r) for r in data["snapshots"]])

        for iccid, view in expected["sims"].items():
            assert _subset(view, ledger.sim(iccid).model_dump(mode="json")) == view, iccid
        for iccid, entries in expected["history"].items():
            actual = [h.model_dump(mode="json") for h in ledger.history(iccid)]
            assert _subset(entries, actual) == entries, iccid
        for group_id, view in expected["groups"].items():
            assert _subset(view, ledger.shared_group(group_id).model_dump(mode="json")) == view
        activity = [p.model_dump(mode="json") for p in ledger.pending_activity()]
        assert _subset(expected["pending_activity"], activity) == expected["pending_activity"]
        for text, found in expected["searches"].items():
            assert [i.iccid for i in ledger.sims(search=text, limit=1000).items] == found, text
        assert ledger.sims(limit=1000).total == len(expected["sims"])

        # Version 1 requests load as operations dated by their own timestamp, through the
        # repository and through the batch loader alike.
        v1_ids = [r["originator_id"] for r in data["v1_records"]]
        batch = load_many(ledger, v1_ids)
        assert sorted(batch) == sorted(v1_ids)
        for op_id in v1_ids:
            op: Any = ledger.repository.get(op_id)
            assert isinstance(op, BulkOperation)
            assert op.requested_at == op.created_on
            assert batch[op_id].requested_at == op.requested_at
            assert batch[op_id].accepted == op.accepted
        dated = {str(p.operation_id): p.requested_at for p in ledger.pending_activity()}
        for op_id in v1_ids:
            assert dated[op_id] == ledger.repository.get(op_id).created_on

        # The replayable audit accepts the old store: hash chains (the version 1 requests
        # predate them), pools, snapshot and views.
        report = verify_store(ledger)
        assert report.ok, [str(p) for p in report.problems]

        # The loaded store takes new commands on top of the old events.
        ledger.set_note(fixture_sim(0), "after the upgrade")
        assert ledger.sim(fixture_sim(0)).note == "after the upgrade"
        assert uuid.UUID(str(ledger.pause([fixture_sim(5)]).operation_id))
    finally:
        ledger.close()


# ---- the schema lock -------------------------------------------------------------------------
def _lock_problems(lock: dict[str, Any], live: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    for part, shape in (("events", "fields"), ("aggregates", "attributes")):
        locked, current = lock.get(part, {}), live[part]
        for topic in sorted(locked.keys() - current.keys()):
            problems.append(
                f"{topic} is gone, but stored records name it: keep the class (it can be "
                "deprecated, not removed), or upcast its records before removing it"
            )
        for topic in sorted(current.keys() - locked.keys()):
            problems.append(f"{topic} is new: add it to the lock")
        for topic in sorted(current.keys() & locked.keys()):
            was, now = locked[topic], current[topic]
            if now["class_version"] < was["class_version"]:
                problems.append(
                    f"{topic}: class_version went down from {was['class_version']} to "
                    f"{now['class_version']}"
                )
            elif now["class_version"] == was["class_version"] and now[shape] != was[shape]:
                problems.append(
                    f"{topic}: its {shape} changed without a class_version bump "
                    f"(was {was[shape]}, now {now[shape]}): set class_version = "
                    f"{was['class_version'] + 1} and add upcast_v{was['class_version']}_v"
                    f"{was['class_version'] + 1}(state) that turns a stored older state into "
                    "the new form"
                )
            elif now["class_version"] > was["class_version"]:
                problems.append(
                    f"{topic}: class_version is now {now['class_version']} (was "
                    f"{was['class_version']}): regenerate the lock"
                )
    return problems


def test_stored_event_classes_match_the_schema_lock() -> None:
    script = _load_script("make_event_schema")
    lock = json.loads((FIXTURES / "event_schema.json").read_text())
    problems = _lock_problems(lock, script.current_schema())
    assert not problems, (
        "The classes of stored events differ from tests/fixtures/event_schema.json:\n  "
        + "\n  ".join(problems)
        + "\nStored events are never changed: a class whose fields change gets a new "
        "class_version and an upcaster (ARCHITECTURE.md, 'Event versions'). Then "
        f"regenerate the lock with `{script.REGENERATE}` and commit it."
    )


def test_the_schema_lock_catches_a_field_change_without_a_version_bump() -> None:
    script = _load_script("make_event_schema")
    live = script.current_schema()
    lock = json.loads(json.dumps(live))
    assert _lock_problems(lock, live) == []
    changed = json.loads(json.dumps(live))
    changed["events"][REQUESTED]["fields"]["priority"] = "int"
    [problem] = _lock_problems(lock, changed)
    assert "without a class_version bump" in problem and "upcast_v2_v3" in problem
    changed["events"][REQUESTED]["class_version"] = 3
    [problem] = _lock_problems(lock, changed)
    assert "regenerate the lock" in problem
    snapshot_change = json.loads(json.dumps(live))
    snapshot_change["aggregates"][get_topic(Sim)]["attributes"].append("imei")
    [problem] = _lock_problems(lock, snapshot_change)
    upcaster = f"upcast_v{Sim.class_version}_v{Sim.class_version + 1}"
    assert get_topic(Sim) in problem and upcaster in problem


def test_every_class_version_has_its_upcasters() -> None:
    script = _load_script("make_event_schema")
    for cls in [*script.event_classes(), *script.aggregate_classes()]:
        version = getattr(cls, "class_version", 1)
        for step in range(1, version):
            assert callable(getattr(cls, f"upcast_v{step}_v{step + 1}", None)), (
                f"{get_topic(cls)} has class_version {version} but no upcast_v{step}_v{step + 1}"
            )
