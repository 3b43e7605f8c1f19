"""The carrier gateway: how pause / resume / activate requests reach an operator (R-BK3).

The port is pull-based with explicit acknowledgement::

    gateway.send(requests)             # hand requests over; each has an idempotent request_id
    answers = gateway.poll_answers(n)  # answers that are due and not yet acknowledged
    gateway.ack([a.request_id ...])    # "I have recorded these": they are not delivered again

Why this shape makes an exactly-once forwarder simple:

* Sending cannot share a transaction with the ledger, so after a crash between ``send`` and
  the forwarder's bookkeeping the same requests are sent again. Every request carries a
  ``request_id`` derived from (operation, ICCID), and a carrier acts on a request id once
  (real operator APIs are driven with such idempotency ids): a re-send has no effect.
* Answers are delivered at least once: an answer stays deliverable until the forwarder
  acknowledges it, which it does only after ``ledger.confirm`` committed. A crash before the
  acknowledgement redelivers the answer; the forwarder then finds it already applied (its own
  answer table, or the ledger refusing with ``NoOperationInFlight``) and skips it. With a
  callback style the carrier could not know whether the callback's work was committed before a
  crash, so answers could be lost; with pull + ack they cannot.

``simulator.py`` holds :class:`SimulatedCarrier`, an operator behind this port for the demo and
the tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable


class CarrierOperation(StrEnum):
    """What a carrier is asked to do to one SIM."""

    PAUSE = "pause"
    RESUME = "resume"
    ACTIVATE = "activate"


@dataclass(frozen=True)
class CarrierRequest:
    """One SIM's part of an operation. ``request_id`` is the carrier's idempotency key."""

    request_id: str
    operation_id: str
    kind: CarrierOperation
    iccid: str


@dataclass(frozen=True)
class CarrierAnswer:
    """The carrier's answer to one request: done (``ok``) or refused with a ``reason``."""

    request_id: str
    operation_id: str
    kind: CarrierOperation
    iccid: str
    ok: bool
    reason: str | None
    answered_at: datetime


@runtime_checkable
class CarrierGateway(Protocol):
    """The port a forwarder drives (see the module docstring for the delivery guarantees)."""

    def send(self, requests: Sequence[CarrierRequest]) -> None:
        """Hand ``requests`` to the carrier. Sending a request id again has no effect."""

    def poll_answers(self, limit: int) -> list[CarrierAnswer]:
        """Up to ``limit`` answers that are due and not acknowledged, oldest first."""

    def ack(self, request_ids: Sequence[str]) -> None:
        """The answers to ``request_ids`` are recorded: never deliver them again."""
