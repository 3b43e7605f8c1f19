"""The fleet of ``bench_service.py``: the engine's SIMs in the event store and the plain-SQL
reference's tables beside them, in the run's schema (untimed).

The SIMs are built as ``bench_bulk`` builds its active ones (``_common``): the events the
public commands record, made with the same aggregate methods and saved with ``ledger.save``
1,000 SIMs at a time. The public API has no bulk form of the integration check, line,
company, package and activation: one command per SIM and step would take minutes.
"""

from __future__ import annotations

import io
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from _common import active_sims, blank_sims, pg_connect

from simledger.application.ledger import SimLedger
from simledger.domain import policies
from simledger.domain.base import LedgerAggregate
from simledger.domain.iccid import make_iccid
from simledger.domain.package import Package
from simledger.domain.shared_group import SharedGroup

CHUNK = 1_000
"""SIMs per ``ledger.save`` during setup."""

ALLOWANCE_MB = 1_000_000_000
"""Data of the package (each SIM's own copy, and the group's pool): never used up here."""

PLAIN_RATE = 3_000
"""Commits per second and process no plain connection reaches here: the plain pools of the
one-shot phases (activate, pause) hold this many rows per process and second, so that plain
SQL does not run out of SIMs before the engine, which has only the SIMs built for it."""


@dataclass(frozen=True)
class Fleet:
    own: list[str]
    """Active SIMs, each with its own copy of the package."""
    members: list[str]
    """Active members of the one shared group."""
    ready: list[str]
    """``activation_ready`` SIMs (line, company, own package): the pool of ``activate``."""
    group_id: str
    plain_ready: list[str]
    """The plain reference's own pools: ``activation_ready`` and ``active`` rows."""
    plain_active: list[str]


def iccids(tag: int, count: int) -> list[str]:
    """``count`` distinct valid ICCIDs (R-SIM1) of the family ``tag`` (10 to 99)."""
    return [make_iccid(f"89{tag}{k:015d}") for k in range(count)]


class Progress:
    """One line on stderr, rewritten as a setup step advances."""

    def __init__(self, what: str, total: int) -> None:
        self.what, self.total, self.done = what, total, 0
        self.started = time.perf_counter()

    def add(self, count: int) -> None:
        self.done += count
        rate = self.done / max(time.perf_counter() - self.started, 1e-9)
        sys.stderr.write(f"\r  {self.what}: {self.done:,}/{self.total:,} ({rate:,.0f}/s)   ")
        sys.stderr.flush()

    def finish(self) -> None:
        took = time.perf_counter() - self.started
        sys.stderr.write(f"\r  {self.what}: {self.done:,} in {took:,.1f} s{' ' * 24}\n")
        sys.stderr.flush()


def _saved(
    ledger: SimLedger,
    what: str,
    keys: list[str],
    build: Callable[[list[str]], Sequence[LedgerAggregate]],
) -> None:
    progress = Progress(what, len(keys))
    for start in range(0, len(keys), CHUNK):
        chunk = keys[start : start + CHUNK]
        ledger.save(*build(chunk))
        progress.add(len(chunk))
    progress.finish()


def build_engine(ledger: SimLedger, sims: int, group: int, ready: int) -> Fleet:
    """The engine's fleet (its plain pools still empty)."""
    package_id = ledger.create_package("Bench unlimited", data_mb=ALLOWANCE_MB, validity_days=3650)
    package: object = ledger.repository.get(str(package_id))
    assert isinstance(package, Package)
    now = ledger.clock()
    own, members, pool = iccids(41, sims), iccids(42, group), iccids(43, ready)
    _saved(
        ledger, "active SIMs with their own package", own, lambda c: active_sims(package, c, now)
    )
    _saved(
        ledger,
        "activation-ready SIMs",
        pool,
        lambda c: active_sims(package, c, now, activate=False),
    )

    # The shared group: as create_shared_group makes it (R-SG2), then each member activated.
    blank = blank_sims(members)
    shared = SharedGroup.create(
        str(uuid.uuid4()),
        name="Bench shared pool",
        members=members,
        package_id=package.id,
        package_name=package.name,
        data_mb=package.data_mb,
        validity_days=package.validity_days,
        now=now,
        notify_users=False,
    )
    for sim in blank:
        policies.join(sim, shared)
        sim.activate()
    ledger.save(shared)
    by_key = {sim.id: sim for sim in blank}
    _saved(ledger, "shared group members", members, lambda c: [by_key[k] for k in c])
    return Fleet(own, members, pool, shared.id, [], [])


PLAIN_TABLES = (
    "CREATE TABLE plain_sims (iccid text PRIMARY KEY, status text NOT NULL, "
    "labels text[] NOT NULL DEFAULT '{}', data_left numeric, group_id integer, "
    "in_flight uuid, updated_at timestamptz NOT NULL)",
    "CREATE TABLE plain_groups (id integer PRIMARY KEY, data_left numeric NOT NULL, "
    "updated_at timestamptz NOT NULL)",
    # An audit row per command, read per SIM: a key and an index on iccid, as bench_bulk's.
    "CREATE TABLE plain_audit (id bigserial PRIMARY KEY, iccid text NOT NULL, "
    "action text NOT NULL, detail text, at timestamptz NOT NULL)",
    "CREATE INDEX plain_audit_iccid ON plain_audit (iccid)",
    "CREATE TABLE plain_usage (record_id text PRIMARY KEY, iccid text NOT NULL, "
    "mb numeric NOT NULL, at timestamptz NOT NULL)",
)


def build_plain(schema: str, fleet: Fleet, procs: int, seconds: float) -> Fleet:
    """The plain reference's tables: the engine's SIMs with the same statuses, plus its own
    pools for the one-shot phases (see :data:`PLAIN_RATE`); returns the fleet with them."""
    spare = max(len(fleet.ready), int(PLAIN_RATE * procs * seconds))
    plain_ready = [f"plain-ready-{k}" for k in range(spare)]
    plain_active = [f"plain-active-{k}" for k in range(spare)]
    rows = io.StringIO()
    for key in fleet.own + plain_active:
        rows.write(f"{key}\tactive\t{ALLOWANCE_MB}\t\\N\n")
    for key in fleet.members:
        rows.write(f"{key}\tactive\t\\N\t1\n")
    for key in fleet.ready + plain_ready:
        rows.write(f"{key}\tactivation_ready\t{ALLOWANCE_MB}\t\\N\n")
    with pg_connect(schema) as conn:
        with conn.transaction():
            for statement in PLAIN_TABLES:
                conn.execute(statement)
            conn.execute("ALTER TABLE plain_sims ALTER updated_at SET DEFAULT now()")
            with (
                conn.cursor() as cur,
                cur.copy("COPY plain_sims (iccid, status, data_left, group_id) FROM STDIN") as cp,
            ):
                cp.write(rows.getvalue())
            conn.execute("INSERT INTO plain_groups VALUES (1, %s, now())", (ALLOWANCE_MB,))
        conn.execute("ANALYZE")
    return Fleet(fleet.own, fleet.members, fleet.ready, fleet.group_id, plain_ready, plain_active)
