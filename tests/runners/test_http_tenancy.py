"""Tenant isolation over EVERY route of the service's own OpenAPI document (a route added
later is covered without editing this file), on a real ``simledger serve`` (SQLite and
PostgreSQL): company B's key gets for company A's SIM, group or operation exactly what it gets
for one that does not exist, sees none of A's identifiers it did not send, and changes
nothing of A's; no key → 401; a key without the route's scope → 403."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from http_serve import Served, http_iccids, make_key, serve, store_for, store_params

from simledger.application.keys import SCOPES

OPEN = {"/healthz", "/openapi.json", "/docs"}


@dataclass
class World:
    served: Served
    operator: str
    a: str
    b: str
    single_scope: dict[str, str]
    a_ids: dict[str, str]  # path parameter name -> A's thing
    unknown_ids: dict[str, str]  # path parameter name -> a thing that does not exist
    private: set[str]  # every identifier of A's
    package: str
    openapi: dict[str, Any]


def _ok(response: httpx.Response) -> Any:
    assert response.status_code < 300, (response.request.url, response.text)
    return response.json()


def _seed(served: Served, operator: str, a: str) -> tuple[dict[str, str], set[str], str]:
    a1, a2, a3, b1 = http_iccids(4, 0)
    with served.client(operator) as op:
        _ok(
            op.post(
                "/v1/sims/receive",
                json={"iccids": [a1, a2, a3, b1], "operator": "opx", "sim_type": "prepaid"},
            )
        )
        for iccid, company in ((a1, "acme-a"), (a2, "acme-a"), (a3, "acme-a"), (b1, "acme-b")):
            _ok(op.post(f"/v1/sims/{iccid}/integration-check", json={"ok": True}))
            _ok(op.post(f"/v1/sims/{iccid}/company", json={"company": company}))
        _ok(op.post(f"/v1/sims/{a1}/line", json={"msisdn": "4915112345678"}))
        package = _ok(
            op.post("/v1/packages", json={"name": "p", "data_mb": 100, "validity_days": 30})
        )["id"]
        _ok(op.post(f"/v1/sims/{a1}/package", json={"package_id": package}))
        _ok(op.post(f"/v1/sims/{a1}/activate", json={}))
        group = _ok(
            op.post("/v1/shared-groups", json={"name": "ga", "iccids": [a3], "package_id": package})
        )["id"]
    with served.client(a) as client:
        operation = _ok(
            client.post(
                "/v1/operations",
                json={"kind": "pause", "iccids": [a1]},
                headers={"Idempotency-Key": "a-1"},
            )
        )["operation_id"]
        assert _ok(client.get(f"/v1/shared-groups/{group}"))["members"] == [a3]
        webhook = _ok(
            client.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/a", "secret": "a" * 16})
        )["id"]
        regular = _ok(client.post("/v1/regular-groups", json={"name": "ra", "iccids": [a2]}))["id"]
    ids = {
        "iccid": a1,
        "group_id": group,
        "operation_id": operation,
        "webhook_id": webhook,
        "regular_group_id": regular,
    }
    return ids, {a1, a2, a3, group, operation, webhook, regular, "acme-a"}, package


@pytest.fixture(scope="module", params=store_params())
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("tenancy")
    with store_for(request, tmp) as env:
        operator = make_key(env, "ops")[1]
        a = make_key(env, "a", company="acme-a")[1]
        b = make_key(env, "b", company="acme-b")[1]
        single = {s: make_key(env, f"only {s}", scopes=(s,))[1] for s in SCOPES}
        with serve(env, tmp / "serve.log", {"SIMLEDGER_HTTP_RATE": "0"}) as served:
            ids, private, package = _seed(served, operator, a)
            unknown = {
                "iccid": http_iccids(1, 900)[0],
                "group_id": str(uuid.uuid4()),
                "operation_id": str(uuid.uuid4()),
                "webhook_id": "wh_0123456789abcdef",
                "regular_group_id": str(uuid.uuid4()),
            }
            openapi = httpx.get(f"{served.url}/openapi.json").json()
            yield World(served, operator, a, b, single, ids, unknown, private, package, openapi)


# ---- requests made from the OpenAPI document ------------------------------------------------
def routes(openapi: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in openapi["paths"].items()
        for method, operation in item.items()
        if path not in OPEN
    ]


def _resolve(schema: dict[str, Any], openapi: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = openapi["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def example(schema: dict[str, Any], name: str, ids: dict[str, str], world: World) -> Any:
    """A value of ``schema`` for the property ``name``, naming the things of ``ids``."""
    schema = _resolve(schema, world.openapi)
    if "anyOf" in schema:
        kinds = [s for s in schema["anyOf"] if s.get("type") != "null"]
        return example(kinds[0], name, ids, world)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties")
        if not properties:  # a usage record (free form in the schema)
            return {
                "record_id": f"r-{uuid.uuid4()}",
                "iccid": ids["iccid"],
                "mb": 1,
                "at": datetime.now(UTC).isoformat(),
            }
        return {key: example(value, key, ids, world) for key, value in properties.items()}
    if kind == "array":
        return [example(schema.get("items", {}), name, ids, world)]
    if kind == "boolean":
        return True
    if kind in ("integer", "number"):
        return 1
    if "iccid" in name:
        return ids["iccid"]
    if name == "package_id":
        return world.package
    if "group" in name:
        return ids["group_id"]
    if "operation" in name:
        return ids["operation_id"]
    if name == "company":
        return ids.get("company", "acme-a")
    if schema.get("format") == "date-time":
        return datetime.now(UTC).isoformat()
    if schema.get("format") == "uuid":
        return str(uuid.uuid4())
    return "x"


def call(
    world: World,
    key: str | None,
    method: str,
    path: str,
    operation: dict[str, Any],
    ids: dict[str, str],
) -> httpx.Response:
    url = re.sub(r"\{(\w+)\}", lambda m: ids[m.group(1)], path)
    params = {
        p["name"]: example(p["schema"], p["name"], ids, world)
        for p in operation.get("parameters", [])
        if p["in"] == "query" and p.get("required")
    }
    kwargs: dict[str, Any] = {"params": params}
    content = operation.get("requestBody", {}).get("content", {})
    if "application/json" in content:
        kwargs["json"] = example(content["application/json"]["schema"], "", ids, world)
    elif "text/csv" in content:
        kwargs["content"] = f"iccid,operator,sim_type,esim\n{ids['iccid']},opx,prepaid,false\n"
        kwargs["headers"] = {"Content-Type": "text/csv"}
    return world.served.shared(key).request(method, url, **kwargs)


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT[0-9:.]+(Z|[+-]\d\d:\d\d)?")


def _normal(text: str, ids: dict[str, str]) -> str:
    for name, value in ids.items():
        text = text.replace(value, f"<{name}>")
    return _TIME.sub("<time>", _UUID.sub("<uuid>", text))


def snapshot(world: World) -> dict[str, Any]:
    """Everything of A's, as the operator sees it."""
    with world.served.client(world.operator) as op:
        a1, a2, a3 = http_iccids(3, 0)
        return {
            "sims": [op.get(f"/v1/sims/{i}").json() for i in (a1, a2, a3)],
            "history": [len(op.get(f"/v1/sims/{i}/history").json()) for i in (a1, a2, a3)],
            "group": op.get(f"/v1/shared-groups/{world.a_ids['group_id']}").json(),
            "operation": op.get(f"/v1/operations/{world.a_ids['operation_id']}").json(),
            "regular": op.get(f"/v1/regular-groups/{world.a_ids['regular_group_id']}").json(),
        }


