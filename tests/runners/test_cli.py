"""The command line, driven as a user drives it: ``python -m simledger.runners.cli`` in a
subprocess, on a real SQLite file (and, for a few commands, a real PostgreSQL schema given
as environment variables). Fleets are set up through the Python API on the same store."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import COMPANY, clean_env, event_count, iccid, iccids, make_package, ready_sim

from simledger import SimLedger, SimType
from simledger.runners.cli_output import Progress


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.splitlines()]


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Run:
    done = subprocess.run(
        [sys.executable, "-m", "simledger.runners.cli", *args],
        capture_output=True,
        text=True,
        env=clean_env(env),
        cwd=cwd,
        timeout=60,
    )
    return Run(done.returncode, done.stdout, done.stderr)


def sqlite_settings(path: Path) -> dict[str, str]:
    return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)}


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "fleet.db"


@pytest.fixture
def ledger_env(db: Path) -> dict[str, str]:
    return sqlite_settings(db)  # the file the command line is given


@pytest.fixture
def clock() -> None:
    """The real clock: the command line, in its own process, runs on it too."""
    return None


def assert_one_error_line(run: Run, rule: str) -> None:
    assert "Traceback" not in run.err
    lines = run.err.strip().splitlines()
    assert len(lines) == 1, run.err
    assert lines[0].startswith(f"error: {rule}: "), run.err


# ---- import ----------------------------------------------------------------------------------
def test_import_bad_file_lists_every_bad_line_and_records_nothing_then_good_file(
    tmp_path: Path, db: Path, ledger: SimLedger
) -> None:
    good = iccids(3)
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "iccid,operator,sim_type,esim\n"
        f"{good[0]},3UK,prepaid,false\n"
        "12345,3UK,prepaid,false\n"  # line 3: not an ICCID
        f"{good[1]},3UK,prepaid,false\n"
        f"{good[2]},3UK,weekly,maybe\n"  # line 5: bad type and bad eSIM flag
    )
    refused = cli("--db", str(db), "import", str(bad))
    assert refused.code == 2
    assert "Traceback" not in refused.err
    lines = refused.err.strip().splitlines()
    assert lines[0].startswith("error: R-IO1: 2 bad row(s)")
    assert [line.split(":")[0] for line in lines[1:]] == ["line 3", "line 5"]
    assert "weekly" in lines[2] and "maybe" in lines[2]
    assert event_count(ledger) == 0

    delivery = tmp_path / "delivery.csv"
    delivery.write_text(
        "iccid,operator,sim_type,esim\n" + "".join(f"{i},3UK,prepaid,false\n" for i in good)
    )
    imported = cli("--db", str(db), "import", str(delivery))
    assert imported.code == 0, imported.err
    assert imported.out.startswith("imported 3 SIM(s)")
    assert imported.err == ""  # no logs without --verbose, no bar off a terminal
    assert [item.iccid for item in ledger.sims().items] == sorted(good)

    again = cli("--db", str(db), "--verbose", "import", str(delivery))
    assert again.code == 2
    error_lines = [line for line in again.err.splitlines() if not line.startswith("{")]
    assert error_lines[0].startswith("error: R-IO1: 3 bad row(s)")
    assert error_lines[1:] == [f"line {n}: ICCID {i} was already received" for n, i in
                               zip((2, 3, 4), good, strict=True)]  # fmt: skip
    logs = [json.loads(line) for line in again.err.splitlines() if line.startswith("{")]
    assert "csv.import.refused" in {entry["event"] for entry in logs}
    assert event_count(ledger) == 3


def test_import_of_a_file_that_is_not_utf8_names_the_line(
    tmp_path: Path, db: Path, ledger: SimLedger
) -> None:
    a, b = iccids(2)
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes(
        f"iccid,operator,sim_type,esim\n{a},3UK,prepaid,no\n{b},T\xe9l\xe9com,prepaid,no\n".encode(
            "latin-1"
        )
    )
    refused = cli("--db", str(db), "import", str(latin1))
    assert refused.code == 2
    assert refused.err.splitlines() == [
        "error: R-IO1: 1 bad row(s), nothing imported",
        "line 3: not UTF-8 text: byte 0xE9 at character 23; save the file as UTF-8",
    ]
    assert event_count(ledger) == 0


@pytest.mark.parametrize("source", ["/dev/stdin", "-"])
def test_import_reads_a_pipe_once(source: str, db: Path, ledger: SimLedger) -> None:
    keys = iccids(2)
    delivery = "iccid,operator,sim_type,esim\n" + "".join(f"{k},3UK,prepaid,no\n" for k in keys)
    with subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE) as cat:
        assert cat.stdin is not None
        cat.stdin.write(delivery.encode())
        cat.stdin.close()
        done = subprocess.run(
            [sys.executable, "-m", "simledger.runners.cli", "--db", str(db), "import", source],
            stdin=cat.stdout,
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=60,
        )
    assert done.returncode == 0, done.stderr
    shown = "stdin" if source == "-" else source
    assert done.stdout == f"imported 2 SIM(s) from {shown}\n"
    assert [item.iccid for item in ledger.sims().items] == sorted(keys)


# ---- list ------------------------------------------------------------------------------------
def _fleet(ledger: SimLedger) -> dict[str, list[str]]:
    """Two operators; of the 3UK SIMs some active with labels, the rest pending."""
    package = make_package(ledger)
    active = [ready_sim(ledger, n, package_id=package) for n in range(4)]
    for key in active[:2]:
        ledger.set_labels(key, ["fleet-a"])
    pending = ledger.receive_sims(iccids(3, 10), operator="3UK", sim_type=SimType.PREPAID)
    other = ledger.receive_sims(iccids(2, 20), operator="Orange", sim_type=SimType.PAYGO)
    return {"active": active, "pending": pending, "other": other}


def test_list_filters_in_table_csv_and_json_and_pages(db: Path, ledger: SimLedger) -> None:
    fleet = _fleet(ledger)
    base = ("--db", str(db), "list")

    as_json = cli(*base, "--operator", "3UK", "--status", "active", "--format", "json").json()
    assert as_json["total"] == 4 and as_json["next_cursor"] is None
    assert [i["iccid"] for i in as_json["items"]] == sorted(fleet["active"])
    assert {i["company"] for i in as_json["items"]} == {COMPANY}
    assert all(isinstance(i["data_left_mb"], str) for i in as_json["items"])  # Decimals

    as_csv = cli(*base, "--label", "fleet-a", "--desc", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.out)))
    assert [r["iccid"] for r in rows] == sorted(fleet["active"][:2], reverse=True)
    assert {r["labels"] for r in rows} == {"fleet-a"}
    assert {r["status"] for r in rows} == {"active"}

    table = cli(*base, "--sim-type", "prepaid", "--sim-type", "paygo", "--sort", "operator")
    body = table.out.splitlines()
    assert body[0].split()[:3] == ["iccid", "status", "sim_type"]
    listed = [line.split()[0] for line in body[2:-1]]
    assert sorted(listed) == sorted(fleet["pending"] + fleet["other"])
    assert [line.split()[3] for line in body[2:-1]] == ["3UK"] * 3 + ["Orange"] * 2
    assert body[-1] == "5 of 5 SIM(s)"

    first = cli(*base, "--limit", "4", "--format", "json")
    page = first.json()
    assert page["total"] == 9 and len(page["items"]) == 4 and page["next_cursor"]
    assert page["next_cursor"] in first.err
    second = cli(*base, "--limit", "4", "--cursor", page["next_cursor"], "--format", "json").json()
    everything = cli(*base, "--all", "--limit", "4", "--format", "json").json()
    every_key = sorted(k for keys in fleet.values() for k in keys)
    assert [i["iccid"] for i in everything["items"]] == every_key
    assert [i["iccid"] for i in page["items"] + second["items"]] == every_key[:8]

    bad = cli(*base, "--sort", "no_such_column")
    assert bad.code == 2 and "Traceback" not in bad.err
    assert bad.err.startswith("error: R-")


# ---- show, history, as-of --------------------------------------------------------------------
def test_list_as_csv_quotes_text_a_spreadsheet_would_run(db: Path, ledger: SimLedger) -> None:
    [key] = ledger.receive_sims(iccids(1), operator="=cmd|' /C calc'!A0", sim_type=SimType.PAYGO)
    ledger.set_note(key, "-2")
    listed = cli("--db", str(db), "list", "--format", "csv")
    assert listed.code == 0, listed.err
    [row] = list(csv.DictReader(io.StringIO(listed.out)))
    assert (row["operator"], row["note"]) == ("'=cmd|' /C calc'!A0", "'-2")
    assert (row["this_month_mb"], row["version"]) == ("0", "2")
    exported = io.StringIO(newline="")
    ledger.export_sims_csv(exported)
    [same] = list(csv.DictReader(io.StringIO(exported.getvalue(), newline="")))
    assert same == row


def test_show_history_and_as_of_by_version_and_time(db: Path, ledger: SimLedger) -> None:
    key = ready_sim(ledger, 1, activate=False)
    time.sleep(0.01)
    ledger.activate(key)
    time.sleep(0.01)
    ledger.set_note(key, "van 12")
    history = ledger.history(key)
    base = ("--db", str(db))

    shown = cli(*base, "show", key, "--format", "json").json()
    assert shown["status"] == "active" and shown["note"] == "van 12"
    assert shown["version"] == ledger.sim(key).version
    text = cli(*base, "show", key).out
    assert any(line.split() == ["status", "active"] for line in text.splitlines())

    table = cli(*base, "history", key).out.splitlines()
    assert table[0].split() == ["version", "aggregate", "event", "at", "data"]
    rows = [line.split()[:3] for line in table[2:]]
    assert rows == [[str(e.version), e.aggregate, e.event] for e in history]
    assert any(row[1] == "Package" for row in rows)
    assert "note=van 12" in table[-1]

    activated = next(e for e in history if e.event == "Activated")
    by_version = cli(*base, "as-of", key, "--version", str(activated.version - 1), "--format",
                     "json").json()  # fmt: skip
    assert by_version["status"] == "activation_ready"
    assert by_version["version"] == activated.version - 1
    at = activated.at.astimezone(UTC).isoformat()
    by_time = cli(*base, "as-of", key, "--at", at, "--format", "json").json()
    assert by_time["status"] == "active" and by_time["note"] is None
    before = (activated.at - timedelta(microseconds=1)).isoformat()
    assert cli(*base, "as-of", key, "--at", before, "--format", "json").json()["status"] == (
        "activation_ready"
    )

    naive = cli(*base, "as-of", key, "--at", "2024-05-01T12:00:00")
    assert naive.code == 2
    assert_one_error_line(naive, "R-ES3")
    assert "time zone" in naive.err
    neither = cli(*base, "as-of", key)
    assert neither.code == 2 and "--at" in neither.err  # argparse: one of the two is required


def test_unknown_iccid_is_one_line_with_the_rule_and_exit_2(db: Path, ledger: SimLedger) -> None:
    ready_sim(ledger, 0)
    for command in ("show", "history"):
        run = cli("--db", str(db), command, iccid(99))
        assert run.code == 2 and run.out == ""
        assert_one_error_line(run, "R-SIM1")
        assert iccid(99) in run.err
    debug = cli("--db", str(db), "--debug", "show", iccid(99))
    assert debug.code != 0 and "Traceback" in debug.err and "UnknownSim" in debug.err


def test_store_unreachable_is_one_line_and_exit_1(tmp_path: Path) -> None:
    settings = {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": "test",
        "POSTGRES_HOST": "127.0.0.1",
        "POSTGRES_PORT": "1",  # nothing listens there
        "POSTGRES_USER": "postgres",
        "POSTGRES_CONNECT_TIMEOUT": "1",
    }
    run = cli("list", env=settings, cwd=tmp_path)
    assert run.code == 1
    assert "Traceback" not in run.err
    assert len(run.err.strip().splitlines()) == 1 and run.err.startswith("error: ")
    assert not (tmp_path / "simledger.db").exists()


def test_no_settings_means_simledger_db_in_the_current_directory(tmp_path: Path) -> None:
    delivery = tmp_path / "d.csv"
    delivery.write_text(f"iccid,operator,sim_type,esim\n{iccid(5)},3UK,paygo,yes\n")
    assert cli("import", "d.csv", cwd=tmp_path).code == 0
    assert (tmp_path / "simledger.db").exists()
    reopened = SimLedger(env=sqlite_settings(tmp_path / "simledger.db"))
    try:
        assert reopened.sim(iccid(5)).esim is True
    finally:
        reopened.close()
    by_env = cli("list", "--format", "json", env=sqlite_settings(tmp_path / "simledger.db"))
    assert [i["iccid"] for i in by_env.json()["items"]] == [iccid(5)]


# ---- activity, rebuild, verify, project ------------------------------------------------------
def test_activity_after_a_pause(db: Path, ledger: SimLedger) -> None:
    keys = [ready_sim(ledger, n) for n in range(3)]
    result = ledger.pause(keys)
    ledger.confirm(result.operation_id, keys[0])
    ledger.confirm(result.operation_id, keys[1], ok=False)
    [operation] = cli("--db", str(db), "activity", "--format", "json").json()
    assert operation["operation_id"] == str(result.operation_id)
    assert operation["kind"] == "pause"
    counts = {k: operation[k] for k in ("requested", "confirmed", "refused", "pending")}
    assert counts == {"requested": 3, "confirmed": 1, "refused": 1, "pending": 1}
    table = cli("--db", str(db), "activity").out.splitlines()
    assert table[2].split()[:2] == [str(result.operation_id), "pause"]
    assert table[2].split()[-5:] == ["3", "1", "1", "1", "0"]


def test_rebuild_and_verify_and_a_tampered_view_is_caught(db: Path, ledger: SimLedger) -> None:
    keys = [ready_sim(ledger, n) for n in range(3)]
    ledger.pause(keys[:1])
    rebuilt = cli("--db", str(db), "rebuild", "all")
    assert rebuilt.code == 0, rebuilt.err
    assert rebuilt.out.startswith("rebuilt sims, pending_activity, shared_groups up to position")
    verified = cli("--db", str(db), "verify")
    assert verified.code == 0, verified.out + verified.err
    assert "OK" in verified.out.splitlines()[-1]

    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE view_sims SET status = 'invalid' WHERE iccid = ?", (keys[2],))
    broken = cli("--db", str(db), "verify")
    assert broken.code == 1
    assert "sims: 1 row(s) differ" in broken.out and keys[2] in broken.out
    assert "pending_activity: ok" in broken.out
    assert cli("--db", str(db), "rebuild", "sims").code == 0
    assert cli("--db", str(db), "verify", "sims").code == 0


def test_project_once_folds_what_external_writers_left(db: Path) -> None:
    writer = SimLedger(env={**sqlite_settings(db), "VIEWS_MODE": "external"})
    try:
        writer.receive_sims(iccids(4), operator="3UK", sim_type=SimType.PREPAID)
        behind = writer.views.store.position()
        run = cli("--db", str(db), "project", "--once", "--batch-size", "2")
        assert run.code == 0, run.err
        last = writer.recorder.max_notification_id() or 0
        assert writer.views.store.position() == last > behind
    finally:
        writer.close()


def test_verify_of_views_behind_the_log_exits_3_unless_allowed(db: Path) -> None:
    external = {"VIEWS_MODE": "external"}  # no worker runs: the views stay where they are
    writer = SimLedger(env={**sqlite_settings(db), **external})
    try:
        writer.receive_sims(iccids(4), operator="3UK", sim_type=SimType.PREPAID)
        position = writer.views.store.position()
        behind = (writer.recorder.max_notification_id() or 0) - position
    finally:
        writer.close()
    assert behind > 0

    refused = cli("--db", str(db), "verify", env=external)
    assert refused.code == 3, refused.out + refused.err
    last = refused.out.splitlines()[-1]
    assert f"views are {behind} event(s) behind the log" in last
    assert f"verified only up to their position {position}" in last
    assert "OK" not in refused.out

    allowed = cli("--db", str(db), "verify", "--allow-behind", env=external)
    assert allowed.code == 0, allowed.out + allowed.err
    assert f"({behind} later event(s) not folded yet)" in allowed.out
    assert allowed.out.splitlines()[-1].startswith("OK")

    assert cli("--db", str(db), "project", "--once").code == 0
    current = cli("--db", str(db), "verify", env=external)
    assert current.code == 0, current.out + current.err
    assert "not folded yet" not in current.out
    assert current.out.splitlines()[-1] == "OK: every view equals its rebuild from the events"


def test_demo_then_verify(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    demo = cli("--db", str(db), "demo")
    assert demo.code == 0, demo.err
    assert str(db) in demo.out
    assert demo.err == ""  # the engine's logs only with --verbose
    assert cli("--db", str(db), "list", "--format", "json").json()["total"] > 0
    assert cli("--db", str(db), "verify").code == 0


# ---- export-audit ----------------------------------------------------------------------------
def test_export_audit_filters(tmp_path: Path, db: Path, ledger: SimLedger) -> None:
    keys = [ready_sim(ledger, n) for n in range(2)]
    time.sleep(0.01)
    middle = datetime.now(UTC)
    time.sleep(0.01)
    result = ledger.pause(keys)
    ledger.confirm(result.operation_id, keys[0])
    base = ("--db", str(db), "export-audit")

    everything = cli(*base)
    assert everything.code == 0, everything.err
    records = everything.lines()
    assert len(records) == event_count(ledger)
    positions = [r["position"] for r in records]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    for record in records:
        assert {"position", "aggregate", "aggregate_id", "version", "event", "at", "data"} <= set(
            record
        )
        assert datetime.fromisoformat(record["at"]).tzinfo is not None
    package = next(r for r in records if r["aggregate"] == "Package" and r["event"] == "Created")
    assert isinstance(package["data"]["data_mb"], str)  # a Decimal, as a string

    mine = cli(*base, "--iccid", keys[0]).lines()
    history = ledger.history(keys[0])
    assert sorted((r["aggregate_id"], r["version"]) for r in mine) == sorted(
        (e.aggregate_id, e.version) for e in history
    )
    assert {r["aggregate"] for r in mine} >= {"Sim", "Package"}

    paused = cli(*base, "--type", "Paused", "--type", "PauseRequested").lines()
    assert sorted((r["event"], r["aggregate_id"]) for r in paused) == sorted(
        [("PauseRequested", k) for k in keys] + [("Paused", keys[0])]
    )

    later = cli(*base, "--since", middle.isoformat()).lines()
    earlier = cli(*base, "--until", middle.isoformat()).lines()
    assert later and earlier and len(later) + len(earlier) == len(records)
    assert all(datetime.fromisoformat(r["at"]) >= middle for r in later)
    assert all(datetime.fromisoformat(r["at"]) < middle for r in earlier)

    out = tmp_path / "audit.jsonl"
    written = cli(*base, "--iccid", keys[1], "--since", middle.isoformat(), "--output", str(out))
    assert written.out == ""
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines and {r["event"] for r in lines} == {"PauseRequested"}
    assert f"exported {len(lines)} event(s)" in written.err


# ---- PostgreSQL ------------------------------------------------------------------------------
@pytest.mark.postgres
def test_commands_on_postgresql(tmp_path: Path, postgres_env: dict[str, str]) -> None:
    ledger = SimLedger(env=postgres_env)
    try:
        key = ready_sim(ledger, 0)
        ledger.pause([key])
        delivery = tmp_path / "d.csv"
        delivery.write_text(f"iccid,operator,sim_type,esim\n{iccid(7)},Orange,prepaid,no\n")
        imported = cli("import", str(delivery), env=postgres_env)
        assert imported.code == 0, imported.err
        listed = cli("list", "--operator", "Orange", "--format", "json", env=postgres_env).json()
        assert [i["iccid"] for i in listed["items"]] == [iccid(7)]
        shown = cli("show", key, "--format", "json", env=postgres_env).json()
        assert shown["status"] == "active"
        audit = cli("export-audit", "--iccid", key, env=postgres_env).lines()
        assert [r["event"] for r in audit][-1] == "PauseRequested"
        assert len(audit) == len(ledger.history(key))
        assert cli("rebuild", "all", env=postgres_env).code == 0
        assert cli("verify", env=postgres_env).code == 0
        unknown = cli("history", iccid(98), env=postgres_env)
        assert unknown.code == 2
        assert_one_error_line(unknown, "R-SIM1")
        assert not (tmp_path / "simledger.db").exists()
    finally:
        ledger.close()


# ---- the progress bar (in process: it needs a terminal) --------------------------------------
class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_on_a_terminal() -> None:
    screen = _Terminal()
    with Progress("verify", 200, stream=screen) as bar:
        bar.update(50, force=True)
        bar.update(200, force=True)
    drawn = screen.getvalue()
    assert "50/200" in drawn and "200/200 100%" in drawn and drawn.endswith("\n")
    pipe = io.StringIO()
    with Progress("verify", 200, stream=pipe) as bar:
        bar.update(100, force=True)
    assert pipe.getvalue() == ""
