"""R-ES3 for the read models: a rebuild from the events alone equals the live views.

A hypothesis test drives random command histories (refused commands included) on every
store, folding in random batch sizes, then checks: ``verify_views()`` finds nothing; each
list row equals the aggregates; a rebuild changes nothing. Other tests damage a view and
rebuild it, and rebuild while the live views are ahead of or behind the replay.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from helpers import SIM_LIST_SHARED_COLUMNS as SHARED
from helpers import FakeClock, iccid, new_ledger, pg_connect
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simledger import SimLedger, SimledgerError, SimType
from simledger.projections.batch import Changes, Keys

NO_DIFFERENCES: dict[str, list[Any]] = {"sims": [], "pending_activity": [], "shared_groups": []}


@contextlib.contextmanager
def fresh_env(store_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """A new, empty store of the same kind as ``store_env`` (one per hypothesis example)."""
    module = store_env.get("PERSISTENCE_MODULE", "")
    if module.endswith("sqlite"):
        with tempfile.TemporaryDirectory() as directory:
            yield {**store_env, "SQLITE_DBNAME": str(Path(directory) / "events.db")}
    elif module.endswith("postgres"):
        schema = f"h_{uuid.uuid4().hex}"
        connect = " ".join(
            f"{key}={store_env['POSTGRES_' + key.upper()]}"
            for key in ("host", "port", "user", "password", "dbname")
        )
        with psycopg.connect(connect, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        try:
            yield {**store_env, "POSTGRES_SCHEMA": schema}
        finally:
            with psycopg.connect(connect, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    else:
        yield dict(store_env)


COMMANDS = (
    "receive",
    "check",
    "retry",
    "line",
    "company",
    "store_use",
    "package",
    "activate",
    "pause",
    "resume",
    "confirm",
    "system",
    "clear",
    "usage",
    "usage_late",
    "top_up",
    "expire",
    "group",
    "add",
    "remove",
    "delete",
    "swap",
    "swap_done",
    "labels",
    "note",
    "user",
    "tick",
    # regular groups, sessions and Always On (R-RG1..3, R-SS1..2, R-AO1..2)
    "rgroup",
    "radd",
    "rremove",
    "rdelete",
    "rename",
    "session",
    "always_on",
    # rules, prices, refills (issue 17)
    "rule",
    "unrule",
    "prices",
    "refill",
    "contracts",
)
SIMS = 6
LABEL_SETS: tuple[list[str], ...] = (["eu"], ["fleet", "eu"], [], ["x"])


class History:
    """Runs generated commands; a refused command (a typed error) records nothing."""

    def __init__(self, ledger: SimLedger, clock: FakeClock) -> None:
        self.ledger = ledger
        self.clock = clock
        self.packages = [
            ledger.create_package("Renewing", data_mb=300, validity_days=7, auto_renew=True),
            ledger.create_package("Plain", data_mb=150, validity_days=20),
        ]
        self.pool = ledger.create_package("Pool", data_mb=400, validity_days=15)
        self.groups: list[Any] = []
        self.regular: list[Any] = []
        self.operations: list[Any] = []

    def run(self, command: str, a: int, b: int, c: int) -> None:
        with contextlib.suppress(SimledgerError):
            self.apply(command, a, b, c)

    def apply(self, command: str, a: int, b: int, c: int) -> None:
        ledger, key, other = self.ledger, iccid(a), iccid(b)
        if command == "receive":
            ledger.receive_sims(
                sorted({key, other}),
                operator=("3UK", "Orange", "A1")[c % 3],
                sim_type=list(SimType)[c % 3],
                esim=c % 2 == 0,
            )
        elif command == "check":
            ledger.complete_integration_check(key, ok=b % 3 != 0, reason="no")
        elif command == "retry":
            ledger.retry_integration_check(key)
        elif command == "line":
            ledger.assign_line(key, "+447700900123")
        elif command == "company":
            ledger.assign_to_company(key, ("Acme", "Globex")[b % 2])
        elif command == "store_use":
            ledger.mark_store_use(key)
        elif command == "package":
            ledger.assign_package(key, self.packages[b % 2])
        elif command == "activate":
            ledger.activate(key)
        elif command in ("pause", "resume"):
            act = ledger.pause if command == "pause" else ledger.resume
            self.operations.append(act(sorted({key, other})).operation_id)
        elif command == "confirm" and self.operations:
            in_flight = ledger.sim(key).operation_in_flight
            operation = (
                in_flight["operation_id"]
                if in_flight and c % 4
                else self.operations[-1 - c % len(self.operations)]
            )
            ledger.confirm(operation, key, ok=b % 3 != 0)
        elif command == "system":
            ledger.suspend_by_system(key, ("expired", "operator")[b % 2])
        elif command == "clear":
            ledger.clear_system_pause(key)
        elif command == "usage":
            ledger.record_usage(key, b * 40 + c + 1)
        elif command == "usage_late":
            ledger.record_usage(key, b + 1, at=self.clock.now - timedelta(days=35))
        elif command == "top_up":
            ledger.top_up(key, 25 * (b + 1))
        elif command == "expire":
            self.clock.advance(timedelta(days=b * 4 + 1))
            ledger.expire_packages()
        elif command == "group":
            self.groups.append(ledger.create_shared_group(f"G{c}", sorted({key, other}), self.pool))
        elif command == "add" and self.groups:
            ledger.add_to_shared_group(self.groups[c % len(self.groups)], key)
        elif command == "remove" and self.groups:
            ledger.remove_from_shared_group(self.groups[c % len(self.groups)], key)
        elif command == "delete" and self.groups:
            group = self.groups[c % len(self.groups)]
            target = self.groups[(c + 1) % len(self.groups)] if b % 2 else None
            ledger.delete_shared_group(group, move_to=target)
        elif command == "swap":
            ledger.start_sim_swap(key)
        elif command == "swap_done":
            ledger.complete_sim_swap(key)
        elif command == "labels":
            ledger.set_labels(key, LABEL_SETS[b % 4])
        elif command == "note":
            ledger.set_note(key, ("spare", None, "Truck 9")[b % 3])
        elif command == "user":
            ledger.set_end_user(key, ("a@example.com", None)[b % 2])
        elif command == "tick":
            self.clock.advance(timedelta(hours=b * 9 + 1))
        elif command == "rule":
            kind = ("data_cap", "spend_cap", "alert")[c % 3]
            limit = None if kind == "alert" else 30 * (b + 1)
            percent, of = (50, "package") if kind == "alert" else (None, None)
            target = {"company": "Acme"} if c == 5 else {"iccid": key}
            ledger.attach_rule(
                f"r{c % 3}", kind=kind, limit=limit, percent=percent, of=of, **target
            )
        elif command == "unrule":
            ledger.detach_rule(f"r{c % 3}", iccid=key)
        elif command == "prices":
            operator = ("3UK", "Orange", "A1")[c % 3]
            ledger.set_prices(operator, default_per_mb=b + 1, per_country={"FR": c})
        elif command == "refill":
            ledger.set_auto_refill(key, amount=60 * (c + 1), threshold=20 * b)
        elif command == "contracts":
            ledger.set_inactivity_period(("3UK", "Orange", "A1")[c % 3], b + 1)
            ledger.run_contracts(self.clock.now + timedelta(days=b * 2))
        else:
            self.apply_more(command, a, b, c)

    def apply_more(self, command: str, a: int, b: int, c: int) -> None:
        ledger, key, other = self.ledger, iccid(a), iccid(b)
        regular = self.regular[c % len(self.regular)] if self.regular else None
        if command == "rgroup":
            self.regular.append(ledger.create_group(f"R{c}", sorted({key, other})))
        elif command == "radd" and regular is not None:
            ledger.add_to_group(regular, key)
        elif command == "rremove" and regular is not None:
            ledger.remove_from_group(regular, key)
        elif command == "rdelete" and regular is not None:
            target = self.regular[(c + 1) % len(self.regular)] if b % 2 else None
            ledger.delete_group(regular, move_to=target)
        elif command == "rename" and regular is not None:
            ledger.rename_group(regular, f"R{b}")
        elif command == "session":  # ids repeat: some records come twice (R-SS1)
            at = self.clock.now + timedelta(minutes=b - 2)
            ledger.record_session(f"s{a}-{c}", key, ("started", "ended")[b % 2], at=at)
        elif command == "always_on":
            ledger.set_always_on(key, b % 2 == 0)


@contextlib.contextmanager
def view_log() -> Iterator[list[dict[str, Any]]]:
    """The entries the view runner logs meanwhile (structured: one JSON object each)."""
    entries: list[dict[str, Any]] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            try:
                entries.append(json.loads(message))
            except ValueError:  # not rendered as JSON: the event name leads the message
                entries.append({"event": message.split()[0] if message else ""})

    logger, handler = logging.getLogger("simledger.views"), Keep(logging.INFO)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield entries
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def events(entries: list[dict[str, Any]]) -> list[str]:
    return [entry["event"] for entry in entries]


@contextlib.contextmanager
def rebuild_parts() -> Iterator[list[list[str]]]:
    """The command lines of the rebuild's second processes started meanwhile."""
    started: list[list[str]] = []
    popen = subprocess.Popen

    def spy(args: Any, *more: Any, **kwargs: Any) -> Any:
        if "simledger.runners.rebuild_part" in list(args):
            started.append(list(args))
        return popen(args, *more, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(subprocess, "Popen", spy)
        yield started


def check_views_match(ledger: SimLedger) -> None:
    assert ledger.verify_views() == NO_DIFFERENCES
    rows = ledger.sims(limit=1000).items
    for item in rows:
        sim = ledger.sim(item.iccid)
        assert {n: getattr(item, n) for n in SHARED} == {n: getattr(sim, n) for n in SHARED}
    groups = ledger.shared_groups()
    activity = ledger.pending_activity()
    position = ledger.rebuild_views()
    assert position == ledger.views.store.position() >= 1
    assert ledger.sims(limit=1000).items == rows
    assert ledger.shared_groups() == groups
    assert ledger.pending_activity() == activity
    assert ledger.verify_views() == NO_DIFFERENCES


WEIGHTED = (*COMMANDS, *["usage", "pause", "confirm", "confirm", "group", "resume"] * 2)
"""The commands, the ones that reach deep states (drained pools, answers) more often."""

command_lists = st.lists(
    st.tuples(
        st.sampled_from(WEIGHTED),
        st.integers(0, SIMS - 1),
        st.integers(0, SIMS - 1),
        st.integers(0, 5),
    ),
    min_size=8,
    max_size=45,
)
# Receiving and readying SIMs first makes the rest of a history meaningful more often.
warm_up = [
    ("receive", 0, 1, 0),
    ("receive", 2, 3, 1),
    ("receive", 4, 5, 2),
    *[(cmd, n, 1, 0) for n in range(SIMS) for cmd in ("check", "line", "company")],
    *[("package", n, n, 0) for n in range(3)],  # SIMs 3 to 5 stay free for shared groups
    *[("activate", n, 0, 0) for n in range(3)],
]

EXAMPLES = {"memory": 40, "sqlite": 12, "postgres": 10}


def test_rebuild_equals_live_after_random_histories(store_env: dict[str, str]) -> None:
    module = store_env.get("PERSISTENCE_MODULE", "")
    kind = "sqlite" if "sqlite" in module else "postgres" if "postgres" in module else "memory"

    @settings(
        max_examples=EXAMPLES[kind],
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        derandomize=False,
    )
    @given(
        commands=command_lists,
        batch_size=st.sampled_from([1, 3, 2000]),
        parallel=st.booleans() if kind == "postgres" else st.just(False),
    )
    def run(commands: list[tuple[str, int, int, int]], batch_size: int, parallel: bool) -> None:
        with fresh_env(store_env) as env:
            ledger, clock = new_ledger(env, carrier_deadline=timedelta(hours=6))
            ledger.views.batch_size = batch_size
            history = History(ledger, clock)
            for command in [*warm_up, *commands]:
                history.run(*command)
            if parallel:  # PostgreSQL's rebuild in two processes, whatever the log's size
                ledger.views.parallel_from = 0
            with rebuild_parts() as parts, view_log() as logged:
                check_views_match(ledger)
            if parallel:
                assert parts, "a second process was started"
                assert "views.rebuild.part_failed" not in events(logged), "it did its half"
            ledger.close()

    run()


def _damage(ledger: SimLedger, key: str, labelled: str) -> None:
    """Change rows behind the projector's back, as a bug or a manual edit would: through the
    store's own transaction, a SIM row, a SIM count and the labels of another SIM."""
    store = ledger.views.store
    with store.exclusive() as tx:
        row = tx.load(Keys(iccids={key})).sims[key]
        damage = Changes(
            sims={key: replace(row, note="tampered")},
            counts={row.counted_as(): 1},
            labels={labelled: []},
        )
        tx.write(damage, tx.position)


def test_verify_reports_a_damaged_row_and_rebuild_repairs_it(store_env: dict[str, str]) -> None:
    ledger, _ = new_ledger(store_env)
    keys = ledger.receive_sims([iccid(n) for n in range(4)], operator="3UK", sim_type="paygo")
    ledger.set_labels(keys[2], ["eu"])
    ledger.set_note(keys[1], "genuine")
    assert ledger.verify_views() == NO_DIFFERENCES
    _damage(ledger, keys[1], labelled=keys[2])
    report = ledger.verify_views()
    damaged = [d for d in report["sims"] if d.key == keys[1]]
    assert damaged and damaged[0].live and damaged[0].rebuilt
    assert (damaged[0].live["note"], damaged[0].rebuilt["note"]) == ("tampered", "genuine")
    assert len(report["sims"]) >= 2, "the damaged counts or labels are reported too"
    assert report["pending_activity"] == report["shared_groups"] == []
    assert ledger.verify_views(["shared_groups"]) == {"shared_groups": []}
    position = ledger.views.store.position()
    assert ledger.rebuild_view("sims") == position
    assert ledger.verify_views() == NO_DIFFERENCES
    assert ledger.sims(search="genuine").total == 1
    assert ledger.sims(label="eu").total == 1


def test_rebuild_while_the_live_views_move_on(store_env: dict[str, str]) -> None:
    ledger, _ = new_ledger(store_env)
    ledger.receive_sims([iccid(n) for n in range(3)], operator="3UK", sim_type="paygo")
    store = ledger.views.store
    install = store.install
    late: list[str] = []

    def install_after_more_writes(*args: Any, **kwargs: Any) -> int:
        # Between the replay and the swap, more events are recorded and folded live.
        late.extend(ledger.receive_sims([iccid(50), iccid(51)], operator="A1", sim_type="paygo"))
        ledger.set_note(iccid(0), "late note")
        return install(*args, **kwargs)

    store.install = install_after_more_writes  # type: ignore[method-assign]
    position = ledger.rebuild_view("sims")
    assert position == ledger.views.max_notification_id()
    assert ledger.sims().total == 5
    assert ledger.sims(search="late note").total == 1
    assert ledger.verify_views() == NO_DIFFERENCES


def test_rebuild_when_the_live_views_lag_behind(store_env: dict[str, str]) -> None:
    ledger, _ = new_ledger({**store_env, "VIEWS_MODE": "external", "VIEWS_WAIT_SECONDS": "0"})
    keys = ledger.receive_sims([iccid(n) for n in range(6)], operator="3UK", sim_type="paygo")
    ledger.set_labels(keys[0], ["eu"])
    assert ledger.views.store.position() == 0, "external mode: saves do not fold"
    position = ledger.rebuild_view("shared_groups")
    assert position == ledger.views.max_notification_id()
    assert ledger.views.store.position() == position
    assert ledger.verify_views() == NO_DIFFERENCES
    assert ledger.sims(label="eu").total == 1


def test_unknown_views_are_refused() -> None:
    ledger, _ = new_ledger()
    with pytest.raises(SimledgerError):
        ledger.rebuild_view("nope")
    with pytest.raises(SimledgerError):
        ledger.verify_views(["sims", "nope"])


def test_sqlite_labels_side_table_is_checked(sqlite_env: dict[str, str]) -> None:
    ledger, _ = new_ledger(sqlite_env)
    [key] = ledger.receive_sims([iccid(1)], operator="3UK", sim_type="paygo")
    ledger.set_labels(key, ["eu", "fleet"])
    with sqlite3.connect(sqlite_env["SQLITE_DBNAME"]) as conn:
        conn.execute("DELETE FROM view_sim_labels WHERE label = 'fleet'")
    [difference] = ledger.verify_views(["sims"])["sims"]
    assert difference.key == key
    ledger.rebuild_view("sims")
    assert ledger.sims(label="fleet").total == 1


def test_a_cold_catch_up_far_behind_loads_in_bulk(
    store_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    writer, _ = new_ledger({**store_env, "VIEWS_MODE": "external", "VIEWS_WAIT_SECONDS": "0"})
    keys = writer.receive_sims([iccid(n) for n in range(120)], operator="3UK", sim_type="paygo")
    for key in keys[:40]:
        writer.set_labels(key, ["eu"])
    reader = writer
    if "PERSISTENCE_MODULE" in store_env and "popo" not in store_env["PERSISTENCE_MODULE"]:
        reader, _ = new_ledger({**store_env, "VIEWS_BULK_FROM": "100"})
    else:  # in memory the views belong to the ledger object: fold with a low threshold
        reader.views.bulk_from = 100
    caplog.set_level(logging.INFO, logger="simledger.views")
    assert reader.catch_up_views() == 160
    bulk = any("views.catch_up.bulk" in record.getMessage() for record in caplog.records)
    assert bulk == (reader.views.store.kind != "memory"), "SQL stores rebuild; memory folds"
    assert reader.sims(label="eu").total == 40
    assert reader.verify_views() == NO_DIFFERENCES
    assert reader.catch_up_views() == 0


@pytest.mark.postgres
def test_a_parallel_rebuild_ends_at_the_last_event_whichever_half_it_is_in(
    postgres_env: dict[str, str],
) -> None:
    """The two processes of a rebuild together fold every event up to the log's end, so
    the views' position is the log's last event even when that event is a SIM's of the
    other process's half; the events after it are folded once, never again. (External
    views: nothing has been folded before the rebuild.)"""
    ledger, _ = new_ledger({**postgres_env, "VIEWS_MODE": "external", "VIEWS_WAIT_SECONDS": "0"})
    keys = ledger.receive_sims([iccid(n) for n in range(8)], operator="3UK", sim_type="paygo")
    with pg_connect(postgres_env) as conn:
        halves = {
            key: conn.execute(
                "SELECT mod(hashtext(%s)::bigint + 2147483648, 2)", (key,)
            ).fetchone()[0]  # type: ignore[index]
            for key in keys
        }
    theirs = [k for k in keys if halves[k] == 1]  # the second process's half
    assert theirs, "some SIM falls in the second half"
    runner = ledger.views
    runner.parallel_from = 0
    ledger.set_note(theirs[0], "the log's last event")
    with rebuild_parts() as parts:
        position = ledger.rebuild_views()
    assert parts, "a second process was started"
    assert position == ledger.recorder.max_notification_id()
    ledger.set_labels(theirs[0], ["after"])
    assert [i.labels for i in ledger.sims(label="after").items] == [["after"]]
    assert ledger.sims(limit=100).total == len(keys)
    assert ledger.verify_views() == NO_DIFFERENCES
    ledger.close()


@pytest.mark.postgres
def test_a_parallel_rebuild_whose_second_process_fails_folds_everything_itself(
    postgres_env: dict[str, str],
) -> None:
    ledger, _ = new_ledger(postgres_env)
    keys = ledger.receive_sims([iccid(n) for n in range(6)], operator="3UK", sim_type="paygo")
    ledger.set_note(keys[0], "kept")
    runner = ledger.views
    runner.parallel_from = 0
    runner.child_env = {**postgres_env, "PERSISTENCE_MODULE": "no.such.module"}
    before = ledger.sims(limit=100).items
    with rebuild_parts() as parts, view_log() as logged:
        ledger.rebuild_views()
    assert len(parts) == 1
    [failed] = [e for e in logged if e["event"] == "views.rebuild.part_failed"]
    assert failed["code"] != 0 and "no.such.module" in failed["stderr"]
    [done] = [e for e in logged if e["event"] == "views.rebuild.done"]
    assert done["sims"] == 6  # this process folded every SIM itself
    assert ledger.sims(limit=100).items == before
    assert ledger.verify_views() == NO_DIFFERENCES
    ledger.close()


@pytest.mark.postgres
def test_a_parallel_rebuild_drops_the_staged_rows_of_one_that_died(
    postgres_env: dict[str, str],
) -> None:
    ledger, _ = new_ledger(postgres_env)
    ledger.receive_sims([iccid(n) for n in range(6)], operator="3UK", sim_type="paygo")
    store: Any = ledger.views.store
    ledger.views.parallel_from = 0
    store.stage_sims("view_sims_staged_deadbeef", [])  # what a killed rebuild leaves behind
    with pg_connect(postgres_env) as conn:
        conn.execute(f"CREATE TABLE {store.q('view_sims_stagedX')} (x int)")  # not a stage

    def tables() -> set[str]:
        with pg_connect(postgres_env) as conn:
            rows = conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s", (store.schema,)
            ).fetchall()
        return {name for (name,) in rows}

    assert {"view_sims_staged_deadbeef", "view_sims_stagedX"} <= tables()
    ledger.rebuild_views()
    assert "view_sims_staged_deadbeef" not in tables()
    assert "view_sims_stagedX" in tables()
    assert not any(name.startswith("view_sims_staged_") for name in tables())
    assert ledger.verify_views() == NO_DIFFERENCES
    ledger.close()
