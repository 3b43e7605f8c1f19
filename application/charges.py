"""What the rule, price and contract commands return (application/commands/rules.py), and
the month's PAYGO charges of a company as CSV (R-PR3)."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, ConfigDict

CHARGE_COLUMNS = ("iccid", "at", "country", "mb", "price_per_mb", "amount")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class ChargeLine(_Frozen):
    """One priced usage record (a ``UsageCharged`` event)."""

    iccid: str
    at: datetime
    country: str | None
    mb: Decimal
    price_per_mb: Decimal
    amount: Decimal


class ChargeStatement(_Frozen):
    """A company's PAYGO charges of one month (``YYYY-MM``, by the records' ``at`` in UTC):
    ``total`` is the sum of the lines' amounts, exactly (decimals, no rounding)."""

    company: str
    month: str
    lines: list[ChargeLine]
    total: Decimal

    def csv(self) -> str:
        """The lines as CSV (header first), then a last line ``total`` with the total."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CHARGE_COLUMNS)
        for line in self.lines:
            writer.writerow(
                [
                    line.iccid,
                    line.at.isoformat(),
                    line.country or "",
                    str(line.mb),
                    str(line.price_per_mb),
                    str(line.amount),
                ]
            )
        writer.writerow(["total", "", "", "", "", str(self.total)])
        return out.getvalue()


class HousekeepingResult(_Frozen):
    """``run_contracts``: the rule pauses of past months lifted (R-RU4) and the prepaid SIMs
    deactivated for no refill within their contract's period (R-PP2), by ICCID."""

    lifted: list[str]
    deactivated: list[str]
