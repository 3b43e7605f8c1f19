"""Schemathesis over the service's own /openapi.json, on a real ``simledger serve``: no
5xx, and every answer matches the document (status, content type, schema). Bounded: with CI
set, at least 1,000 generated requests (every operation ``max_examples`` times); locally a
tenth of that, to keep the suite quick."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from http_serve import make_key, serve, store_for, store_params
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

PER_OPERATION = 35 if os.environ.get("CI", "").strip().lower() not in ("", "0", "false") else 4
KEYS: dict[str, str] = {}


@pytest.fixture(scope="module", params=store_params())
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    tmp = tmp_path_factory.mktemp("fuzz")
    with store_for(request, tmp) as env:
        KEYS["operator"] = make_key(env, "fuzz")[1]
        extra = {"SIMLEDGER_HTTP_RATE": "0", "SIMLEDGER_HTTP_POSITION_WAIT": "0.1"}
        with serve(env, tmp / "serve.log", extra) as served:
            yield schemathesis.openapi.from_url(f"{served.url}/openapi.json")


def test_no_5xx_and_every_answer_matches_the_document(api: Any) -> None:
    sent = 0
    operations = 0
    for result in api.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=PER_OPERATION,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case: Any) -> None:
            nonlocal sent
            response = case.call(headers={"Authorization": f"Bearer {KEYS['operator']}"})
            sent += 1
            case.validate_response(
                response,
                checks=[
                    checks.not_a_server_error,
                    checks.status_code_conformance,
                    checks.content_type_conformance,
                    checks.response_schema_conformance,
                ],
            )

        fuzz()
    assert operations >= 30
    assert sent >= operations * PER_OPERATION // 2  # hypothesis may stop early on small inputs
    print(f"schemathesis: {sent} requests over {operations} operations")
