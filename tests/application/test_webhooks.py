"""Webhook subscriptions and their delivery, in-process (R-WH1..3) on SQLite and PostgreSQL:
the rules of a subscription, a company's events alone, retries with back-off then a pause
after the give-up time, replay, the delivery log, and the HTTP routes (company keys, 404 for
another company's subscription, /healthz lag). The real processes (a flaky receiver, the
deliverer killed mid-batch) are tests/runners/test_webhooks_delivery.py's."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from simledger import SimLedger
from simledger.adapters.webhook_http import SIGNATURE_HEADER, WebhookPoster, sign, verify
from simledger.application.delivery import Deliverer, RetryPolicy
from simledger.application.webhooks import WebhookRing
from simledger.domain.errors import InvalidInput, UnknownWebhook
from simledger.domain.iccid import make_iccid
from simledger.runners.http.app import create_app
from simledger.runners.http.settings import Settings

SECRET = "s3cret-s3cret-s3cret"


def iccids(n: int, start: int = 0) -> list[str]:
    return [make_iccid(f"8934{number:015d}") for number in range(start, start + n)]


@pytest.fixture
def world(persistent_store_env: dict[str, str]) -> Iterator[tuple[SimLedger, list[str], list[str]]]:
    ledger = SimLedger(env=persistent_store_env)
    a, b = iccids(3), iccids(2, 3)
    ledger.receive_sims(a + b, operator="op", sim_type="prepaid")
    for iccid in a + b:
        ledger.complete_integration_check(iccid, ok=True)
        ledger.assign_to_company(iccid, "A" if iccid in a else "B")
    try:
        yield ledger, a, b
    finally:
        ledger.close()


class Receiver:
    """An httpx transport that records each POST and answers from ``answers`` (200 after)."""

    def __init__(self, answers: list[int] | None = None) -> None:
        self.answers = list(answers or [])
        self.posts: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert verify(SECRET, request.headers[SIGNATURE_HEADER], request.content)
        body = json.loads(request.content)
        self.posts.append({"path": request.url.path, **body})
        return httpx.Response(self.answers.pop(0) if self.answers else 200)

    def positions(self, path: str) -> list[int]:
        return [e["position"] for p in self.posts if p["path"] == path for e in p["events"]]


def deliverer(
    ledger: SimLedger, receiver: Receiver, clock: Callable[[], float] | None = None, **policy: Any
) -> Deliverer:
    poster = WebhookPoster(transport=httpx.MockTransport(receiver))
    kwargs: dict[str, Any] = {"batch": 3, "policy": RetryPolicy(**policy)}
    if clock is not None:
        kwargs["clock"] = clock
    return Deliverer(ledger, poster, **kwargs)


def test_signature_verifies_only_the_signed_body_at_its_time() -> None:
    header = sign(SECRET, 1_000_000, b'{"a":1}')
    assert verify(SECRET, header, b'{"a":1}', now=1_000_010)
    assert not verify(SECRET, header, b'{"a":2}', now=1_000_010)
    assert not verify("another secret of sorts", header, b'{"a":1}', now=1_000_010)
    assert not verify(SECRET, header, b'{"a":1}', now=1_000_000 + 301)  # stale
    assert not verify(SECRET, None, b"", now=0)
    assert not verify(SECRET, "t=x,v1=y", b"", now=0)


def test_a_subscription_is_checked_before_it_is_stored(world: Any) -> None:
    ledger, _, _ = world
    ring = WebhookRing(ledger)
    bad: list[dict[str, Any]] = [
        {"url": "ftp://x/y", "events": "*", "secret": SECRET},
        {"url": "http:///nohost", "events": "*", "secret": SECRET},
        {"url": "http://x/y", "events": ["NoSuchEvent"], "secret": SECRET},
        {"url": "http://x/y", "events": [], "secret": SECRET},
        {"url": "http://x/y", "events": "*", "secret": "short"},
        {"url": "http://x/y", "events": "*", "secret": 12},
    ]
    for given in bad:
        with pytest.raises(InvalidInput) as refused:
            ring.create(company="A", **given)
        assert refused.value.rule == "R-WH1"
    assert ring.list() == []
    hook = ring.create(
        url="http://x/y", events=["Sim.NoteSet", "NoteSet"], secret=SECRET, company="A"
    )
    assert hook.events == ("Sim.NoteSet", "NoteSet")
    assert ring.list("B") == [] and ring.list("A") == [hook]
    with pytest.raises(UnknownWebhook):
        ring.get(hook.id, company="B")  # another company's: as unknown (R-WH2)
    with pytest.raises(InvalidInput):
        ring.replay(hook.id, 0, company="A")
    ring.delete(hook.id, company="A")
    assert ring.list() == []


def test_in_order_company_scoped_retried_then_paused_and_replayed(world: Any) -> None:
    ledger, a, b = world
    ring = WebhookRing(ledger)
    start = int(ledger.recorder.max_notification_id() or 0)
    hook_a = ring.create(url="http://r/a", events="*", secret=SECRET, company="A")
    hook_b = ring.create(url="http://r/b", events=["NoteSet"], secret=SECRET, company="B")
    for round_ in range(3):
        for iccid in a + b:
            ledger.set_note(iccid, f"n{round_}")
    receiver = Receiver([500, 503])  # the first two POSTs fail: retried, in order
    now = [1_000.0]
    worker = deliverer(ledger, receiver, clock=lambda: now[0], retry_base=10, retry_cap=40)
    worker.run_once()
    assert receiver.posts and ring.get(hook_a.id).status == "retrying"
    late = ring.get(hook_a.id).next_attempt_at
    assert late is not None and 1_005 <= late.timestamp() <= 1_010  # back-off, with jitter
    worker.run_once()  # not due yet: nothing sent
    assert len(receiver.posts) == 2
    now[0] += 100
    worker.run_until_idle()
    log = [e for e in ledger.recorder.select_notifications(start + 1, 1000)]
    expected_a = [n.id for n in log if str(n.originator_id) in a]
    expected_b = [n.id for n in log if str(n.originator_id) in b]
    delivered_a = [p for p in receiver.positions("/a")]
    assert sorted(set(delivered_a)) == expected_a
    assert list(dict.fromkeys(delivered_a)) == expected_a  # in store order
    assert sorted(set(receiver.positions("/b"))) == expected_b  # B's notes only, never A's
    deliveries = ring.deliveries(hook_a.id, company="A")
    first, second = reversed(deliveries[-2:])
    assert (first["status_code"], first["attempt"]) in ((500, 1), (503, 1))
    assert (second["status_code"], second["attempt"], second["ok"]) == (200, 2, True)
    assert all(d["latency_ms"] >= 0 and d["events"] <= 3 for d in deliveries)
    assert ring.get(hook_a.id).lag(int(ledger.recorder.max_notification_id())) == 0

    # A receiver that never answers 2xx: after the give-up time, paused with the reason.
    ledger.set_note(b[0], "more")
    failing = Receiver([500] * 10)
    worker = deliverer(ledger, failing, clock=lambda: now[0], retry_base=0, give_up_after=5)
    worker.run_once()
    now[0] += 6
    worker.run_once()
    paused = ring.get(hook_b.id)
    assert paused.status == "paused" and paused.paused_reason and "R-WH3" in paused.paused_reason
    worker.run_once()
    assert len(failing.posts) == 2  # a paused subscription is left alone

    # Replay from a position: delivered again from there, and the pause lifted.
    again = Receiver()
    ring.replay(hook_b.id, expected_b[1], company="B")
    assert ring.get(hook_b.id).status == "active"
    deliverer(ledger, again, clock=lambda: now[0]).run_until_idle()
    assert again.positions("/b")[:2] == expected_b[1:3]
    assert ring.get(hook_b.id).lag(int(ledger.recorder.max_notification_id())) == 0


def test_http_routes_company_keys_and_healthz(persistent_store_env: dict[str, str]) -> None:
    made: list[SimLedger] = []

    def open_ledger() -> SimLedger:
        made.append(SimLedger(env=persistent_store_env))
        return made[-1]

    app = create_app(open_ledger, Settings(rate_per_second=0))
    with TestClient(app, raise_server_exceptions=False) as client:
        keys = made[0].keys
        a = keys.create(name="a", scopes=["admin"], company="A")[1]
        b = keys.create(name="b", scopes=["admin"], company="B")[1]
        reader = keys.create(name="r", scopes=["sims:read"], company="A")[1]
        op = keys.create(name="o", scopes=["admin"], operator=True)[1]

        def as_(secret: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {secret}"}

        body = {"url": "http://127.0.0.1:9/hook", "events": ["*"], "secret": SECRET}
        assert client.post("/v1/webhooks", json=body, headers=as_(reader)).status_code == 403
        refused = client.post("/v1/webhooks", json={**body, "url": "x"}, headers=as_(a))
        assert refused.status_code == 422 and refused.json()["rule"] == "R-WH1"
        created = client.post("/v1/webhooks", json=body, headers=as_(a))
        assert created.status_code == 201, created.text
        hook = created.json()
        assert hook["company"] == "A" and "secret" not in hook
        assert client.get("/v1/webhooks", headers=as_(b)).json()["items"] == []
        assert [h["id"] for h in client.get("/v1/webhooks", headers=as_(op)).json()["items"]] == [
            hook["id"]
        ]
        for method, path in (
            ("GET", f"/v1/webhooks/{hook['id']}"),
            ("GET", f"/v1/webhooks/{hook['id']}/deliveries"),
            ("POST", f"/v1/webhooks/{hook['id']}/replay?from=1"),
            ("DELETE", f"/v1/webhooks/{hook['id']}"),
        ):
            theirs = client.request(method, path, headers=as_(b))
            assert theirs.status_code == 404 and theirs.json()["rule"] == "R-WH2"
        made[0].receive_sims(iccids(2, 10), operator="op", sim_type="prepaid")
        health = client.get("/healthz").json()
        assert health["webhooks"] == [{"id": hook["id"], "status": "active", "lag": 2}]
        replayed = client.post(f"/v1/webhooks/{hook['id']}/replay?from=1", headers=as_(a))
        assert replayed.status_code == 200 and replayed.json()["position"] == 0
        assert client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=as_(a)).json() == {
            "items": []
        }
        assert client.delete(f"/v1/webhooks/{hook['id']}", headers=as_(a)).status_code == 204
        assert client.get(f"/v1/webhooks/{hook['id']}", headers=as_(a)).status_code == 404


def test_cli_lists_subscriptions_with_status_and_lag(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from simledger.runners.cli import main

    db = str(tmp_path / "cli.db")
    ledger = SimLedger(env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": db})
    try:
        hook = WebhookRing(ledger).create(url="http://x/y", events="*", secret=SECRET, company="A")
        ledger.receive_sims(iccids(3, 20), operator="op", sim_type="prepaid")
    finally:
        ledger.close()
    assert main(["--db", db, "webhooks", "list", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["id"], r["company"], r["status"], r["lag"]) for r in rows] == [
        (hook.id, "A", "active", 3)
    ]
    assert "secret" not in rows[0]
    assert main(["--db", db, "webhooks", "list"]) == 0
    assert hook.id in capsys.readouterr().out


def test_a_sim_moved_between_companies_shows_each_only_its_own_time(world: Any) -> None:
    ledger, a, _ = world
    ring = WebhookRing(ledger)
    hook_a = ring.create(url="http://r/a", events=["NoteSet"], secret=SECRET, company="A")
    hook_b = ring.create(url="http://r/b", events=["NoteSet"], secret=SECRET, company="B")
    moved = a[0]
    ledger.set_note(moved, "under A")
    ledger.assign_to_company(moved, "B")  # not a NoteSet: the scope follows it all the same
    ledger.set_note(moved, "under B")
    ledger.assign_to_company(moved, "A")
    ledger.set_note(moved, "under A again")
    receiver = Receiver()
    deliverer(ledger, receiver).run_until_idle()  # both behind the moves, caches empty

    def notes(path: str) -> list[str]:
        return [e["data"]["note"] for p in receiver.posts if p["path"] == path for e in p["events"]]

    assert notes("/a") == ["under A", "under A again"]
    assert notes("/b") == ["under B"]
    assert ring.get(hook_a.id).position == ring.get(hook_b.id).position


def test_a_sims_package_copy_is_its_company_s_and_a_catalogue_package_nobody_s(
    world: Any,
) -> None:
    ledger, a, _ = world
    ring = WebhookRing(ledger)
    ring.create(url="http://r/a", events="*", secret=SECRET, company="A")
    ring.create(url="http://r/b", events="*", secret=SECRET, company="B")
    package = ledger.create_package("p", data_mb=100, validity_days=30)
    ledger.assign_package(a[0], package)
    receiver = Receiver()
    deliverer(ledger, receiver).run_until_idle()

    def packages(path: str) -> list[str]:
        return [
            e["event"]
            for p in receiver.posts
            if p["path"] == path
            for e in p["events"]
            if e["aggregate"] == "Package"
        ]

    assert packages("/a") == ["Assigned"]  # a[0]'s copy; the catalogue's Created is nobody's
    assert packages("/b") == []
