"""The replayable audit and tamper evidence (issue 5, items 2 and 3).

Stores are tampered with the way an intruder with database access would: SQL on the event
table (``stored_events`` in SQLite, ``simledger_events`` in the PostgreSQL schema), the
state column being the event's JSON. A "thorough" forger also recomputes the hash chain
with the published algorithm (:mod:`simledger.domain.chain`).
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from helpers import (
    COMPANY,
    MSISDN,
    event_count,
    iccids,
    make_package,
    ready_sim,
    received_sim,
)
from psycopg import sql

from simledger import SimLedger
from simledger.application.audit import Problem, VerifyReport
from simledger.application.audit_log import audit_records
from simledger.domain.chain import content, link
from simledger.domain.shared_group import SharedGroup
from simledger.domain.sim import Sim

CHAIN_KINDS = {"altered", "missing", "out-of-sequence", "unsealed"}


# ---- raw access to the event table ----------------------------------------------------------
class RawEvents:
    """SQL on the stored events of a SQLite file or a PostgreSQL schema."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.postgres = env["PERSISTENCE_MODULE"] == "eventsourcing.postgres"

    @contextmanager
    def cursor(self) -> Iterator[Any]:
        if self.postgres:
            with psycopg.connect(
                host=self.env["POSTGRES_HOST"],
                port=int(self.env["POSTGRES_PORT"]),
                user=self.env["POSTGRES_USER"],
                password=self.env.get("POSTGRES_PASSWORD"),
                dbname=self.env["POSTGRES_DBNAME"],
                autocommit=True,
            ) as conn:
                yield conn.cursor()
        else:
            lite = sqlite3.connect(self.env["SQLITE_DBNAME"])
            try:
                with lite:
                    yield lite.cursor()
            finally:
                lite.close()

    def statement(self, template: str) -> Any:
        if self.postgres:
            table = sql.Identifier(self.env["POSTGRES_SCHEMA"], "simledger_events")
            return sql.SQL(template.replace("?", "%s")).format(table=table)
        return template.format(table="stored_events")

    def rows(self, aggregate_id: str) -> list[tuple[int, str, bytes]]:
        with self.cursor() as cur:
            cur.execute(
                self.statement(
                    "SELECT originator_version, topic, state FROM {table} "
                    "WHERE originator_id = ? ORDER BY originator_version"
                ),
                (aggregate_id,),
            )
            return [(int(v), str(t), bytes(s)) for v, t, s in cur.fetchall()]

    def update(self, aggregate_id: str, version: int, state: bytes) -> None:
        with self.cursor() as cur:
            cur.execute(
                self.statement(
                    "UPDATE {table} SET state = ? "
                    "WHERE originator_id = ? AND originator_version = ?"
                ),
                (state, aggregate_id, version),
            )
            assert cur.rowcount == 1

    def delete(self, aggregate_id: str, version: int) -> None:
        with self.cursor() as cur:
            cur.execute(
                self.statement(
                    "DELETE FROM {table} WHERE originator_id = ? AND originator_version = ?"
                ),
                (aggregate_id, version),
            )
            assert cur.rowcount == 1

    def insert(self, aggregate_id: str, version: int, topic: str, state: bytes) -> None:
        with self.cursor() as cur:
            cur.execute(
                self.statement(
                    "INSERT INTO {table} (originator_id, originator_version, topic, state) "
                    "VALUES (?, ?, ?, ?)"
                ),
                (aggregate_id, version, topic, state),
            )


