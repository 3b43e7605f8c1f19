"""``simledger regular-group create | add | remove | rename | delete | show`` (R-RG1..3),
``simledger always-on ICCID [--off]`` (R-AO1) and ``simledger sessions FILE`` (R-SS1).

``sessions`` reads carrier session records as JSON Lines (``record_id``, ``iccid``,
``kind``, ``at`` per line), 5,000 records a batch (one transaction each), each record
counted once however often the file is sent.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Annotated, Any

import typer

from simledger.runners import cli_output as fmt
from simledger.runners.cli_app import (
    EXIT_FAILED,
    EXIT_REFUSED,
    Format,
    Options,
    app,
    command,
    open_ledger,
)

groups = typer.Typer(help="regular groups: organise SIMs; deleting one never deletes a SIM")
app.add_typer(groups, name="regular-group")

SESSION_BATCH = 5000
Iccids = Annotated[list[str], typer.Argument(metavar="ICCID...", help="one or more ICCIDs")]
GroupId = Annotated[str, typer.Argument(metavar="GROUP_ID")]


@command("create", "create a regular group (with its first SIMs); prints its id", group=groups)
def cmd_group_create(
    options: Options,
    name: Annotated[str, typer.Argument(metavar="NAME")],
    iccids: Annotated[list[str] | None, typer.Argument(metavar="[ICCID...]")] = None,
    company: Annotated[str | None, typer.Option(help="the group holds this company's SIMs")] = None,
) -> int:
    with open_ledger(options) as ledger:
        print(ledger.create_group(name, iccids or [], company=company))
    return 0


@command("add", "add SIMs to a regular group", group=groups)
def cmd_group_add(options: Options, group_id: GroupId, iccids: Iccids) -> int:
    with open_ledger(options) as ledger:
        ledger.add_to_group(group_id, iccids)
    return 0


@command("remove", "remove SIMs from a regular group", group=groups)
def cmd_group_remove(options: Options, group_id: GroupId, iccids: Iccids) -> int:
    with open_ledger(options) as ledger:
        ledger.remove_from_group(group_id, iccids)
    return 0


@command("rename", "rename a regular group", group=groups)
def cmd_group_rename(
    options: Options, group_id: GroupId, name: Annotated[str, typer.Argument(metavar="NAME")]
) -> int:
    with open_ledger(options) as ledger:
        ledger.rename_group(group_id, name)
    return 0


@command("delete", "delete a regular group, or move its SIMs (--move-to)", group=groups)
def cmd_group_delete(
    options: Options,
    group_id: GroupId,
    move_to: Annotated[
        str | None, typer.Option(metavar="GROUP_ID", help="move the SIMs there; keep this group")
    ] = None,
) -> int:
    with open_ledger(options) as ledger:
        ledger.delete_group(group_id, move_to=move_to)
    return 0


@command("show", "a regular group: its name, company and members", group=groups)
def cmd_group_show(options: Options, group_id: GroupId, form: Format = "table") -> int:
    with open_ledger(options) as ledger:
        view = ledger.regular_group(group_id)
    if form == "json":
        sys.stdout.write(fmt.dumps(view, indent=2) + "\n")
        return 0
    state = " (deleted)" if view.deleted else ""
    sys.stdout.write(f"{view.name}{state}  company {view.company or '-'}\n")
    for iccid in view.members:
        sys.stdout.write(f"{iccid}\n")
    sys.stdout.write(f"{len(view.members)} SIM(s)\n")
    return 0


@command("always-on", "set a SIM's Always On option (--off clears it)")
def cmd_always_on(
    options: Options,
    iccid: Annotated[str, typer.Argument(metavar="ICCID")],
    off: Annotated[bool, typer.Option("--off", help="clear the option")] = False,
) -> int:
    with open_ledger(options) as ledger:
        ledger.set_always_on(iccid, not off)
    return 0


@contextlib.contextmanager
def _lines(file: str) -> Iterator[IO[str]]:
    if file == "-":
        yield sys.stdin
        return
    with Path(file).open(encoding="utf-8") as stream:
        yield stream


@command("sessions", "record carrier session records (JSON Lines), each counted once")
def cmd_sessions(
    options: Options,
    file: Annotated[
        str, typer.Argument(metavar="FILE", help="JSON Lines: record_id, iccid, kind, at; -")
    ],
) -> int:
    applied = duplicates = 0
    rejected: dict[str, str] = {}
    with open_ledger(options) as ledger, _lines(file) as stream:
        batch: list[Any] = []
        for number, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                batch.append(json.loads(line))
            except json.JSONDecodeError as error:
                sys.stderr.write(f"error: R-SS1: line {number}: not JSON ({error.msg})\n")
                return EXIT_REFUSED
            if len(batch) == SESSION_BATCH:
                result = ledger.record_sessions(batch)
                applied, duplicates = applied + result.applied, duplicates + result.duplicates
                rejected.update(result.rejected)
                batch = []
        if batch:
            result = ledger.record_sessions(batch)
            applied, duplicates = applied + result.applied, duplicates + result.duplicates
            rejected.update(result.rejected)
    print(f"applied {applied}, duplicates {duplicates}, rejected {len(rejected)}")
    if rejected:
        fmt.table(("record_id", "reason"), list(rejected.items()), sys.stdout, width=200)
    return EXIT_FAILED if rejected else 0
