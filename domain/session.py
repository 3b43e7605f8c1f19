"""Carrier session records (R-SS1, R-SS2): whether a SIM is in a data session now.

An integration that reports sessions sends a record when a SIM's data session starts and
when it ends, at least once each (the same record may come again) and not always in order.
Each record is counted once: its receipt, a :class:`SessionReceipt` whose id is derived
from the ``record_id`` alone (as a usage record's ``UsageReceipt``, R-US1, in a namespace
of its own), is saved with the SIM's event, and the store refuses a second one. The SIM
shows the state of its latest record by ``at``: an older record that arrives late is
recorded (``current`` False) and changes nothing.

A SIM whose integration never reported a session shows "n/a" (R-SIM2): simledger has no
catalogue of what each operator's integration supports, so the records themselves say it;
a SIM with no integration (``not_available``) takes none (R-SS1).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID, uuid5

from simledger.domain.base import CreatedEvent, DomainEvent, LedgerAggregate
from simledger.domain.errors import InvalidInput
from simledger.domain.sim import Sim
from simledger.domain.types import SimStatus

SESSION_NAMESPACE = UUID("0c6f4d0e-8a63-5b7e-b1f2-3e9d2a7c5f41")
"""The namespace of the session receipts' ids (uuid5). Never change it."""


class SessionKind(StrEnum):
    STARTED = "started"
    ENDED = "ended"


def session_receipt_id(record_id: str) -> str:
    return str(uuid5(SESSION_NAMESPACE, record_id))


class SessionReported(Sim.Event):
    """Base of the session events: the record, and whether it is the SIM's latest."""

    record_id: str
    at: datetime
    current: bool

    def apply(self, sim: Sim) -> None:
        if self.current:
            sim.in_session = isinstance(self, SessionStarted)
            sim.session_at = self.at


class SessionStarted(SessionReported):
    pass


class SessionEnded(SessionReported):
    pass


class SessionReceipt(LedgerAggregate):
    class Event(DomainEvent):
        pass

    class Recorded(CreatedEvent, Event):
        record_id: str
        iccid: str
        kind: str
        at: datetime

        def apply(self, receipt: SessionReceipt) -> None:
            receipt.record_id = self.record_id
            receipt.iccid = self.iccid

    def __init__(self) -> None:
        self.record_id: str = ""
        self.iccid: str = ""

    @classmethod
    def issue(cls, record_id: str, iccid: str, kind: SessionKind, at: datetime) -> SessionReceipt:
        return cls.start(
            cls.Recorded,
            id=session_receipt_id(record_id),
            record_id=record_id,
            iccid=iccid,
            kind=kind.value,
            at=at,
        )


def check_session(sim: Sim) -> None:
    """R-SS1: a SIM without an integration has no session to report."""
    if sim.status is SimStatus.NOT_AVAILABLE:
        raise InvalidInput(
            f"SIM {sim.id} is not_available: its operator has no integration to report sessions",
            rule="R-SS1",
        )


def report_session(sim: Sim, record_id: str, kind: SessionKind, at: datetime) -> None:
    """Record a session record on the SIM (R-SS1); it sets the SIM's state only when it
    is not older than the SIM's latest record (R-SS2)."""
    check_session(sim)
    current = sim.session_at is None or at >= sim.session_at
    event = SessionStarted if kind is SessionKind.STARTED else SessionEnded
    sim.trigger_event(event, record_id=record_id, at=at, current=current)
