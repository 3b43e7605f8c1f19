"""A carrier's answers, signed: ``X-Simledger-Signature: t=<unix>,v1=<hex>`` where the hex is
HMAC-SHA256 of ``"<t>.<body>"`` under the carriers' secret (``SIMLEDGER_CARRIER_SECRET``).
A bad or stale (over 5 minutes either way) signature → 401, nothing recorded. An answer given
before (the same ``answer_id``, or any answer for a SIM of an operation already answered)
changes nothing: the ledger applies one answer per SIM and operation (R-BK3)."""

from __future__ import annotations

import hmac
import time
from typing import Annotated
from uuid import UUID

import orjson
from fastapi import APIRouter, Header, Request
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool

from simledger.adapters.carrier.answers_http import sign
from simledger.application.results import ConfirmResult
from simledger.domain.actor import Actor
from simledger.runners.http.auth import service_of
from simledger.runners.http.problems import Problem

router = APIRouter(prefix="/v1/carrier", tags=["carrier"])


class CarrierAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    answer_id: str = Field(max_length=200)
    operation_id: UUID
    iccid: str = Field(max_length=100)
    ok: bool
    reason: str | None = Field(default=None, max_length=2000)


ANSWERS = TypeAdapter(list[CarrierAnswer])
CARRIER = Actor(id="carrier", name="carrier answers (signed)")
"""Who the events of a signed answer are recorded as: no key sends them."""


def verify(secret: str | None, header: str | None, body: bytes, max_age: float) -> None:
    if not secret or not header:
        raise Problem(401, "a carrier signature is required")
    parts = dict(p.strip().split("=", 1) for p in header.split(",") if "=" in p)
    stamp = parts.get("t", "")
    if not stamp.isdigit() or len(stamp) > 12:
        raise Problem(401, "the signature has no valid timestamp")
    if abs(time.time() - int(stamp)) > max_age:
        raise Problem(401, "the signature is stale")
    expected = sign(secret, int(stamp), body).split("v1=", 1)[1]
    if not hmac.compare_digest(expected, parts.get("v1", "")):
        raise Problem(401, "the signature does not match")


@router.post(
    "/answers",
    summary="a carrier's answers to bulk requests (HMAC-signed)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"type": "array", "items": CarrierAnswer.model_json_schema()}
                }
            },
        }
    },
)
async def answers(
    request: Request,
    x_simledger_signature: Annotated[str | None, Header(max_length=500)] = None,
) -> ConfirmResult:
    service = service_of(request)
    raw = await request.body()
    verify(
        service.settings.carrier_secret,
        x_simledger_signature,
        raw,
        service.settings.signature_max_age,
    )
    try:
        given = ANSWERS.validate_python(orjson.loads(raw))
    except (orjson.JSONDecodeError, ValidationError) as error:
        raise Problem(422, f"not a list of answers: {str(error)[:300]}", rule="R-IN4") from None
    by_operation: dict[UUID, list[tuple[str, bool, str | None]]] = {}
    for answer in given:
        by_operation.setdefault(answer.operation_id, []).append(
            (answer.iccid, answer.ok, answer.reason)
        )
    ledger = service.ledger

    def run() -> ConfirmResult:
        applied: list[str] = []
        skipped: dict[str, str] = {}
        with ledger.acting_as(CARRIER):
            for operation_id, pairs in by_operation.items():
                result = ledger.confirm_many(operation_id, pairs)
                applied.extend(result.applied)
                skipped.update(result.skipped)
        return ConfirmResult(applied=applied, skipped=skipped)

    return await run_in_threadpool(service.call, run)
