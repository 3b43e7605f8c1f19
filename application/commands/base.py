"""What every family of command handlers works with."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from simledger.application.unit_of_work import UnitOfWork


class Commands:
    """Handlers of one family: they load and save through the ledger's unit of work
    (``uow``) and read the time from its ``clock``."""

    def __init__(self, uow: UnitOfWork, *, clock: Callable[[], datetime]) -> None:
        self.uow = uow
        self.clock = clock
