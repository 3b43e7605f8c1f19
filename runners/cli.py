"""``simledger``: the command line for operators of a store.

The store is chosen by eventsourcing's own settings in the environment (``PERSISTENCE_MODULE``,
``SQLITE_DBNAME``, ``POSTGRES_*`` …); ``--db PATH`` is a shortcut for a SQLite file; with no
settings at all, the SQLite file ``simledger.db`` in the current directory.

Refusals print one line ``error: <rule id>: <message>`` on stderr and exit with 2; other
failures (store unreachable, unreadable file …) print ``error: <kind>: <message>`` and exit
with 1. Long work draws a progress bar on stderr when it is a terminal; ``--verbose`` adds the
engine's structured logs (JSON lines) on stderr.

The commands are parsed by Typer; the output is written by ``cli_output`` (Rich tables and
progress bars), ``csv`` and ``json``.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Annotated, Any, Literal

import typer
from typer.main import get_command

from simledger.adapters.usage_format import format_of
from simledger.adapters.views.base import PENDING_ACTIVITY, SHARED_GROUPS, SIMS
from simledger.application.audit import VerifyReport
from simledger.application.audit_log import audit_records
from simledger.application.csv_transfer import EXPORT_COLUMNS, EXPORT_PAGE, export_row
from simledger.application.usage_file import UsageFileRun
from simledger.domain.errors import (
    CsvImportError,
)
from simledger.runners import cli_output as fmt
from simledger.runners.cli_app import (
    EXIT_BEHIND,
    EXIT_FAILED,
    EXIT_REFUSED,
    Format,
    Iccid,
    Options,
    Time,
    _progress_from_logs,
    app,
    command,
    open_ledger,
    parse_time,
    store_env,
)

VIEWS = {"sims": [SIMS], "activity": [PENDING_ACTIVITY], "groups": [SHARED_GROUPS]}
LIST_COLUMNS = (
    "iccid",
    "status",
    "sim_type",
    "operator",
    "company",
    "plan",
    "data_left_mb",
    "days_left",
    "labels",
)


# ---- commands -------------------------------------------------------------------------------
@command("demo", "build the demo fleet in a fresh SQLite file (--db, default simledger-demo.db)")
def cmd_demo(options: Options) -> int:
    from simledger.runners import demo

    if not options.verbose:  # the demo logs at INFO on stderr; only --verbose shows that
        logging.disable(logging.INFO)
    code: int = demo.main(["--db", options.db] if options.db else [])
    return code


@command("import", "receive the SIMs of a CSV delivery file")
def cmd_import(
    options: Options,
    file: Annotated[
        str,
        typer.Argument(metavar="FILE", help="columns iccid,operator,sim_type,esim; - for stdin"),
    ],
) -> int:
    # The file is read once, as it comes: a pipe or /dev/stdin cannot be read a second time
    # (to count its rows first), so the progress counts rows without a total.
    with (
        open_ledger(options) as ledger,
        _input(file) as stream,
        _progress_from_logs("import", "rows"),
    ):
        try:
            received = ledger.import_sims_csv(stream)
        except CsvImportError as error:
            count = len(error.errors)
            sys.stderr.write(f"error: {error.rule}: {count} bad row(s), nothing imported\n")
            for line, reason in error.errors.items():
                sys.stderr.write(f"line {line}: {reason}\n")
            return EXIT_REFUSED
    print(f"imported {len(received)} SIM(s) from {'stdin' if file == '-' else Path(file)}")
    return 0


def _input(file: str) -> contextlib.AbstractContextManager[IO[bytes]]:
    """The bytes of ``file``; ``-`` is stdin (left open)."""
    if file == "-":
        return contextlib.nullcontext(sys.stdin.buffer)
    return Path(file).open("rb")


@command("usage", "record usage records (CSV or JSON Lines), each record_id counted once")
def cmd_usage(
    options: Options,
    file: Annotated[
        str,
        typer.Argument(
            metavar="FILE", help="CSV record_id,iccid,mb,at[,country] or JSON Lines; - for stdin"
        ),
    ],
    form: Annotated[
        Literal["csv", "jsonl"] | None,
        typer.Option("--format", help="default: jsonl for .jsonl/.ndjson, else csv"),
    ] = None,
    show: Annotated[int, typer.Option(help="rejected records listed (0: all)")] = 0,
) -> int:
    # One batch (one transaction) per chunk of the file: application/usage_file.py.
    run = UsageFileRun()
    with open_ledger(options) as ledger, _input(file) as stream, fmt.Progress("usage") as bar:
        try:
            run.feed(ledger.record_usage_batch, stream, format_of(file, form), on_chunk=bar.update)
        except CsvImportError as error:
            for line, reason in error.errors.items():
                sys.stderr.write(f"error: {error.rule}: line {line}: {reason}\n")
            sys.stderr.write(
                f"recorded before it: applied {run.applied}, duplicates {run.duplicates}, "
                f"rejected {len(run.rejected)}; the fixed file sent again skips them\n"
            )
            return EXIT_REFUSED
    print(f"applied {run.applied}, duplicates {run.duplicates}, rejected {len(run.rejected)}")
    if run.rejected:
        listed = list(run.rejected.items())[: show or None]
        fmt.table(("record_id", "reason"), listed, sys.stdout, width=200)
    return EXIT_FAILED if run.rejected else 0


@command("list", "the SIM list, filtered")
def cmd_list(
    options: Options,
    status: Annotated[list[str] | None, typer.Option(metavar="STATUS", help="repeatable")] = None,
    sim_type: Annotated[list[str] | None, typer.Option(metavar="TYPE", help="repeatable")] = None,
    operator: str | None = None,
    company: str | None = None,
    label: str | None = None,
    search: str | None = None,
    group: Annotated[str | None, typer.Option(metavar="GROUP_ID", help="shared group id")] = None,
    regular_group: Annotated[
        str | None, typer.Option(metavar="GROUP_ID", help="regular group id")
    ] = None,
    sort: Annotated[str, typer.Option(help="any column")] = "iccid",
    desc: Annotated[bool, typer.Option("--desc", help="sort descending")] = False,
    limit: Annotated[int, typer.Option(help="SIMs per page")] = 100,
    cursor: Annotated[
        str | None, typer.Option(help="the page after the one that printed it")
    ] = None,
    every: Annotated[bool, typer.Option("--all", help="every page")] = False,
    form: Annotated[Literal["table", "csv", "json"], typer.Option("--format")] = "table",
) -> int:
    filters: dict[str, Any] = {
        "status": status or None,
        "sim_type": sim_type or None,
        "operator": operator,
        "company": company,
        "label": label,
        "group_id": group,
        "regular_group_id": regular_group,
        "search": search,
        "sort": sort,
        "descending": desc,
    }
    with open_ledger(options) as ledger:
        limit = EXPORT_PAGE if every else limit
        page = ledger.sims(**filters, limit=limit, cursor=cursor)
        items = list(page.items)
        while every and page.next_cursor is not None:
            page = ledger.sims(**filters, limit=limit, cursor=page.next_cursor)
            items.extend(page.items)
    out = sys.stdout
    if form == "json":
        listed = {"total": page.total, "next_cursor": page.next_cursor, "items": items}
        out.write(fmt.dumps(listed, indent=2) + "\n")
    elif form == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(EXPORT_COLUMNS)
        writer.writerows(export_row(item) for item in items)
    else:
        fmt.table(LIST_COLUMNS, ([getattr(i, c) for c in LIST_COLUMNS] for i in items), out)
        out.write(f"{len(items)} of {page.total} SIM(s)\n")
    if page.next_cursor is not None:
        sys.stderr.write(f"more SIMs: next page with --cursor {page.next_cursor}\n")
    return 0


def _show_model(model: Any, form: str) -> None:
    if form == "json":
        sys.stdout.write(fmt.dumps(model, indent=2) + "\n")
    else:
        fmt.fields(model, sys.stdout)


@command("show", "a SIM's current state")
def cmd_show(options: Options, iccid: Iccid, form: Format = "table") -> int:
    with open_ledger(options) as ledger:
        _show_model(ledger.sim(iccid), form)
    return 0


@command("as-of", "a SIM's state at a past time or version")
def cmd_as_of(
    options: Options,
    iccid: Iccid,
    at: Time = None,
    version: Annotated[int | None, typer.Option(metavar="N", help="the SIM's own version")] = None,
    form: Format = "table",
) -> int:
    if (at is None) == (version is None):
        raise typer.BadParameter(
            "give one of --at TIME or --version N", param_hint="--at/--version"
        )
    when = parse_time(at, "--at") if at is not None else None
    with open_ledger(options) as ledger:
        _show_model(ledger.sim_as_of(iccid, at=when, version=version), form)
    return 0


@command("history", "every event that touched a SIM")
def cmd_history(options: Options, iccid: Iccid, form: Format = "table") -> int:
    with open_ledger(options) as ledger:
        entries = ledger.history(iccid)
    if form == "json":
        sys.stdout.write(fmt.dumps(entries, indent=2) + "\n")
        return 0
    fmt.table(
        ("version", "aggregate", "event", "at", "data"),
        ([e.version, e.aggregate, e.event, e.at, fmt.key_data(e.data)] for e in entries),
        sys.stdout,
        width=70,
    )
    return 0


@command("activity", "bulk pauses and resumes with carrier answers")
def cmd_activity(options: Options, form: Format = "table") -> int:
    with open_ledger(options) as ledger:
        operations = ledger.pending_activity()
    if form == "json":
        sys.stdout.write(fmt.dumps(operations, indent=2) + "\n")
        return 0
    columns: tuple[str, ...] = ("operation_id", "kind", "requested_at", "deadline")
    columns += ("requested", "confirmed", "refused", "pending", "overdue")
    fmt.table(columns, ([getattr(o, c) for c in columns] for o in operations), sys.stdout)
    return 0


View = Literal["sims", "activity", "groups", "all"]


def _views(name: str) -> list[str]:
    return [v for views in VIEWS.values() for v in views] if name == "all" else VIEWS[name]


@command("rebuild", "replay every event into a fresh view and swap it in")
def cmd_rebuild(options: Options, view: Annotated[View, typer.Argument()]) -> int:
    views = _views(view)
    with open_ledger(options) as ledger:
        runner = ledger.views
        runner.progress_every = runner.batch_size
        with _progress_from_logs("rebuild", "events", "upto"):
            position = ledger.rebuild_views(views)
    print(f"rebuilt {', '.join(views)} up to position {position}")
    return 0


@command("verify", "replay the store: hash chains, pools, views; exit 1 on a problem, 3 if behind")
def cmd_verify(
    options: Options,
    view: Annotated[View, typer.Argument()] = "all",
    show: Annotated[int, typer.Option(help="differing rows shown per view")] = 5,
    views_only: Annotated[bool, typer.Option("--views-only", help="no replay of events")] = False,
    allow_behind: Annotated[
        bool, typer.Option("--allow-behind", help="views behind the log still exit 0")
    ] = False,
    witness: Annotated[
        str | None, typer.Option(metavar="POSITION:HASH", help="a checkpoint kept outside")
    ] = None,
) -> int:
    views = _views(view)
    with open_ledger(options) as ledger:
        runner = ledger.views
        runner.progress_every = runner.batch_size
        with _progress_from_logs("verify", "events", "upto"):
            # The replay of the store (audit.py) runs alongside the views' verification.
            report = None if views_only else ledger.verify_store(view_names=views, witness=witness)
            diffs = report.view_diffs if report is not None else ledger.verify_views(views)
        position = runner.store.position()
        behind = runner.max_notification_id() - position
    store_problems = 0 if report is None else _print_store_report(report, show)
    unfolded = f" ({behind} later event(s) not folded yet)" if behind > 0 else ""
    print(f"verified views at position {position}{unfolded}")
    differences = 0
    for name in views:
        rows = diffs.get(name, [])
        differences += len(rows)
        print(f"  {name}: {'ok' if not rows else f'{len(rows)} row(s) differ'}")
        for diff in rows[:show]:
            print(f"    {diff.key}: live={fmt.dumps(diff.live)} rebuilt={fmt.dumps(diff.rebuilt)}")
    if differences:
        print(f"FAILED: {differences} row(s) differ from a rebuild; run `simledger rebuild all`")
    if store_problems:
        print(f"FAILED: {store_problems} problem(s) in the stored events (see above)")
    if differences or store_problems:
        return EXIT_FAILED
    if behind > 0 and not allow_behind:
        # Equal to a rebuild up to their position says nothing about the events after it.
        print(
            f"BEHIND: the views are {behind} event(s) behind the log and were verified only "
            f"up to their position {position}; run `simledger project --once` to fold the rest"
        )
        return EXIT_BEHIND
    print("OK: every view equals its rebuild from the events")
    return 0


def _print_store_report(report: VerifyReport, show: int) -> int:
    """The replay's summary and problems (views aside: printed as before); their count."""
    problems = [p for p in report.problems if p.kind != "view"]
    print(f"replayed {report.summary()}")
    if report.unsealed_events:
        print(f"  {report.unsealed_events} event(s) recorded before hash chains existed")
    print(f"  digest of every aggregate's head: {report.digest}")
    limit = max(show, 1) * 4
    for problem in problems[:limit]:
        print(f"  {problem}")
    if len(problems) > limit:
        print(f"  ... and {len(problems) - limit} more")
    if not problems:
        print("  ok: every aggregate rebuilds, every hash chain holds, every pool balances")
    return len(problems)


