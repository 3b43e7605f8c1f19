"""A rule's effect reaches the SIM's company's webhook (R-RU4, R-RU5 and R-WH2): the events
a company subscribes to by name, in the order they were recorded, another company none."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from helpers import T0, ready_sim

from simledger import SimLedger
from simledger.application.delivery import Deliverer, RetryPolicy, WebhookPoster
from simledger.application.webhooks import WebhookRing

SECRET = "s" * 32


@pytest.fixture
def ledger(persistent_store_env: dict[str, str]) -> Iterator[SimLedger]:
    ledger = SimLedger(env=persistent_store_env)
    try:
        yield ledger
    finally:
        ledger.close()


def test_a_rule_s_trigger_and_pause_reach_the_company_s_webhook(ledger: SimLedger) -> None:
    key = ready_sim(ledger, 1)  # of COMPANY (helpers)
    ring = WebhookRing(ledger)
    company = ledger.sim(key).company
    events = ["RuleTriggered", "Sim.SuspendedBySystem"]
    ring.create(url="http://r/own", events=events, secret=SECRET, company=company)
    ring.create(url="http://r/other", events=events, secret=SECRET, company="Globex")
    ledger.attach_rule("cap", kind="data_cap", limit=10, iccid=key)
    ledger.attach_rule("half", kind="alert", percent=50, of="data_cap", iccid=key)
    ledger.record_usage(key, 6, at=T0)
    ledger.record_usage(key, 6, at=T0.replace(hour=10))
    posts: list[dict[str, Any]] = []

    def receive(request: httpx.Request) -> httpx.Response:
        posts.append({"path": request.url.path, **json.loads(request.content)})
        return httpx.Response(200)

    poster = WebhookPoster(transport=httpx.MockTransport(receive))
    Deliverer(ledger, poster, batch=10, policy=RetryPolicy()).run_until_idle()
    got = [
        (e["event"], e["data"].get("rule") or e["data"].get("cause"))
        for p in posts
        if p["path"] == "/own"
        for e in p["events"]
    ]
    assert got == [
        ("RuleTriggered", "half"),
        ("RuleTriggered", "cap"),
        ("SuspendedBySystem", "rule"),
    ]
    assert not [e for p in posts if p["path"] == "/other" for e in p["events"]]
