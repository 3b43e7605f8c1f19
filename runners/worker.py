"""The projection worker: keeps the read models of a ledger's store current, continuously.

    python -m simledger.runners.worker [--batch-size N] [--poll-interval S] [--once]

Settings come from the environment, exactly as for ``SimLedger()`` (``PERSISTENCE_MODULE``,
``POSTGRES_*`` or ``SQLITE_DBNAME`` …). It first catches up from the views' tracking
position, then follows new events:

* PostgreSQL: through the recorder's ``subscribe()`` (LISTEN/NOTIFY); the notifications it
  delivers are folded in batches of whatever has arrived (at most ``--batch-size``).
* SQLite (whose recorder cannot subscribe): by polling the notification log every
  ``--poll-interval`` seconds when there was nothing new.

It can run beside any number of writer processes, embedded catch-ups included: every batch
locks the tracking position first and folds only events after it, in the same transaction
as the rows, so an event is folded exactly once whoever gets there first. Killed at any
point (even ``SIGKILL`` mid-batch), it loses nothing: the open batch rolls back and the
next run starts from the last committed position. ``SIGTERM``/``SIGINT`` stop it cleanly.

Writers that leave the folding to this worker set ``VIEWS_MODE=external``.
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType

from eventsourcing.persistence import Notification

from simledger.adapters.logs import get_logger
from simledger.application.ledger import SimLedger
from simledger.application.projection_runner import BATCH_SIZE, ViewRunner

log = get_logger("simledger.worker")

_END = object()


def follow(
    ledger: SimLedger,
    stop: threading.Event,
    *,
    batch_size: int = BATCH_SIZE,
    poll_interval: float = 0.05,
) -> None:
    """Keep ``ledger``'s views current until ``stop`` is set."""
    runner = ledger.views
    runner.batch_size = batch_size
    runner.catch_up()
    try:
        subscription = ledger.recorder.subscribe(gt=runner.store.position())
    except NotImplementedError:
        log.info("worker.polling", store=runner.store.kind, position=runner.store.position())
        _poll(runner, stop, poll_interval)
        return
    log.info("worker.subscribed", store=runner.store.kind, position=runner.store.position())
    inbox: queue.Queue[object] = queue.Queue(maxsize=batch_size * 4)

    def read() -> None:
        try:
            for notification in subscription:
                while not stop.is_set():
                    try:
                        inbox.put(notification, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except Exception:
            log.exception("worker.subscription.failed")
        finally:
            inbox.put(_END)

    with subscription:
        reader = threading.Thread(target=read, name="simledger-subscription", daemon=True)
        reader.start()
        try:
            _drain(runner, inbox, stop, batch_size)
        finally:
            stop.set()
            subscription.stop()
    reader.join(timeout=5)


def _drain(
    runner: ViewRunner, inbox: queue.Queue[object], stop: threading.Event, batch_size: int
) -> None:
    while not stop.is_set():
        try:
            first = inbox.get(timeout=0.2)
        except queue.Empty:
            continue
        if first is _END:
            raise RuntimeError("the subscription ended")
        batch: list[Notification] = [first]  # type: ignore[list-item]
        ended = False
        while len(batch) < batch_size:
            try:
                item = inbox.get_nowait()
            except queue.Empty:
                break
            if item is _END:
                ended = True
                break
            batch.append(item)  # type: ignore[arg-type]
        folded = runner.apply_notifications(batch)
        if folded:
            log.debug("worker.batch", events=folded, position=batch[-1].id)
        if ended:
            raise RuntimeError("the subscription ended")


def _poll(runner: ViewRunner, stop: threading.Event, poll_interval: float) -> None:
    while not stop.is_set():
        if not runner.catch_up():
            stop.wait(poll_interval)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m simledger.runners.worker", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--poll-interval", type=float, default=0.05)
    parser.add_argument("--once", action="store_true", help="catch up, then exit")
    parser.add_argument(
        "--hold-batch",
        type=float,
        default=0.0,
        help="seconds to wait after writing each batch, before its commit (crash tests)",
    )
    parser.add_argument("--log-level", default=os.environ.get("SIMLEDGER_LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=args.log_level.upper(), format="%(message)s")
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("worker.stopping", signal=signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    ledger = SimLedger()
    runner = ledger.views
    if args.hold_batch > 0:

        def hold(first: int, last: int) -> None:
            log.info("worker.batch.written", first=first, last=last)
            time.sleep(args.hold_batch)

        runner.on_batch_written = hold
    try:
        if args.once:
            runner.batch_size = args.batch_size
            folded = runner.catch_up()
            log.info("worker.caught_up", events=folded, position=runner.store.position())
        else:
            follow(ledger, stop, batch_size=args.batch_size, poll_interval=args.poll_interval)
    finally:
        ledger.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
