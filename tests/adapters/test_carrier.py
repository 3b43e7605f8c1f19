"""The simulated carrier behind the CarrierGateway port (R-BK3): delay, refusals, silence,
deduplication by request id, at-least-once answers until acknowledged, shared SQLite file."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from helpers import FakeClock, iccids

from simledger.adapters.carrier.gateway import CarrierGateway, CarrierOperation, CarrierRequest
from simledger.adapters.carrier.simulator import (
    REFUSAL_REASONS,
    CarrierConfig,
    Outcome,
    SimulatedCarrier,
)


def requests(n: int, *, kind: CarrierOperation = CarrierOperation.PAUSE) -> list[CarrierRequest]:
    operation_id = str(uuid.UUID(int=7))
    return [
        CarrierRequest(str(uuid.uuid5(uuid.UUID(operation_id), key)), operation_id, kind, key)
        for key in iccids(n)
    ]


def test_simulated_carrier_implements_the_port() -> None:
    assert isinstance(SimulatedCarrier(), CarrierGateway)


@pytest.mark.parametrize(
    "settings",
    [
        {"refusal_rate": -0.1},
        {"silence_rate": 1.5},
        {"refusal_rate": 0.6, "silence_rate": 0.5},
        {"delay": -1.0},
        {"latency": -0.1},
    ],
)
def test_config_out_of_range_is_refused(settings: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        CarrierConfig(**settings)  # type: ignore[arg-type]


def test_every_request_is_confirmed_by_default() -> None:
    carrier = SimulatedCarrier()
    sent = requests(5, kind=CarrierOperation.RESUME)
    carrier.send(sent)
    answers = carrier.poll_answers(100)
    assert sorted(a.request_id for a in answers) == sorted(r.request_id for r in sent)
    assert all(a.ok and a.reason is None for a in answers)
    assert {a.kind for a in answers} == {CarrierOperation.RESUME}
    assert {(a.operation_id, a.iccid) for a in answers} == {(r.operation_id, r.iccid) for r in sent}


def test_refusal_and_silence_rates_are_roughly_kept_and_deterministic() -> None:
    config = CarrierConfig(refusal_rate=0.3, silence_rate=0.2, seed=11)
    first, second = SimulatedCarrier(config), SimulatedCarrier(config)
    sent = requests(2000)
    first.send(sent)
    # Another order and other batches: the same decisions (seeded per request id).
    for start in range(0, 2000, 300):
        second.send(list(reversed(sent))[start : start + 300])
    decided = {r.request_id: (r.outcome, r.reason) for r in first.records()}
    assert decided == {r.request_id: (r.outcome, r.reason) for r in second.records()}
    counts = first.counts()
    # 2000 draws: within about 4 standard deviations of the configured rates.
    assert abs(counts["refused"] - 600) < 90, counts
    assert abs(counts["silent"] - 400) < 75, counts
    assert counts["ok"] == 2000 - counts["refused"] - counts["silent"]
    refused = [r for r in first.records() if r.outcome is Outcome.REFUSED]
    assert {r.reason for r in refused} <= set(REFUSAL_REASONS)
    answers = first.poll_answers(5000)
    assert len(answers) == counts["ok"] + counts["refused"]  # the silent ones never answer
    assert sum(not a.ok for a in answers) == counts["refused"]
    assert all(a.reason for a in answers if not a.ok)
    other_seed = SimulatedCarrier(CarrierConfig(refusal_rate=0.3, silence_rate=0.2, seed=12))
    other_seed.send(sent)
    assert {r.request_id: r.outcome for r in other_seed.records()} != {
        k: v[0] for k, v in decided.items()
    }


def test_answers_wait_for_the_delay_on_the_carrier_clock() -> None:
    clock = FakeClock()
    carrier = SimulatedCarrier(CarrierConfig(delay=600, jitter=60, seed=3), clock=clock)
    carrier.send(requests(10))
    assert carrier.poll_answers(100) == []
    clock.advance(timedelta(seconds=599))
    assert carrier.poll_answers(100) == []
    clock.advance(timedelta(seconds=62))
    answers = carrier.poll_answers(100)
    assert len(answers) == 10
    spread = {a.answered_at for a in answers}
    assert len(spread) > 1  # jitter
    assert all(clock.now - timedelta(seconds=61) <= at <= clock.now for at in spread), spread


def test_silent_requests_are_never_answered() -> None:
    clock = FakeClock()
    carrier = SimulatedCarrier(CarrierConfig(silence_rate=1.0), clock=clock)
    carrier.send(requests(4))
    clock.advance(timedelta(days=30))
    assert carrier.poll_answers(100) == []
    assert carrier.counts()["silent"] == 4


def test_a_request_id_sent_again_has_no_second_effect() -> None:
    carrier = SimulatedCarrier()
    sent = requests(3)
    carrier.send(sent)
    carrier.send(sent[1:])
    assert carrier.deliveries() == [r.request_id for r in sent + sent[1:]]
    assert len(carrier.records()) == 3
    counts = carrier.counts()
    assert (counts["received"], counts["duplicates"], counts["ok"]) == (5, 2, 3)
    assert len(carrier.poll_answers(100)) == 3  # one answer per request id


def test_answers_are_delivered_again_until_acknowledged() -> None:
    carrier = SimulatedCarrier()
    sent = requests(4)
    carrier.send(sent)
    first = carrier.poll_answers(100)
    again = carrier.poll_answers(100)
    assert [a.request_id for a in again] == [a.request_id for a in first]
    carrier.ack([a.request_id for a in first[:3]])
    rest = carrier.poll_answers(100)
    assert [a.request_id for a in rest] == [first[3].request_id]
    carrier.ack([rest[0].request_id])
    assert carrier.poll_answers(100) == []
    records = {r.request_id: r for r in carrier.records()}
    assert records[first[3].request_id].deliveries == 3
    assert records[first[0].request_id].deliveries == 2
    assert all(r.acked for r in records.values())


def test_poll_limit_is_kept() -> None:
    carrier = SimulatedCarrier()
    carrier.send(requests(7))
    assert len(carrier.poll_answers(3)) == 3


def test_latency_is_spent_on_every_call() -> None:
    carrier = SimulatedCarrier(CarrierConfig(latency=0.05))
    started = time.monotonic()
    carrier.send(requests(1))
    carrier.ack([a.request_id for a in carrier.poll_answers(10)])
    assert time.monotonic() - started >= 0.15


def test_a_carrier_file_is_shared_and_keeps_its_config(tmp_path: Path) -> None:
    path = tmp_path / "carrier.db"
    with pytest.raises(FileNotFoundError):
        SimulatedCarrier.open(path)
    config = CarrierConfig(refusal_rate=0.5, seed=5)
    writer = SimulatedCarrier(config, path=path)
    reader = SimulatedCarrier.open(path)
    assert reader.config == config
    sent = requests(20)
    writer.send(sent[:10])
    reader.send(sent[5:])  # another process re-sending half of them
    assert len(reader.records()) == 20
    assert writer.counts() == reader.counts()
    assert writer.counts()["duplicates"] == 5
    answers = reader.poll_answers(100)
    writer.ack([a.request_id for a in answers])
    assert reader.poll_answers(100) == []
    writer.close()
    reader.close()
    reopened = SimulatedCarrier.open(path)
    assert reopened.config == config
    assert {r.outcome for r in reopened.records()} == {Outcome.OK, Outcome.REFUSED}
    replaced = SimulatedCarrier(CarrierConfig(silence_rate=1.0), path=path)
    assert SimulatedCarrier.open(path).config == replaced.config
