"""CSV import and export of SimLedger (R-IO1, R-BK4).

Filled in by the bulk-operations work; kept apart from the commands in ``ledger.py``.
"""

from __future__ import annotations


class CsvTransfer:
    """Mixin of SimLedger: delivery import and SIM list export."""
