"""Webhook delivery (issue 16): events/s delivered to a local receiver in batches of 500, and
the lag from commit to delivery while writers run, on PostgreSQL, in one run.

    python bench/bench_delivery.py [--backlog 50000] [--seconds 10] [--rate 5000] [--batch 500]

Setup (untimed): a fresh schema; a receiver (a threaded ``http.server`` in this process,
checking every signature) on a free port of 127.0.0.1; one operator subscription (``*``).

* ``backlog``: ``--backlog`` events (SIMs received in bulk) are in the store before a
  ``simledger deliver --batch N`` process starts; timed from its start to the last event
  received: events/s (the process's start-up included).
* ``reference``: the same batches (the bodies the deliverer sent, signed) POSTed by a plain
  httpx loop to the same receiver: what the receiver and HTTP alone allow.
* ``lag``: the bench's own thread records ``--rate`` events/s (``receive_sims`` of 500 SIMs at a
  time) for ``--seconds`` while the deliverer runs; each event's lag is its arrival time at
  the receiver minus its ``at`` (the event's time, just before its commit): p50, p99.

Targets (issue 16): >= 5,000 events/s and p99 lag < 2 s. The schema is dropped at the end
(``--keep`` keeps it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import orjson
from _common import create_schema, keep_or_drop, pg_env

from simledger.adapters.webhook_http import SIGNATURE_HEADER, sign, verify
from simledger.application.ledger import SimLedger
from simledger.application.webhooks import WebhookRing
from simledger.domain.iccid import make_iccid

SECRET = "bench-delivery-secret-0123456789"
TARGET_RATE = 5000.0
TARGET_P99 = 2.0


class Received:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events = 0
        self.bodies: list[bytes] = []
        self.lags: list[float] = []
        self.keep_bodies = True
        self.bad = 0
        self.last_at = 0.0
        self.first_at = 0.0


def receiver(received: Received) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            now = time.time()
            if not verify(SECRET, self.headers.get(SIGNATURE_HEADER), body):
                with received.lock:
                    received.bad += 1
                self.send_response(401)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            events = orjson.loads(body)["events"]
            lags = [now - datetime.fromisoformat(e["at"]).timestamp() for e in events]
            with received.lock:
                received.events += len(events)
                received.lags += lags
                received.last_at = now
                received.first_at = received.first_at or now
                if received.keep_bodies:
                    received.bodies.append(body)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/hook"


def iccids(start: int, n: int) -> list[str]:
    return [make_iccid(f"8937{i:015d}") for i in range(start, start + n)]


def deliverer(env: dict[str, str], batch: int) -> subprocess.Popen[bytes]:
    root = Path(__file__).resolve().parents[1]
    return subprocess.Popen(
        [
            sys.executable,
            "-P",
            "-m",
            "simledger.runners.deliver",
            "--batch",
            str(batch),
            "--interval",
            "0.05",
        ],
        env={**os.environ, **env},
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_for(received: Received, count: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while received.events < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {received.events} of {count} events arrived in {timeout} s")
        time.sleep(0.005)
    return received.last_at


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backlog", type=int, default=50_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=5000.0)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    schema = f"bench_delivery_{uuid.uuid4().hex[:8]}"
    create_schema(schema)
    env = pg_env(schema)
    ledger = SimLedger(env=env)
    received = Received()
    server, url = receiver(received)
    process: subprocess.Popen[bytes] | None = None
    try:
        for start in range(0, args.backlog, 10_000):
            ledger.receive_sims(
                iccids(start, min(10_000, args.backlog - start)), operator="o", sim_type="prepaid"
            )
        WebhookRing(ledger).create(
            url=url, events="*", secret=SECRET, company=None, from_position=0
        )

        # ---- backlog ------------------------------------------------------------------------
        started = time.time()
        process = deliverer(env, args.batch)
        done = wait_for(received, args.backlog, 300)
        rate = args.backlog / (done - started)
        steady = (args.backlog - args.batch) / max(done - received.first_at, 1e-9)
        print(
            f"backlog   {args.backlog} events in {done - started:.2f} s from the process's "
            f"start: {rate:,.0f} events/s (target {TARGET_RATE:,.0f}: x{rate / TARGET_RATE:.2f});"
            f" from its first batch on: {steady:,.0f} events/s (x{steady / TARGET_RATE:.2f});"
            f" {received.bad} bad signatures"
        )

        # ---- reference: the same bodies, a plain httpx loop ---------------------------------
        bodies, received.keep_bodies = list(received.bodies), False
        received.events = 0
        with httpx.Client() as client:
            t0 = time.time()
            for body in bodies:
                client.post(
                    url,
                    content=body,
                    headers={
                        "Content-Type": "application/json",
                        SIGNATURE_HEADER: sign(SECRET, int(time.time()), body),
                    },
                )
            plain = args.backlog / (time.time() - t0)
        print(
            f"reference {len(bodies)} POSTs of the same batches: {plain:,.0f} events/s "
            f"(deliver / reference: {rate / plain:.2f})"
        )

        # ---- lag while a writer runs ----------------------------------------------------------
        received.events, received.lags = 0, []
        per_call = 500
        interval = per_call / args.rate
        written = 0
        t0 = time.monotonic()
        next_at = t0
        while time.monotonic() - t0 < args.seconds:
            ledger.receive_sims(
                iccids(args.backlog + written, per_call), operator="o", sim_type="prepaid"
            )
            written += per_call
            next_at += interval
            pause = next_at - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        offered = written / (time.monotonic() - t0)
        wait_for(received, written, 120)
        lags = received.lags
        p50, p99 = statistics.median(lags), percentile(lags, 0.99)
        print(
            f"lag       {written} events written at {offered:,.0f}/s: p50 {p50 * 1000:.0f} ms, "
            f"p99 {p99 * 1000:.0f} ms, max {max(lags) * 1000:.0f} ms "
            f"(target p99 < {TARGET_P99:.0f} s: x{p99 / TARGET_P99:.2f} of it)"
        )
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=30)
        server.shutdown()
        ledger.close()
        keep_or_drop(schema, args.keep)


if __name__ == "__main__":
    main()
