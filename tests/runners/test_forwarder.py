"""The carrier forwarder (R-BK3, R-BK6): requests out once, answers back once, silence left
pending; in-process on every store, and a real process killed with SIGKILL and restarted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from helpers import (
    FakeClock,
    active_sims,
    event_count,
    sim_in_status,
)

from simledger import ConcurrencyConflict, SimLedger, SimStatus
from simledger.adapters.carrier.gateway import CarrierAnswer, CarrierOperation, CarrierRequest
from simledger.adapters.carrier.simulator import CarrierConfig, Outcome, SimulatedCarrier
from simledger.application.forwarding import (
    APPLIED,
    DUPLICATE,
    EXPIRED,
    SENT,
    STALE,
    Forwarder,
    request_id,
)
from simledger.application.results import ConfirmResult

ANSWERS = ("Paused", "Resumed", "PauseRefused", "ResumeRefused", "OperationSuperseded")


# ---- helpers ------------------------------------------------------------------------------


def answers_for(ledger: SimLedger, iccid: str, operation_id: UUID | str) -> list[str]:
    """The answer events (by class name) the SIM's log holds for the operation."""
    return [
        entry.event
        for entry in ledger.history(iccid)
        if entry.event in ANSWERS and entry.data.get("operation_id") == str(operation_id)
    ]


def is_memory(env: dict[str, str]) -> bool:
    return env.get("PERSISTENCE_MODULE", "eventsourcing.popo") == "eventsourcing.popo"


def reopen(ledger: SimLedger, env: dict[str, str], clock: FakeClock) -> SimLedger:
    """A second ledger on the same store (the in-memory store cannot be reopened)."""
    return ledger if is_memory(env) else SimLedger(env, clock=clock)


class Crash(Exception):
    """Stands for the process dying at that point."""


class CrashAfterSend:
    """The carrier takes the requests, then the forwarder dies before recording them."""

    def __init__(self, carrier: SimulatedCarrier) -> None:
        self.carrier = carrier

    def send(self, requests: Sequence[CarrierRequest]) -> None:
        self.carrier.send(requests)
        raise Crash

    def poll_answers(self, limit: int) -> list[CarrierAnswer]:
        return self.carrier.poll_answers(limit)

    def ack(self, request_ids: Sequence[str]) -> None:
        self.carrier.ack(request_ids)


class CrashBeforeAck(CrashAfterSend):
    """The forwarder applies and records the answers, then dies before acknowledging."""

    def send(self, requests: Sequence[CarrierRequest]) -> None:
        self.carrier.send(requests)

    def ack(self, request_ids: Sequence[str]) -> None:
        raise Crash


class ScriptedCarrier:
    """A gateway that delivers the answers a test gives it (late, repeated, …)."""

    def __init__(self) -> None:
        self.sent: list[CarrierRequest] = []
        self.pending: list[CarrierAnswer] = []
        self.acked: list[str] = []

    def send(self, requests: Sequence[CarrierRequest]) -> None:
        self.sent.extend(requests)

    def answer(
        self, request: CarrierRequest, *, ok: bool = True, reason: str | None = None
    ) -> None:
        self.pending.append(
            CarrierAnswer(
                request.request_id,
                request.operation_id,
                request.kind,
                request.iccid,
                ok,
                reason,
                datetime.now(UTC),
            )
        )

    def poll_answers(self, limit: int) -> list[CarrierAnswer]:
        return self.pending[:limit]

    def ack(self, request_ids: Sequence[str]) -> None:
        self.acked.extend(request_ids)
        self.pending = [a for a in self.pending if a.request_id not in set(request_ids)]


@pytest.fixture
def ledger_env(store_env: dict[str, str]) -> dict[str, str]:
    return store_env  # the ledger on every store


# ---- in-process, every store --------------------------------------------------------------


