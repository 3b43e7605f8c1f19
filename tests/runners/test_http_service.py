"""The service end to end on real ``simledger serve`` processes (SQLite and PostgreSQL):
idempotent bulk requests (also from two processes at once), read-your-writes across two
processes, who caused each event, problems for malformed input (never a 5xx), signed carrier
answers, the event feed as NDJSON, the CSV import's bad lines."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from http_serve import Served, http_iccids, make_key, serve, store_for, store_params

from simledger.runners.http.routes_carrier import sign

SECRET = "carrier-secret"


@dataclass
class Pair:
    one: Served
    two: Served
    operator: str
    a: str  # company acme-a, every scope
    a_key_id: str
    sims: list[str]  # acme-a's, active


@pytest.fixture(scope="module", params=store_params())
def pair(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pair]:
    tmp = tmp_path_factory.mktemp("service")
    extra = {
        "SIMLEDGER_HTTP_RATE": "0",
        "SIMLEDGER_CARRIER_SECRET": SECRET,
        "SIMLEDGER_HTTP_POSITION_WAIT": "0.2",
    }
    with store_for(request, tmp) as env:
        operator = make_key(env, "ops")[1]
        a_id, a = make_key(env, "a", company="acme-a")
        # ``two`` is one port answered by two worker processes (serve --workers 2): every
        # test across the two services crosses three processes and three ledgers.
        with (
            serve(env, tmp / "one.log", extra) as one,
            serve(env, tmp / "two.log", extra, ("--workers", "2")) as two,
        ):
            sims = http_iccids(8, 100)
            with one.client(operator) as op:
                package = op.post(
                    "/v1/packages", json={"name": "p", "data_mb": 1000, "validity_days": 30}
                ).json()["id"]
                op.post(
                    "/v1/sims/receive",
                    json={"iccids": sims, "operator": "o", "sim_type": "prepaid"},
                )
                for iccid in sims:
                    for action, body in (
                        ("integration-check", {"ok": True}),
                        ("line", {"msisdn": "+447700900123"}),
                        ("company", {"company": "acme-a"}),
                        ("package", {"package_id": package}),
                        ("activate", {}),
                    ):
                        response = op.post(f"/v1/sims/{iccid}/{action}", json=body)
                        assert response.status_code == 200, response.text
            yield Pair(one, two, operator, a, a_id, sims)


def test_the_same_idempotency_key_twice_gives_one_operation_and_the_same_body(pair: Pair) -> None:
    with pair.one.client(pair.a) as a:
        body = {"kind": "pause", "iccids": pair.sims[:2]}
        first = a.post("/v1/operations", json=body, headers={"Idempotency-Key": "twice"})
        again = a.post("/v1/operations", json=body, headers={"Idempotency-Key": "twice"})
        assert first.status_code == again.status_code == 202
        assert first.json() == again.json()
        assert first.json()["accepted"] == pair.sims[:2]
        listed = [o["operation_id"] for o in a.get("/v1/operations").json()]
        assert listed.count(first.json()["operation_id"]) == 1
        # The key is the company's own: the operator's same key is another operation.
    with pair.one.client(pair.operator) as op:
        other = op.post(
            "/v1/operations",
            json={"kind": "resume", "iccids": []},
            headers={"Idempotency-Key": "twice"},
        )
        assert other.json()["operation_id"] != first.json()["operation_id"]


def test_the_same_key_from_two_processes_at_once_gives_one_operation(pair: Pair) -> None:
    body = {"kind": "pause", "iccids": pair.sims[2:4]}
    key = f"race-{uuid.uuid4()}"

    def send(served: Served) -> httpx.Response:
        with served.client(pair.a) as a:
            return a.post("/v1/operations", json=body, headers={"Idempotency-Key": key})

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(send, [pair.one, pair.two, pair.one, pair.two]))
    assert {r.status_code for r in answers} == {202}
    assert len({json.dumps(r.json(), sort_keys=True) for r in answers}) == 1
    assert answers[0].json()["accepted"] == pair.sims[2:4]
    with pair.two.client(pair.a) as a:
        ops = [o["operation_id"] for o in a.get("/v1/operations").json()]
    assert ops.count(answers[0].json()["operation_id"]) == 1


def test_a_write_on_one_process_is_read_on_the_other_with_min_position(pair: Pair) -> None:
    iccid = pair.sims[5]
    for attempt in range(3):
        note = f"note {attempt} {uuid.uuid4()}"
        with pair.one.client(pair.a) as one, pair.two.client(pair.a) as two:
            written = one.post(f"/v1/sims/{iccid}/note", json={"note": note})
            assert written.status_code == 200
            position = int(written.headers["X-Simledger-Position"])
            read = two.get(f"/v1/sims/{iccid}", params={"min_position": position})
            assert read.status_code == 200
            assert read.json()["note"] == note
            assert int(read.headers["X-Simledger-Position"]) >= position
            listed = two.get("/v1/sims", params={"search": note, "min_position": position})
            assert [s["iccid"] for s in listed.json()["items"]] == [iccid]


def test_a_position_no_process_gave_out_is_refused(pair: Pair) -> None:
    with pair.two.client(pair.a) as two:
        response = two.get("/v1/sims", params={"min_position": 10**12})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert "beyond" in response.json()["detail"]


def test_history_records_the_key_that_caused_each_event(pair: Pair) -> None:
    iccid = pair.sims[4]
    with pair.one.client(pair.a) as a:
        assert a.post(f"/v1/sims/{iccid}/labels", json={"labels": ["by-a"]}).status_code == 200
        history = a.get(f"/v1/sims/{iccid}/history").json()
    assert history[-1]["actor"] == {"id": pair.a_key_id, "name": "a"}


def test_every_response_carries_the_position_and_problems_are_problem_json(pair: Pair) -> None:
    with pair.one.client(pair.a) as a, pair.one.client() as anonymous:
        for response in (
            a.get("/v1/sims"),
            a.get(f"/v1/sims/{http_iccids(1, 999)[0]}"),
            anonymous.get("/v1/sims"),
            anonymous.get("/healthz"),
        ):
            assert int(response.headers["X-Simledger-Position"]) >= 0
            if response.status_code >= 400:
                problem = response.json()
                assert set(problem) >= {"type", "title", "status", "detail", "rule"}
                assert problem["status"] == response.status_code


MALFORMED: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/v1/sims/receive", {"content": b"{not json"}),
    ("POST", "/v1/sims/receive", {"json": {"iccids": "8933", "operator": 1, "sim_type": "x"}}),
    (
        "POST",
        "/v1/sims/receive",
        {"json": {"iccids": ["1" * 5000], "operator": "o", "sim_type": "prepaid"}},
    ),
    (
        "POST",
        "/v1/sims/receive",
        {"content": rb'{"iccids":["\u0000"],"operator":"\ud800","sim_type":"prepaid"}'},
    ),
    ("POST", "/v1/sims/receive", {"json": [1, 2, 3]}),
    ("POST", "/v1/sims/receive", {"json": None}),
    (
        "POST",
        "/v1/sims/import",
        {"content": b"\xff\xfe\x00garbage", "headers": {"Content-Type": "text/csv"}},
    ),
    (
        "POST",
        "/v1/sims/import",
        {"content": b"a,b\n1,2\n", "headers": {"Content-Type": "text/csv"}},
    ),
    ("POST", "/v1/sims/import", {"json": {"x": 1}}),
    ("GET", "/v1/sims", {"params": {"limit": "-1"}}),
    ("GET", "/v1/sims", {"params": {"limit": "1e309"}}),
    ("GET", "/v1/sims", {"params": {"cursor": "%%%not-a-cursor"}}),
    ("GET", "/v1/sims", {"params": {"sort": "nope"}}),
    ("GET", "/v1/sims", {"params": {"status": "zombie"}}),
    ("GET", "/v1/sims", {"params": {"group_id": "not-a-uuid", "search": "\x00"}}),
    ("GET", "/v1/sims", {"params": {"min_position": "-5"}}),
    ("GET", "/v1/sims/%00", {}),
    ("GET", "/v1/sims/" + "9" * 3000, {}),
    ("GET", "/v1/sims/89330000000000001003", {"params": {"as_of": "yesterday"}}),
    ("GET", "/v1/sims/89330000000000001003", {"params": {"as_of": "2024-01-01T00:00:00"}}),
    ("GET", "/v1/sims/89330000000000001003", {"params": {"version": "99999999999999999999999"}}),
    ("POST", "/v1/sims/89330000000000001003/top-up", {"json": {"amount": "1e999999"}}),
    ("POST", "/v1/sims/89330000000000001003/top-up", {"json": {"amount": "NaN"}}),
    ("POST", "/v1/sims/89330000000000001003/labels", {"json": {"labels": [["nested"]]}}),
    ("POST", "/v1/sims/89330000000000001003/nonsense", {"json": {}}),
    ("POST", "/v1/operations", {"json": {"kind": "explode", "iccids": []}}),
    ("POST", "/v1/operations", {"json": {"kind": "pause", "iccids": [None, 1.5, "x"]}}),
    (
        "POST",
        "/v1/operations",
        {"json": {"kind": "pause", "iccids": []}, "headers": {"Idempotency-Key": "k" * 500}},
    ),
    ("GET", "/v1/operations/not-an-id", {}),
    (
        "POST",
        "/v1/usage",
        {"content": b'{"a":1}\nnot json\n', "headers": {"Content-Type": "application/x-ndjson"}},
    ),
    ("POST", "/v1/usage", {"json": {"record_id": "x"}}),
    ("POST", "/v1/usage", {"content": b"[1,", "headers": {"Content-Type": "application/json"}}),
    ("POST", "/v1/packages", {"json": {"name": "", "data_mb": -1, "validity_days": 10**30}}),
    ("POST", "/v1/shared-groups", {"json": {"name": "g", "iccids": [], "package_id": "nope"}}),
    ("DELETE", "/v1/shared-groups/x", {"params": {"move_to": "y"}}),
    ("GET", "/v1/events", {"params": {"after": "-1", "limit": "0"}}),
    ("GET", "/v1/events", {"params": {"after": "99999999999999999999"}}),
    (
        "POST",
        "/v1/carrier/answers",
        {"content": b"[]", "headers": {"X-Simledger-Signature": "t=abc,v1=zz"}},
    ),
    ("PUT", "/v1/sims", {}),
]


@pytest.mark.parametrize("method,path,kwargs", MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_input_is_a_problem_never_a_5xx(
    pair: Pair, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    response = pair.one.shared(pair.operator).request(method, path, **kwargs)
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == response.status_code


def _signed(body: bytes, *, at: float | None = None, secret: str = SECRET) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Simledger-Signature": sign(secret, int(at or time.time()), body),
    }


def test_carrier_answers_are_signed_stale_or_bad_ones_refused_replays_change_nothing(
    pair: Pair,
) -> None:
    iccid = pair.sims[6]
    with pair.one.client(pair.operator) as op:
        operation = op.post("/v1/operations", json={"kind": "pause", "iccids": [iccid]}).json()
        assert operation["accepted"] == [iccid]
        operation_id = operation["operation_id"]
        answer = [{"answer_id": "ans-1", "operation_id": operation_id, "iccid": iccid, "ok": True}]
        body = json.dumps(answer).encode()
        before = op.get(f"/v1/sims/{iccid}/history").json()
        with pair.one.client() as carrier:
            bad = carrier.post(
                "/v1/carrier/answers", content=body, headers=_signed(body, secret="no")
            )
            stale = carrier.post(
                "/v1/carrier/answers", content=body, headers=_signed(body, at=time.time() - 301)
            )
            unsigned = carrier.post("/v1/carrier/answers", content=body)
            assert bad.status_code == stale.status_code == unsigned.status_code == 401
            assert op.get(f"/v1/sims/{iccid}/history").json() == before  # nothing recorded
            good = carrier.post("/v1/carrier/answers", content=body, headers=_signed(body))
            assert good.status_code == 200, good.text
            assert good.json()["applied"] == [iccid]
            after = op.get(f"/v1/sims/{iccid}/history").json()
            assert after[-1]["actor"] == {"id": "carrier", "name": "carrier answers (signed)"}
            replay = carrier.post("/v1/carrier/answers", content=body, headers=_signed(body))
            assert replay.status_code == 200
            assert replay.json()["applied"] == []
        assert op.get(f"/v1/sims/{iccid}/history").json() == after
        assert op.get(f"/v1/sims/{iccid}").json()["status"] == "suspended"


def test_the_event_feed_pages_in_store_order_as_json_and_ndjson(pair: Pair) -> None:
    with pair.one.client(pair.a) as a:
        first = a.get("/v1/events", params={"limit": 5}).json()
        positions = [e["position"] for e in first["items"]]
        assert positions == sorted(positions)
        lines = a.get(
            "/v1/events",
            params={"after": first["next_after"], "limit": 5},
            headers={"Accept": "application/x-ndjson"},
        )
        assert lines.headers["content-type"].startswith("application/x-ndjson")
        records = [json.loads(line) for line in lines.text.splitlines()]
        assert records and all(r["position"] > first["next_after"] for r in records)


def test_a_csv_import_lists_every_bad_line(pair: Pair) -> None:
    good = http_iccids(1, 300)[0]
    csv = (
        "iccid,operator,sim_type,esim\n"
        f"{good},o,prepaid,false\n123,o,prepaid,false\n{good},o,nope,x\n"
    )
    with pair.one.client(pair.operator) as op:
        response = op.post("/v1/sims/import", content=csv, headers={"Content-Type": "text/csv"})
        assert response.status_code == 422
        assert set(response.json()["errors"]) == {"3", "4"}
        assert op.get(f"/v1/sims/{good}").status_code == 404  # all or nothing


def test_usage_is_counted_once_per_record_id_in_json_or_ndjson(pair: Pair) -> None:
    iccid = pair.sims[3]
    record = {"record_id": "u-1", "iccid": iccid, "mb": "1.5", "at": "2026-01-01T00:00:00Z"}
    with pair.one.client(pair.a) as a:
        before = a.get(f"/v1/sims/{iccid}").json()["data_left_mb"]
        first = a.post("/v1/usage", json=[record])
        again = a.post(
            "/v1/usage",
            content=json.dumps(record) + "\n\n" + json.dumps({**record, "record_id": "u-2"}),
            headers={"Content-Type": "application/x-ndjson"},
        )
        assert first.json() == {"applied": 1, "duplicates": 0, "rejected": {}}
        assert again.json() == {"applied": 1, "duplicates": 1, "rejected": {}}
        after = a.get(f"/v1/sims/{iccid}").json()["data_left_mb"]
    assert float(before) - float(after) == 3.0
    with pair.one.client(pair.operator) as op:  # record ids are per company: not a duplicate
        assert op.post("/v1/usage", json=[record]).json()["applied"] == 1


def test_one_operation_shows_each_sim_s_answer(pair: Pair) -> None:
    iccid = pair.sims[7]
    with pair.one.client(pair.operator) as op, pair.one.client() as carrier:
        operation = op.post("/v1/operations", json={"kind": "pause", "iccids": [iccid]}).json()
        url = f"/v1/operations/{operation['operation_id']}"
        waiting = op.get(url).json()
        assert waiting["answers"] == {iccid: "pending"}
        assert waiting["activity"]["pending"] == 1
        answer = [
            {
                "answer_id": "ans-7",
                "operation_id": operation["operation_id"],
                "iccid": iccid,
                "ok": False,
                "reason": "carrier says no",
            }
        ]
        body = json.dumps(answer).encode()
        assert carrier.post("/v1/carrier/answers", content=body, headers=_signed(body)).json()[
            "applied"
        ] == [iccid]
        answered = op.get(url).json()
        assert answered["answers"] == {iccid: "refused"}
        assert answered["activity"]["refused"] == 1
        assert answered["answers_complete"] is True


def test_the_document_and_docs_need_no_key_and_refusals_name_their_rule(pair: Pair) -> None:
    with pair.one.client() as anonymous:
        document = anonymous.get("/openapi.json")
        assert document.status_code == 200
        assert document.json()["openapi"].startswith("3.1")
        assert anonymous.get("/docs").status_code == 200
    with pair.one.client(pair.a) as a:
        twice = a.post(f"/v1/sims/{pair.sims[5]}/activate", json={})  # active already
        assert twice.status_code == 409
        assert twice.json()["rule"] == "R-SIM4"
        assert twice.json()["type"] == "urn:simledger:rule:R-SIM4"
        bad = a.post(f"/v1/sims/{pair.sims[5]}/top-up", json={"amount": "-5"})
        assert bad.status_code == 422
        assert bad.json()["rule"].startswith("R-")


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(stat.parent.name))
    return found


def test_serve_with_workers_answers_from_that_many_processes(
    pair: Pair,
) -> None:
    workers = [p for p in _children(pair.two.process.pid) if _is_worker(p)]
    assert len(workers) == 2, workers
    with pair.two.client(pair.a) as a:  # whichever process answers, the same answers
        lists = {json.dumps(a.get("/v1/sims").json()["items"], sort_keys=True) for _ in range(8)}
    assert len(lists) == 1


def _is_worker(pid: int) -> bool:
    """A process uvicorn started for a worker (multiprocessing's spawn, not its tracker)."""
    with contextlib.suppress(OSError):
        command = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        return "spawn_main" in command
    return False
