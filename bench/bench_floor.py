"""The floor of a single command: what the store alone costs, without any Python.

    python bench/bench_floor.py [--procs 2] [--seconds 10] [--sims 20000] [--command labels]

``bench_service.py`` compares a command of the engine with plain SQL doing the same
bookkeeping. This script splits the gap: it records the SQL statements one real command
of the engine sends (psycopg's own calls, captured while ``--command`` runs once on a SIM
of the fleet, views embedded), writes them as a ``pgbench`` script (parameters as
literals, the SIM's ICCID as the script's variable, the event's id made unique) and lets
``pgbench`` (C, no Python at all) replay them from ``--procs`` clients against the same
tables, beside plain SQL's statements (``bench_service``'s UPDATE and audit INSERT) in the
same run. What remains between the floor and the engine is the engine's Python; what
remains between plain SQL and the floor is the store's design (an event, a view row and
its tracking position, the table lock that keeps the log's order gapless).

Variants, each a pgbench script run with ``-M extended`` (every statement parsed and
planned each time, as the engine's pipeline sends most of them) and ``-M prepared``:

* ``plain``: BEGIN, UPDATE ``plain_sims``, INSERT ``plain_audit``, COMMIT;
* ``engine``: the captured statements, in the captured pipelines;
* ``engine, one pipeline``: the same statements with no wait between the INSERT and the
  view's writes (the least a store of this design could wait: one round trip after the
  load).

Every variant first reads the ICCID of a random SIM (``\\gset``): one more round trip for
all of them, which narrows the ratios a little. Needs ``pgbench`` (PostgreSQL's client
tools) on the ``PATH`` or beside ``pg_ctl``. The schema is dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from _common import create_schema, drop_schema, pg_connect, pg_env, pg_settings
from _service_setup import build_engine, build_plain

from simledger.application.ledger import SimLedger


@dataclass
class Capture:
    """The statements a command sent, split where the client waited for answers."""

    segments: list[list[str]] = field(default_factory=lambda: [[]])
    pipelined: list[bool] = field(default_factory=lambda: [False])

    def add(self, statement: str, pipeline: bool) -> None:
        if self.pipelined[-1] != pipeline and self.segments[-1]:
            self.cut()
        self.pipelined[-1] = pipeline
        self.segments[-1].append(statement)

    def cut(self) -> None:
        if self.segments[-1]:
            self.segments.append([])
            self.pipelined.append(False)


@contextmanager
def capturing(capture: Capture) -> Iterator[None]:
    """Records every statement psycopg sends (rendered with its parameters as literals)
    and every wait for results inside a pipeline (a fetch), which ends a segment."""
    cursor_execute, cursor_executemany = psycopg.Cursor.execute, psycopg.Cursor.executemany
    fetchall, fetchone = psycopg.Cursor.fetchall, psycopg.Cursor.fetchone

    def execute(self: psycopg.Cursor[Any], query: Any, params: Any = None, **kw: Any) -> Any:
        text = psycopg.ClientCursor(self.connection).mogrify(query, params)
        capture.add(text, self.connection._pipeline is not None)
        return cursor_execute(self, query, params, **kw)

    def executemany(self: psycopg.Cursor[Any], query: Any, seq: Any, **kw: Any) -> Any:
        seq = list(seq)
        for params in seq:
            text = psycopg.ClientCursor(self.connection).mogrify(query, params)
            capture.add(text, self.connection._pipeline is not None)
        return cursor_executemany(self, query, seq, **kw)

    def waited(read: Callable[..., Any]) -> Callable[..., Any]:
        def read_and_cut(self: psycopg.Cursor[Any], *args: Any) -> Any:
            if self.connection._pipeline is not None:
                capture.cut()
            return read(self, *args)

        return read_and_cut

    patches = {
        "execute": execute,
        "executemany": executemany,
        "fetchall": waited(fetchall),
        "fetchone": waited(fetchone),
    }
    for name, patch in patches.items():
        setattr(psycopg.Cursor, name, patch)
    try:
        yield
    finally:
        psycopg.Cursor.execute = cursor_execute  # type: ignore[method-assign]
        psycopg.Cursor.executemany = cursor_executemany  # type: ignore[method-assign]
        psycopg.Cursor.fetchall, psycopg.Cursor.fetchone = fetchall, fetchone  # type: ignore[method-assign]


def script_of(
    capture: Capture, iccid: str, copy_id: str, keys_table: str, one_pipeline: bool
) -> str:
    """The pgbench script of a captured command: the SIM's ICCID as ``:k`` and its package
    copy's id as ``:c`` (each run another SIM of the fleet); the events' ids made unique
    (a new aggregate id per run), so the INSERT never collides."""
    lines = [
        "\\set n random(1, :nkeys)",
        f"SELECT iccid AS k, copy_id AS c FROM {keys_table} WHERE n = :n \\gset",
    ]
    segments = list(zip(capture.segments, capture.pipelined, strict=True))
    if one_pipeline:  # every segment after the load in one pipeline
        rest = [s for seg, piped in segments[1:] for s in seg]
        segments = [segments[0], (rest, True)]
    for statements, piped in segments:
        if not statements:
            continue
        if piped:
            lines.append("\\startpipeline")
        for statement in statements:
            if "INSERT INTO" in statement and "_events" in statement:
                statement = re.sub(r"unnest\('\{([^}]*)\}'::text\[\]", _new_ids, statement, count=1)
            statement = statement.replace(f"'{{{copy_id}}}'", "ARRAY[:c]")
            statement = statement.replace(f"'{copy_id}'", ":c")
            statement = statement.replace(f"'{{{iccid}}}'", "ARRAY[:k]")
            statement = statement.replace(f"'{iccid}'", ":k").replace(iccid, "' || :k || '")
            statement = re.sub(r"(E?)'((?:[^']|'')*)'", _no_colon, statement)
            lines.append(" ".join(statement.split()) + ";")
        if piped:
            lines.append("\\endpipeline")
    return "\n".join(lines) + "\n"


def _new_ids(match: re.Match[str]) -> str:
    """The events' aggregate ids, each replaced by a new one at every run."""
    count = len(match.group(1).split(","))
    return "unnest(ARRAY[" + ", ".join(["gen_random_uuid()::text"] * count) + "]"


