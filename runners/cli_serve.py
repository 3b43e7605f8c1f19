"""``simledger serve``: the HTTP service (runners/http/) under uvicorn, on the store chosen
as for every other command. Access logs are JSON lines on stderr. SIGINT/SIGTERM stop it
gracefully: uvicorn stops accepting, lets the requests in flight finish, then the app
closes the ledger."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from simledger.application.ledger import SimLedger
from simledger.runners.cli_app import Options, command, store_env


def _log_to_stderr() -> None:
    logger = logging.getLogger("simledger")
    logger.handlers[:] = [logging.StreamHandler(sys.stderr)]
    logger.handlers[0].setFormatter(logging.Formatter("%(message)s"))  # JSON already
    logger.setLevel(logging.INFO)
    logger.propagate = False


@command("serve", help="Serve the HTTP API (HTTP.md) until stopped (Ctrl-C, SIGTERM).")
def serve(
    options: Options,
    host: Annotated[str, typer.Option(help="the address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="the port", min=0, max=65535)] = 8080,
) -> int:
    # Imported here, not at the top: FastAPI and uvicorn add some 0.7 s to the start of
    # every other command of the command line, which registers this one.
    import uvicorn

    from simledger.runners.http.app import create_app

    env = store_env(options.db)
    app = create_app(lambda: SimLedger(env=env))
    _log_to_stderr()
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",  # the app's own access log says every request, as JSON
        access_log=False,
        timeout_graceful_shutdown=30,
    )
    return 0
