"""A simulated operator behind the carrier gateway port (``gateway.py``), for the demo and the
tests.

:class:`SimulatedCarrier` has a configurable delay, refusal rate and silence rate (requests
never answered), deterministic from a seed, and dedupes by request id. It keeps its state in
SQLite: ``:memory:`` by default, or a file of its own that several processes (a forwarder
subprocess and a test) can open at once.
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from simledger.adapters.carrier.gateway import CarrierAnswer, CarrierOperation, CarrierRequest
from simledger.adapters.logs import get_logger

log = get_logger("simledger.carrier")


class Outcome(StrEnum):
    """What the simulated carrier decided for a request (once, at its first arrival)."""

    OK = "ok"
    REFUSED = "refused"
    SILENT = "silent"


REFUSAL_REASONS = (
    "subscriber unknown to the operator",
    "line barred by the operator",
    "operator system busy, request rejected",
)


@dataclass(frozen=True)
class CarrierConfig:
    """How the simulated carrier behaves.

    ``delay`` (+ up to ``jitter``) seconds pass on the carrier's clock between a request's
    arrival and its answer. ``silence_rate`` of the requests are never answered and
    ``refusal_rate`` are refused. ``latency`` seconds of wall time are spent by every call, as
    a network round trip would (``send`` and ``poll_answers`` act first and then wait for the
    reply to travel back; ``ack`` waits and then acts).
    """

    delay: float = 0.0
    jitter: float = 0.0
    refusal_rate: float = 0.0
    silence_rate: float = 0.0
    seed: int = 0
    latency: float = 0.0

    def __post_init__(self) -> None:
        for name in ("refusal_rate", "silence_rate"):
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1: {rate!r}")
        if self.refusal_rate + self.silence_rate > 1.0:
            raise ValueError("refusal_rate + silence_rate must not exceed 1")
        for name in ("delay", "jitter", "latency"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")

    def decide(self, request_id: str) -> tuple[Outcome, str | None, float]:
        """Outcome, refusal reason and answer delay of a request.

        Drawn from an RNG seeded with (seed, request id), not from one shared stream: the
        decision does not depend on arrival order, batching or re-sends after a crash.
        """
        rng = random.Random(f"{self.seed}/{request_id}")
        draw = rng.random()
        delay = self.delay + rng.random() * self.jitter
        if draw < self.silence_rate:
            return Outcome.SILENT, None, delay
        if draw < self.silence_rate + self.refusal_rate:
            return Outcome.REFUSED, rng.choice(REFUSAL_REASONS), delay
        return Outcome.OK, None, delay


@dataclass(frozen=True)
class CarrierRecord:
    """What the simulated carrier holds for one request id (its one effect)."""

    request_id: str
    operation_id: str
    kind: CarrierOperation
    iccid: str
    outcome: Outcome
    reason: str | None
    received_at: datetime
    answer_due: datetime
    deliveries: int
    acked: bool


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS carrier_config (id INTEGER PRIMARY KEY CHECK (id = 1), "
    "settings TEXT NOT NULL)",
    # Every request that arrived, duplicates included: the wire log.
    "CREATE TABLE IF NOT EXISTS carrier_deliveries (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
    "request_id TEXT NOT NULL, received_at REAL NOT NULL, duplicate INTEGER NOT NULL)",
    # One row per request id: what the carrier did (its effect) and the answer's delivery.
    "CREATE TABLE IF NOT EXISTS carrier_requests (request_id TEXT PRIMARY KEY, "
    "operation_id TEXT NOT NULL, kind TEXT NOT NULL, iccid TEXT NOT NULL, "
    "received_at REAL NOT NULL, outcome TEXT NOT NULL, reason TEXT, answer_due REAL NOT NULL, "
    "deliveries INTEGER NOT NULL DEFAULT 0, acked INTEGER NOT NULL DEFAULT 0)",
    "CREATE INDEX IF NOT EXISTS carrier_requests_due ON carrier_requests (acked, answer_due)",
)

_CHUNK = 500
"""Bound parameters per statement (SQLite's historic limit is 999)."""


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class SimulatedCarrier:
    """An operator that answers late, refuses, or stays silent (see :class:`CarrierConfig`).

    ``SimulatedCarrier(config)`` keeps everything in memory. ``SimulatedCarrier(config,
    path=...)`` keeps it in a SQLite file and (re)writes the config there;
    ``SimulatedCarrier.open(path)`` opens such a file with the config stored in it. ``clock``
    (a zero-argument callable returning an aware datetime) drives answer delays; by default
    the wall clock.
    """

    def __init__(
        self,
        config: CarrierConfig | None = None,
        *,
        path: str | Path | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.path = str(path) if path is not None else ":memory:"
        self.clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        if path is not None:
            self._conn.execute("PRAGMA journal_mode=WAL")
        with self._write() as cur:
            for statement in _SCHEMA:
                cur.execute(statement)
            stored = cur.execute("SELECT settings FROM carrier_config").fetchone()
            if config is None and stored:
                config = CarrierConfig(**json.loads(stored[0]))
            else:
                config = config or CarrierConfig()
                cur.execute(
                    "INSERT INTO carrier_config (id, settings) VALUES (1, ?) "
                    "ON CONFLICT (id) DO UPDATE SET settings = excluded.settings",
                    (json.dumps(asdict(config)),),
                )
        self.config = config

    @classmethod
    def open(
        cls, path: str | Path, *, clock: Callable[[], datetime] | None = None
    ) -> SimulatedCarrier:
        """A carrier on an existing file, with the config stored there."""
        if not Path(path).exists():
            raise FileNotFoundError(f"no simulated carrier at {path}")
        return cls(None, path=path, clock=clock)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> SimulatedCarrier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Cursor]:
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")

    def _now(self) -> float:
        return self.clock().timestamp()

    # ---- the port ---------------------------------------------------------------------
    def send(self, requests: Sequence[CarrierRequest]) -> None:
        now = self._now()
        fresh = duplicates = 0
        with self._write() as cur:
            for request in requests:
                known = cur.execute(
                    "SELECT 1 FROM carrier_requests WHERE request_id = ?", (request.request_id,)
                ).fetchone()
                cur.execute(
                    "INSERT INTO carrier_deliveries (request_id, received_at, duplicate) "
                    "VALUES (?, ?, ?)",
                    (request.request_id, now, int(known is not None)),
                )
                if known is not None:
                    duplicates += 1
                    continue
                outcome, reason, delay = self.config.decide(request.request_id)
                cur.execute(
                    "INSERT INTO carrier_requests (request_id, operation_id, kind, iccid, "
                    "received_at, outcome, reason, answer_due) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        request.request_id,
                        request.operation_id,
                        CarrierOperation(request.kind).value,
                        request.iccid,
                        now,
                        outcome.value,
                        reason,
                        now + delay,
                    ),
                )
                fresh += 1
        log.info("carrier.received", fresh=fresh, duplicates=duplicates)
        self._travel()

    def poll_answers(self, limit: int) -> list[CarrierAnswer]:
        with self._write() as cur:
            rows = cur.execute(
                "SELECT request_id, operation_id, kind, iccid, outcome, reason, answer_due "
                "FROM carrier_requests WHERE acked = 0 AND outcome != ? AND answer_due <= ? "
                "ORDER BY answer_due, request_id LIMIT ?",
                (Outcome.SILENT.value, self._now(), limit),
            ).fetchall()
            for start in range(0, len(rows), _CHUNK):
                ids = [row[0] for row in rows[start : start + _CHUNK]]
                marks = ",".join("?" for _ in ids)
                cur.execute(
                    "UPDATE carrier_requests SET deliveries = deliveries + 1 "
                    f"WHERE request_id IN ({marks})",
                    ids,
                )
        answers = [
            CarrierAnswer(
                request_id=row[0],
                operation_id=row[1],
                kind=CarrierOperation(row[2]),
                iccid=row[3],
                ok=row[4] == Outcome.OK.value,
                reason=row[5],
                answered_at=_utc(row[6]),
            )
            for row in rows
        ]
        if answers:
            self._travel()
        return answers

    def ack(self, request_ids: Sequence[str]) -> None:
        self._travel()
        ids = list(request_ids)
        with self._write() as cur:
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start : start + _CHUNK]
                marks = ",".join("?" for _ in chunk)
                cur.execute(
                    f"UPDATE carrier_requests SET acked = 1 WHERE request_id IN ({marks})", chunk
                )

    def _travel(self) -> None:
        if self.config.latency:
            time.sleep(self.config.latency)

    # ---- inspection (tests, demo) -----------------------------------------------------
    def deliveries(self) -> list[str]:
        """Every request id in the order it arrived, re-sends included."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT request_id FROM carrier_deliveries ORDER BY seq"
            ).fetchall()
        return [row[0] for row in rows]

    def records(self) -> list[CarrierRecord]:
        """One record per distinct request id: the carrier's effects."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT request_id, operation_id, kind, iccid, outcome, reason, received_at, "
                "answer_due, deliveries, acked FROM carrier_requests ORDER BY received_at, "
                "request_id"
            ).fetchall()
        return [
            CarrierRecord(
                request_id=row[0],
                operation_id=row[1],
                kind=CarrierOperation(row[2]),
                iccid=row[3],
                outcome=Outcome(row[4]),
                reason=row[5],
                received_at=_utc(row[6]),
                answer_due=_utc(row[7]),
                deliveries=row[8],
                acked=bool(row[9]),
            )
            for row in rows
        ]

    def counts(self) -> dict[str, int]:
        """Arrivals (``received``, ``duplicates``), distinct requests per outcome, ``acked``."""
        with self._lock:
            received, duplicates = self._conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(duplicate), 0) FROM carrier_deliveries"
            ).fetchone()
            by_outcome = dict(
                self._conn.execute(
                    "SELECT outcome, COUNT(*) FROM carrier_requests GROUP BY outcome"
                ).fetchall()
            )
            (acked,) = self._conn.execute(
                "SELECT COUNT(*) FROM carrier_requests WHERE acked = 1"
            ).fetchone()
        counts = {"received": received, "duplicates": duplicates, "acked": acked}
        counts.update({o.value: by_outcome.get(o.value, 0) for o in Outcome})
        return counts
