"""``simledger deliver`` as real processes on 127.0.0.1 (R-WH2, R-WH3), SQLite and PostgreSQL.

A receiver (tests/webhook_receiver.py) that answers 500 to every second request, answers
slowly, checks every signature, hangs on one accepted batch and is restarted; the deliverers
(two on PostgreSQL, sharing the subscriptions) are ``kill -9``'d while that batch hangs and
started again. Then: every event of each subscription arrived, in store order; the only
repeats are of a batch in flight at the kill (the hung one among them, always); company B's
subscription got none of A's events; a subscription whose receiver refuses its signature got
only 401s and moved nothing; a replay from a position sends from there again."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import clean_env
from http_serve import free_port

from simledger import SimLedger
from simledger.application.webhooks import WebhookRing
from simledger.domain.iccid import make_iccid

SECRET = "the-shared-secret-of-the-tests"
RECEIVER = Path(__file__).resolve().parents[1] / "webhook_receiver.py"
SETTINGS = {
    "SIMLEDGER_WEBHOOK_RETRY_BASE": "0.01",
    "SIMLEDGER_WEBHOOK_RETRY_CAP": "0.05",
    "SIMLEDGER_WEBHOOK_TIMEOUT": "5",
}


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


@contextlib.contextmanager
def receiver(port: int, out: Path, *extra: str) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        [sys.executable, str(RECEIVER), str(port), str(out), SECRET, *extra],
        env=clean_env(),
    )
    try:

        def up() -> bool:
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                return True
            return False

        wait_for(up, "the receiver")
        yield process
    finally:
        process.kill()
        process.wait()


def deliverer(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-P",
                "-m",
                "simledger.runners.deliver",
                "--batch",
                "20",
                "--interval",
                "0.05",
            ],
            env=clean_env({**env, **SETTINGS}),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def lines(out: Path) -> list[dict[str, Any]]:
    if not out.exists():
        return []
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


def test_every_event_in_order_across_kills_and_a_flaky_receiver(
    persistent_store_env: dict[str, str], tmp_path: Path
) -> None:
    env = persistent_store_env
    # Several deliverers on one PostgreSQL store share it, never one batch; one per SQLite.
    deliverers = 2 if "POSTGRES_DBNAME" in env else 1
    ledger = SimLedger(env=env)
    a = [make_iccid(f"8935{n:015d}") for n in range(20)]
    b = [make_iccid(f"8935{n:015d}") for n in range(20, 30)]
    ledger.receive_sims(a + b, operator="op", sim_type="prepaid")
    for iccid in a + b:
        ledger.complete_integration_check(iccid, ok=True)
        ledger.assign_to_company(iccid, "A" if iccid in a else "B")
    start = int(ledger.recorder.max_notification_id() or 0)
    port, out = free_port(), tmp_path / "received.jsonl"
    url = f"http://127.0.0.1:{port}"
    ring = WebhookRing(ledger)
    hooks = {
        "A": ring.create(url=f"{url}/hook/A", events="*", secret=SECRET, company="A"),
        "B": ring.create(url=f"{url}/hook/B", events="*", secret=SECRET, company="B"),
        "op": ring.create(url=f"{url}/hook/op", events=["NoteSet"], secret=SECRET, company=None),
    }
    bad = ring.create(url=f"{url}/bad/A", events="*", secret=SECRET, company="A")
    log = tmp_path / "deliver.log"
    workers: list[subprocess.Popen[bytes]] = []
    try:
        with receiver(port, out, "--fail-every", "2", "--delay", "0.02", "--stall", "3"):
            workers = [deliverer(env, log) for _ in range(deliverers)]
            for round_ in range(3):
                for iccid in a + b:
                    ledger.set_note(iccid, f"round {round_}")
                if round_ == 0:
                    wait_for(lambda: any(x["stalled"] for x in lines(out)), "the hung batch")
                    for worker in workers:  # one of them is in the middle of the hung batch
                        worker.send_signal(signal.SIGKILL)
                        worker.wait()
                    killed_at = len(lines(out))
                    workers = [deliverer(env, log) for _ in range(deliverers)]
        # The receiver is restarted (the deliverers retry meanwhile), without the hang.
        with receiver(port, out, "--fail-every", "2", "--delay", "0.02"):
            last = int(ledger.recorder.max_notification_id() or 0)

            def caught_up() -> bool:
                return all(ring.get(h.id).position == last for h in hooks.values())

            wait_for(caught_up, "every subscription to catch up")
            seen = lines(out)
            notes = [n for n in ledger.recorder.select_notifications(start + 1, 10_000)]
            expected_a = [n.id for n in notes if str(n.originator_id) in a]
            ring.replay(hooks["A"].id, expected_a[-3])
            wait_for(lambda: ring.get(hooks["A"].id).position == last, "the replay")
            wait_for(
                lambda: any(
                    x["path"] == "/hook/A"
                    and x["status"] == 200
                    and expected_a[-3] in x["positions"]
                    for x in lines(out)[len(seen) :]
                ),
                "the replayed batch",
            )
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                worker.kill()
        refused = ring.get(bad.id)
        ledger.close()

    expected = {
        "/hook/A": expected_a,
        "/hook/B": [n.id for n in notes if str(n.originator_id) in b],
        "/hook/op": [n.id for n in notes if n.topic.endswith("Sim.NoteSet")],
    }
    owners = {"/hook/A": set(a), "/hook/B": set(b)}
    for path, positions in expected.items():
        accepted = [x for x in seen if x["path"] == path and x["status"] == 200]
        received = [p for x in accepted for p in x["positions"]]
        assert list(dict.fromkeys(received)) == positions, path  # all, once, in order
        in_flight = [x for x in accepted if seen.index(x) < killed_at][-1:]
        repeats = {p for i, p in enumerate(received) if p in received[:i]}
        assert repeats <= {p for x in in_flight for p in x["positions"]}, path
        if path in owners:
            assert {i for x in accepted for i in x["aggregates"]} <= owners[path]
    hung = next(x for x in seen if x["stalled"])
    received_again = [x for x in seen[seen.index(hung) + 1 :] if x["status"] == 200]
    assert any(set(hung["positions"]) <= set(x["positions"]) for x in received_again)
    # The subscription whose receiver refuses its signature: 401s only, nothing moved.
    bad_lines = [x for x in seen if x["path"] == "/bad/A"]
    assert bad_lines and {x["status"] for x in bad_lines} == {401}
    assert refused.position == start and refused.status == "retrying"