@command("seal", "seal the log up to its head (R-ES5); print POSITION:HASH for a witness")
def cmd_seal(options: Options) -> int:
    with open_ledger(options) as ledger:
        checkpoint = ledger.seal()
    print(checkpoint if checkpoint is not None else "the log is empty: nothing to seal")
    return 0


@command("project", "run the projection worker (keeps the views current)")
def cmd_project(
    options: Options,
    batch_size: int = 2000,
    poll_interval: float = 0.05,
    once: Annotated[bool, typer.Option("--once", help="catch up, then exit")] = False,
) -> int:
    from simledger.runners import worker

    os.environ.update(store_env(options.db))
    argv = ["--batch-size", str(batch_size), "--poll-interval", str(poll_interval)]
    argv += ["--log-level", "INFO" if options.verbose else "WARNING"]
    if once:
        argv.append("--once")
    if options.verbose:  # the worker configures the root logger; ours would print twice
        logging.getLogger("simledger").handlers[:] = []
        logging.getLogger("simledger").propagate = True
    code: int = worker.main(argv)
    return code


@command("export-audit", "every event as JSON Lines")
def cmd_export_audit(
    options: Options,
    iccid: Annotated[str | None, typer.Option(help="only the events history(ICCID) shows")] = None,
    since: Time = None,
    until: Time = None,
    kind: Annotated[
        list[str] | None, typer.Option("--type", metavar="EVENT", help="class name; repeatable")
    ] = None,
    output: Annotated[str | None, typer.Option("--output", "-o", metavar="FILE")] = None,
) -> int:
    after = parse_time(since, "--since") if since else None
    before = parse_time(until, "--until") if until else None
    with open_ledger(options) as ledger, fmt.Progress("export-audit") as progress:
        records = audit_records(
            ledger,
            iccid=iccid,
            since=after,
            until=before,
            types=frozenset(kind or ()),
            on_page=lambda position, last: progress.update(position, last),
        )
        if output:
            with open(output, "w", encoding="utf-8", newline="\n") as out:
                count = fmt.write_jsonl(records, out)
            destination = output
        else:
            count = fmt.write_jsonl(records, sys.stdout)
            destination = "stdout"
    sys.stderr.write(f"exported {count} event(s) to {destination}\n")
    return 0


from simledger.runners import (  # noqa: E402,F401  (registers their commands)
    cli_groups,
    cli_keys,
    cli_rules,
    cli_serve,
    cli_webhooks,
)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command; its exit code (2 for a refusal or a usage error, 1 for a failure)."""
    try:
        get_command(app).main(args=argv, prog_name="simledger")
    except SystemExit as done:  # Typer ends every run (usage errors too) with SystemExit
        return done.code if isinstance(done.code, int) else int(done.code is not None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
