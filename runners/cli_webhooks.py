"""``simledger webhooks list`` (each subscription with its delivery status and lag) and
``simledger deliver`` (the delivery process, runners/deliver.py) (R-WH1..3)."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from simledger.application.event_sourced import create_tables_retrying
from simledger.application.service_reads import store_position
from simledger.application.webhooks import WebhookRing
from simledger.runners import cli_output as fmt
from simledger.runners import deliver as deliver_process
from simledger.runners.cli_app import Format, Options, app, command, open_ledger

webhooks = typer.Typer(help="webhook subscriptions (made with POST /v1/webhooks)")
app.add_typer(webhooks, name="webhooks")

COLUMNS = (
    "id",
    "company",
    "url",
    "events",
    "status",
    "position",
    "lag",
    "delivered_at",
    "paused_reason",
)


@command(
    "list", "every subscription with its delivery status and lag (positions behind)", group=webhooks
)
def cmd_webhooks_list(options: Options, form: Format = "table") -> int:
    with open_ledger(options) as ledger:
        ring = WebhookRing(ledger, create_table=create_tables_retrying)
        last = store_position(ledger)
        rows = [hook.public(last) for hook in ring.list()]
    for row in rows:
        row["company"] = row["company"] or "operator"
    if form == "json":
        sys.stdout.write(fmt.dumps(rows, indent=2) + "\n")
    else:
        fmt.table(COLUMNS, ([row[c] for c in COLUMNS] for row in rows), sys.stdout)
    return 0


@command("deliver", "deliver webhook events until stopped (signed POSTs, in order, retried)")
def cmd_deliver(
    options: Options,
    batch: Annotated[int, typer.Option(help="events per POST at most", min=1, max=10_000)] = 500,
    interval: Annotated[float, typer.Option(help="idle sleep, seconds", min=0.0)] = 0.2,
    once: Annotated[bool, typer.Option("--once", help="one round, then exit")] = False,
    until_idle: Annotated[bool, typer.Option("--until-idle", help="until nothing is due")] = False,
) -> int:
    mode = "once" if once else "until-idle" if until_idle else "forever"
    with open_ledger(options) as ledger:
        return deliver_process.run(
            ledger, batch=batch, interval=interval, mode=mode, env=os.environ
        )
