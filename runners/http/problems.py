"""Every error as ``application/problem+json`` (RFC 9457): ``type``, ``title``, ``status``,
``detail``, ``rule``. A refusal of the ledger keeps its rule id; an unknown thing is 404; a
body FastAPI cannot read is 422; anything unforeseen is logged and answered 500 as a problem
too (a bug to fix: the tests assert none happens)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from simledger.adapters.logs import get_logger
from simledger.domain import errors

log = get_logger("simledger.http")

MEDIA_TYPE = "application/problem+json"

TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    409: "Refused by a state rule",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Refused by an input rule",
    429: "Too many requests",
    500: "Internal error",
    503: "Service unavailable",
}

_NOT_FOUND = (
    errors.UnknownSim,
    errors.UnknownPackage,
    errors.UnknownGroup,
    errors.UnknownOrder,
    errors.UnknownCustomerService,
    errors.UnknownOperation,
    errors.UnknownWebhook,
    errors.UnknownRegularGroup,
    errors.UnknownRule,
)
_INPUT = (
    errors.InvalidInput,
    errors.InvalidIccid,
    errors.CsvImportError,
    errors.BulkLimitExceeded,
    errors.OrderQuantityInvalid,
)


class Problem(Exception):
    """Raised by a route to answer a problem that no ledger rule names (401, 403, 404 …)."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        rule: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.rule = rule
        self.headers = headers or {}
        self.extra = extra or {}

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {
            # RFC 9457: "about:blank" when the status says it all; a rule's refusal names the
            # rule (docs/rules.md) as a URN rather than a web address the project does not own.
            "type": "about:blank" if self.rule is None else f"urn:simledger:rule:{self.rule}",
            "title": TITLES.get(self.status, "Error"),
            "status": self.status,
            "detail": self.detail,
            "rule": self.rule,
            **self.extra,
        }
        return JSONResponse(
            body, status_code=self.status, media_type=MEDIA_TYPE, headers=self.headers
        )


def status_of(error: errors.SimledgerError) -> int:
    """404 for an unknown thing, 422 for a refused input, 503 for an unreachable store,
    500 for an unreadable one, 409 for every state rule."""
    if isinstance(error, _NOT_FOUND):
        return 404
    if isinstance(error, _INPUT):
        return 422
    if isinstance(error, errors.StoreUnreachable):
        return 503
    if isinstance(error, errors.StoreUnreadable):
        return 500
    return 409


def refusal_response(error: errors.SimledgerError) -> JSONResponse:
    extra: dict[str, Any] = {}
    if isinstance(error, errors.CsvImportError):
        extra["errors"] = {str(line): reason for line, reason in error.errors.items()}
    return Problem(status_of(error), error.message, rule=error.rule, extra=extra).response()


def _validation_detail(error: RequestValidationError) -> str:
    parts = []
    for item in error.errors()[:20]:
        where = ".".join(str(p) for p in item.get("loc", ()))
        parts.append(f"{where}: {item.get('msg', 'invalid')}")
    return "; ".join(parts) or "the request is not valid"


def install(app: FastAPI) -> None:
    """Registers the handlers that turn every error into a problem."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, error: Problem) -> JSONResponse:
        return error.response()

    @app.exception_handler(errors.SimledgerError)
    async def _refused(request: Request, error: errors.SimledgerError) -> JSONResponse:
        return refusal_response(error)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        return Problem(422, _validation_detail(error), rule="R-IN4").response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return Problem(
            error.status_code, str(error.detail), headers=dict(error.headers or {})
        ).response()

    @app.exception_handler(Exception)
    async def _unforeseen(request: Request, error: Exception) -> JSONResponse:
        log.error(
            "http.unforeseen",
            path=request.url.path,
            error=type(error).__name__,
            message=str(error)[:500],
            exc_info=error,
        )
        return Problem(500, "an internal error; it is logged").response()
