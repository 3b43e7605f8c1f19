"""The views check range by range of ICCIDs (issue 14 item 14: memory independent of the
fleet): with a range of a few SIMs, a check over many ranges still finds a changed, a
missing and an extra SIM row in any range, the counts they throw off, and nothing on
untouched views; and it reports what a check of all SIMs at once reports."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from helpers import iccids, ready_sim, store_cursor

from simledger import SimLedger
from simledger.projections.batch import Changes, Keys

NO_DIFFERENCES: dict[str, list[Any]] = {"sims": [], "pending_activity": [], "shared_groups": []}
RANGE = 4


def ranged(ledger: SimLedger, size: int = RANGE) -> list[int]:
    """Check ranges of ``size`` SIMs from now on; the list fills with each check's bound count."""
    runner = ledger.views
    runner.verify_range = size
    counted: list[int] = []
    bounds = runner.store.sim_bounds

    def counting(*args: Any) -> list[str] | None:
        found = bounds(*args)
        counted.append(len(found or []))
        return found

    runner.store.sim_bounds = counting  # type: ignore[method-assign, assignment]
    return counted


def fleet(ledger: SimLedger) -> list[str]:
    keys = ledger.receive_sims(iccids(21, 100), operator="3UK", sim_type="paygo")
    active = [ready_sim(ledger, n) for n in range(3)]  # a package each: rows by package copy
    ledger.pause(active[:2])  # a bulk operation: the pending_activity view
    for n, key in enumerate(keys[::3]):
        ledger.set_labels(key, ["eu"] if n % 2 else ["fleet"])
    return sorted(keys + active)


def delete_row(env: dict[str, str], key: str) -> None:
    with store_cursor(env) as cur:
        if env["PERSISTENCE_MODULE"] == "eventsourcing.postgres":
            cur.execute(f'DELETE FROM "{env["POSTGRES_SCHEMA"]}".view_sims WHERE iccid = %s', [key])
        else:
            cur.execute("DELETE FROM view_sims WHERE iccid = ?", [key])


def test_a_check_over_many_ranges_finds_each_changed_missing_and_extra_row(
    persistent_store_env: dict[str, str],
) -> None:
    ledger = SimLedger(persistent_store_env)
    keys = fleet(ledger)
    counted = ranged(ledger)
    assert ledger.verify_views() == NO_DIFFERENCES
    assert counted[-1] >= len(keys) // RANGE - 1, "many ranges"

    changed, missing = keys[9], keys[17]  # two different middle ranges
    extra = "89449999999999999990"  # above every ICCID: the last, open range
    store = ledger.views.store
    with store.exclusive() as tx:
        row = tx.load(Keys(iccids={changed})).sims[changed]
        tx.write(
            Changes(
                sims={changed: replace(row, note="tampered"), extra: replace(row, iccid=extra)},
                counts={row.counted_as(): 1},  # the extra row counted too
            ),
            tx.position,
        )
    delete_row(persistent_store_env, missing)

    report = ledger.verify_views()
    rows = {d.key: d for d in report["sims"] if "iccid" in (d.live or d.rebuilt or {})}
    assert sorted(rows) == sorted([changed, missing, extra])
    live, rebuilt = rows[changed].live or {}, rows[changed].rebuilt or {}
    assert (live.get("note"), rebuilt.get("note", "absent")) == ("tampered", None)
    assert rows[missing].live is None and rows[missing].rebuilt is not None
    assert rows[extra].rebuilt is None and rows[extra].live is not None
    [count] = [d for d in report["sims"] if d.key.startswith("count:")]
    have, want = (count.live or {}).get("n"), (count.rebuilt or {}).get("n")
    assert isinstance(have, int) and isinstance(want, int)
    assert have == want + 1, "summed over the ranges"
    assert report["pending_activity"] == report["shared_groups"] == []

    ledger.views.verify_range = 10**6  # one range: the same findings
    whole = ledger.verify_views()
    assert sorted(d.key for d in whole["sims"]) == sorted(d.key for d in report["sims"])
    ledger.rebuild_views()
    ledger.views.verify_range = RANGE
    assert ledger.verify_views() == NO_DIFFERENCES
    ledger.close()


def test_a_range_check_sums_the_answers_to_a_bulk_operation_over_its_ranges(
    persistent_store_env: dict[str, str],
) -> None:
    """A pause's SIMs fall in several ranges: each range counts its own SIMs' answers."""
    ledger = SimLedger(persistent_store_env)
    active = [ready_sim(ledger, n) for n in range(9)]
    assert ledger.pending_activity() == []
    operation = ledger.pause(active).operation_id
    for key in active[:5]:
        ledger.confirm(operation, key)
    ranged(ledger, size=2)
    assert ledger.verify_views() == NO_DIFFERENCES
    [pending] = ledger.pending_activity()
    assert (pending.confirmed, pending.requested) == (5, 9)
    ledger.close()