def test_confirmations_refusals_and_silence_flow_back(ledger: SimLedger, clock: FakeClock) -> None:
    keys = active_sims(ledger, 12)
    blank = sim_in_status(ledger, SimStatus.BLANK, 100)
    result = ledger.pause([*keys, blank, "123"], idempotency_key="flow-1")
    assert result.accepted == keys
    assert set(result.rejected) == {blank, "123"}
    config = CarrierConfig(refusal_rate=0.3, silence_rate=0.3, seed=2)
    carrier = SimulatedCarrier(config, clock=clock)

    stats = Forwarder(ledger, carrier, chunk_size=5).run_once()

    records = {r.iccid: r for r in carrier.records()}
    assert sorted(records) == sorted(keys)  # rejected SIMs are never sent
    assert all(r.operation_id == str(result.operation_id) for r in records.values())
    by_outcome = Counter(r.outcome for r in records.values())
    # The operation id follows from the idempotency key, so these are fixed by the seed.
    assert all(by_outcome[o] > 0 for o in Outcome), by_outcome
    assert stats.sent == 12
    assert stats.applied == by_outcome[Outcome.OK] + by_outcome[Outcome.REFUSED]
    for key, record in records.items():
        sim = ledger.sim(key)
        answers = answers_for(ledger, key, result.operation_id)
        if record.outcome is Outcome.OK:
            assert (sim.status, answers) == (SimStatus.SUSPENDED, ["Paused"])
            assert sim.operation_in_flight is None
        elif record.outcome is Outcome.REFUSED:
            assert (sim.status, answers) == (SimStatus.ACTIVE, ["PauseRefused"])
            [refusal] = [e for e in ledger.history(key) if e.event == "PauseRefused"]
            assert refusal.data["reason"] == record.reason
        else:
            assert (sim.status, answers) == (SimStatus.ACTIVE, [])
            assert sim.operation_in_flight is not None
            assert sim.operation_in_flight["operation_id"] == str(result.operation_id)
    assert ledger.sim(blank).status is SimStatus.BLANK
    # Nothing left to do: a second round changes nothing.
    before = event_count(ledger)
    assert Forwarder(ledger, carrier).run_once().idle
    assert event_count(ledger) == before


def test_answers_arrive_after_the_carrier_delay(ledger: SimLedger, clock: FakeClock) -> None:
    keys = active_sims(ledger, 3)
    paused = ledger.pause(keys)
    carrier = SimulatedCarrier(CarrierConfig(delay=600), clock=clock)
    forwarder = Forwarder(ledger, carrier)
    assert forwarder.run_once().sent == 3
    assert {ledger.sim(k).status for k in keys} == {SimStatus.ACTIVE}
    clock.advance(timedelta(minutes=9))
    assert forwarder.run_once().idle
    clock.advance(timedelta(minutes=1))
    assert forwarder.run_once().applied == 3
    assert {ledger.sim(k).status for k in keys} == {SimStatus.SUSPENDED}
    # And back: a resume of the same SIMs goes the same way.
    resumed = ledger.resume(keys)
    assert resumed.operation_id != paused.operation_id
    forwarder.run_once()
    clock.advance(timedelta(minutes=10))
    assert forwarder.run_once().applied == 3
    assert {ledger.sim(k).status for k in keys} == {SimStatus.ACTIVE}
    assert all(answers_for(ledger, k, resumed.operation_id) == ["Resumed"] for k in keys)
    assert {r.kind for r in carrier.records()} == {CarrierOperation.PAUSE, CarrierOperation.RESUME}


def test_silence_past_the_deadline_is_left_pending(ledger: SimLedger, clock: FakeClock) -> None:
    [key] = active_sims(ledger, 1)
    first = ledger.pause([key])
    carrier = SimulatedCarrier(CarrierConfig(silence_rate=1.0), clock=clock)
    forwarder = Forwarder(ledger, carrier)
    forwarder.run_once()
    before = event_count(ledger)
    clock.advance(ledger.carrier_deadline + timedelta(hours=1))
    assert forwarder.run_once().idle
    assert event_count(ledger) == before  # nothing made up for the silent carrier
    sim = ledger.sim(key)
    assert sim.status is SimStatus.ACTIVE
    assert sim.operation_in_flight is not None
    assert sim.operation_in_flight["operation_id"] == str(first.operation_id)
    # After the deadline a new request is accepted (R-BK6) and forwarded as a new request.
    second = ledger.pause([key])
    assert second.accepted == [key]
    assert forwarder.run_once().sent == 1
    assert [r.operation_id for r in carrier.records()] == [
        str(first.operation_id),
        str(second.operation_id),
    ]


