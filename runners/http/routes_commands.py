"""SIM commands: receiving (JSON or a CSV delivery file) and the one-SIM commands,
``POST /v1/sims/{iccid}/{action}``, each answering the SIM as it is after the command."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from simledger.application.ledger import SimLedger
from simledger.application.results import SimView
from simledger.runners.http import bodies, tenancy
from simledger.runners.http.auth import Caller, SimsWrite, operator_only
from simledger.runners.http.problems import Problem

router = APIRouter(prefix="/v1/sims", tags=["sim commands"])


@router.post("/receive", status_code=201, summary="receive_sims (an operator key)")
def receive(caller: SimsWrite, body: bodies.ReceiveSims) -> bodies.Received:
    # A received SIM belongs to no company yet: receiving stock is the platform's job.
    operator_only(caller, "receiving SIMs")
    ledger = caller.service.ledger
    keys = caller.run(
        lambda: ledger.receive_sims(
            body.iccids,
            operator=body.operator,
            sim_type=body.sim_type,
            esim=body.esim,
            order_id=body.order_id,
        )
    )
    return bodies.Received(iccids=keys)


@router.post(
    "/import",
    status_code=201,
    summary="import_sims_csv: a delivery file, text/csv (an operator key)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"text/csv": {"schema": {"type": "string"}}},
        }
    },
)
async def import_csv(caller: SimsWrite, request: Request) -> bodies.Received:
    operator_only(caller, "importing SIMs")
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("text/csv", "text/plain", "application/csv"):
        raise Problem(415, "send the delivery file as text/csv")
    raw = await request.body()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Problem(422, "the file is not UTF-8 text", rule="R-IO1") from None
    ledger = caller.service.ledger
    keys = await run_in_threadpool(caller.run, lambda: ledger.import_sims_csv(io.StringIO(text)))
    return bodies.Received(iccids=keys)


# ---- one-SIM commands: action -> (body model, what it does, operator only) ------------------
Act = Callable[[SimLedger, str, Any], object]
ACTIONS: dict[str, tuple[type[bodies.Body], Act, bool]] = {
    "integration-check": (
        bodies.IntegrationCheck,
        lambda lg, i, b: lg.complete_integration_check(i, ok=b.ok, reason=b.reason),
        False,
    ),
    "integration-check/retry": (
        bodies.Empty,
        lambda lg, i, b: lg.retry_integration_check(i),
        False,
    ),
    "not-available": (bodies.Reason, lambda lg, i, b: lg.mark_not_available(i, b.reason), False),
    "line": (bodies.Line, lambda lg, i, b: lg.assign_line(i, b.msisdn), False),
    "company": (bodies.Company, lambda lg, i, b: lg.assign_to_company(i, b.company), True),
    "customer": (
        bodies.Customer,
        lambda lg, i, b: lg.assign_to_customer(i, b.company, b.service_id),
        True,
    ),
    "store-use": (bodies.Empty, lambda lg, i, b: lg.mark_store_use(i), False),
    "package": (
        bodies.AssignPackage,
        lambda lg, i, b: lg.assign_package(i, b.package_id, at=b.at),
        False,
    ),
    "activate": (bodies.Empty, lambda lg, i, b: lg.activate(i), False),
    "suspend-by-system": (
        bodies.Cause,
        lambda lg, i, b: lg.suspend_by_system(i, b.cause),
        False,
    ),
    "clear-system-pause": (bodies.Empty, lambda lg, i, b: lg.clear_system_pause(i), False),
    "top-up": (bodies.TopUp, lambda lg, i, b: lg.top_up(i, b.amount), False),
    "sim-swap/start": (bodies.Empty, lambda lg, i, b: lg.start_sim_swap(i), False),
    "sim-swap/complete": (bodies.Empty, lambda lg, i, b: lg.complete_sim_swap(i), False),
    "labels": (bodies.Labels, lambda lg, i, b: lg.set_labels(i, b.labels), False),
    "note": (bodies.Note, lambda lg, i, b: lg.set_note(i, b.note), False),
    "end-user": (bodies.EndUser, lambda lg, i, b: lg.set_end_user(i, b.email), False),
}


def _route(action: str, model: type[bodies.Body], act: Act, operator: bool) -> None:
    def handler(caller: Caller, iccid: str, body: bodies.Body) -> Response:
        if operator:
            operator_only(caller, f"{action!r}")
        return bodies.answer(_command(caller, iccid, lambda lg, key: act(lg, key, body)))

    # The body's own model (this module's annotations are strings FastAPI would resolve in
    # the module's namespace, where ``model`` is not): given as objects.
    handler.__annotations__ = {"caller": SimsWrite, "iccid": str, "body": model, "return": Response}
    handler.__name__ = "sim_" + action.replace("-", "_").replace("/", "_")
    router.post(f"/{{iccid}}/{action}", summary=f"one SIM: {action}", response_model=SimView)(
        handler
    )


def _command(caller: Caller, iccid: str, do: Callable[[SimLedger, str], object]) -> SimView:
    ledger, company = caller.service.ledger, caller.company

    def run() -> SimView:
        # An operator key sees every SIM: the command itself says UnknownSim, so the SIM is
        # read once, after it (a company key's check reads it before: tenancy).
        key = iccid if company is None else tenancy.sim(ledger, company, iccid).iccid
        do(ledger, key)
        return ledger.sim(key)

    return caller.run(run)


for _action, (_model, _act, _operator) in ACTIONS.items():
    _route(_action, _model, _act, _operator)
