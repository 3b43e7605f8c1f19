"""``simledger usage FILE``: usage records from CSV or JSON Lines, each record_id counted once
(R-US1), the file read once in chunks. Driven as a user drives it (a subprocess on a real
SQLite file, and once on PostgreSQL); the chunking itself in process."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from helpers import T0, clean_env, event_count, iccid, ready_sim

from simledger import SimLedger, UsageResult
from simledger.adapters.usage_format import format_of
from simledger.application.usage_file import UsageFileRun
from simledger.domain.errors import CsvImportError


def cli(*args: str, env: dict[str, str] | None = None, stdin: bytes | None = None) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "simledger.runners.cli", *args],
        input=stdin,
        capture_output=True,
        env=clean_env(env),
        timeout=120,
    )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "fleet.db"


@pytest.fixture
def ledger_env(db: Path) -> dict[str, str]:
    return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(db)}


def when(minute: int) -> str:
    return (T0 + timedelta(minutes=minute)).isoformat()


def csv_text(
    rows: Sequence[Sequence[object]], header: str = "record_id,iccid,mb,at,country"
) -> str:
    return header + "\n" + "".join(",".join(str(c) for c in row) + "\n" for row in rows)


def test_csv_applies_good_rows_lists_bad_ones_exit_1_and_a_second_run_finds_duplicates(
    tmp_path: Path, db: Path, ledger: SimLedger
) -> None:
    key = ready_sim(ledger, 1, data_mb=1000)
    path = tmp_path / "usage.csv"
    path.write_text(
        csv_text(
            [
                ("u1", key, 10, when(0), "FR"),
                ("u2", key, "2.5", when(1), ""),
                ("u3", "12345", 1, when(2), ""),  # line 4: not an ICCID
                ("", key, 1, when(3), ""),  # line 5: no record_id
                ("u5", key, 1),  # line 6: three fields
                ("u1", key, 10, when(0), "FR"),  # the same record again
            ]
        )
    )
    first = cli("--db", str(db), "usage", str(path))
    assert first.returncode == 1, first.stderr
    out = first.stdout.decode().splitlines()
    assert out[0] == "applied 2, duplicates 1, rejected 3"
    rows = {line.split("  ")[0]: line.split("  ", 1)[1].strip() for line in out[3:]}
    assert out[1].split() == ["record_id", "reason"]
    assert rows["u3"].startswith("R-SIM1: invalid ICCID '12345'")
    assert rows["line 5"].startswith("R-US1: ")
    assert rows["line 6"].startswith("R-IO1: expected 5 fields")
    assert ledger.sim(key).data_left_mb == Decimal("987.5")

    again = cli("--db", str(db), "usage", str(path))
    assert again.returncode == 1
    assert again.stdout.decode().splitlines()[0] == "applied 0, duplicates 3, rejected 3"
    assert ledger.sim(key).data_left_mb == Decimal("987.5")

    good = tmp_path / "good.csv"
    good.write_text(
        csv_text([("u1", key, 10, when(0)), ("u9", key, 1, when(9))], "record_id,iccid,mb,at")
    )
    done = cli("--db", str(db), "usage", str(good))
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode() == "applied 1, duplicates 1, rejected 0\n"
    assert done.stderr == b""


def test_json_lines_by_extension_or_from_stdin_with_format(
    tmp_path: Path, db: Path, ledger: SimLedger
) -> None:
    key = ready_sim(ledger, 1, data_mb=1000)
    lines = [
        {"record_id": "j1", "iccid": key, "mb": 4, "at": when(0)},
        {"record_id": "j2", "iccid": key, "mb": 0.5, "at": when(1), "country": "DE"},
    ]
    path = tmp_path / "usage.ndjson"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines) + "\n[1, 2]\n")
    run = cli("--db", str(db), "usage", str(path))
    assert run.returncode == 1
    out = run.stdout.decode().splitlines()
    assert out[0] == "applied 2, duplicates 0, rejected 1"
    assert out[-1].startswith("line 4") and "R-IO1: a record is a JSON object" in out[-1]

    piped = "".join(
        json.dumps({**line, "record_id": "p" + str(line["record_id"])}) + "\n" for line in lines
    )
    run = cli("--db", str(db), "usage", "-", "--format", "jsonl", stdin=piped.encode())
    assert run.returncode == 0, run.stderr
    assert run.stdout.decode() == "applied 2, duplicates 0, rejected 0\n"
    assert ledger.sim(key).data_left_mb == Decimal(991)


def test_a_bad_header_or_bytes_that_are_not_utf8_are_r_io1_and_exit_2(
    tmp_path: Path, db: Path, ledger: SimLedger
) -> None:
    key = ready_sim(ledger, 1)
    before = event_count(ledger)
    header = cli("--db", str(db), "usage", "-", stdin=f"id,iccid,mb\nx,{key},1\n".encode())
    assert header.returncode == 2
    err = header.stderr.decode().splitlines()
    assert err[0].startswith("error: R-IO1: line 1: expected the header record_id,iccid,mb,at")
    assert "missing column(s) record_id, at" in err[0] and "unknown column(s) 'id'" in err[0]
    latin1 = f"record_id,iccid,mb,at\nr1,{key},1,{when(0)}\nr\xe9,{key},1,{when(1)}\n"
    bad = cli("--db", str(db), "usage", "-", stdin=latin1.encode("latin-1"))
    assert bad.returncode == 2
    assert bad.stderr.decode().splitlines()[0] == (
        "error: R-IO1: line 3: not UTF-8 text: byte 0xE9 at character 2; save the file as UTF-8"
    )
    assert event_count(ledger) == before  # both within the first chunk: nothing sent


def test_usage_on_postgresql(tmp_path: Path, postgres_env: dict[str, str]) -> None:
    ledger = SimLedger(env=postgres_env)
    try:
        key = ready_sim(ledger, 0, data_mb=100)
        path = tmp_path / "usage.csv"
        path.write_text(csv_text([(f"g{n}", key, 30, when(n), "") for n in range(4)]))
        assert cli("usage", str(path), env=postgres_env).returncode == 0
        again = cli("usage", str(path), env=postgres_env)
        assert again.stdout.decode() == "applied 0, duplicates 4, rejected 0\n"
        view = ledger.sim(key)
        assert (view.status.value, view.system_cause) == ("suspended", "depleted")
        assert view.data_left_mb == Decimal(0)
    finally:
        ledger.close()


# ---- the reading, in process -------------------------------------------------------------------
class Recorder:
    """A ``record_usage_batch`` stand-in that notes each batch and what was read by then."""

    def __init__(self, lines_read: list[int]) -> None:
        self.lines_read = lines_read
        self.batches: list[tuple[int, int]] = []

    def __call__(self, records: Sequence[Mapping[str, Any]]) -> UsageResult:
        self.batches.append((len(records), self.lines_read[0]))
        missing = {
            f"#{n}": "R-US1: no record_id" for n, r in enumerate(records, 1) if not r["record_id"]
        }
        return UsageResult(applied=len(records) - len(missing), duplicates=0, rejected=missing)


def counting(lines: Sequence[str], read: list[int]) -> Iterator[str]:
    for line in lines:
        read[0] += 1
        yield line


def test_a_file_is_read_once_in_chunks_each_one_batch() -> None:
    read = [0]
    body = [f"r{n},{iccid(1)},1,{when(n)}\n" for n in range(10)]
    body[6] = f",{iccid(1)},1,{when(6)}\n"  # line 8: no record_id
    batch = Recorder(read)
    run = UsageFileRun()
    seen: list[int] = []
    run.feed(
        batch,
        counting(["record_id,iccid,mb,at\n", *body], read),
        "csv",
        chunk=4,
        on_chunk=seen.append,
    )
    # each batch was sent once its chunk was read, before the rest of the file
    assert batch.batches == [(4, 5), (4, 9), (2, 11)]
    assert seen == [4, 8, 10]
    assert (run.applied, run.duplicates, run.rejected) == (9, 0, {"line 8": "R-US1: no record_id"})


def test_a_problem_with_the_file_stops_the_reading_after_the_chunks_before_it() -> None:
    read = [0]
    batch = Recorder(read)
    lines = [
        f'{{"record_id": "r{n}", "iccid": "{iccid(1)}", "mb": 1, "at": "{when(n)}"}}\n'
        for n in range(5)
    ]
    data = [line.encode() for line in lines] + [b'{"record_id": "\xff"}\n']
    run = UsageFileRun()
    with pytest.raises(CsvImportError) as refused:
        run.feed(batch, iter(data), "jsonl", chunk=2)  # type: ignore[arg-type]
    assert refused.value.errors == {
        6: "not UTF-8 text: byte 0xFF at byte 16; save the file as UTF-8"
    }
    assert (run.applied, len(batch.batches)) == (4, 2)


@pytest.mark.parametrize(
    ("file", "given", "form"),
    [
        ("a.csv", None, "csv"),
        ("a.JSONL", None, "jsonl"),
        ("a.ndjson", None, "jsonl"),
        ("-", None, "csv"),
        ("a.txt", "jsonl", "jsonl"),
    ],
)
def test_the_format_comes_from_the_option_or_the_extension(
    file: str, given: str | None, form: str
) -> None:
    assert format_of(file, given) == form