class Forger:
    """Edits stored events through the ledger's own transcoder; can re-seal the chain."""

    def __init__(self, ledger: SimLedger, raw: RawEvents) -> None:
        self.raw = raw
        self.decode = ledger.mapper.transcoder.decode
        self.encode = ledger.mapper.transcoder.encode

    def state(self, aggregate_id: str, version: int) -> tuple[str, dict[str, Any]]:
        for v, topic, state in self.raw.rows(aggregate_id):
            if v == version:
                return topic, self.decode(state)
        raise AssertionError(f"no version {version} of {aggregate_id}")

    def edit(self, aggregate_id: str, version: int, **changes: Any) -> None:
        """Change fields of one event, leaving its stored chain hash as it was."""
        _, state = self.state(aggregate_id, version)
        assert set(changes) <= set(state)
        state.update(changes)
        self.raw.update(aggregate_id, version, self.encode(state))

    def reseal(self, aggregate_id: str, start: int) -> None:
        """Recompute the chain of ``start`` and every later version from the stored content."""
        previous = ""
        for version, topic, stored in self.raw.rows(aggregate_id):
            state = self.decode(stored)
            if version >= start:
                state["chain"] = link(
                    previous,
                    content(topic, aggregate_id, version, state.get("class_version", 1), state),
                )
                self.raw.update(aggregate_id, version, self.encode(state))
            previous = state["chain"]

    def append(self, aggregate_id: str, topic: str, **fields: Any) -> int:
        """A new last event with a valid chain hash; returns its version."""
        rows = self.raw.rows(aggregate_id)
        version = rows[-1][0] + 1
        previous = self.decode(rows[-1][2])["chain"]
        state = dict(fields)
        state["chain"] = link(previous, content(topic, aggregate_id, version, 1, state))
        self.raw.insert(aggregate_id, version, topic, self.encode(state))
        return version


def chain_problems(report: VerifyReport, aggregate_id: str) -> list[Problem]:
    return [p for p in report.problems if p.aggregate_id == aggregate_id and p.kind in CHAIN_KINDS]


def versions_of(ledger: SimLedger, aggregate_id: str, event_class: type[Any]) -> list[int]:
    return [e.originator_version for e in ledger.events.get(aggregate_id) if type(e) is event_class]


# ---- a small fleet with every kind of pool ------------------------------------------------
def fleet(ledger: SimLedger) -> dict[str, Any]:
    """An own-copy SIM with usage and a top-up, a shared group drawn by two members, a SIM
    with notes (one past a snapshot), and a SIM in no pool."""
    own = ready_sim(ledger, 0, data_mb=500)
    ledger.record_usage(own, 120)
    ledger.record_usage(own, Decimal("30.5"))
    members = [received_sim(ledger, n, checked=True) for n in (1, 2, 3)]
    for member in members:
        ledger.assign_line(member, MSISDN)
        ledger.assign_to_company(member, COMPANY)
    group = ledger.create_shared_group("fleet", members, make_package(ledger, data_mb=100))
    for member in members:
        ledger.activate(member)
    ledger.record_usage(members[0], 25)
    ledger.record_usage(members[1], Decimal("12.25"))
    noted = ready_sim(ledger, 4)
    for n in range(3):
        ledger.set_note(noted, f"note {n}")
    [plain] = ledger.receive_sims(iccids(1, 9), operator="3UK", sim_type="prepaid")
    return {"own": own, "members": members, "group": str(group), "noted": noted, "plain": plain}


def test_an_untouched_store_verifies_clean(store_env: dict[str, str]) -> None:
    ledger = SimLedger(env=store_env)
    try:
        made = fleet(ledger)
        busy = made["noted"]
        for n in range(110):  # past the snapshot interval many times
            ledger.set_note(busy, f"n{n}")
        assert ledger.snapshots is not None
        sims = [made["own"], *made["members"], busy, made["plain"]]
        snapshotted = [key for key in sims if list(ledger.snapshots.get(key))]
        assert busy in snapshotted
        report = ledger.verify_store()
        assert report.ok, [str(p) for p in report.problems]
        assert report.events == event_count(ledger)
        assert report.aggregates["Sim"] == 6
        assert report.aggregates["SharedGroup"] == 1
        assert report.pools_checked == 1 + 2  # the group, and the copies of own and noted
        assert report.snapshots_checked == len(snapshotted)
        assert report.unsealed_events == 0
        assert len(report.digest) == 64
        assert report.views_checked == ["pending_activity", "shared_groups", "sims"]
        # The digest is a function of the stored heads: a new event changes it.
        ledger.set_note(made["plain"], "one more")
        assert ledger.verify_store(views=False).digest != report.digest
    finally:
        ledger.close()


