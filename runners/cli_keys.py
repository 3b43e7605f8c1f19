"""``simledger keys create | list | revoke``: the HTTP service's API keys (R-KY1..2).

``keys create`` prints the new key's secret ALONE on the first line of its output (a script
takes it with ``head -1``), once: the store keeps only its hash. A second line gives its
id, owner and scopes.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from simledger.application.keys import SCOPES, ApiKey
from simledger.runners import cli_output as fmt
from simledger.runners.cli_app import Format, Options, app, command, open_ledger

keys = typer.Typer(help="API keys of the HTTP service (stored hashed, in the store)")
app.add_typer(keys, name="keys")

COLUMNS = ("id", "name", "company", "scopes", "created", "revoked")


def _row(key: ApiKey) -> dict[str, Any]:
    """A key as ``keys list`` shows it: an operator key's company is ``operator``."""
    return {
        "id": key.id,
        "name": key.name,
        "company": "operator" if key.operator else key.company,
        "scopes": [scope for scope in SCOPES if scope in key.scopes],
        "created": key.created_at,
        "revoked": key.revoked_at,
    }


@command("create", "create a key; its secret is printed once, alone on line 1", group=keys)
def cmd_keys_create(
    options: Options,
    name: Annotated[str, typer.Option(help="who or what uses the key")],
    scope: Annotated[
        list[str], typer.Option(metavar="SCOPE", help=f"repeatable: {', '.join(SCOPES)}")
    ],
    company: Annotated[str | None, typer.Option(help="the company the key reaches")] = None,
    operator: Annotated[bool, typer.Option("--operator", help="reaches every company")] = False,
) -> int:
    with open_ledger(options) as ledger:
        key, secret = ledger.keys.create(
            name=name, scopes=scope, company=company, operator=operator
        )
    row = _row(key)
    sys.stdout.write(f"{secret}\n")
    sys.stdout.write(f"id {key.id}  {row['company']}  scopes {' '.join(row['scopes'])}\n")
    sys.stderr.write("the key is shown once: keep it now (the store holds only its hash)\n")
    return 0


@command("list", "every key, revoked ones too (never their secrets)", group=keys)
def cmd_keys_list(options: Options, form: Format = "table") -> int:
    with open_ledger(options) as ledger:
        rows = [_row(key) for key in ledger.keys.list()]
    if form == "json":
        sys.stdout.write(fmt.dumps(rows, indent=2) + "\n")
    else:
        fmt.table(COLUMNS, ([row[c] for c in COLUMNS] for row in rows), sys.stdout)
    return 0


@command("revoke", "revoke a key: from the next request on it opens nothing", group=keys)
def cmd_keys_revoke(
    options: Options, key_id: Annotated[str, typer.Argument(metavar="KEY_ID")]
) -> int:
    with open_ledger(options) as ledger:
        key = ledger.keys.revoke(key_id)
    sys.stdout.write(f"revoked {key.id} ({key.name}) at {fmt.text(key.revoked_at)}\n")
    return 0