def _no_colon(match: re.Match[str]) -> str:
    """A literal without ':' (pgbench reads ':name' as its variable; topics hold
    'module:Class'): the colon written as an escape of an E'' string."""
    escaped, text = match.group(1), match.group(2)
    if ":" not in text:
        return match.group(0)
    if not escaped:
        text = text.replace("\\", "\\\\")
    return "E'" + text.replace(":", "\\x3a") + "'"


PLAIN = """\\set n random(1, :nkeys)
SELECT iccid AS k FROM {keys} WHERE n = :n \\gset
BEGIN;
UPDATE plain_sims SET labels = ARRAY['bench', 'l1'], updated_at = now() WHERE iccid = :k;
INSERT INTO plain_audit (iccid, action, detail, at) VALUES (:k, 'labels', 'bench,l1', now());
COMMIT;
"""


def pgbench() -> str:
    found = shutil.which("pgbench")
    if found:
        return found
    for base in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (base / "pgbench").exists():
            return str(base / "pgbench")
    sys.exit("pgbench not found (PostgreSQL's client tools)")


def run_pgbench(script: str, mode: str, args: argparse.Namespace, schema: str, nkeys: int) -> float:
    settings = pg_settings()
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as file:
        file.write(script)
    env = {
        **os.environ,
        "PGPASSWORD": settings.get("POSTGRES_PASSWORD", ""),
        "PGOPTIONS": f"-c search_path={schema}",
    }
    command = [
        pgbench(), "-n", "-h", settings["POSTGRES_HOST"], "-p", settings["POSTGRES_PORT"],
        "-U", settings["POSTGRES_USER"], "-M", mode, "-c", str(args.procs), "-j", str(args.procs),
        "-T", str(args.seconds), "-D", f"nkeys={nkeys}", "-f", file.name,
        settings["POSTGRES_DBNAME"],
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    os.unlink(file.name)
    match = re.search(r"tps = ([0-9.]+)", done.stdout)
    if done.returncode != 0 or match is None:
        sys.exit(f"pgbench failed:\n{done.stdout}\n{done.stderr}\nscript:\n{script}")
    return float(match.group(1))


COMMANDS: dict[str, Callable[[SimLedger, str], object]] = {
    "labels": lambda ledger, key: ledger.set_labels(key, ["bench", "l1"]),
    "usage": lambda ledger, key: ledger.record_usage(key, 1),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--procs", type=int, default=2, help="pgbench clients (default 2)")
    parser.add_argument("--seconds", type=int, default=10, help="per variant and mode")
    parser.add_argument("--sims", type=int, default=20_000, help="SIMs with their own package")
    parser.add_argument("--command", choices=sorted(COMMANDS), default="labels")
    parser.add_argument("--scripts", metavar="DIR", help="also write the pgbench scripts there")
    args = parser.parse_args(argv)
    schema = f"bench_floor_{uuid.uuid4().hex[:10]}"
    create_schema(schema)
    try:
        sys.stderr.write("setup (untimed):\n")
        env = pg_env(schema)
        setup = SimLedger(env={**env, "VIEWS_MODE": "external"})
        fleet = build_engine(setup, args.sims, 2, 0)
        setup.catch_up_views()
        setup.close()
        build_plain(schema, fleet, 1, 0)
        with pg_connect(schema) as conn:
            conn.execute("CREATE TABLE plain_keys (n integer PRIMARY KEY, iccid text)")
            with conn.cursor().copy("COPY plain_keys FROM STDIN") as copy:
                for n, key in enumerate(fleet.own, 1):
                    copy.write_row((n, key))
            conn.execute(
                "CREATE TABLE engine_keys AS SELECT row_number() OVER (ORDER BY iccid)::integer "
                "AS n, iccid, copy_id FROM view_sims WHERE iccid = ANY(%s)",
                (fleet.own,),
            )
            conn.execute("ALTER TABLE engine_keys ADD PRIMARY KEY (n)")
            conn.commit()
        capture = Capture()
        ledger = SimLedger(env={**env, "VIEWS_MODE": "embedded"})
        run = COMMANDS[args.command]
        for key in fleet.own[:20]:  # warm: the ledger's caches as a running service has them
            run(ledger, key)
        key = fleet.own[-1]
        copy = ledger.sim(key).copy_id
        copy_id = str(copy) if copy is not None else "-"
        with capturing(capture):
            run(ledger, key)
        ledger.close()
        scripts = {
            "plain": PLAIN.format(keys="plain_keys"),
            "engine": script_of(capture, key, copy_id, "engine_keys", one_pipeline=False),
            "engine, one pipeline": script_of(
                capture, key, copy_id, "engine_keys", one_pipeline=True
            ),
        }
        if args.scripts:
            for name, script in scripts.items():
                path = Path(args.scripts) / f"{args.command}-{name.replace(', ', '-')}.sql"
                path.write_text(script.replace(schema, "SCHEMA"))
        print(
            f"{args.command}: {sum(map(len, capture.segments))} statements in "
            f"{len([s for s in capture.segments if s])} waits; pgbench, {args.procs} clients, "
            f"{args.seconds} s each, {args.sims:,} SIMs; schema {schema}",
            flush=True,
        )
        print(f"{'variant':<24}{'mode':<10}{'tx/s':>9}  ratio to plain (same mode)")
        for mode in ("extended", "prepared"):
            plain = 0.0
            for name, script in scripts.items():
                tps = run_pgbench(script, mode, args, schema, len(fleet.own))
                plain = tps if name == "plain" else plain
                print(f"{name:<24}{mode:<10}{tps:>9,.0f}  {tps / plain:.2f}x", flush=True)
        return 0
    finally:
        drop_schema(schema)


if __name__ == "__main__":
    sys.exit(main())