def test_every_event_is_sealed_and_history_and_export_keep_the_hash_apart(
    store_env: dict[str, str],
) -> None:
    ledger = SimLedger(env=store_env)
    try:
        made = fleet(ledger)
        events: list[Any] = list(ledger.events.get(made["noted"]))
        chains = [e.chain for e in events]
        assert all(len(c) == 64 for c in chains) and len(set(chains)) == len(chains)
        assert all("chain" not in entry.data for entry in ledger.history(made["noted"]))
        exported = [r for r in audit_records(ledger) if r["aggregate_id"] == made["noted"]]
        assert [r["chain"] for r in exported] == chains
        assert all("chain" not in r["data"] for r in exported)
    finally:
        ledger.close()


# ---- editing, deleting, inserting ---------------------------------------------------------
def test_an_edited_event_is_caught_and_named(persistent_store_env: dict[str, str]) -> None:
    ledger = SimLedger(env=persistent_store_env)
    try:
        made = fleet(ledger)
        noted = made["noted"]
        middle = versions_of(ledger, noted, Sim.NoteSet)[1]
        Forger(ledger, RawEvents(persistent_store_env)).edit(noted, middle, note="forged")
        assert ledger.sim(noted).note == "note 2"  # later notes hide the edit from queries

        report = ledger.verify_store()
        assert not report.ok
        [problem] = chain_problems(report, noted)
        assert (problem.kind, problem.version) == ("altered", middle)
        assert f"{noted} v{middle}" in str(problem)
        # Nothing else is blamed: every other aggregate's chain holds.
        assert {p.aggregate_id for p in report.problems if p.kind in CHAIN_KINDS} == {noted}
    finally:
        ledger.close()


def test_an_edited_usage_draw_is_caught(persistent_store_env: dict[str, str]) -> None:
    ledger = SimLedger(env=persistent_store_env)
    try:
        made = fleet(ledger)
        group = made["group"]
        [first, _] = versions_of(ledger, group, SharedGroup.UsageDrawn)
        Forger(ledger, RawEvents(persistent_store_env)).edit(group, first, mb=Decimal(1))
        [problem] = chain_problems(ledger.verify_store(), group)
        assert (problem.kind, problem.version) == ("altered", first)
    finally:
        ledger.close()


def test_a_deleted_middle_event_is_missing(persistent_store_env: dict[str, str]) -> None:
    ledger = SimLedger(env=persistent_store_env)
    try:
        made = fleet(ledger)
        noted = made["noted"]
        middle = versions_of(ledger, noted, Sim.NoteSet)[1]
        RawEvents(persistent_store_env).delete(noted, middle)
        report = ledger.verify_store(views=False)
        [problem] = chain_problems(report, noted)
        assert (problem.kind, problem.version) == ("missing", middle)
        assert f"version {middle} missing" in problem.detail
    finally:
        ledger.close()


def test_an_edit_resealed_only_at_the_edited_event_breaks_the_next_link(
    persistent_store_env: dict[str, str],
) -> None:
    ledger = SimLedger(env=persistent_store_env)
    try:
        made = fleet(ledger)
        noted = made["noted"]
        middle = versions_of(ledger, noted, Sim.NoteSet)[1]
        forger = Forger(ledger, RawEvents(persistent_store_env))
        forger.edit(noted, middle, note="forged")
        rows = forger.raw.rows(noted)
        forger.reseal(noted, middle)  # re-seals middle and later ...
        forger.raw.update(noted, middle + 1, rows[middle][2])  # ... but put the next one back
        [problem] = chain_problems(ledger.verify_store(views=False), noted)
        assert (problem.kind, problem.version) == ("altered", middle + 1)
        assert f"version {middle} rewritten" in problem.detail
    finally:
        ledger.close()


