"""routes_rules.py in process: a company key sets rules on its own SIMs and reads its own
charges; prices and the housekeeping are an operator key's."""

from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from helpers import COMPANY, OPERATOR, T0, FakeClock, ready_sim

from simledger import SimStatus, SimType
from simledger.application.ledger import SimLedger
from simledger.runners.http.app import create_app
from simledger.runners.http.settings import Settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

ALL = ["sims:read", "sims:write", "audit:read", "admin"]


@pytest.fixture
def served(
    memory_env: dict[str, str],
) -> Iterator[tuple[Any, SimLedger, dict[str, dict[str, str]]]]:
    made: list[SimLedger] = []

    def open_ledger() -> SimLedger:
        made.append(SimLedger(memory_env, clock=FakeClock()))
        return made[0]

    with TestClient(create_app(open_ledger, Settings(rate_per_second=0))) as client:
        ledger = made[0]
        keys = {
            "operator": ledger.keys.create(name="ops", scopes=ALL, operator=True)[1],
            "own": ledger.keys.create(name="acme", scopes=ALL, company=COMPANY)[1],
            "other": ledger.keys.create(name="globex", scopes=ALL, company="Globex")[1],
        }
        headers = {who: {"Authorization": f"Bearer {secret}"} for who, secret in keys.items()}
        yield client, ledger, headers


def test_rules_and_charges_over_http(
    served: tuple[Any, SimLedger, dict[str, dict[str, str]]],
) -> None:
    client, ledger, headers = served
    key = ready_sim(ledger, 1, sim_type=SimType.PAYGO)
    prices = {
        "operator": OPERATOR,
        "default_per_mb": "0.5",
        "per_country": {"FR": "2"},
        "effective_from": T0.isoformat(),
    }
    assert (
        client.put("/v1/contracts/prices", json=prices, headers=headers["own"]).status_code == 403
    )
    assert (
        client.put("/v1/contracts/prices", json=prices, headers=headers["operator"]).status_code
        == 200
    )
    rule = {"name": "cap", "kind": "data_cap", "limit": "10", "iccid": key}
    assert client.post("/v1/rules", json=rule, headers=headers["other"]).status_code == 404
    answer = client.post("/v1/rules", json={**rule, "iccid": None}, headers=headers["own"])
    assert answer.status_code == 200 and answer.json()["iccids"] == [key]  # its company
    refused = client.post("/v1/rules", json={**rule, "kind": "speed"}, headers=headers["own"])
    assert refused.status_code in (400, 422) and "R-RU1" in refused.text
    ledger.record_usage(key, 4, at=T0, country="FR")
    ledger.record_usage(key, 7, at=T0.replace(hour=10))
    assert ledger.sim(key).status is SimStatus.SUSPENDED
    # the event feed carries the rule's effect to the SIM's company (and not to another)
    feed = client.get("/v1/events", params={"after": 0, "limit": 1000}, headers=headers["own"])
    triggered = [e for e in feed.json()["items"] if e["event"] == "RuleTriggered"]
    assert [(e["aggregate"], e["data"]["rule"]) for e in triggered] == [("Sim", "cap")]
    other = client.get("/v1/events", params={"after": 0, "limit": 1000}, headers=headers["other"])
    assert not [e for e in other.json()["items"] if e["event"] == "RuleTriggered"]
    charges = client.get("/v1/charges?month=2024-01", headers=headers["own"])
    assert charges.status_code == 200 and Decimal(charges.json()["total"]) == Decimal("11.5")
    assert (
        client.get(
            f"/v1/charges?month=2024-01&company={COMPANY}", headers=headers["other"]
        ).status_code
        == 403
    )
    text = client.get(
        "/v1/charges.csv",
        params={"month": "2024-01", "company": COMPANY},
        headers=headers["operator"],
    ).text
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[-1][0] == "total" and sum(Decimal(r[-1]) for r in rows[1:-1]) == Decimal("11.5")
    gone = client.delete("/v1/rules", params={"name": "cap", "iccid": key}, headers=headers["own"])
    assert gone.status_code == 200 and ledger.sim(key).status is SimStatus.ACTIVE
    assert client.delete(
        "/v1/rules", params={"name": "cap", "iccid": key}, headers=headers["own"]
    ).status_code in (404, 409, 422)
    housekeeping = client.post("/v1/contracts/run", json={}, headers=headers["operator"])
    assert housekeeping.status_code == 200 and housekeeping.json() == {
        "lifted": [],
        "deactivated": [],
    }
