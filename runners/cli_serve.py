"""``simledger serve``: the HTTP service (runners/http/) under uvicorn, on the store chosen
as for every other command. Access logs are JSON lines on stderr. SIGINT/SIGTERM stop it
gracefully: uvicorn stops accepting, lets the requests in flight finish, then the app
closes the ledger."""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from simledger.application.ledger import SimLedger
from simledger.runners.cli_app import Options, command, store_env

if TYPE_CHECKING:  # not imported at run time: see serve()
    from fastapi import FastAPI


def _log_to_stderr() -> None:
    logger = logging.getLogger("simledger")
    logger.handlers[:] = [logging.StreamHandler(sys.stderr)]
    logger.handlers[0].setFormatter(logging.Formatter("%(message)s"))  # JSON already
    logger.setLevel(logging.INFO)
    logger.propagate = False


WORKER_DB = "SIMLEDGER_SERVE_DB"
"""``--db`` as ``serve`` was given it: read by :func:`app` in each worker process of
``--workers`` (they start afresh, from the import name)."""


def app() -> FastAPI:
    """The service on the store ``serve`` was given: its own process's, or (uvicorn imports it
    by name) one worker's of ``serve --workers N``."""
    from simledger.runners.http.app import create_app

    env = store_env(os.environ.get(WORKER_DB) or None)
    _log_to_stderr()  # a worker process starts afresh: its logging is set here
    return create_app(lambda: SimLedger(env=env))


@command("serve", help="Serve the HTTP API (HTTP.md) until stopped (Ctrl-C, SIGTERM).")
def serve(
    options: Options,
    host: Annotated[str, typer.Option(help="the address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="the port", min=0, max=65535)] = 8080,
    workers: Annotated[
        int,
        typer.Option(
            help="processes answering on the port, each with its own ledger (PostgreSQL; "
            "read-your-writes across them with min_position)",
            min=1,
            max=64,
        ),
    ] = 1,
) -> int:
    # Imported here, not at the top: FastAPI and uvicorn add some 0.7 s to the start of
    # every other command of the command line, which registers this one.
    import uvicorn

    settings: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": "warning",  # the app's own access log says every request, as JSON
        "access_log": False,
        "timeout_graceful_shutdown": 30,
    }
    os.environ[WORKER_DB] = options.db or ""
    if workers > 1:
        # One ledger per process, each with its own lock: a request waits only for those
        # of its own process (runners/http/service.py).
        uvicorn.run("simledger.runners.cli_serve:app", factory=True, workers=workers, **settings)
    else:
        uvicorn.run(app(), **settings)
    return 0