def test_a_resealed_pool_forgery_is_caught_by_the_pool_checks(
    persistent_store_env: dict[str, str],
) -> None:
    ledger = SimLedger(env=persistent_store_env)
    try:
        made = fleet(ledger)
        group = made["group"]
        forger = Forger(ledger, RawEvents(persistent_store_env))
        [first, second] = versions_of(ledger, group, SharedGroup.UsageDrawn)
        # 1. A draw inflated beyond the pool, every hash recomputed: the chain holds.
        forger.edit(group, second, mb=Decimal(90))
        forger.reseal(group, second)
        report = ledger.verify_store(views=False)
        assert chain_problems(report, group) == []
        [pool] = [p for p in report.problems if p.aggregate_id == group]
        assert (pool.kind, pool.version) == ("pool", second)
        assert "115" in pool.detail and "100" in pool.detail  # 25 + 90 drawn of 100

        # 2. Back to the truth, then a draw appended for a SIM that is not a member.
        forger.edit(group, second, mb=Decimal("12.25"))
        forger.reseal(group, second)
        assert ledger.verify_store(views=False).ok
        topic, drawn = forger.state(group, first)
        outsider = made["plain"]
        appended = forger.append(
            group, topic, timestamp=drawn["timestamp"], iccid=outsider, mb=Decimal(5),
            at=drawn["at"],
        )  # fmt: skip
        report = ledger.verify_store(views=False)
        assert chain_problems(report, group) == []
        [pool] = [p for p in report.problems if p.aggregate_id == group]
        assert (pool.kind, pool.version) == ("pool", appended)
        assert outsider in pool.detail and "not a member" in pool.detail
    finally:
        ledger.close()


def test_a_resealed_history_is_caught_by_the_snapshot_anchor(
    persistent_store_env: dict[str, str],
) -> None:
    ledger = SimLedger(env=persistent_store_env)
    try:
        [busy] = ledger.receive_sims(iccids(1, 40), operator="3UK", sim_type="prepaid")
        for n in range(130):
            ledger.set_note(busy, f"n{n}")
        assert ledger.repository.get(busy).version == 131
        assert ledger.verify_store(views=False).ok  # a valid chain across the snapshot

        forger = Forger(ledger, RawEvents(persistent_store_env))
        forger.edit(busy, 50, note="forged")
        forger.reseal(busy, 50)  # every hash from 50 on recomputed: the chain itself holds
        report = ledger.verify_store(views=False)
        [problem] = chain_problems(report, busy)
        assert ledger.snapshots is not None
        latest = max(s.originator_version for s in ledger.snapshots.get(busy))
        assert 50 < latest <= 131
        assert (problem.kind, problem.version) == ("altered", latest)
        assert "snapshot" in problem.detail
    finally:
        ledger.close()


# ---- the command line -----------------------------------------------------------------------
def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "simledger.runners.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_verify_names_the_altered_event_and_exits_non_zero(tmp_path: Path) -> None:
    db = tmp_path / "fleet.db"
    env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(db)}
    ledger = SimLedger(env=env)
    try:
        made = fleet(ledger)
        clean = cli("--db", str(db), "verify")
        assert clean.returncode == 0, clean.stdout + clean.stderr
        assert "every hash chain holds" in clean.stdout
        assert clean.stdout.splitlines()[-1].startswith("OK")

        group = made["group"]
        [first, _] = versions_of(ledger, group, SharedGroup.UsageDrawn)
        Forger(ledger, RawEvents(env)).edit(group, first, mb=Decimal("0.5"))
    finally:
        ledger.close()
    broken = cli("--db", str(db), "verify")
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "Traceback" not in broken.stderr
    assert f"altered: {group} v{first}:" in broken.stdout
    assert broken.stdout.splitlines()[-1].startswith("FAILED")
