"""Import and verify in bounded memory (issue 14 item 14): the import writes its SIMs a chunk
at a time in ONE transaction, verify replays a range of aggregates at a time in id order;
both keep their contracts (all or nothing; every check, the same digest)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from helpers import COMPANY, MSISDN, event_count, iccids, make_package, ready_sim, received_sim

from simledger import CsvImportError, SimLedger
from simledger.application import audit, audit_stream, delivery_import
from simledger.domain.sim import Sim

HEADER = "iccid,operator,sim_type,esim\n"


@pytest.fixture
def ledger_env(store_env: dict[str, str]) -> dict[str, str]:
    return store_env  # the ledger on every store


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(delivery_import, "CHUNK", 3)


def delivery(rows: list[str]) -> io.StringIO:
    return io.StringIO(HEADER + "".join(row + "\n" for row in rows))


@pytest.mark.usefixtures("small_chunks")
def test_a_file_of_many_chunks_is_received_whole_and_checked_whole(ledger: SimLedger) -> None:
    keys = iccids(10)
    ledger.receive_sims([keys[7]], operator="3UK", sim_type="prepaid")
    before = event_count(ledger)
    rows = [f"{k},3UK,prepaid,{'true' if n % 2 else 'false'}" for n, k in enumerate(keys)]
    bad = [*rows[:5], f"{keys[1]},3UK,prepaid,false", *rows[5:], "x,3UK,prepaid,no"]
    with pytest.raises(CsvImportError) as refused:
        ledger.import_sims_csv(delivery(bad))
    # Every bad line of every chunk, in line order: a repeat, one already received, junk.
    assert list(refused.value.errors) == [7, 10, 13]
    assert "already on line 3" in refused.value.errors[7]
    assert "already received" in refused.value.errors[10]
    assert event_count(ledger) == before

    fresh = iccids(10, start=20)
    received = ledger.import_sims_csv(delivery([f"{k},3UK,prepaid,no" for k in fresh]))
    assert received == fresh
    assert event_count(ledger) == before + 10
    listed = {item.iccid for item in ledger.sims(operator="3UK", limit=100).items}
    assert set(fresh) <= listed  # the views hold every chunk
    assert ledger.verify_store().ok


@pytest.mark.usefixtures("small_chunks")
def test_a_failure_while_writing_a_later_chunk_records_nothing(
    ledger: SimLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[int] = []
    original = Sim.receive

    def failing(*args: Any, **kwargs: Any) -> Sim:
        made.append(1)
        if len(made) == 8:  # the third chunk: two were written already
            raise RuntimeError("disk full")
        return original(*args, **kwargs)

    monkeypatch.setattr(Sim, "receive", failing)
    before = event_count(ledger)
    with pytest.raises(RuntimeError):
        ledger.import_sims_csv(delivery([f"{k},3UK,prepaid,no" for k in iccids(10)]))
    assert event_count(ledger) == before  # one transaction: the first chunks are gone too
    assert ledger.sims(limit=100).total == 0


def test_verify_in_ranges_of_ids_equals_verify_in_log_order(
    persistent_store_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = SimLedger(env=persistent_store_env)
    try:
        own = ready_sim(ledger, 0, data_mb=500)
        ledger.record_usage(own, Decimal("30.5"))
        members = [received_sim(ledger, n, checked=True) for n in (1, 2, 3)]
        for member in members:
            ledger.assign_line(member, MSISDN)
            ledger.assign_to_company(member, COMPANY)
        ledger.create_shared_group("fleet", members, make_package(ledger, data_mb=100))
        for member in members:
            ledger.activate(member)
        ledger.record_usage(members[0], 25)
        for n in range(110):  # past the snapshot interval
            ledger.set_note(members[0], f"n{n}")
        ledger.receive_sims(iccids(5, 10), operator="3UK", sim_type="prepaid")
        monkeypatch.setattr(audit_stream, "IDS", 2)
        ranged = audit.replay_store(ledger)
        monkeypatch.setattr(audit_stream, "aggregates_in_order", lambda *a: None)
        in_log_order = audit.replay_store(ledger)
    finally:
        ledger.close()
    assert ranged.ok and in_log_order.ok
    assert ranged.snapshots_checked >= 1 and ranged.pools_checked >= 2
    for name in ("events", "aggregates", "chains_checked", "pools_checked", "digest"):
        assert getattr(ranged, name) == getattr(in_log_order, name), name
    assert ranged.snapshots_checked == in_log_order.snapshots_checked


PEAK = """
import json, resource, sys
from simledger import SimLedger
ledger = SimLedger(env=json.loads(sys.argv[2]))
with open(sys.argv[1], "rb") as f:
    ledger.import_sims_csv(f)
ledger.close()
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _import_peak_kb(tmp_path: Path, env: dict[str, str], rows: int, start: int) -> int:
    data = tmp_path / f"d{rows}.csv"
    data.write_text(HEADER + "".join(f"{k},3UK,prepaid,no\n" for k in iccids(rows, start)))
    done = subprocess.run(
        [sys.executable, "-P", "-c", PEAK, str(data), json.dumps(env)],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout.split()[-1])


def test_the_import_peak_does_not_grow_with_the_file(
    tmp_path: Path, persistent_store_env: dict[str, str]
) -> None:
    # Before, the peak grew ~9 KB a row (5,000 rows: ~+45 MB, 20,000: ~+180 MB); now a
    # chunk's objects at a time: four times the rows, a few MB more (the ICCIDs kept).
    small = _import_peak_kb(tmp_path, persistent_store_env, 5000, 0)
    big = _import_peak_kb(tmp_path, persistent_store_env, 20000, 5000)
    assert big - small < 30 * 1024, (small, big)


@pytest.mark.usefixtures("small_chunks")
def test_a_collision_in_a_later_chunk_records_nothing_and_is_reported(
    ledger: SimLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = iccids(10)
    ledger.receive_sims([keys[8]], operator="3UK", sim_type="prepaid")
    before = event_count(ledger)
    checks: list[int] = []
    original = delivery_import.Delivery.received

    def stale_once(self: delivery_import.Delivery, existing: Any) -> dict[int, str]:
        # The first check misses the SIM (as if another writer received it just after):
        # the write collides in the third chunk, and the import runs again.
        checks.append(1)
        return {} if len(checks) == 1 else original(self, existing)

    monkeypatch.setattr(delivery_import.Delivery, "received", stale_once)
    with pytest.raises(CsvImportError) as refused:
        ledger.import_sims_csv(delivery([f"{k},3UK,prepaid,no" for k in keys]))
    assert list(refused.value.errors) == [10]
    assert len(checks) == 2
    assert event_count(ledger) == before
    assert ledger.sims(limit=100).total == 1
