"""The frame every ``simledger`` command runs in: the Typer app, the options every command
takes, how a command's failure is printed and its exit code chosen, how the store is opened, and
the shared parsing of values. Command modules (``cli``, ``cli_keys``, …) register on ``app``
through ``command``."""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

import typer

from simledger.application.ledger import SimLedger
from simledger.domain.errors import (
    InvalidInput,
    SimledgerError,
    StoreUnreachable,
)
from simledger.runners import cli_output as fmt

DEFAULT_DB = "simledger.db"
EXIT_REFUSED = 2
EXIT_FAILED = 1
EXIT_BEHIND = 3
"""``verify``: the views are behind the log (not a failure; ``--allow-behind`` accepts it)."""

app = typer.Typer(
    name="simledger",
    help=(
        "The store is chosen by eventsourcing's own settings in the environment "
        "(`PERSISTENCE_MODULE`, `SQLITE_DBNAME`, `POSTGRES_*` …); `--db PATH` is a shortcut "
        "for a SQLite file; with no settings at all, the SQLite file `simledger.db` in the "
        "current directory."
    ),
    add_completion=False,
    pretty_exceptions_enable=False,  # a failure is one line; --debug shows Python's traceback
    context_settings={"help_option_names": ["-h", "--help"]},
)


# ---- the options every command takes ----------------------------------------------------------
@dataclass(frozen=True)
class Options:
    db: str | None = None
    verbose: bool = False
    debug: bool = False


Db = Annotated[str | None, typer.Option("--db", metavar="PATH", help="a SQLite file")]
Verbose = Annotated[
    bool, typer.Option("--verbose", "-v", help="structured logs (JSON lines) on stderr")
]
Debug = Annotated[bool, typer.Option("--debug", help="show the traceback of a failure")]
COMMON = [
    inspect.Parameter("db", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Db),
    inspect.Parameter("verbose", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Verbose),
    inspect.Parameter("debug", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Debug),
]


@app.callback()
def _before_the_command(
    ctx: typer.Context, db: Db = None, verbose: Verbose = False, debug: Debug = False
) -> None:
    ctx.obj = Options(db, verbose, debug)


Run = Callable[..., int]


def command(name: str, help: str, *, group: typer.Typer | None = None) -> Callable[[Run], Run]:
    """Registers ``run(options, **values)`` as the command ``name`` (of ``group``, a Typer
    added to ``app`` as a group of commands, such as ``keys``; else of ``app``); its
    parameters (after ``options``) are the command's, declared the Typer way. The common
    options are accepted after the command too (``simledger list --db x.db``): there they
    override those given before it."""

    def register(run: Run) -> Run:
        own = list(inspect.signature(run, eval_str=True).parameters.values())[1:]

        def entry(ctx: typer.Context, **given: Any) -> None:
            top: Options = ctx.obj
            db = given.pop("db")
            options = Options(
                db if db is not None else top.db,
                given.pop("verbose") or top.verbose,
                given.pop("debug") or top.debug,
            )
            raise typer.Exit(_run(run, options, given))

        context = inspect.Parameter(
            "ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context
        )
        entry.__signature__ = inspect.Signature([context, *own, *COMMON])  # type: ignore[attr-defined]
        entry.__doc__ = help
        (group or app).command(name, help=help)(entry)
        return run

    return register


def _run(run: Run, options: Options, values: dict[str, Any]) -> int:
    """The command's exit code; a failure as one line on stderr (its traceback with --debug)."""
    _configure_logging(options.verbose)
    try:
        code = int(run(options, **values))
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except typer.BadParameter:  # a usage error: Typer reports it (exit 2)
        raise
    except SimledgerError as error:
        if options.debug:
            raise
        sys.stderr.write(f"error: {error.rule}: {error.message}\n")
        # An unreachable store is a failure (README: exit 1), not a refused input.
        return EXIT_FAILED if isinstance(error, StoreUnreachable) else EXIT_REFUSED
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except BrokenPipeError:  # the reader went away (``| head``): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED
    except Exception as error:  # one line, never a traceback
        if options.debug:
            raise
        message = " ".join(str(error).split()) or type(error).__name__
        sys.stderr.write(f"error: {type(error).__name__}: {message}\n")
        return EXIT_FAILED


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
def open_ledger(options: Options) -> Iterator[SimLedger]:
    ledger = SimLedger(env=store_env(options.db))
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
    label: str, count_key: str, total_key: str | None = None
) -> Iterator[fmt.Progress]:
    progress = fmt.Progress(label)  # the total, where there is one, comes with the logs
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


Format = Annotated[Literal["table", "json"], typer.Option("--format")]
Iccid = Annotated[str, typer.Argument(metavar="ICCID")]
Time = Annotated[str | None, typer.Option(metavar="TIME", help="ISO 8601 with a zone")]
