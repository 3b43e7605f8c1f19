"""The webhook deliverer as a process: every subscription's events to its URL (R-WH3).

    python -m simledger.runners.deliver [--once | --until-idle] [--batch N] [--interval S]

(the same as ``simledger deliver``). The store comes from eventsourcing's settings in the
environment, as ``SimLedger()`` reads them. Several may run on one PostgreSQL store (they
share the subscriptions, never a batch); one per SQLite store. Settings in the environment:
``SIMLEDGER_WEBHOOK_TIMEOUT`` (seconds a POST may take, 10), ``SIMLEDGER_WEBHOOK_RETRY_BASE``
(first pause after a failure, 1 s), ``SIMLEDGER_WEBHOOK_RETRY_CAP`` (longest pause, 3600 s),
``SIMLEDGER_WEBHOOK_GIVE_UP`` (seconds without a 2xx before a subscription is paused,
259200: 3 days); with ``SIMLEDGER_SMTP_HOST`` set, each round also queues and sends the
"notify users" e-mails (application/notify.py, adapters/mail_smtp.py). What a round
does, and why nothing is lost: application/delivery.py.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence

from simledger.adapters.logs import get_logger
from simledger.adapters.mail_smtp import SmtpMailer, SmtpSettings
from simledger.adapters.webhook_http import WebhookPoster
from simledger.application.delivery import GIVE_UP_S, Deliverer, RetryPolicy
from simledger.application.ledger import SimLedger
from simledger.application.notify import Notifier

log = get_logger("simledger.deliver")


def _setting(env: Mapping[str, str], name: str, default: float) -> float:
    value = env.get(name, "").strip()
    return float(value) if value else default


def policy_from(env: Mapping[str, str]) -> tuple[RetryPolicy, float]:
    """The retry policy and the POST timeout from the environment (module docstring)."""
    policy = RetryPolicy(
        retry_base=_setting(env, "SIMLEDGER_WEBHOOK_RETRY_BASE", 1.0),
        retry_cap=_setting(env, "SIMLEDGER_WEBHOOK_RETRY_CAP", 3600.0),
        give_up_after=_setting(env, "SIMLEDGER_WEBHOOK_GIVE_UP", GIVE_UP_S),
    )
    return policy, _setting(env, "SIMLEDGER_WEBHOOK_TIMEOUT", 10.0)


def stop_on_signals() -> Callable[[], bool]:
    stopping = {"now": False}

    def handler(signum: int, frame: object) -> None:
        stopping["now"] = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)
    return lambda: stopping["now"]


def run(
    ledger: SimLedger, *, batch: int, interval: float, mode: str, env: Mapping[str, str]
) -> int:
    """Deliver until stopped (``mode`` ``forever``), one round (``once``) or until idle."""
    policy, timeout = policy_from(env)
    poster = WebhookPoster(timeout=timeout)
    deliverer = Deliverer(ledger, poster, batch=batch, policy=policy)
    smtp = SmtpSettings.from_env(env)
    notifier = Notifier(ledger, SmtpMailer(smtp)) if smtp else None

    def idle_round() -> bool:
        idle = deliverer.run_once().idle
        if notifier is not None:
            done = notifier.run_once()
            idle = idle and not (done.queued or done.sent)
        return idle

    log.info("deliver.started", pid=os.getpid(), batch=batch, mail=smtp is not None)
    try:
        if mode == "once":
            idle_round()
        elif mode == "until-idle":
            while not idle_round():
                pass
        else:
            stop = stop_on_signals()
            while not stop():
                if idle_round():
                    time.sleep(interval)
    finally:
        poster.close()
    log.info("deliver.stopped")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m simledger.runners.deliver",
        description="Deliver webhook subscriptions' events (signed POSTs, in order, retried).",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="one round, then exit")
    mode.add_argument("--until-idle", action="store_true", help="rounds until nothing is due")
    p.add_argument("--batch", type=int, default=500, help="events per POST at most")
    p.add_argument("--interval", type=float, default=0.2, help="idle sleep, seconds")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    mode = "once" if args.once else "until-idle" if args.until_idle else "forever"
    ledger = SimLedger()
    try:
        return run(ledger, batch=args.batch, interval=args.interval, mode=mode, env=os.environ)
    finally:
        ledger.close()


if __name__ == "__main__":
    sys.exit(main())