def test_requests_past_their_deadline_are_not_sent(ledger: SimLedger, clock: FakeClock) -> None:
    keys = active_sims(ledger, 2)
    result = ledger.pause(keys)
    clock.advance(ledger.carrier_deadline)
    carrier = SimulatedCarrier(clock=clock)
    forwarder = Forwarder(ledger, carrier)
    stats = forwarder.run_once()
    assert (stats.sent, stats.expired) == (0, 2)
    assert carrier.deliveries() == []
    op = str(result.operation_id)
    assert forwarder.books.sent(op) == {request_id(op, k): EXPIRED for k in keys}
    assert forwarder.run_once().idle


def test_resubmitted_idempotent_request_is_forwarded_once(
    ledger: SimLedger, clock: FakeClock
) -> None:
    keys = active_sims(ledger, 4)
    first = ledger.pause(keys, idempotency_key="batch-7")
    again = ledger.pause(keys, idempotency_key="batch-7")
    assert again == first
    carrier = SimulatedCarrier(clock=clock)
    Forwarder(ledger, carrier).run_until_idle()
    assert sorted(carrier.deliveries()) == sorted(
        request_id(str(first.operation_id), k) for k in keys
    )
    assert all(answers_for(ledger, k, first.operation_id) == ["Paused"] for k in keys)


def test_a_restarted_forwarder_sends_nothing_twice(
    ledger: SimLedger, store_env: dict[str, str], clock: FakeClock
) -> None:
    keys = active_sims(ledger, 7)
    first = ledger.pause(keys[:5])
    carrier = SimulatedCarrier(CarrierConfig(delay=60), clock=clock)
    Forwarder(ledger, carrier, chunk_size=2).run_once()
    assert len(carrier.deliveries()) == 5

    restarted = reopen(ledger, store_env, clock)
    forwarder = Forwarder(restarted, carrier, chunk_size=2)
    assert forwarder.run_once().idle
    second = restarted.pause(keys[5:])
    clock.advance(timedelta(minutes=1))
    stats = forwarder.run_once()
    assert (stats.sent, stats.applied) == (2, 5)
    clock.advance(timedelta(minutes=1))
    stats = forwarder.run_once()
    assert (stats.sent, stats.applied) == (0, 2)
    assert Counter(carrier.deliveries()).most_common(1)[0][1] == 1
    op1, op2 = str(first.operation_id), str(second.operation_id)
    assert forwarder.books.sent(op1) == {request_id(op1, k): SENT for k in keys[:5]}
    assert forwarder.books.sent(op2) == {request_id(op2, k): SENT for k in keys[5:]}
    assert set(forwarder.answer_outcomes().values()) == {APPLIED}
    assert {ledger.sim(k).status for k in keys} == {SimStatus.SUSPENDED}


def test_crash_between_send_and_bookkeeping_has_no_second_effect(
    ledger: SimLedger, store_env: dict[str, str], clock: FakeClock
) -> None:
    keys = active_sims(ledger, 6)
    result = ledger.pause(keys)
    carrier = SimulatedCarrier(clock=clock)
    with pytest.raises(Crash):
        Forwarder(ledger, CrashAfterSend(carrier), chunk_size=4).run_once()
    assert len(carrier.deliveries()) == 4  # the first chunk reached the carrier, unrecorded

    restarted = reopen(ledger, store_env, clock)
    stats = Forwarder(restarted, carrier, chunk_size=4).run_until_idle()
    counts = carrier.counts()
    # The unrecorded chunk went out again; the carrier acted on each request id once.
    assert (counts["received"], counts["duplicates"], counts["ok"]) == (10, 4, 6)
    assert stats.applied == 6
    assert all(answers_for(restarted, k, result.operation_id) == ["Paused"] for k in keys)


def test_crash_before_acknowledging_answers_applies_them_once(
    ledger: SimLedger, store_env: dict[str, str], clock: FakeClock
) -> None:
    keys = active_sims(ledger, 3)
    result = ledger.pause(keys)
    carrier = SimulatedCarrier(CarrierConfig(refusal_rate=0.5, seed=4), clock=clock)
    with pytest.raises(Crash):
        Forwarder(ledger, CrashBeforeAck(carrier)).run_once()
    before = event_count(ledger)

    restarted = reopen(ledger, store_env, clock)
    stats = Forwarder(restarted, carrier).run_until_idle()
    assert (stats.redelivered, stats.applied) == (3, 0)
    assert event_count(restarted) == before
    assert carrier.poll_answers(10) == []
    assert all(len(answers_for(restarted, k, result.operation_id)) == 1 for k in keys)


