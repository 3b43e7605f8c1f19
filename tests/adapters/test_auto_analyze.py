"""The PostgreSQL view store refreshes the planner's statistics of the SIM list itself once
enough SIM rows were written by saves (adapters/views/auto_analyze.py): a server whose
autovacuum is off (this machine's) or a minute away would otherwise plan a filtered page as
a sort of every match."""

from __future__ import annotations

import sqlite3

from helpers import iccids, new_ledger, pg_connect, wait_for

from simledger.adapters.views.auto_analyze import BASE_ROWS, AutoAnalyze


def _analyzed_rows(env: dict[str, str]) -> float | None:
    """The SIM list's rows as the planner last counted them; None if never analyzed."""
    if env["PERSISTENCE_MODULE"] == "eventsourcing.sqlite":
        with sqlite3.connect(env["SQLITE_DBNAME"]) as lite:
            try:
                found = lite.execute(
                    "SELECT stat FROM sqlite_stat1 WHERE tbl = 'view_sims' LIMIT 1"
                ).fetchone()
            except sqlite3.OperationalError:  # no sqlite_stat1: nothing analyzed yet
                return None
        return float(found[0].split()[0]) if found else None
    with pg_connect(env) as conn:
        row = conn.execute(
            "SELECT s.last_analyze, c.reltuples FROM pg_stat_user_tables s "
            "JOIN pg_class c ON c.oid = s.relid WHERE s.schemaname = %s AND s.relname = %s",
            (env["POSTGRES_SCHEMA"], "view_sims"),
        ).fetchone()
    assert row is not None
    return None if row[0] is None else float(row[1])


def test_saves_that_write_enough_sims_get_the_sim_list_analyzed(
    persistent_store_env: dict[str, str],
) -> None:
    env = persistent_store_env
    ledger, _ = new_ledger(env)
    try:
        ledger.receive_sims(iccids(BASE_ROWS - 10), operator="Orange", sim_type="subscription")
        assert _analyzed_rows(env) is None  # not due yet: 50 rows + 10 %
        ledger.receive_sims(iccids(400, 1000), operator="Orange", sim_type="subscription")
        wait_for(lambda: (_analyzed_rows(env) or 0) >= 400, 10, "ANALYZE of view_sims")
        # The page's plan now walks an index and stops: its answer is the in-memory one.
        page = ledger.sims(operator="Orange", sort="iccid", descending=True, limit=5)
        assert [s.iccid for s in page.items] == sorted(iccids(400, 1000), reverse=True)[:5]
        assert page.total == BASE_ROWS - 10 + 400
    finally:
        ledger.close()


def test_an_analyze_runs_once_due_and_one_at_a_time() -> None:
    runs: list[int] = []

    def analyze() -> float:
        runs.append(1)
        return 1000.0

    auto = AutoAnalyze(analyze, rows=1000.0)
    auto.wrote(BASE_ROWS + 99)  # 50 + 10 % of 1,000 = 150: one short
    auto.settle()
    auto.wait()
    assert runs == []
    auto.wrote(1)
    auto.settle()
    auto.wait()
    assert runs == [1]
    auto.settle()  # the count started again
    auto.wait()
    assert runs == [1]


def test_a_failing_analyze_is_logged_and_tried_again_later() -> None:
    calls: list[int] = []

    def analyze() -> float:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("schema dropped")
        return 10.0

    auto = AutoAnalyze(analyze, rows=0.0)
    auto.wrote(BASE_ROWS)
    auto.settle()
    auto.wait()
    auto.wrote(BASE_ROWS)
    auto.settle()
    auto.wait()
    assert len(calls) == 2
