"""The app in-process, for what no input can cause: an unforeseen failure inside the ledger
is logged and answered as a problem (500), with the position and request id headers, and
the service goes on answering."""

from __future__ import annotations

import logging
import warnings
from typing import Any

from simledger.application.ledger import SimLedger
from simledger.runners.http.app import create_app
from simledger.runners.http.settings import Settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


class BrokenList(SimLedger):
    """A real (in-memory) ledger whose SIM list fails as a bug would."""

    def sims(self, **filters: Any) -> Any:
        raise RuntimeError("a bug in the list")


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_an_unforeseen_failure_is_a_logged_problem_and_the_service_goes_on(
    memory_env: dict[str, str],
) -> None:
    made: list[SimLedger] = []

    def open_ledger() -> SimLedger:
        made.append(BrokenList(env=memory_env))
        return made[0]

    app = create_app(open_ledger, Settings(rate_per_second=0))
    with TestClient(app, raise_server_exceptions=False) as client:
        _, secret = made[0].keys.create(name="t", scopes=["sims:read"], operator=True)
        headers = {"Authorization": f"Bearer {secret}"}
        # Straight on the service's logger: other tests may stop it propagating to the root.
        collect, logger = Collect(), logging.getLogger("simledger.http")
        logger.addHandler(collect)
        try:
            broken = client.get("/v1/sims", headers=headers)
        finally:
            logger.removeHandler(collect)
        assert broken.status_code == 500
        assert broken.headers["content-type"] == "application/problem+json"
        assert broken.json()["detail"] == "an internal error; it is logged"
        assert any("a bug in the list" in line for line in collect.lines)
        assert client.get("/v1/operations", headers=headers).status_code == 200
