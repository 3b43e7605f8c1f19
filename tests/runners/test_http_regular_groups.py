"""The HTTP routes of regular groups, Always On and session records, in-process on an
in-memory ledger: a company key makes and sees its own groups only (another company's is
answered as one that does not exist), and changes only its own SIMs; session records are an
operator key's."""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import iccids

from simledger.application.ledger import SimLedger
from simledger.runners.http.app import create_app
from simledger.runners.http.settings import Settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

SCOPES = ["sims:read", "sims:write", "usage:write", "audit:read"]


@pytest.fixture
def world(memory_env: dict[str, str]) -> Iterator[tuple[TestClient, dict[str, Any], list[str]]]:
    made: list[SimLedger] = []

    def open_ledger() -> SimLedger:
        made.append(SimLedger(env=memory_env))
        return made[0]

    app = create_app(open_ledger, Settings(rate_per_second=0))
    with TestClient(app, raise_server_exceptions=False) as client:
        ledger = made[0]
        keys = ledger.receive_sims(iccids(3), operator="3UK", sim_type="prepaid")
        for key, owner in zip(keys, ("a", "a", "b"), strict=True):
            ledger.complete_integration_check(key, ok=True)
            ledger.assign_to_company(key, owner)
        heads = {}
        for who, company in (("op", None), ("a", "a"), ("b", "b")):
            _, secret = ledger.keys.create(
                name=who, scopes=SCOPES, company=company, operator=company is None
            )
            heads[who] = {"Authorization": f"Bearer {secret}"}
        yield client, heads, keys


def test_a_company_makes_and_changes_its_own_groups_only(
    world: tuple[TestClient, dict[str, Any], list[str]],
) -> None:
    client, heads, (a1, a2, b1) = world
    made = client.post(
        "/v1/regular-groups", json={"name": "north", "iccids": [a1]}, headers=heads["a"]
    )
    assert made.status_code == 201, made.text
    group = made.json()["id"]
    added = client.post(
        f"/v1/regular-groups/{group}/members", json={"iccids": [a2]}, headers=heads["a"]
    )
    assert added.json()["members"] == [a1, a2] and added.json()["company"] == "a"
    # Another company's SIM cannot join; another company cannot see or change the group.
    theirs = client.post(
        f"/v1/regular-groups/{group}/members", json={"iccids": [b1]}, headers=heads["a"]
    )
    assert theirs.status_code == 404 and theirs.json()["rule"] == "R-SIM1"
    unknown = str(uuid.uuid4())
    for path in (f"/v1/regular-groups/{group}", f"/v1/regular-groups/{unknown}"):
        seen = client.get(path, headers=heads["b"])
        assert seen.status_code == 404 and seen.json()["rule"] == "R-RG1"
    gone = client.delete(f"/v1/regular-groups/{group}", headers=heads["b"])
    assert gone.status_code == 404
    renamed = client.post(
        f"/v1/regular-groups/{group}/name", json={"name": "n2"}, headers=heads["a"]
    )
    assert renamed.json()["name"] == "n2"
    listed = client.get("/v1/sims", params={"regular_group_id": group}, headers=heads["a"])
    assert [i["iccid"] for i in listed.json()["items"]] == [a1, a2]
    removed = client.delete(f"/v1/regular-groups/{group}/members/{a1}", headers=heads["a"])
    assert removed.json()["members"] == [a2]
    assert client.delete(f"/v1/regular-groups/{group}", headers=heads["a"]).status_code == 200
    assert client.get(f"/v1/regular-groups/{group}", headers=heads["op"]).json()["deleted"]
    # The event feed: a company sees its own groups' events, never another's.
    for who, seen in (("a", True), ("b", False)):
        feed = client.get("/v1/events", params={"after": 0, "limit": 1000}, headers=heads[who])
        kinds = {(e["aggregate"], e["event"]) for e in feed.json()["items"]}
        assert (("RegularGroup", "Deleted") in kinds) is seen, who


def test_always_on_and_sessions(world: tuple[TestClient, dict[str, Any], list[str]]) -> None:
    client, heads, (a1, _, b1) = world
    assert (
        client.post(f"/v1/sims/{a1}/always-on", json={"on": True}, headers=heads["a"]).status_code
        == 200
    )
    refused = client.post(f"/v1/sims/{b1}/always-on", json={"on": True}, headers=heads["a"])
    assert refused.status_code == 404
    again = client.post(f"/v1/sims/{a1}/always-on", json={"on": True}, headers=heads["a"])
    assert again.status_code == 422 and again.json()["rule"] == "R-AO1"
    record = {"record_id": "s1", "iccid": a1, "kind": "started", "at": "2024-01-15T09:00:00Z"}
    assert (
        client.post("/v1/sessions", json={"records": [record]}, headers=heads["a"]).status_code
        == 403
    )
    done = client.post("/v1/sessions", json={"records": [record, record]}, headers=heads["op"])
    assert done.json() == {"applied": 1, "duplicates": 1, "rejected": {}}
    [item] = [
        i for i in client.get("/v1/sims", headers=heads["a"]).json()["items"] if i["iccid"] == a1
    ]
    assert (item["in_session"], item["always_on"]) == ("yes", True)
