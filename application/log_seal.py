"""Sealing the log (R-ES5): ``simledger seal``, the worker's periodic checkpoints, and the
audit's check of them (:mod:`simledger.domain.log_seal` holds the hashing).

:func:`seal_log` appends a checkpoint up to the log's head: it reads only the events after
the latest checkpoint. :class:`Sealer` calls it from the projection worker every ``every``
events seen or ``seconds`` seconds. :func:`seal_check` gives the audit's replay the stored
checkpoints to check against the log as it reads it.
"""

from __future__ import annotations

import time
from typing import Any

from eventsourcing.application import Application

from simledger.adapters.logs import get_logger
from simledger.adapters.store.event_store import log_pages
from simledger.adapters.store.seals import seals_for
from simledger.domain.errors import InvalidInput
from simledger.domain.log_seal import Checkpoint, SealCheck, SealFold, SealProblem, read_witness

log = get_logger("simledger")

PAGE = 5000
"""Notifications read per query."""

SEAL_EVERY = 10_000
"""The worker's default: a checkpoint after this many new events..."""
SEAL_SECONDS = 60.0
"""...or after this many seconds with new events."""


def seal_log(app: Application[str], *, page: int = PAGE) -> Checkpoint | None:
    """Append a checkpoint up to the log's last position (none when nothing is new) and
    return the latest checkpoint (None: the log is empty)."""
    seals = seals_for(app.recorder)
    latest = seals.latest()
    start = latest.position if latest else 0
    last = app.recorder.max_notification_id() or 0
    if last <= start:
        return latest
    fold = SealFold(latest.hash if latest else "")
    position = start
    for notifications in log_pages(app.recorder, start, last, page):
        for n in notifications:
            fold.add(n.id, str(n.originator_id), n.originator_version, n.topic, bytes(n.state))
        position = notifications[-1].id
    checkpoint = Checkpoint(position, fold.hexdigest(), start)
    if position <= start or not seals.append(checkpoint):
        return seals.latest()  # another sealer recorded the next checkpoint first
    log.info("seal.checkpoint", position=position, events=fold.count)
    return checkpoint


def seal_check(app: Application[str]) -> SealCheck:
    """The stored checkpoints, to be fed the log in order (read them BEFORE the log's last
    position: a checkpoint is never beyond the log it sealed)."""
    return SealCheck(seals_for(app.recorder).all())


def parse_witness(text: object) -> Checkpoint:
    """A witness (``POSITION:HASH``); :class:`InvalidInput` (R-ES5) when it is not one."""
    try:
        if not isinstance(text, str):
            raise ValueError(f"{text!r} is not text")
        return read_witness(text)
    except ValueError as error:
        raise InvalidInput(f"a witness is POSITION:HASH: {error}", rule="R-ES5") from None


def witness_problem(app: Application[str], kept: Checkpoint) -> SealProblem | None:
    """Whether the store holds the checkpoint ``kept`` outside (its ranges are checked by
    the replay)."""
    return SealCheck(seals_for(app.recorder).all()).witness(kept)


class Sealer:
    """The worker's periodic sealing: :meth:`tick` after each batch (``seen``: events it
    held); seals when ``every`` events were seen or ``seconds`` passed since the last
    checkpoint. ``every`` or ``seconds`` 0: that trigger is off."""

    def __init__(self, app: Any, every: int = SEAL_EVERY, seconds: float = SEAL_SECONDS) -> None:
        self.app = app
        self.every = every
        self.seconds = seconds
        self.seen = 0
        self.last = time.monotonic()

    def tick(self, seen: int = 0) -> None:
        self.seen += seen
        due_by_count = self.every > 0 and self.seen >= self.every
        due_by_time = self.seconds > 0 and time.monotonic() - self.last >= self.seconds
        if due_by_count or due_by_time:
            self.seen = 0
            self.last = time.monotonic()
            seal_log(self.app)
