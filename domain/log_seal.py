"""The log's seal (R-ES5): a store-wide chain of checkpoints over the notification log.

The hash chains of :mod:`simledger.domain.chain` are per aggregate: they cannot see two
events of different SIMs swapped in the log's order, nor the newest events of the log
deleted (a shorter chain is still a valid chain). A checkpoint closes the order too::

    hash(k) = sha256(hash(k-1) + "\\n" + item(e) for every event e in (position(k-1), position(k)])

with ``hash(0) = ""`` and ``item(e) = "<notification id> <originator id> <version> <topic>
<sha256 of the stored state>\\n"``. The stored state's bytes (what the row holds, the chain
hash inside it) are hashed rather than the per-aggregate chain alone so that events recorded
before chains existed are sealed as well. Kept outside the store, the latest ``(position,
hash)`` also proves that nothing up to that position was removed or rewritten since.

Pure: no I/O. :class:`SealFold` computes one checkpoint; :class:`SealCheck` checks the
stored checkpoints against the log as the audit reads it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Checkpoint:
    """The log sealed up to ``position`` (a notification id), and the chain's hash there;
    ``previous`` is the position of the checkpoint it follows (0 for the first)."""

    position: int
    hash: str
    previous: int = 0

    def __str__(self) -> str:
        return f"{self.position}:{self.hash}"


@dataclass(frozen=True)
class SealProblem:
    """Something the seal finds wrong, at ``position`` (a notification id)."""

    kind: str  # "sealed-range", "truncated", "seal-table", "witness"
    position: int
    detail: str


def read_witness(text: str) -> Checkpoint:
    """``POSITION:HASH`` (as ``simledger seal`` prints it) as a checkpoint; ValueError."""
    position, sep, digest = text.strip().partition(":")
    if not sep or not position.isdigit() or len(digest) != 64:
        raise ValueError(f"{text!r} is not POSITION:HASH (a position and a sha256 hex hash)")
    int(digest, 16)
    return Checkpoint(int(position), digest.lower())


class SealFold:
    """The hash of one checkpoint, fed the events after the previous one in log order."""

    __slots__ = ("_digest", "count")

    def __init__(self, previous_hash: str) -> None:
        self._digest = hashlib.sha256(previous_hash.encode("ascii"))
        self._digest.update(b"\n")
        self.count = 0

    def add(
        self, notification_id: int, originator_id: str, version: int, topic: str, state: bytes
    ) -> None:
        state_hash = hashlib.sha256(state).hexdigest()
        self._digest.update(
            f"{notification_id} {originator_id} {version} {topic} {state_hash}\n".encode()
        )
        self.count += 1

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


class SealCheck:
    """Checks stored checkpoints (any order) against the log, fed in log order up to its
    last position, then :meth:`finish`. Each range is recomputed from the STORED hash of the
    checkpoint before it, so one altered range is reported once and the ranges after it are
    still judged; a checkpoint whose hash was rewritten breaks its own range and the next."""

    def __init__(self, checkpoints: Sequence[Checkpoint]) -> None:
        self.checkpoints = sorted(checkpoints, key=lambda c: c.position)
        self.problems: list[SealProblem] = []
        previous = 0
        for checkpoint in self.checkpoints:
            if checkpoint.previous != previous:
                self.problems.append(
                    SealProblem(
                        "seal-table",
                        checkpoint.position,
                        f"the checkpoint at {checkpoint.position} follows position "
                        f"{checkpoint.previous}, but the one before it is at {previous}: "
                        "the checkpoint table was altered",
                    )
                )
            previous = checkpoint.position
        self._next = 0
        """Index of the checkpoint whose range is being read."""
        self._fold: SealFold | None = self._start() if self.checkpoints else None

    @property
    def sealed_up_to(self) -> int:
        return self.checkpoints[-1].position if self.checkpoints else 0

    def _start(self) -> SealFold:
        previous = self.checkpoints[self._next - 1].hash if self._next else ""
        return SealFold(previous)

    def add(
        self, notification_id: int, originator_id: str, version: int, topic: str, state: bytes
    ) -> None:
        fold = self._fold
        if fold is None:
            return
        while notification_id > self.checkpoints[self._next].position:
            self._close()
            if self._fold is None:
                return
            fold = self._fold
        fold.add(notification_id, originator_id, version, topic, state)

    def _close(self) -> None:
        checkpoint = self.checkpoints[self._next]
        start = self.checkpoints[self._next - 1].position if self._next else 0
        assert self._fold is not None
        if self._fold.hexdigest() != checkpoint.hash:
            self.problems.append(
                SealProblem(
                    "sealed-range",
                    checkpoint.position,
                    f"the events in the sealed range ({start}, {checkpoint.position}] differ "
                    "from the checkpoint: an event was altered, removed, inserted or "
                    "reordered (across SIMs too), or the checkpoint was rewritten",
                )
            )
        self._next += 1
        self._fold = self._start() if self._next < len(self.checkpoints) else None

    def finish(self, last: int) -> list[SealProblem]:
        """The problems found; ``last`` is the log's last position read."""
        if self._fold is not None and last < self.sealed_up_to:
            self.problems.append(
                SealProblem(
                    "truncated",
                    self.sealed_up_to,
                    f"the log ends at position {last}, before the sealed position "
                    f"{self.sealed_up_to}: sealed events were removed",
                )
            )
            self._fold = None  # the ranges it cut short differ because of it: said once
        while self._fold is not None:
            self._close()
        return self.problems

    def witness(self, kept: Checkpoint) -> SealProblem | None:
        """Whether the store holds ``kept`` (a checkpoint kept outside); with every range
        verified, a stored hash equal to the kept one proves the log up to its position."""
        for checkpoint in self.checkpoints:
            if checkpoint.position == kept.position:
                if checkpoint.hash == kept.hash:
                    return None
                return SealProblem(
                    "witness",
                    kept.position,
                    f"the checkpoint at {kept.position} is {checkpoint.hash}, not the "
                    f"witness's {kept.hash}: the log up to it was rewritten",
                )
        return SealProblem(
            "witness",
            kept.position,
            f"no checkpoint at position {kept.position} (the witness's): the checkpoint "
            "table or the log was rewritten",
        )
