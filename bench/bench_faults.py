"""The fault and bad-input matrix of issue 14, against a throwaway PostgreSQL cluster and
SQLite, with the peak memory of ``import`` and ``verify``.

    python bench/bench_faults.py [--sims 1000000] [--seeds 3] [--examples 300]
    python bench/bench_faults.py --quick          # a smoke run, under a minute

1. **Inputs.** The domain-of-values driver of tests/application/test_values_domain.py
   (arbitrary Python values for every public ``SimLedger`` call: None, wrong types, huge
   integers, NaN, control characters, lone surrogates, 100 KB strings, mixed with plausible
   values), run as a plain loop of ``--examples`` batches on SQLite and on the cluster.
   Each call must succeed or raise ``SimledgerError`` with a rule; afterwards the SIM list
   (every sort), a rebuild and ``verify`` must work. Printed: calls, succeeded, refused,
   other exceptions (0 expected), views equal to a rebuild.
2. **Faults.** The fault tests (tests/runners: test_kill_matrix, test_kill_readers,
   test_process_faults, and the worker's, forwarder's and usage batch's kill tests) run
   ``--seeds`` times, seed by seed (``SIMLEDGER_FAULT_SEED``: where each kill lands), with
   the cluster as their PostgreSQL server (the restart tests start clusters of their own).
   Each fault test notes the writes acknowledged before its fault and found after it, and
   whether the views equalled their rebuild (tests/helpers.py ``fault_record``). Printed per
   process kind and fault: faults injected, acknowledged, found, views equal, tests passed.
3. **Memory.** Peak RSS (``getrusage(RUSAGE_CHILDREN).ru_maxrss`` in a small launcher
   process: the command and the children it waited for, as ``/usr/bin/time`` counts it)
   of the CLI's ``import`` of ``--sims`` rows into a fresh SQLite store and of ``verify``
   of that store (replay in a child process, views check range by range), against the
   issue's targets
   (import <= 300 MB, verify <= 1 GB at 1,000,000) as a ratio (<= 1 meets the target).

Exit 1 when an input raised anything but ``SimledgerError``, a fault test failed, a write
acknowledged was not found, views differed, or a peak missed its target.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
# The cluster and the input driver are the tests' own (one way to start a cluster, one
# driver of the domain of values): their folders go on the path, as pytest puts them.
sys.path[:0] = [str(TESTS), str(TESTS / "application")]

MB = 1024 * 1024
IMPORT_TARGET_MB = 300
VERIFY_TARGET_MB = 1024
FAULT_TESTS = [
    "tests/runners/test_kill_matrix.py",
    "tests/runners/test_kill_readers.py",
    "tests/runners/test_process_faults.py",
    "tests/runners/test_views_worker.py::test_worker_killed_mid_batch_resumes_without_loss"
    "_or_doubling",
    "tests/runners/test_forwarder.py::test_forwarder_killed_and_restarted_sends_nothing_twice"
    "_and_loses_nothing",
    "tests/application/test_usage_batch.py::test_a_process_killed_during_a_big_batch_leaves"
    "_all_or_nothing_of_it",
]


PYTEST = [sys.executable, "-P", "-m", "pytest", "-q", "-p", "no:cacheprovider"]


def header(*columns: str) -> None:
    print("\n| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def cluster() -> Iterator[Any]:
    from conftest import _throwaway_cluster

    with _throwaway_cluster("bench_faults") as info:
        yield info


def pg_store(info: Any) -> dict[str, str]:
    schema = f"b_{uuid.uuid4().hex[:12]}"
    with info.connect() as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return {**info.env(), "POSTGRES_SCHEMA": schema}


# ---- 1. inputs ----------------------------------------------------------------------------
def inputs(env: dict[str, str], examples: int) -> dict[str, Any]:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from test_values_domain import calls, seed

    from simledger import SimLedger, SimledgerError
    from simledger.projections.listing import SORTS

    ledger = SimLedger(env)
    fleet = seed(ledger)
    tally = {"calls": 0, "succeeded": 0, "refused": 0, "other": 0}
    others: list[str] = []

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(calls(fleet), min_size=1, max_size=4))
    def drive(batch: list[tuple[str, list[Any], dict[str, Any]]]) -> None:
        for method, args, kwargs in batch:
            tally["calls"] += 1
            try:
                getattr(ledger, method)(*args, **kwargs)
                tally["succeeded"] += 1
            except SimledgerError:
                tally["refused"] += 1
            except Exception as error:  # what the domain of values must never let out
                tally["other"] += 1
                others.append(f"{method}: {type(error).__name__}: {error}"[:200])

    drive()
    for sort in SORTS:
        ledger.sims(sort=sort, limit=1000)
    ledger.rebuild_views()
    equal = all(not rows for rows in ledger.verify_views().values())
    report = ledger.verify_store(parallel=False)
    ledger.close()
    return {**tally, "views_equal": equal, "verify_ok": report.ok, "examples": others[:5]}


# ---- 2. faults ----------------------------------------------------------------------------
def faults(
    info: Any, seeds: int, workdir: Path, tests: list[str]
) -> tuple[list[dict[str, Any]], int, int]:
    """The fault tests, once per seed: their records, tests passed, tests failed."""
    records: list[dict[str, Any]] = []
    passed = failed = 0
    for n in range(seeds):
        report, junit = workdir / f"faults{n}.jsonl", workdir / f"faults{n}.xml"
        env = {
            **os.environ,
            "POSTGRES_HOST": info.host,
            "POSTGRES_PORT": str(info.port),
            "POSTGRES_USER": info.user,
            "POSTGRES_DBNAME": info.dbname,
            "SIMLEDGER_FAULT_SEED": str(14 + n),
            "SIMLEDGER_FAULT_REPORT": str(report),
        }
        say(f"faults: seed {14 + n}")
        subprocess.run(
            [*PYTEST, f"--junitxml={junit}", *tests],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            check=False,
        )
        if report.exists():
            records += [json.loads(line) for line in report.read_text().splitlines()]
        if junit.exists():
            for case in ElementTree.parse(junit).getroot().iter("testcase"):
                outcome = {child.tag for child in case}
                if "skipped" in outcome:
                    continue
                if outcome & {"failure", "error"}:
                    failed += 1
                    print(f"FAILED (seed {14 + n}): {case.get('classname')}::{case.get('name')}")
                else:
                    passed += 1
    return records, passed, failed


def fault_table(records: list[dict[str, Any]]) -> list[tuple[str, str, int, int, int, str]]:
    rows: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        rows.setdefault((r["process"], r["fault"]), []).append(r)
    return [
        (
            process,
            fault,
            len(seen),
            sum(r["acknowledged"] for r in seen),
            sum(r["found"] for r in seen),
            "yes" if all(r["views_equal"] and r["whole"] for r in seen) else "NO",
        )
        for (process, fault), seen in sorted(rows.items())
    ]


# ---- 3. memory ----------------------------------------------------------------------------
LAUNCHER = """
import os, resource, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
_, status = os.waitpid(pid, 0)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, os.waitstatus_to_exitcode(status))
"""
"""Runs a command and prints its peak RSS (KB) and exit code. A small process of its own:
Linux keeps a process's peak across fork and exec, so a child forked from this bench
(hypothesis and the tests loaded) would report at least the bench's own size."""