def test_answer_already_applied_or_overtaken_is_skipped(
    ledger: SimLedger, clock: FakeClock
) -> None:
    done, late = active_sims(ledger, 2)
    first = ledger.pause([done, late])
    carrier = ScriptedCarrier()
    forwarder = Forwarder(ledger, carrier)
    forwarder.run_once()
    sent = {r.iccid: r for r in carrier.sent}
    # A previous forwarder applied this answer and died before recording it.
    ledger.confirm(first.operation_id, done, ok=True)
    # This one stayed silent past the deadline, and the SIM was paused again since.
    clock.advance(ledger.carrier_deadline)
    second = ledger.pause([late])
    assert second.accepted == [late]
    before = event_count(ledger)
    carrier.answer(sent[done])
    carrier.answer(sent[late], ok=False, reason="too late")

    stats = forwarder.run_once()

    assert (stats.duplicates, stats.stale, stats.applied) == (1, 1, 0)
    assert stats.outcomes == {sent[done].request_id: DUPLICATE, sent[late].request_id: STALE}
    assert event_count(ledger) == before
    assert answers_for(ledger, done, first.operation_id) == ["Paused"]
    in_flight = ledger.sim(late).operation_in_flight
    assert in_flight is not None
    assert in_flight["operation_id"] == str(second.operation_id)
    assert carrier.pending == []  # acknowledged all the same
    assert forwarder.answer_outcomes()[sent[late].request_id] == STALE


def test_an_answer_that_keeps_colliding_is_retried_later(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock
) -> None:
    ledger = SimLedger(clock=clock)
    first, second = active_sims(ledger, 2)
    result = ledger.pause([first, second])
    carrier = SimulatedCarrier(clock=clock)
    forwarder = Forwarder(ledger, carrier)
    confirm_many = ledger.confirm_many
    collided: list[str] = []

    def busy_once(operation_id: UUID | str, answers: Any) -> ConfirmResult:
        if not collided:  # the batch's one transaction collides (all retries used up)
            collided.append(str(operation_id))
            raise ConcurrencyConflict("collided 8 times")
        return confirm_many(operation_id, answers)

    monkeypatch.setattr(ledger, "confirm_many", busy_once)
    stats = forwarder.run_once()
    assert (stats.applied, stats.deferred) == (0, 2)
    assert {ledger.sim(k).status for k in (first, second)} == {SimStatus.ACTIVE}
    assert sorted(a.iccid for a in carrier.poll_answers(10)) == sorted([first, second])  # no ack
    assert forwarder.run_once().applied == 2
    assert all(answers_for(ledger, k, result.operation_id) == ["Paused"] for k in (first, second))
    assert carrier.poll_answers(10) == []


def test_answers_go_back_one_transaction_per_operation(
    monkeypatch: pytest.MonkeyPatch, ledger: SimLedger
) -> None:
    keys = active_sims(ledger, 5)
    first, second = ledger.pause(keys[:3]), ledger.pause(keys[3:])
    carrier = ScriptedCarrier()
    forwarder = Forwarder(ledger, carrier)
    forwarder.run_once()
    sent = {r.iccid: r for r in carrier.sent}
    for key in keys:
        carrier.answer(sent[key], ok=key != keys[1], reason=None if key != keys[1] else "barred")
    carrier.answer(sent[keys[0]])  # the same answer twice in one delivery
    calls: list[tuple[str, int]] = []
    confirm_many = ledger.confirm_many

    def counting(operation_id: UUID | str, answers: Any) -> ConfirmResult:
        answers = list(answers)
        calls.append((str(operation_id), len(answers)))
        return confirm_many(operation_id, answers)

    def no_single_confirm(*args: object, **kwargs: object) -> None:
        raise AssertionError("answers are applied per operation, not one by one")

    monkeypatch.setattr(ledger, "confirm_many", counting)
    monkeypatch.setattr(ledger, "confirm", no_single_confirm)
    stats = forwarder.run_once()

    assert sorted(calls) == sorted([(str(first.operation_id), 3), (str(second.operation_id), 2)])
    assert (stats.applied, stats.redelivered) == (5, 1)
    assert carrier.pending == []
    assert ledger.sim(keys[1]).status is SimStatus.ACTIVE  # refused by the carrier
    refusal = [e for e in ledger.history(keys[1]) if e.event == "PauseRefused"]
    assert [e.data.get("reason") for e in refusal] == ["barred"]
    assert {ledger.sim(k).status for k in keys if k != keys[1]} == {SimStatus.SUSPENDED}


