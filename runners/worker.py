"""The projection worker: keeps the read models of a ledger's store current, continuously.

    python -m simledger.runners.worker [--batch-size N] [--poll-interval S] [--once]
        [--seal-every N] [--seal-seconds S]

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

It also seals the log (R-ES5, ``application/log_seal.py``): a checkpoint after every
``--seal-every`` events it sees or ``--seal-seconds`` seconds (0 turns a trigger off).

Writers that leave the folding to this worker set ``VIEWS_MODE=external``.

A lost connection (the database restarted, the subscription ended) does not end it: it
logs ``worker.reconnecting`` and opens the ledger again after a pause that doubles up to a
cap (``application/reconnect.py``), then goes on from the views' tracking position. When
it starts it drops the staged tables a parallel rebuild killed mid-way left behind.
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
from collections.abc import Callable, Sequence
from types import FrameType

from eventsourcing.persistence import Notification

from simledger.adapters.logs import get_logger
from simledger.application.ledger import SimLedger
from simledger.application.log_seal import SEAL_EVERY, SEAL_SECONDS, Sealer
from simledger.application.projection_runner import BATCH_SIZE, ViewRunner
from simledger.application.reconnect import Backoff, connection_lost

log = get_logger("simledger.worker")

_END = object()


class SubscriptionEnded(RuntimeError):
    """The recorder's subscription stopped delivering (its connection was lost)."""

    def __init__(self) -> None:
        super().__init__("the subscription ended")


def run(
    open_ledger: Callable[[], SimLedger],
    stop: threading.Event,
    *,
    batch_size: int = BATCH_SIZE,
    poll_interval: float = 0.05,
    backoff: Backoff | None = None,
    seal_every: int = SEAL_EVERY,
    seal_seconds: float = SEAL_SECONDS,
) -> None:
    """:func:`follow` a ledger opened by ``open_ledger`` until ``stop`` is set; after a lost
    connection, log it, wait (``backoff``) and open a new one."""
    backoff = backoff or Backoff()
    while not stop.is_set():
        ledger: SimLedger | None = None
        try:
            ledger = open_ledger()
            follow(
                ledger,
                stop,
                batch_size=batch_size,
                poll_interval=poll_interval,
                on_caught_up=backoff.reset,
                sealer=Sealer(ledger, seal_every, seal_seconds),
            )
        except Exception as error:
            if not (isinstance(error, SubscriptionEnded) or connection_lost(error)):
                raise
            stop.wait(backoff.after(error, "worker.reconnecting"))
        finally:
            if ledger is not None:
                _close(ledger)


def _close(ledger: SimLedger) -> None:
    try:
        ledger.close()
    except Exception as error:  # its connections may be gone already
        log.info("worker.close_failed", error=f"{type(error).__name__}: {error}")


def follow(
    ledger: SimLedger,
    stop: threading.Event,
    *,
    batch_size: int = BATCH_SIZE,
    poll_interval: float = 0.05,
    on_caught_up: Callable[[], None] | None = None,
    sealer: Sealer | None = None,
) -> None:
    """Keep ``ledger``'s views current until ``stop`` is set (and the log sealed, with a
    ``sealer``); raises
    :class:`SubscriptionEnded` or the database's error when the connection is lost."""
    runner = ledger.views
    runner.batch_size = batch_size
    sealer = sealer or Sealer(ledger, 0, 0)
    sealer.tick(runner.catch_up())
    if on_caught_up is not None:
        on_caught_up()
    try:
        subscription = ledger.recorder.subscribe(gt=runner.store.position())
    except NotImplementedError:
        log.info("worker.polling", store=runner.store.kind, position=runner.store.position())
        _poll(runner, stop, poll_interval, sealer)
        return
    log.info("worker.subscribed", store=runner.store.kind, position=runner.store.position())
    inbox: queue.Queue[object] = queue.Queue(maxsize=batch_size * 4)

    done = threading.Event()
    """This subscription's end (``stop`` is the process's)."""

    def read() -> None:
        try:
            for notification in subscription:
                while not (stop.is_set() or done.is_set()):
                    try:
                        inbox.put(notification, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set() or done.is_set():
                    return
        except Exception as error:
            log.warning("worker.subscription.failed", error=f"{type(error).__name__}: {error}")
        finally:
            while not done.is_set():  # never blocked on a full inbox nobody drains
                try:
                    inbox.put(_END, timeout=0.2)
                    break
                except queue.Full:
                    continue

    reader = threading.Thread(target=read, name="simledger-subscription", daemon=True)
    try:
        with subscription:
            reader.start()
            try:
                _drain(runner, inbox, stop, batch_size, sealer)
            finally:
                done.set()
                _quietly(subscription.stop)
    finally:
        if reader.is_alive():
            reader.join(timeout=5)


def _quietly(call: Callable[[], object]) -> None:
    try:
        call()
    except Exception as error:  # a subscription whose connection is gone
        log.info("worker.subscription.stop_failed", error=f"{type(error).__name__}: {error}")


def _drain(
    runner: ViewRunner,
    inbox: queue.Queue[object],
    stop: threading.Event,
    batch_size: int,
    sealer: Sealer,
) -> None:
    while not stop.is_set():
        try:
            first = inbox.get(timeout=0.2)
        except queue.Empty:
            sealer.tick()
            continue
        if first is _END:
            raise SubscriptionEnded
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
        sealer.tick(len(batch))
        if ended:
            raise SubscriptionEnded


def _poll(runner: ViewRunner, stop: threading.Event, poll_interval: float, sealer: Sealer) -> None:
    while not stop.is_set():
        folded = runner.catch_up()
        sealer.tick(folded)
        if not folded:
            stop.wait(poll_interval)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m simledger.runners.worker", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--poll-interval", type=float, default=0.05)
    parser.add_argument("--once", action="store_true", help="catch up, then exit")
    parser.add_argument("--seal-every", type=int, default=SEAL_EVERY, help="events (0: off)")
    parser.add_argument("--seal-seconds", type=float, default=SEAL_SECONDS, help="(0: off)")
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

    def hold(first: int, last: int) -> None:
        log.info("worker.batch.written", first=first, last=last)
        time.sleep(args.hold_batch)

    opened = 0

    def open_ledger() -> SimLedger:
        nonlocal opened
        ledger = SimLedger()
        if args.hold_batch > 0:
            ledger.views.on_batch_written = hold
        if not opened:
            # Once per start: what a parallel rebuild killed mid-way staged is not read.
            ledger.views.drop_staged()
        opened += 1
        return ledger

    if args.once:
        ledger = open_ledger()
        try:
            runner = ledger.views
            runner.batch_size = args.batch_size
            folded = runner.catch_up()
            log.info("worker.caught_up", events=folded, position=runner.store.position())
        finally:
            ledger.close()
        return 0
    run(
        open_ledger,
        stop,
        batch_size=args.batch_size,
        poll_interval=args.poll_interval,
        seal_every=args.seal_every,
        seal_seconds=args.seal_seconds,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
