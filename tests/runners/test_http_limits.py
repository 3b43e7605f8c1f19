"""The service's limits and its life: a per-key rate limit (429 with Retry-After), a body
size limit (413), both problem+json; one access log line (JSON) per request; a graceful
shutdown that lets the request in flight finish. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import clean_env
from http_serve import Served, make_key, serve, store_for, store_params

from simledger.application.ledger import SimLedger


@pytest.fixture(scope="module", params=store_params())
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[dict[str, str], Path]]:
    tmp = tmp_path_factory.mktemp("limits")
    with store_for(request, tmp) as env:
        yield env, tmp


@pytest.fixture(scope="module")
def limited(store: tuple[dict[str, str], Path]) -> Iterator[tuple[Served, str, str]]:
    env, tmp = store
    one = make_key(env, "one", company="acme")[1]
    two = make_key(env, "two", company="acme")[1]
    # Three requests at once, then (practically) never a fourth: no timing in the test.
    limits = {
        "SIMLEDGER_HTTP_RATE": "0.0001",
        "SIMLEDGER_HTTP_BURST": "3",
        "SIMLEDGER_HTTP_MAX_BODY": "1000",
    }
    with serve(env, tmp / "limited.log", limits) as served:
        yield served, one, two


def test_a_key_over_its_rate_gets_429_with_retry_after_and_others_go_on(
    limited: tuple[Served, str, str],
) -> None:
    served, one, two = limited
    with served.client(one) as first, served.client(two) as second:
        statuses = [first.get("/v1/sims").status_code for _ in range(3)]
        over = first.get("/v1/sims")
        assert statuses == [200, 200, 200]
        assert over.status_code == 429
        assert over.headers["content-type"] == "application/problem+json"
        assert int(over.headers["Retry-After"]) >= 1
        assert second.get("/v1/sims").status_code == 200


def test_a_body_over_the_limit_is_413_declared_or_streamed(
    limited: tuple[Served, str, str],
) -> None:
    served, _, two = limited
    body = b"[" + b" " * 2000 + b"]"
    with served.client() as anonymous:  # a declared size is checked before the key
        declared = anonymous.post("/v1/usage", content=body)
    with served.client(two) as client:  # a streamed body is counted as it is read
        streamed = client.post("/v1/usage", content=iter([body[:600], body[600:]]))
    for response in (declared, streamed):
        assert response.status_code == 413, response.text
        assert response.headers["content-type"] == "application/problem+json"


def test_every_request_has_one_access_log_line_and_shutdown_lets_the_last_one_finish(
    store: tuple[dict[str, str], Path],
) -> None:
    env, tmp = store
    key_id, key = make_key(env, "logged", company="acme")
    release, sent = threading.Event(), threading.Event()

    def body() -> Iterator[bytes]:
        yield b"["
        sent.set()  # the request line, the headers and the first chunk are on the wire
        release.wait(30)
        yield b"]"

    with serve(env, tmp / "graceful.log", {"SIMLEDGER_HTTP_RATE": "0"}) as served:
        with served.client(key) as client:
            assert client.get("/v1/sims").status_code == 200
        answers: list[httpx.Response] = []
        sender = threading.Thread(
            target=lambda: answers.append(
                served.client(key).post(
                    "/v1/usage", content=body(), headers={"Content-Type": "application/json"}
                )
            )
        )
        sender.start()
        assert sent.wait(30)
        # The server's loop answers a later connection only after reading what the earlier
        # one had written by then (a loaded machine may not have connected it before):
        # from then on that request is in flight.
        assert httpx.get(f"{served.url}/healthz").status_code == 200
        served.process.send_signal(2)  # SIGINT: uvicorn's graceful shutdown
        release.set()
        sender.join(30)
        assert served.process.wait(30) == 0
        assert [a.status_code for a in answers] == [200]
        assert answers[0].json() == {"applied": 0, "duplicates": 0, "rejected": {}}
        lines = [json.loads(line) for line in served.logs().splitlines() if line.startswith("{")]
    requests = [line for line in lines if line.get("event") == "http.request"]
    mine = [line for line in requests if line["key_id"] == key_id]
    assert [(r["method"], r["path"], r["status"]) for r in mine] == [
        ("GET", "/v1/sims", 200),
        ("POST", "/v1/usage", 200),
    ]
    for line in requests:
        assert set(line) >= {"request_id", "key_id", "method", "path", "status", "duration_ms"}
    assert len({r["request_id"] for r in requests}) == len(requests)


def test_a_key_made_by_the_command_line_calls_the_service(
    store: tuple[dict[str, str], Path], limited: tuple[Served, str, str]
) -> None:
    """README: `simledger keys create` prints the key alone on its first line; curl sends it."""
    env, _ = store
    served, _, _ = limited
    made = subprocess.run(
        [
            sys.executable,
            "-P",
            "-m",
            "simledger.runners.cli",
            "keys",
            "create",
            "--name",
            "readme",
            "--company",
            "acme",
            "--scope",
            "sims:read",
        ],
        env=clean_env(env),
        capture_output=True,
        text=True,
        check=True,
    )
    key = made.stdout.splitlines()[0]
    with served.client(key) as client:
        assert client.get("/v1/sims").json() == {"items": [], "next_cursor": None, "total": 0}
        assert (
            client.post("/v1/operations", json={"kind": "pause", "iccids": []}).status_code == 403
        )


@pytest.mark.postgres
def test_healthz_is_503_while_the_store_does_not_answer(own_cluster: Any, tmp_path: Path) -> None:
    with serve(own_cluster.env(), tmp_path / "health.log") as served:
        assert httpx.get(f"{served.url}/healthz").status_code == 200
        own_cluster.stop()
        try:
            down = httpx.get(f"{served.url}/healthz", timeout=30)
            assert down.status_code == 503
            assert down.headers["content-type"] == "application/problem+json"
        finally:
            own_cluster.start()
        assert httpx.get(f"{served.url}/healthz", timeout=30).status_code == 200


@pytest.mark.parametrize("cache", ["0", "3600"])
def test_a_revocation_reaches_a_running_service_within_the_key_cache(
    store: tuple[dict[str, str], Path], cache: str
) -> None:
    """SIMLEDGER_HTTP_KEY_CACHE bounds how long a checked key is trusted: 0, the next request
    after a revocation is 401; an hour (no test waits that long), still answered: the check
    came from the cache, not the store."""
    env, tmp = store
    key_id, key = make_key(env, f"cached-{cache}", company="acme")
    with serve(env, tmp / f"cache-{cache}.log", {"SIMLEDGER_HTTP_KEY_CACHE": cache}) as served:
        client = served.shared(key)
        assert client.get("/v1/sims").status_code == 200
        ledger = SimLedger(env=dict(env))
        try:
            ledger.keys.revoke(key_id)
        finally:
            ledger.close()
        assert client.get("/v1/sims").status_code == (401 if cache == "0" else 200)
        fresh = served.client(make_key(env, f"new-{cache}", company="acme")[1])
        with fresh:  # a key made while serving works at once: unknown secrets are not cached
            assert fresh.get("/v1/sims").status_code == 200
