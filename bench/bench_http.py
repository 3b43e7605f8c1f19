"""What the HTTP layer costs (issue 15): the same calls over HTTP and in-process, on
PostgreSQL, in one run.

    python bench/bench_http.py [--sims 20000] [--stock 980000] [--seconds 10] [--clients 4]
                               [--rate 0] [--keep] [--reuse SCHEMA]

Setup (untimed): ``--sims`` active SIMs (``bench/_service_setup.py``) and ``--stock`` SIMs
received and in stock (``receive_sims``; the default fleet is 1,000,000, 2 % of it active,
as a platform's is mostly stock) in a fresh schema, their views folded, one operator key,
then a ``simledger serve`` process on a free port of 127.0.0.1 (``SIMLEDGER_HTTP_RATE=0``:
no per-key limit). Phases, each ``--seconds`` long:

* ``list``: ``GET /v1/sims`` with ``status=active&operator=Orange&sort=<--sort>&
  descending=true&limit=100``, following ``next_cursor`` for up to 5 pages,
  then again from the first;
* ``command``: ``POST /v1/sims/{iccid}/note`` on SIMs taken in turn (it answers the SIM);
* ``floor``: ``GET /v1/floor`` of a bare FastAPI app on uvicorn (``_bare_app.py``, the same
  server settings) that answers a fixed body: the stack's own cost per request, the floor
  under "the HTTP layer's cost" of the two phases above (its in-process side is nothing);
* ``raw``: the same answer from a bare ASGI callable on uvicorn, no FastAPI: how much of the
  floor is the server, the client and loopback, and how much the framework.

Each phase runs over HTTP from ``--clients`` threads (one ``httpx.Client`` each), then the
same calls in-process on a ledger of this process from as many threads taking turns on it
(as the service's worker threads do). ``--rate`` bounds the load (requests per second over
all clients, each client keeping its own schedule; 0: as fast as answers come). Printed per
phase and side: requests/s, p50, p99, errors; then the HTTP layer's cost: p50 over HTTP
minus p50 in-process, and their ratio. The schema is dropped at the end (``--keep`` keeps it).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from _common import create_schema, keep_or_drop, pg_env
from _service_setup import build_engine, iccids

from simledger.application.keys import SCOPES
from simledger.application.ledger import SimLedger

BARE_APP = Path(__file__).with_name("_bare_app.py")
PAGES = 5
"""Pages followed by one walk of the list before it starts again."""
LIST_QUERY = {"status": "active", "operator": "Orange", "descending": "true", "limit": "100"}


@dataclass
class Figures:
    times: list[float] = field(default_factory=list)
    """Seconds per answered call."""
    errors: int = 0
    seconds: float = 0.0

    def add(self, other: Figures) -> None:
        self.times += other.times
        self.errors += other.errors

    def line(self, name: str) -> str:
        ordered = sorted(self.times) or [0.0]
        p50 = ordered[len(ordered) // 2] * 1000
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
        rate = len(self.times) / max(self.seconds, 1e-9)
        return (
            f"  {name:<12} {rate:9,.0f} req/s   p50 {p50:7.2f} ms   p99 {p99:7.2f} ms   "
            f"errors {self.errors}   ({len(self.times):,} calls)"
        )

    def p50(self) -> float:
        ordered = sorted(self.times) or [0.0]
        return ordered[len(ordered) // 2] * 1000


# ---- the calls: (HTTP, in-process), each a closure over its own walk --------------------------
Call = Callable[[], None]


def list_calls(ledger: SimLedger, sort: str) -> Callable[[httpx.Client | None], Call]:
    """A walk of the list for one client: over HTTP with a client, else on ``ledger``."""

    def make(client: httpx.Client | None) -> Call:
        cursor: list[str | None] = [None]
        pages = [0]

        def call() -> None:
            if client is not None:
                params = dict(LIST_QUERY, sort=sort, **({"cursor": cursor[0]} if cursor[0] else {}))
                answer = client.get("/v1/sims", params=params)
                answer.raise_for_status()
                following = answer.json()["next_cursor"]
            else:
                page = ledger.sims(
                    status="active",
                    operator="Orange",
                    sort=sort,
                    descending=True,
                    limit=100,
                    cursor=cursor[0],
                )
                following = page.next_cursor
            pages[0] += 1
            cursor[0] = following if following and pages[0] % PAGES else None

        return call

    return make


def command_calls(ledger: SimLedger, iccids: list[str]) -> Callable[[httpx.Client | None], Call]:
    """``set_note`` then the SIM (what the route answers), on SIMs in turn per client."""
    counter = iter(range(10**12))
    lock = threading.Lock()

    def make(client: httpx.Client | None) -> Call:
        def call() -> None:
            with lock:
                n = next(counter)
            iccid, note = iccids[n % len(iccids)], f"bench {n}"
            if client is not None:
                client.post(f"/v1/sims/{iccid}/note", json={"note": note}).raise_for_status()
            else:
                ledger.set_note(iccid, note)
                ledger.sim(iccid)

        return call

    return make


def receive_stock(ledger: SimLedger, count: int) -> None:
    """``count`` SIMs received (``receive_sims``, 10,000 a call): a fleet is mostly stock."""
    keys, done, start = iccids(44, count), 0, time.perf_counter()
    for at in range(0, count, 10_000):
        done += len(
            ledger.receive_sims(keys[at : at + 10_000], operator="Orange", sim_type="subscription")
        )
        rate = done / (time.perf_counter() - start)
        sys.stderr.write(f"\r  SIMs in stock: {done:,}/{count:,} ({rate:,.0f}/s)   ")
    sys.stderr.write("\n")


def floor_calls() -> Callable[[httpx.Client | None], Call]:
    """A request to the bare app over HTTP; nothing in-process."""

    def make(client: httpx.Client | None) -> Call:
        def call() -> None:
            if client is not None:
                client.get("/v1/floor", params={"limit": "100"}).raise_for_status()

        return call

    return make


# ---- the load -----------------------------------------------------------------------------------
def drive(calls: list[Call], seconds: float, rate: float) -> Figures:
    """Every call of ``calls`` on a thread of its own for ``seconds``; at ``rate`` requests per
    second over all of them when ``rate`` > 0."""
    results = [Figures() for _ in calls]
    interval = len(calls) / rate if rate > 0 else 0.0
    start = time.perf_counter()
    stop = start + seconds

    def run(call: Call, figures: Figures, offset: float) -> None:
        due = start + offset
        while True:
            now = time.perf_counter()
            if now >= stop:
                return
            if interval and due > now:
                time.sleep(due - now)
            began = time.perf_counter()
            try:
                call()
            except Exception:
                figures.errors += 1
            else:
                figures.times.append(time.perf_counter() - began)
            due += interval

    threads = [
        threading.Thread(target=run, args=(call, figures, k * interval / max(len(calls), 1)))
        for k, (call, figures) in enumerate(zip(calls, results, strict=True))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = Figures(seconds=time.perf_counter() - start)
    for figures in results:
        total.add(figures)
    return total


def over_http_phase(
    url: str,
    headers: dict[str, str],
    make: Callable[[httpx.Client | None], Call],
    args: argparse.Namespace,
) -> Figures:
    clients = [httpx.Client(base_url=url, headers=headers, timeout=30) for _ in range(args.clients)]
    try:
        for client in clients:  # connections open, the server's caches warm
            for _ in range(5):
                make(client)()
        return drive([make(c) for c in clients], args.seconds, args.rate)
    finally:
        for client in clients:
            client.close()


def locked(ledger_lock: threading.Lock, call: Call) -> Call:
    def run() -> None:
        with ledger_lock:
            call()

    return run


# ---- the server ---------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def served(
    env: dict[str, str], bare: bool = False, workers: int = 1, raw: bool = False
) -> Iterator[str]:
    """``simledger serve`` on ``env`` (or, ``bare``, the bare app; ``raw``: its ASGI app
    without FastAPI) on a free port."""
    port = free_port()
    serve = ["-m", "simledger.runners.cli", "serve", "--port", str(port), "--workers", str(workers)]
    process = subprocess.Popen(
        [
            sys.executable,
            "-P",
            *([str(BARE_APP), str(port), *(["raw"] if raw else [])] if bare else serve),
        ],
        env={**os.environ, **env, "SIMLEDGER_HTTP_RATE": "0", "NO_PROXY": "127.0.0.1"},
        stdout=subprocess.DEVNULL,
        stderr=ACCESS_LOG.open("ab") if not bare else subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    ready = f"{url}/v1/floor" if bare else f"{url}/healthz"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(ready).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("simledger serve did not start")
            time.sleep(0.1)
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


ACCESS_LOG = Path(tempfile.gettempdir()) / f"bench_http_access_{os.getpid()}.log"
"""``serve``'s access log (a JSON line per request, its duration inside the app)."""