def test_company_b_gets_for_a_s_things_what_it_gets_for_unknown_ones(world: World) -> None:
    before = snapshot(world)
    cases = 0
    for method, path, operation in routes(world.openapi):
        theirs = call(world, world.b, method, path, operation, world.a_ids)
        unknown = call(world, world.b, method, path, operation, world.unknown_ids)
        where = f"{method} {path}"
        assert theirs.status_code < 500 and unknown.status_code < 500, (where, theirs.text)
        assert theirs.status_code == unknown.status_code, (where, theirs.text, unknown.text)
        sent = {
            v
            for v in world.a_ids.values()
            if v in str(theirs.request.url) or v in theirs.request.content.decode(errors="replace")
        }
        leaked = {v for v in world.private - sent if v in theirs.text}
        assert not leaked, (where, leaked, theirs.text)
        if theirs.status_code >= 400:
            assert theirs.headers["content-type"] == "application/problem+json", where
            assert _normal(theirs.text, world.a_ids) == _normal(unknown.text, world.unknown_ids), (
                where,
                theirs.text,
                unknown.text,
            )
        cases += 2
    assert snapshot(world) == before
    assert cases >= 60  # every route of HTTP.md, twice
    print(f"isolation: {cases // 2} routes x 2 calls")


def test_no_key_is_401_on_every_route(world: World) -> None:
    for method, path, operation in routes(world.openapi):
        response = call(world, None, method, path, operation, world.unknown_ids)
        assert response.status_code == 401, (method, path, response.text)
        assert response.json()["status"] == 401
    revoked = "slk_" + "x" * 43
    assert call(world, revoked, "GET", "/v1/sims", {}, world.unknown_ids).status_code == 401


def test_a_key_without_the_route_s_scope_is_403_on_every_route(world: World) -> None:
    for method, path, operation in routes(world.openapi):
        if not operation.get("security"):
            continue  # signed otherwise (carrier answers): no key, no scope
        # Operator keys: the one with the scope may really act, on things of no company's.
        nobody = {**world.unknown_ids, "iccid": http_iccids(1, 950)[0], "company": "nobody"}
        statuses = {
            scope: call(world, key, method, path, operation, nobody).status_code
            for scope, key in world.single_scope.items()
        }
        allowed = [scope for scope, status in statuses.items() if status != 403]
        assert len(allowed) == 1, (method, path, statuses)


def test_lists_show_a_company_its_own_rows_only(world: World) -> None:
    a1, a2, a3, b1 = http_iccids(4, 0)
    with world.served.client(world.a) as a, world.served.client(world.b) as b:
        assert {s["iccid"] for s in a.get("/v1/sims").json()["items"]} == {a1, a2, a3}
        assert [s["iccid"] for s in b.get("/v1/sims").json()["items"]] == [b1]
        assert b.get("/v1/sims", params={"company": "acme-a"}).json()["total"] == 0
        assert [g["group_id"] for g in a.get("/v1/shared-groups").json()] == [
            world.a_ids["group_id"]
        ]
        assert b.get("/v1/shared-groups").json() == []
        assert world.a_ids["operation_id"] not in b.get("/v1/operations").text
        assert world.a_ids["operation_id"] in a.get("/v1/operations").text
        feed_a = a.get("/v1/events", params={"limit": 1000}).json()["items"]
        feed_b = b.get("/v1/events", params={"limit": 1000}).json()["items"]
        assert {e["aggregate_id"] for e in feed_a} >= {a1, a2, a3}
        assert not {e["aggregate_id"] for e in feed_b} & world.private
        assert {e["aggregate_id"] for e in feed_b if e["aggregate"] == "Sim"} == {b1}
        # a1's own package copy is a1's (the catalogue package no company's): A sees it only.
        assert [e["event"] for e in feed_a if e["aggregate"] == "Package"] == ["Assigned"]
        assert [e for e in feed_b if e["aggregate"] == "Package"] == []
