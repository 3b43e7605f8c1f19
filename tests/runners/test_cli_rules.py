"""The rule, price, refill and charge commands of the command line, in process, on a SQLite
file: a cap from the command line pauses a SIM at the record that crosses it, and the
month's charges come out as CSV whose total is the sum of its lines."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from pathlib import Path

import pytest
from helpers import COMPANY, OPERATOR, T0, new_ledger, ready_sim

from simledger import SimStatus, SimType
from simledger.runners.cli import main


def test_cli_rules_prices_and_charges(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "rules.db")
    env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": db}
    ledger, _ = new_ledger(env)
    key = ready_sim(ledger, 1, sim_type=SimType.PAYGO)
    ledger.close()
    start = T0.isoformat()
    assert (
        main(
            [
                "--db",
                db,
                "prices",
                OPERATOR,
                "--default",
                "0.5",
                "--country",
                "FR=2",
                "--from",
                start,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "--db",
                db,
                "rules",
                "attach",
                "cap",
                "--kind",
                "data_cap",
                "--limit",
                "10",
                "--company",
                COMPANY,
            ]
        )
        == 0
    )
    assert "attached to 1 SIM(s)" in capsys.readouterr().out
    assert main(["--db", db, "rules", "detach", "nope", "--iccid", key]) == 2
    assert "R-RU2" in capsys.readouterr().err
    ledger, _ = new_ledger(env)
    ledger.record_usage(key, 4, at=T0, country="FR")
    ledger.record_usage(key, 7, at=T0.replace(hour=10))
    assert ledger.sim(key).status is SimStatus.SUSPENDED
    ledger.close()
    assert main(["--db", db, "charges", COMPANY, "2024-01"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[-1][0] == "total" and Decimal(rows[-1][-1]) == Decimal("11.5")
    assert sum(Decimal(r[-1]) for r in rows[1:-1]) == Decimal("11.5")