def server_side(path_prefix: str, since: int) -> tuple[str, int]:
    """p50 and p99 of the app's own durations (the access log's ``duration_ms``) of the
    requests logged after byte ``since``; and where the log ends now."""
    if not ACCESS_LOG.exists():
        return "", since
    with ACCESS_LOG.open("rb") as log:
        log.seek(since)
        lines, end = log.read().splitlines(), log.tell()
    durations = sorted(
        float(record["duration_ms"])
        for line in lines
        if line.startswith(b"{")
        and (record := json.loads(line)).get("event") == "http.request"
        and str(record.get("path", "")).startswith(path_prefix)
    )
    if not durations:
        return "", end
    p50, p99 = durations[len(durations) // 2], durations[int(len(durations) * 0.99)]
    return f"  inside the app  p50 {p50:7.2f} ms   p99 {p99:7.2f} ms   (access log)", end


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sims", type=int, default=20_000, help="active SIMs (default 20,000)")
    parser.add_argument(
        "--stock",
        type=int,
        default=980_000,
        help="SIMs received and in stock beside them, Orange's too (default 980,000: 1M in all)",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="per phase and side")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients (threads)")
    parser.add_argument("--rate", type=float, default=0.0, help="requests/s in all; 0: unbounded")
    parser.add_argument("--phases", nargs="+", default=["list", "command", "floor", "raw"])
    parser.add_argument("--sort", default="iccid", help="the list's sort column (default iccid)")
    parser.add_argument("--workers", type=int, default=1, help="serve --workers (processes)")
    parser.add_argument("--keep", action="store_true", help="keep the schema afterwards")
    parser.add_argument(
        "--reuse", metavar="SCHEMA", help="the fleet of an earlier --keep run (same --sims)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    schema = args.reuse or f"bench_http_{uuid.uuid4().hex[:10]}"
    env = pg_env(schema)
    load = f"at {args.rate:g} requests/s" if args.rate > 0 else "unbounded"
    print(
        f"{args.sims:,} active SIMs and {args.stock:,} in stock, {args.clients} clients, "
        f"{args.seconds:g} s per phase and side, "
        f"{load}; schema {schema}",
        flush=True,
    )
    if not args.reuse:
        create_schema(schema)
    try:
        sys.stderr.write("setup (untimed):\n")
        setup = SimLedger(env=env)
        try:
            if args.reuse:  # an earlier --keep run's fleet: the same ICCIDs, its views folded
                own = iccids(41, args.sims)
            else:
                own = build_engine(setup, args.sims, 100, 0).own
                receive_stock(setup, args.stock)
            setup.catch_up_views()
            _, secret = setup.keys.create(name="bench", scopes=SCOPES, operator=True)
        finally:
            setup.close()
        # The in-process side's ledger is opened as the server's is: no SIM in its caches.
        ledger = SimLedger(env=env)
        try:
            makers = {
                "list": list_calls(ledger, args.sort),
                "command": command_calls(ledger, own),
                "floor": floor_calls(),
                "raw": floor_calls(),
            }
            headers = {"Authorization": f"Bearer {secret}"}
            ledger_lock = threading.Lock()
            costs: dict[str, float] = {}
            logged = 0
            with (
                served(env, workers=args.workers) as url,
                served(env, bare=True) as bare_url,
                served(env, bare=True, raw=True) as raw_url,
            ):
                for phase in args.phases:
                    make = makers[phase]
                    target = {"floor": bare_url, "raw": raw_url}.get(phase, url)
                    over_http = over_http_phase(target, headers, make, args)
                    print(f"{phase}:")
                    print(over_http.line("HTTP"))
                    inside, logged = server_side("/v1/sims", logged)
                    if inside:
                        print(inside)
                    if phase in ("floor", "raw"):  # nothing in-process: all of it is the stack's
                        costs[phase] = over_http.p50()
                        print(f"  the stack's floor: p50 {costs[phase]:.2f} ms", flush=True)
                        continue
                    in_process = drive(
                        [locked(ledger_lock, make(None)) for _ in range(args.clients)],
                        args.seconds,
                        args.rate,
                    )
                    print(in_process.line("in-process"))
                    cost, base = over_http.p50() - in_process.p50(), in_process.p50()
                    costs[phase] = cost
                    ratio = over_http.p50() / max(base, 1e-9)
                    print(f"  HTTP layer: p50 +{cost:.2f} ms ({ratio:.2f}x)", flush=True)
            if "floor" in costs:
                if "raw" in costs:
                    print(
                        f"the stack's floor {costs['floor']:.2f} ms = uvicorn, the client and "
                        f"loopback {costs['raw']:.2f} ms + FastAPI "
                        f"{costs['floor'] - costs['raw']:.2f} ms"
                    )
                for phase, cost in costs.items():
                    if phase not in ("floor", "raw"):
                        print(
                            f"{phase}: HTTP layer +{cost:.2f} ms = the stack's floor "
                            f"{costs['floor']:.2f} ms + simledger's {cost - costs['floor']:.2f} ms"
                            f" ({cost / max(costs['floor'], 1e-9):.2f}x the floor)"
                        )
        finally:
            ledger.close()
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        keep_or_drop(schema, args.keep or bool(args.reuse))
        ACCESS_LOG.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
