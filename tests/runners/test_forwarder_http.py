"""The forwarder delivering the simulated carrier's answers through a real ``simledger serve``
(``--answers-url``, signed with ``SIMLEDGER_CARRIER_SECRET``), on SQLite and PostgreSQL: a
bulk pause confirmed through the service, a batch sent twice changing nothing, and a wrong
secret answered 401, recording nothing, and said so in the forwarder's log."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from helpers import active_sims, clean_env, event_count
from http_serve import Served, free_port, serve, store_for, store_params

from simledger import SimLedger, SimStatus
from simledger.adapters.carrier.answers_http import (
    AnswersRefused,
    AnswersUnauthorised,
    HttpAnswers,
    answers_body,
    sign,
)
from simledger.adapters.carrier.gateway import CarrierAnswer, CarrierOperation
from simledger.adapters.carrier.simulator import SimulatedCarrier
from simledger.application.forwarding import Forwarder, request_id

SECRET = "shared-carrier-secret"


@dataclass
class Setup:
    served: Served
    env: dict[str, str]
    tmp: Path
    sims: list[str]


@pytest.fixture(scope="module", params=store_params())
def setup(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("forwarder_http")
    extra = {"SIMLEDGER_HTTP_RATE": "0", "SIMLEDGER_CARRIER_SECRET": SECRET}
    with store_for(request, tmp) as env:
        ledger = SimLedger(env=dict(env))
        try:
            sims = active_sims(ledger, 7, 500)
        finally:
            ledger.close()
        with serve(env, tmp / "serve.log", extra) as served:
            yield Setup(served, dict(env), tmp, sims)


def run_forwarder(setup: Setup, carrier_db: Path, secret: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-P",
            "-m",
            "simledger.runners.forwarder",
            "--carrier-db",
            str(carrier_db),
            "--until-idle",
            "--answers-url",
            setup.served.url,
        ],
        env=clean_env({**setup.env, "SIMLEDGER_CARRIER_SECRET": secret}),
        capture_output=True,
        text=True,
        timeout=60,
    )


def pause(setup: Setup, sims: list[str]) -> str:
    ledger = SimLedger(env=dict(setup.env))
    try:
        result = ledger.pause(sims)
        assert result.accepted == sims
        return str(result.operation_id)
    finally:
        ledger.close()


def events(setup: Setup) -> int:
    ledger = SimLedger(env=dict(setup.env))
    try:
        return event_count(ledger)
    finally:
        ledger.close()


def statuses_and_answers(setup: Setup, sims: list[str], operation_id: str) -> list[object]:
    """Per SIM: its status, and the (event, actor id) of the carrier's answers to the
    operation in its history."""
    ledger = SimLedger(env=dict(setup.env))
    try:
        out: list[object] = []
        for iccid in sims:
            answers = [
                (entry.event, entry.actor.id if entry.actor else None)
                for entry in ledger.history(iccid)
                if entry.data.get("operation_id") == operation_id
                and entry.event in ("Paused", "PauseRefused")
            ]
            out.append((ledger.sim(iccid).status, answers))
        return out
    finally:
        ledger.close()


def test_a_bulk_pause_is_confirmed_through_the_service_and_a_resent_batch_changes_nothing(
    setup: Setup,
) -> None:
    sims = setup.sims[:3]
    operation_id = pause(setup, sims)
    done = run_forwarder(setup, setup.tmp / "carrier-ok.db", SECRET)
    assert done.returncode == 0, done.stderr
    expected = (SimStatus.SUSPENDED, [("Paused", "carrier")])
    assert statuses_and_answers(setup, sims, operation_id) == [expected] * 3

    # The carrier sends the same batch again (same answer ids): the service applies nothing.
    with SimulatedCarrier.open(setup.tmp / "carrier-ok.db") as carrier:
        records = carrier.records()
    assert {r.request_id for r in records} == {request_id(operation_id, k) for k in sims}
    again = [
        CarrierAnswer(r.request_id, r.operation_id, r.kind, r.iccid, True, None, datetime.now(UTC))
        for r in records
    ]
    before = events(setup)
    via = HttpAnswers(setup.served.url, SECRET)
    try:
        delivered = via.deliver(again)
    finally:
        via.close()
    assert delivered.applied == []
    assert sorted(delivered.skipped) == sorted(sims)
    assert events(setup) == before
    assert statuses_and_answers(setup, sims, operation_id) == [expected] * 3


def test_a_wrong_secret_gets_401_records_nothing_and_the_forwarder_says_so(
    setup: Setup,
) -> None:
    sims = setup.sims[3:6]
    operation_id = pause(setup, sims)
    before = events(setup)
    refused = run_forwarder(setup, setup.tmp / "carrier-bad.db", "not-the-secret")
    assert refused.returncode == 2, refused.stderr
    assert "forwarder.answers_unauthorised" in refused.stderr
    assert "forwarder.configuration_error" in refused.stderr
    assert events(setup) == before
    assert statuses_and_answers(setup, sims, operation_id) == [(SimStatus.ACTIVE, [])] * 3

    # The answers were not acknowledged: with the right secret they arrive, once.
    done = run_forwarder(setup, setup.tmp / "carrier-bad.db", SECRET)
    assert done.returncode == 0, done.stderr
    expected = (SimStatus.SUSPENDED, [("Paused", "carrier")])
    assert statuses_and_answers(setup, sims, operation_id) == [expected] * 3


def test_the_client_refuses_a_wrong_secret_without_retrying(setup: Setup) -> None:
    pauses: list[float] = []
    via = HttpAnswers(setup.served.url, "wrong", sleep=pauses.append)
    answer = CarrierAnswer(
        "some-id",
        "00000000-0000-0000-0000-000000000000",
        CarrierOperation.PAUSE,
        setup.sims[0],
        True,
        None,
        datetime.now(UTC),
    )
    before = events(setup)
    try:
        with pytest.raises(AnswersUnauthorised):
            via.deliver([answer])
    finally:
        via.close()
    assert pauses == []
    assert events(setup) == before


def test_an_unreachable_service_is_retried_with_doubling_pauses_and_the_answers_wait(
    setup: Setup,
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    pauses: list[float] = []
    via = HttpAnswers(dead, SECRET, attempts=3, first_pause=0.5, sleep=pauses.append)
    sims = setup.sims[6:]
    ledger = SimLedger(env=dict(setup.env))
    carrier = SimulatedCarrier()
    try:
        ledger.pause(sims)
        forwarder = Forwarder(ledger, carrier, name="dead-end", answers_via=via)
        stats = forwarder.run_once()
        assert (stats.sent, stats.applied, stats.deferred) == (1, 0, 1)
        assert pauses == [0.5, 1.0]
        assert carrier.counts()["acked"] == 0  # delivered again in a later round
        assert ledger.sim(sims[0]).status == SimStatus.ACTIVE  # still waiting for the answer
    finally:
        via.close()
        carrier.close()
        ledger.close()


def scripted(statuses: list[int], seen: list[httpx.Request]) -> httpx.MockTransport:
    """A service answering ``statuses`` in turn (5xx and 4xx a healthy one never gives)."""

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        status = statuses.pop(0)
        if status == 200:
            return httpx.Response(200, json={"applied": ["x"], "skipped": {}})
        return httpx.Response(status, json={"detail": f"scripted {status}"})

    return httpx.MockTransport(handle)


def an_answer() -> CarrierAnswer:
    return CarrierAnswer(
        "id-1",
        "00000000-0000-0000-0000-000000000001",
        CarrierOperation.PAUSE,
        "8944",
        True,
        None,
        datetime.now(UTC),
    )


def test_a_5xx_is_retried_with_doubling_pauses_each_attempt_signed_anew() -> None:
    seen: list[httpx.Request] = []
    pauses: list[float] = []
    stamps = iter([1000.0, 1001.0, 1002.0])
    via = HttpAnswers(
        "http://service",
        SECRET,
        sleep=pauses.append,
        clock=lambda: next(stamps),
        transport=scripted([503, 500, 200], seen),
    )
    with contextlib.closing(via):
        assert via.deliver([an_answer()]).applied == ["x"]
    assert pauses == [0.2, 0.4]
    body = answers_body([an_answer()])
    assert [r.headers["X-Simledger-Signature"] for r in seen] == [
        sign(SECRET, t, body) for t in (1000, 1001, 1002)
    ]


def test_another_4xx_refuses_the_batch_without_retrying() -> None:
    seen: list[httpx.Request] = []
    pauses: list[float] = []
    via = HttpAnswers(
        "http://service", SECRET, sleep=pauses.append, transport=scripted([422], seen)
    )
    with contextlib.closing(via), pytest.raises(AnswersRefused) as refused:
        via.deliver([an_answer()])
    assert (refused.value.status, len(seen), pauses) == (422, 1, [])
