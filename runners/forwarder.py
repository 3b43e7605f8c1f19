"""The carrier forwarder as a process: bulk requests out to the carrier, answers back.

    python -m simledger.runners.forwarder [--carrier-db PATH] [--once | --until-idle]
        [--answers-url URL]    # answers via a running `simledger serve`, signed with
                               # $SIMLEDGER_CARRIER_SECRET; default: straight to the ledger

The ledger store comes from eventsourcing's settings in the process environment, exactly as
``SimLedger()`` reads them. What a round does, and why it is exactly once across restarts, is
in ``simledger.application.forwarding``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from simledger.adapters.carrier.answers_http import (
    SECRET_SETTING,
    AnswersUnauthorised,
    HttpAnswers,
)
from simledger.adapters.carrier.simulator import CarrierConfig, SimulatedCarrier
from simledger.adapters.logs import get_logger
from simledger.application.forwarding import Forwarder
from simledger.application.ledger import SimLedger

log = get_logger("simledger.forwarder")


@contextmanager
def _stop_on_signals() -> Iterator[Callable[[], bool]]:
    stopping = {"now": False}

    def handler(signum: int, frame: object) -> None:
        stopping["now"] = True

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield lambda: stopping["now"]
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m simledger.runners.forwarder",
        description="Forward bulk pause/resume requests to a (simulated) carrier and its "
        "answers back to the ledger. The store comes from eventsourcing's settings in the "
        "environment.",
    )
    parser.add_argument(
        "--carrier-db",
        help="SQLite file of the simulated carrier (created if absent; shared with other "
        "processes). Without it, an in-memory simulated carrier.",
    )
    config = parser.add_argument_group(
        "simulated carrier", "when any is given, the carrier's stored settings are replaced"
    )
    config.add_argument("--delay", type=float, help="seconds before an answer")
    config.add_argument("--jitter", type=float, help="extra random seconds of delay, at most")
    config.add_argument("--refusal-rate", type=float)
    config.add_argument("--silence-rate", type=float)
    config.add_argument("--seed", type=int)
    config.add_argument("--latency", type=float, help="seconds each carrier call takes")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="one round, then exit")
    mode.add_argument("--until-idle", action="store_true", help="rounds until nothing to do")
    parser.add_argument("--interval", type=float, default=1.0, help="idle sleep, seconds")
    parser.add_argument("--chunk-size", type=int, default=500, help="requests per send")
    parser.add_argument("--answer-batch", type=int, default=500, help="answers per poll")
    parser.add_argument(
        "--answers-url",
        help="base URL of a running `simledger serve`: the carrier's answers go to its "
        f"POST /v1/carrier/answers, signed with ${SECRET_SETTING}. Without it, straight to "
        "the ledger.",
    )
    return parser


def _carrier(args: argparse.Namespace) -> SimulatedCarrier:
    given = {
        name: getattr(args, name)
        for name in ("delay", "jitter", "refusal_rate", "silence_rate", "seed", "latency")
        if getattr(args, name) is not None
    }
    config = CarrierConfig(**given) if given else None
    if args.carrier_db is None:
        return SimulatedCarrier(config or CarrierConfig())
    return SimulatedCarrier(config, path=args.carrier_db)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    secret = os.environ.get(SECRET_SETTING, "")
    if args.answers_url and not secret:
        parser.error(f"--answers-url needs the shared secret in ${SECRET_SETTING}")
    via = HttpAnswers(args.answers_url, secret) if args.answers_url else None
    ledger = SimLedger()
    carrier = _carrier(args)
    forwarder = Forwarder(
        ledger,
        carrier,
        chunk_size=args.chunk_size,
        answer_batch=args.answer_batch,
        answers_via=via,
    )
    log.info("forwarder.started", carrier=carrier.path, answers=args.answers_url, pid=os.getpid())
    try:
        _run(forwarder, args)
    except AnswersUnauthorised as error:
        # Retrying cannot help: the secret must be fixed. Unacknowledged answers wait.
        log.error("forwarder.configuration_error", error=f"401 from the service: {error}")
        return 2
    finally:
        carrier.close()
        forwarder.ledger.close()
        if via is not None:
            via.close()
    log.info("forwarder.stopped")
    return 0


def _run(forwarder: Forwarder, args: argparse.Namespace) -> None:
    if args.once:
        forwarder.run_once()
    elif args.until_idle:
        forwarder.run_until_idle()
    else:
        with _stop_on_signals() as stop:
            # After a lost connection: a new ledger (``SimLedger`` reads the same settings).
            forwarder.run_forever(interval=args.interval, stop=stop, reopen=SimLedger)


if __name__ == "__main__":
    sys.exit(main())