# ---- a real process, killed and restarted -------------------------------------------------


def _start(env: dict[str, str], carrier_db: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "simledger.runners.forwarder",
            "--carrier-db",
            str(carrier_db),
            "--chunk-size",
            "4",
            "--answer-batch",
            "4",
            "--interval",
            "0.05",
            *extra,
        ],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _kill_when(
    process: subprocess.Popen[bytes], ready: Callable[[], bool], timeout: float = 30.0
) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            raise AssertionError(f"forwarder exited early: {process.stderr.read()!r}")  # type: ignore[union-attr]
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("the forwarder made no progress")
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait(timeout=10) == -signal.SIGKILL


def test_forwarder_killed_and_restarted_sends_nothing_twice_and_loses_nothing(
    persistent_store_env: dict[str, str], tmp_path: Path
) -> None:
    env = persistent_store_env
    ledger = SimLedger(env)
    keys = active_sims(ledger, 24)
    blank = sim_in_status(ledger, SimStatus.BLANK, 100)
    # The key fixes the operation id, hence the request ids and the seeded outcomes.
    result = ledger.pause([*keys, blank], idempotency_key="kill-and-restart")
    assert result.accepted == keys and list(result.rejected) == [blank]
    carrier_db = tmp_path / "carrier.db"
    SimulatedCarrier(
        CarrierConfig(refusal_rate=0.25, silence_rate=0.2, seed=9, latency=0.1), path=carrier_db
    ).close()
    watch = SimulatedCarrier.open(carrier_db)

    # Killed while sending (most likely inside a send the carrier already took).
    _kill_when(_start(env, carrier_db), lambda: watch.counts()["received"] >= 8)
    # Restarted, and killed while relaying answers.
    _kill_when(_start(env, carrier_db), lambda: watch.counts()["acked"] >= 4)
    # Restarted until there is nothing left to do.
    final = _start(env, carrier_db, "--until-idle")
    _, stderr = final.communicate(timeout=60)
    assert final.returncode == 0, stderr.decode()

    records = watch.records()
    deliveries = watch.deliveries()
    # One carrier effect per accepted SIM: nothing lost, nothing extra, nothing rejected sent.
    assert sorted(r.iccid for r in records) == sorted(keys)
    assert {r.request_id for r in records} == {
        request_id(str(result.operation_id), k) for k in keys
    }
    # Re-sends are limited to the chunk in flight at a kill, and the carrier ignored them.
    assert set(deliveries) == {r.request_id for r in records}
    assert len(deliveries) - len(records) <= 2 * 4
    outcomes = Counter(r.outcome for r in records)
    assert outcomes[Outcome.OK] and outcomes[Outcome.REFUSED] and outcomes[Outcome.SILENT]

    reopened = SimLedger(env)
    forwarder_books = Forwarder(reopened, watch).answer_outcomes()
    for record in records:
        sim = reopened.sim(record.iccid)
        answers = answers_for(reopened, record.iccid, result.operation_id)
        if record.outcome is Outcome.SILENT:
            assert (sim.status, answers, record.acked) == (SimStatus.ACTIVE, [], False)
            assert sim.operation_in_flight is not None
            assert record.request_id not in forwarder_books
        else:
            expected = "Paused" if record.outcome is Outcome.OK else "PauseRefused"
            status = SimStatus.SUSPENDED if record.outcome is Outcome.OK else SimStatus.ACTIVE
            assert (sim.status, answers, record.acked) == (status, [expected], True)
            assert forwarder_books[record.request_id] in (APPLIED, DUPLICATE)
    assert reopened.sim(blank).status is SimStatus.BLANK
    watch.close()
