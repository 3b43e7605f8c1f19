"""The read-model queries of SimLedger (``sims``, ``pending_activity``, ``shared_groups``).

Filled in by the read-models work; kept apart from the commands in ``ledger.py``.
"""

from __future__ import annotations


class ViewQueries:
    """Mixin of SimLedger: queries answered from the projections."""
