"""``simledger``: the command line for operators of a store.

The store is chosen by eventsourcing's own settings in the environment (``PERSISTENCE_MODULE``,
``SQLITE_DBNAME``, ``POSTGRES_*`` …); ``--db PATH`` is a shortcut for a SQLite file; with no
settings at all, the SQLite file ``simledger.db`` in the current directory.

Refusals print one line ``error: <rule id>: <message>`` on stderr and exit with 2; other
failures (store unreachable, unreadable file …) print ``error: <message>`` and exit with 1.
Long work draws a progress bar on stderr when it is a terminal; ``--verbose`` adds the
engine's structured logs (JSON lines) on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from simledger.adapters.views.base import PENDING_ACTIVITY, SHARED_GROUPS, SIMS
from simledger.application.audit import VerifyReport
from simledger.application.csv_transfer import EXPORT_COLUMNS, EXPORT_PAGE, csv_value
from simledger.application.ledger import SimLedger
from simledger.domain.errors import CsvImportError, InvalidInput, SimledgerError
from simledger.runners import cli_output as fmt
from simledger.runners.cli_audit import audit_records, write_jsonl

DEFAULT_DB = "simledger.db"
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
EXIT_REFUSED = 2
EXIT_FAILED = 1


# ---- the store ------------------------------------------------------------------------------
def _setting(environ: dict[str, str], key: str) -> str | None:
    """eventsourcing reads ``SIMLEDGER_<KEY>`` before ``<KEY>`` (the application's name)."""
    return environ.get(f"{SimLedger.name.upper()}_{key}") or environ.get(key) or None


def store_env(db: str | None, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The settings the command line opens the ledger with (merged over the environment)."""
    environ = dict(os.environ if environ is None else environ)
    if db is not None:
        return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": db}
    module = _setting(environ, "PERSISTENCE_MODULE")
    if module is None:
        return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": DEFAULT_DB}
    if module == "eventsourcing.sqlite" and _setting(environ, "SQLITE_DBNAME") is None:
        return {"SQLITE_DBNAME": DEFAULT_DB}
    return {}


@contextlib.contextmanager
def open_ledger(args: argparse.Namespace) -> Iterator[SimLedger]:
    ledger = SimLedger(env=store_env(args.db))
    try:
        yield ledger
    finally:
        ledger.close()


# ---- logging and progress ---------------------------------------------------------------------
def _configure_logging(verbose: bool) -> None:
    logger = logging.getLogger("simledger")
    logger.handlers[:] = []
    if verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))  # records are JSON already
        logger.addHandler(handler)
    else:
        logger.addHandler(logging.NullHandler())
    logger.setLevel(logging.INFO)
    logger.propagate = False


@contextlib.contextmanager
def _progress_from_logs(
    label: str, count_key: str, total_key: str | None = None, total: int | None = None
) -> Iterator[fmt.Progress]:
    progress = fmt.Progress(label, total)
    handler = fmt.ProgressFromLogs(progress, count_key, total_key)
    logger = logging.getLogger("simledger")
    if progress.enabled:
        logger.addHandler(handler)
    try:
        yield progress
    finally:
        logger.removeHandler(handler)
        progress.close()


# ---- parsing values ---------------------------------------------------------------------------
def parse_time(value: str, option: str) -> datetime:
    """An ISO 8601 time with a zone (``Z`` or ``+02:00``); anything else is refused."""
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput(
            f"{option} {value!r} is not an ISO 8601 time (e.g. 2024-05-01T12:00:00Z)",
            rule="R-ES3",
        ) from None
    if when.tzinfo is None:
        raise InvalidInput(
            f"{option} {value!r} has no time zone; add one, e.g. {value}Z or {value}+02:00",
            rule="R-ES3",
        )
    return when


# ---- commands -------------------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    from simledger.runners import demo

    if not args.verbose:  # the demo logs at INFO on stderr; only --verbose shows that
        logging.disable(logging.INFO)
    code: int = demo.main(["--db", args.db] if args.db else [])
    return code


def cmd_import(args: argparse.Namespace) -> int:
    path = Path(args.file)
    with path.open("rb") as counting:
        rows = max(0, sum(1 for _ in counting) - 1)
    with (
        open_ledger(args) as ledger,
        path.open("rb") as stream,
        _progress_from_logs("import", "rows", total=rows),
    ):
        try:
            received = ledger.import_sims_csv(stream)
        except CsvImportError as error:
            count = len(error.errors)
            sys.stderr.write(f"error: {error.rule}: {count} bad row(s), nothing imported\n")
            for line, reason in error.errors.items():
                sys.stderr.write(f"line {line}: {reason}\n")
            return EXIT_REFUSED
    print(f"imported {len(received)} SIM(s) from {path}")
    return 0


def _filters(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "status": args.status,
        "sim_type": args.sim_type,
        "operator": args.operator,
        "company": args.company,
        "label": args.label,
        "group_id": args.group,
        "search": args.search,
        "sort": args.sort,
        "descending": args.desc,
    }


def cmd_list(args: argparse.Namespace) -> int:
    with open_ledger(args) as ledger:
        filters = _filters(args)
        limit = EXPORT_PAGE if args.all else args.limit
        page = ledger.sims(**filters, limit=limit, cursor=args.cursor)
        items = list(page.items)
        while args.all and page.next_cursor is not None:
            page = ledger.sims(**filters, limit=limit, cursor=page.next_cursor)
            items.extend(page.items)
    out = sys.stdout
    if args.format == "json":
        out.write(
            fmt.dumps(
                {"total": page.total, "next_cursor": page.next_cursor, "items": items}, indent=2
            )
            + "\n"
        )
    elif args.format == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(EXPORT_COLUMNS)
        writer.writerows([csv_value(getattr(i, c)) for c in EXPORT_COLUMNS] for i in items)
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


def cmd_show(args: argparse.Namespace) -> int:
    with open_ledger(args) as ledger:
        _show_model(ledger.sim(args.iccid), args.format)
    return 0


def cmd_as_of(args: argparse.Namespace) -> int:
    at = parse_time(args.at, "--at") if args.at is not None else None
    with open_ledger(args) as ledger:
        _show_model(ledger.sim_as_of(args.iccid, at=at, version=args.version), args.format)
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    with open_ledger(args) as ledger:
        entries = ledger.history(args.iccid)
    if args.format == "json":
        sys.stdout.write(fmt.dumps(entries, indent=2) + "\n")
        return 0
    fmt.table(
        ("version", "aggregate", "event", "at", "data"),
        ([e.version, e.aggregate, e.event, e.at, fmt.key_data(e.data)] for e in entries),
        sys.stdout,
        width=80,
    )
    return 0


def cmd_activity(args: argparse.Namespace) -> int:
    with open_ledger(args) as ledger:
        operations = ledger.pending_activity()
    if args.format == "json":
        sys.stdout.write(fmt.dumps(operations, indent=2) + "\n")
        return 0
    columns: tuple[str, ...] = ("operation_id", "kind", "requested_at", "deadline")
    columns += ("requested", "confirmed", "refused", "pending", "overdue")
    fmt.table(columns, ([getattr(o, c) for c in columns] for o in operations), sys.stdout)
    return 0


def _views(name: str) -> list[str]:
    return [v for views in VIEWS.values() for v in views] if name == "all" else VIEWS[name]


def cmd_rebuild(args: argparse.Namespace) -> int:
    views = _views(args.view)
    with open_ledger(args) as ledger:
        runner = ledger.views
        runner.progress_every = runner.batch_size
        with _progress_from_logs("rebuild", "events", "upto"):
            position = ledger.rebuild_views(views)
    print(f"rebuilt {', '.join(views)} up to position {position}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    views = _views(args.view)
    with open_ledger(args) as ledger:
        runner = ledger.views
        runner.progress_every = runner.batch_size
        with _progress_from_logs("verify", "events", "upto"):
            # The replay of the store (audit.py) runs alongside the views' verification.
            report = None if args.views_only else ledger.verify_store(view_names=views)
            diffs = report.view_diffs if report is not None else ledger.verify_views(views)
        position = runner.store.position()
        behind = runner.max_notification_id() - position
    store_problems = 0 if report is None else _print_store_report(report, args.show)
    unfolded = f" ({behind} later event(s) not folded yet)" if behind > 0 else ""
    print(f"verified views at position {position}{unfolded}")
    differences = 0
    for view in views:
        rows = diffs.get(view, [])
        differences += len(rows)
        print(f"  {view}: {'ok' if not rows else f'{len(rows)} row(s) differ'}")
        for diff in rows[: args.show]:
            print(f"    {diff.key}: live={fmt.dumps(diff.live)} rebuilt={fmt.dumps(diff.rebuilt)}")
    if differences:
        print(f"FAILED: {differences} row(s) differ from a rebuild; run `simledger rebuild all`")
    if store_problems:
        print(f"FAILED: {store_problems} problem(s) in the stored events (see above)")
    if differences or store_problems:
        return EXIT_FAILED
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


def cmd_project(args: argparse.Namespace) -> int:
    from simledger.runners import worker

    os.environ.update(store_env(args.db))
    argv = ["--batch-size", str(args.batch_size), "--poll-interval", str(args.poll_interval)]
    argv += ["--log-level", "INFO" if args.verbose else "WARNING"]
    if args.once:
        argv.append("--once")
    if args.verbose:  # the worker configures the root logger; ours would print twice
        logging.getLogger("simledger").handlers[:] = []
        logging.getLogger("simledger").propagate = True
    code: int = worker.main(argv)
    return code


def cmd_export_audit(args: argparse.Namespace) -> int:
    since = parse_time(args.since, "--since") if args.since else None
    until = parse_time(args.until, "--until") if args.until else None
    with open_ledger(args) as ledger, fmt.Progress("export-audit") as progress:
        records = audit_records(
            ledger,
            iccid=args.iccid,
            since=since,
            until=until,
            types=frozenset(args.type or ()),
            on_page=lambda position, last: progress.update(position, last),
        )
        if args.output:
            with open(args.output, "w", encoding="utf-8", newline="\n") as out:
                count = write_jsonl(records, out)
            destination = args.output
        else:
            count = write_jsonl(records, sys.stdout)
            destination = "stdout"
    sys.stderr.write(f"exported {count} event(s) to {destination}\n")
    return 0


# ---- the parser -----------------------------------------------------------------------------
def _common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """Options accepted before and after the command (after it, they default to nothing)."""
    default: Any = None if top else argparse.SUPPRESS
    flag: Any = False if top else argparse.SUPPRESS
    parser.add_argument("--db", metavar="PATH", default=default, help="a SQLite file")
    parser.add_argument("-v", "--verbose", action="store_true", default=flag,
                        help="structured logs (JSON lines) on stderr")  # fmt: skip
    parser.add_argument("--debug", action="store_true", default=flag,
                        help="show the traceback of a failure")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="simledger",
        description=(__doc__ or "").split("\n\n")[1].replace("\n", " ").replace("``", ""),
    )
    _common(parser, top=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, run: Callable[[argparse.Namespace], int], help: str) -> Any:
        sub = commands.add_parser(name, help=help, description=help)
        _common(sub, top=False)
        sub.set_defaults(run=run)
        return sub

    add("demo", cmd_demo, "build the demo fleet in a fresh SQLite file (--db, default "
        "simledger-demo.db)")  # fmt: skip
    add("import", cmd_import, "receive the SIMs of a CSV delivery file").add_argument(
        "file", metavar="FILE", help="columns iccid,operator,sim_type,esim"
    )
    lst = add("list", cmd_list, "the SIM list, filtered")
    lst.add_argument("--status", action="append", help="repeatable")
    lst.add_argument("--sim-type", action="append", help="repeatable")
    for option in ("--operator", "--company", "--label", "--search"):
        lst.add_argument(option)
    lst.add_argument("--group", metavar="GROUP_ID", help="shared group id")
    lst.add_argument("--sort", default="iccid", help="any column (default iccid)")
    lst.add_argument("--desc", action="store_true", help="sort descending")
    lst.add_argument("--limit", type=int, default=100, help="SIMs per page (default 100)")
    lst.add_argument("--cursor", help="the page after the one that printed this cursor")
    lst.add_argument("--all", action="store_true", help="every page")
    lst.add_argument("--format", choices=("table", "csv", "json"), default="table")

    def with_format(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument("--format", choices=("table", "json"), default="table")
        return sub

    with_format(add("show", cmd_show, "a SIM's current state")).add_argument("iccid")
    with_format(add("history", cmd_history, "every event that touched a SIM")).add_argument("iccid")
    as_of = with_format(add("as-of", cmd_as_of, "a SIM's state at a past time or version"))
    as_of.add_argument("iccid")
    when = as_of.add_mutually_exclusive_group(required=True)
    when.add_argument("--at", metavar="TIME", help="ISO 8601 with a zone, e.g. 2024-05-01T12:00Z")
    when.add_argument("--version", type=int, metavar="N", help="the SIM's own version")
    with_format(add("activity", cmd_activity, "bulk pauses and resumes with carrier answers"))
    for name, run, what in (
        ("rebuild", cmd_rebuild, "replay every event into a fresh view and swap it in"),
        ("verify", cmd_verify, "replay the store: hash chains, pools, views; exit 1 on a problem"),
    ):
        sub = add(name, run, what)
        sub.add_argument("view", nargs="?" if name == "verify" else None,
                         default="all", choices=(*VIEWS, "all"))  # fmt: skip
        if name == "verify":
            sub.add_argument("--show", type=int, default=5, help="differing rows shown per view")
            sub.add_argument(
                "--views-only", action="store_true", help="only the views: no replay of events"
            )
    project = add("project", cmd_project, "run the projection worker (keeps the views current)")
    project.add_argument("--batch-size", type=int, default=2000)
    project.add_argument("--poll-interval", type=float, default=0.05)
    project.add_argument("--once", action="store_true", help="catch up, then exit")
    audit = add("export-audit", cmd_export_audit, "every event as JSON Lines")
    audit.add_argument("--iccid", help="only the events history(ICCID) shows")
    audit.add_argument("--since", metavar="TIME", help="events at or after (ISO 8601)")
    audit.add_argument("--until", metavar="TIME", help="events before (ISO 8601)")
    audit.add_argument("--type", action="append", metavar="EVENT", help="class name; repeatable")
    audit.add_argument("--output", "-o", metavar="FILE", help="default stdout")
    return parser


def _error_line(error: SimledgerError) -> None:
    sys.stderr.write(f"error: {error.rule}: {error.message}\n")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    try:
        code = int(args.run(args))
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except SimledgerError as error:
        if args.debug:
            raise
        _error_line(error)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except BrokenPipeError:  # the reader went away (``| head``): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED
    except Exception as error:  # one line, never a traceback
        if args.debug:
            raise
        message = " ".join(str(error).split()) or type(error).__name__
        sys.stderr.write(f"error: {type(error).__name__}: {message}\n")
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