def peak_mb(command: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Peak RSS in MB of ``command`` (and the children it waited for), seconds, exit code."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", LAUNCHER, *command],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        check=True,
    )
    peak_kb, code = done.stdout.split()[-2:]
    return int(peak_kb) / 1024, time.monotonic() - started, int(code)


def memory(sims: int, workdir: Path) -> list[tuple[str, float, float, float, int]]:
    from simledger.domain.iccid import make_iccid

    delivery, db = workdir / f"d{sims}.csv", workdir / "memory.db"
    with delivery.open("w") as out:
        out.write("iccid,operator,sim_type,esim\n")
        for n in range(sims):
            out.write(
                f"{make_iccid(f'8944{n:015d}')},Acme,prepaid,{'true' if n % 2 else 'false'}\n"
            )
    cli = [sys.executable, "-P", "-m", "simledger.runners.cli", "--db", str(db)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTGRES_", "PERSISTENCE_"))}
    rows = []
    for name, args, target in (
        (f"import {sims:,} rows", ["import", str(delivery)], IMPORT_TARGET_MB),
        (f"verify {sims:,} SIMs", ["verify"], VERIFY_TARGET_MB),
    ):
        say(f"memory: {name}")
        peak, seconds, code = peak_mb([*cli, *args], env)
        rows.append((name, peak, seconds, target, code))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sims", type=int, default=1_000_000, help="rows imported, then verified")
    parser.add_argument("--seeds", type=int, default=3, help="runs of the fault tests")
    parser.add_argument("--examples", type=int, default=300, help="batches of calls per store")
    parser.add_argument("--quick", action="store_true", help="10,000 SIMs, 1 seed, kills only")
    parser.add_argument("--skip", default="", help="comma-separated: inputs,faults,memory")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    tests = FAULT_TESTS
    if args.quick:
        args.sims, args.seeds, args.examples = min(args.sims, 10_000), 1, min(args.examples, 25)
        tests = ["tests/runners/test_kill_matrix.py"]  # the quick set: under a minute
    load = os.getloadavg()
    print(
        f"bench_faults: {time.strftime('%Y-%m-%d %H:%M')} UTC, {os.cpu_count()} CPUs, "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    bad = False
    with cluster() as info, tempfile.TemporaryDirectory(prefix="bench-faults-") as tmp:
        workdir = Path(tmp)
        if "inputs" not in skip:
            header(
                "store",
                "calls",
                "succeeded",
                "refused (rule)",
                "other exceptions",
                "views = rebuild",
                "verify",
            )
            for store, env in (
                (
                    "sqlite",
                    {
                        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                        "SQLITE_DBNAME": str(workdir / "inputs.db"),
                    },
                ),
                ("postgres", pg_store(info)),
            ):
                say(f"inputs: {store}")
                t = inputs(env, args.examples)
                bad |= t["other"] > 0 or not t["views_equal"] or not t["verify_ok"]
                print(
                    f"| {store} | {t['calls']} | {t['succeeded']} | {t['refused']} | "
                    f"{t['other']} | {'yes' if t['views_equal'] else 'NO'} | "
                    f"{'ok' if t['verify_ok'] else 'PROBLEMS'} |"
                )
                for example in t["examples"]:
                    print(f"  other: {example}")
        if "faults" not in skip:
            records, passed, failed = faults(info, args.seeds, workdir, tests)
            header(
                "process",
                "fault",
                "injected",
                "writes acknowledged",
                "found",
                "views = rebuild, all or nothing",
            )
            for process, fault, n, acked, found, equal in fault_table(records):
                bad |= found != acked or equal != "yes"
                print(f"| {process} | {fault} | {n} | {acked:,} | {found:,} | {equal} |")
            total = sum(1 for _ in records)
            print(
                f"\nfaults injected: {total} (noted), fault tests: {passed} passed, {failed} failed"
            )
            bad |= failed > 0
        if "memory" not in skip:
            header("run (SQLite, CLI)", "peak RSS", "time", "target", "ratio", "exit")
            for name, peak, seconds, target, code in memory(args.sims, workdir):
                scaled = "" if args.sims == 1_000_000 else " (target is for 1,000,000)"
                bad |= code != 0 or (args.sims >= 1_000_000 and peak > target)
                print(
                    f"| {name} | {peak:,.0f} MB | {seconds:,.1f} s | {target:,} MB{scaled} | "
                    f"{peak / target:.2f}x | {code} |"
                )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
