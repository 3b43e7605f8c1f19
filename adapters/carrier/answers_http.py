"""The carrier's answers delivered as a real carrier would: ``POST /v1/carrier/answers`` of a
running ``simledger serve``, each batch signed ``X-Simledger-Signature: t=<unix>,v1=<hex>``
(HMAC-SHA256 of ``"<t>.<body>"`` under the shared secret ``SIMLEDGER_CARRIER_SECRET``).

Every answer carries ``answer_id`` = the gateway's ``request_id`` (stable across runs), and the
service applies one answer per SIM and operation: a batch sent again changes nothing.

Connection errors and 5xx answers are retried with doubling pauses; a 401 means the two sides
do not share the secret (a configuration error, not worth retrying); any other 4xx is the
service refusing the batch as a whole.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx
import orjson

from simledger.adapters.carrier.gateway import CarrierAnswer
from simledger.adapters.logs import get_logger

log = get_logger("simledger.forwarder")

SECRET_SETTING = "SIMLEDGER_CARRIER_SECRET"
"""The environment variable both the service and the forwarder read the shared secret from."""
SIGNATURE_HEADER = "X-Simledger-Signature"
ANSWERS_PATH = "/v1/carrier/answers"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header value of ``body`` sent at ``timestamp`` (unix seconds)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def answers_body(answers: Sequence[CarrierAnswer]) -> bytes:
    """The JSON list the service takes; ``answer_id`` is the stable request id."""
    return orjson.dumps(
        [
            {
                "answer_id": a.request_id,
                "operation_id": a.operation_id,
                "iccid": a.iccid,
                "ok": a.ok,
                "reason": a.reason,
            }
            for a in answers
        ]
    )


class AnswersUnauthorised(Exception):
    """The service answered 401: the forwarder's secret is not the service's."""


class AnswersRefused(Exception):
    """The service refused the batch as a whole (a 4xx other than 401)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


class AnswersUnreachable(Exception):
    """No answer from the service (connection errors or 5xx) after every retry."""


@dataclass(frozen=True)
class Delivered:
    """What the service did with a batch: ICCIDs applied, and skipped ones with the reason."""

    applied: list[str]
    skipped: dict[str, str]


class HttpAnswers:
    """Posts signed answer batches to ``url`` (the service's base URL)."""

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        attempts: int = 5,
        first_pause: float = 0.2,
        max_pause: float = 5.0,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """``transport``: httpx's default (the network) unless given, e.g. a scripted one
        to drive the retry rules through statuses a healthy service never answers."""
        if not secret:
            raise ValueError(f"the HTTP answer path needs {SECRET_SETTING}")
        if attempts < 1:
            raise ValueError("attempts must be positive")
        self.url = url.rstrip("/")
        self.secret = secret
        self.attempts = attempts
        self.first_pause = first_pause
        self.max_pause = max_pause
        self.clock = clock
        self.sleep = sleep
        self._client = httpx.Client(base_url=self.url, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._client.close()

    def deliver(self, answers: Sequence[CarrierAnswer]) -> Delivered:
        body = answers_body(answers)
        pause = self.first_pause
        for attempt in range(1, self.attempts + 1):
            # Signed anew per attempt: a retry after a long pause must not be stale.
            headers = {
                SIGNATURE_HEADER: sign(self.secret, int(self.clock()), body),
                "Content-Type": "application/json",
            }
            try:
                response = self._client.post(ANSWERS_PATH, content=body, headers=headers)
            except httpx.TransportError as error:
                problem = f"{type(error).__name__}: {error}"
            else:
                if response.status_code == 401:
                    detail = _detail(response)
                    log.error(
                        "forwarder.answers_unauthorised",
                        url=self.url,
                        detail=detail,
                        hint=f"{SECRET_SETTING} differs from the service's",
                    )
                    raise AnswersUnauthorised(detail)
                if response.status_code < 300:
                    data = response.json()
                    return Delivered(list(data["applied"]), dict(data["skipped"]))
                if response.status_code < 500:
                    raise AnswersRefused(response.status_code, _detail(response))
                problem = f"HTTP {response.status_code}: {_detail(response)}"
            if attempt == self.attempts:
                raise AnswersUnreachable(problem)
            log.warning(
                "forwarder.answers_retry", url=self.url, attempt=attempt, error=problem[:300]
            )
            self.sleep(pause)
            pause = min(pause * 2, self.max_pause)
        raise AssertionError("unreachable")  # the loop returns or raises


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text))[:500]
    except (ValueError, AttributeError):
        return response.text[:500]
