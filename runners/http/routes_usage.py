"""Usage ingestion: a JSON array or NDJSON of ``{record_id, iccid, mb, at, country}`` →
``record_usage_batch`` (a ``record_id`` seen before is counted once, R-US1)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from simledger.application.results import UsageResult
from simledger.domain.errors import SimledgerError
from simledger.runners.http import tenancy
from simledger.runners.http.auth import UsageWrite
from simledger.runners.http.problems import Problem

router = APIRouter(prefix="/v1/usage", tags=["usage"])

NDJSON = "application/x-ndjson"


def parse_records(raw: bytes, kind: str) -> list[Any]:
    """The records of a JSON array or of NDJSON lines; 422 naming every bad line."""
    if kind == NDJSON:
        records, bad = [], {}
        for number, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(orjson.loads(line))
            except orjson.JSONDecodeError as error:
                bad[str(number)] = str(error)[:200]
        if bad:
            raise Problem(422, "lines that are not JSON", rule="R-IO1", extra={"errors": bad})
        return records
    try:
        records = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise Problem(422, f"the body is not JSON: {str(error)[:200]}", rule="R-IO1") from None
    if not isinstance(records, list):
        raise Problem(422, "send a JSON array of usage records (or NDJSON)", rule="R-IN4")
    return records


def _scoped(company: str, record: Any) -> Any:
    """A company's record, its ``record_id`` in the company's own space (so another
    company's ids neither collide with nor reveal its own)."""
    if isinstance(record, dict) and isinstance(record.get("record_id"), str):
        return {**record, "record_id": tenancy.idempotency_scope(company, record["record_id"])}
    return record


@router.post(
    "",
    summary="record usage (JSON array or NDJSON)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
                NDJSON: {"schema": {"type": "string"}},
            },
        }
    },
)
async def record_usage(caller: UsageWrite, request: Request) -> UsageResult:
    kind = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    records = parse_records(await request.body(), kind)
    ledger, company = caller.service.ledger, caller.company

    def run() -> UsageResult:
        if company is None:
            return ledger.record_usage_batch(records)
        hidden: dict[str, str] = {}
        mine: list[Any] = []
        prefix = tenancy.idempotency_scope(company, "")
        for record in records:
            iccid = record.get("iccid") if isinstance(record, dict) else None
            if iccid is not None and not tenancy.sim_visible(ledger, company, iccid):
                try:
                    _, reason = tenancy.unknown_sim_reason(iccid)
                except SimledgerError:
                    mine.append(_scoped(company, record))  # not an ICCID: refused as it is
                    continue
                hidden[str(record.get("record_id"))] = reason
                continue
            mine.append(_scoped(company, record))
        result = ledger.record_usage_batch(mine)
        rejected = {k.removeprefix(prefix): v for k, v in result.rejected.items()}
        return result.model_copy(update={"rejected": {**rejected, **hidden}})

    return await run_in_threadpool(caller.run, run)
