"""A bounded memo of normalised ICCIDs, for one ledger's bulk commands.

The same ICCIDs come back again and again (a bulk pause, its carriers' answers, the
resume), each time as the caller's string; validating one is a Luhn sum. A ledger can keep
one :class:`IccidMemo` and normalise through it; :func:`~simledger.domain.iccid.normalise_iccid`
itself stays a pure function.
"""

from __future__ import annotations

from simledger.domain.iccid import normalise_iccid

KNOWN_AT_MOST = 1 << 17
"""Entries kept (a few tens of MB at most); the memo is emptied when full."""


class IccidMemo:
    """``normalise_iccid`` with the strings already normalised remembered, at most
    ``size`` of them; only valid ones are kept (an invalid one raises each time)."""

    def __init__(self, size: int = KNOWN_AT_MOST) -> None:
        self.size = size
        self._known: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._known)

    def __contains__(self, raw: object) -> bool:
        return raw in self._known

    def normalise(self, raw: object) -> str:
        """``normalise_iccid(raw)``, remembered when ``raw`` is a string."""
        if type(raw) is not str:
            return normalise_iccid(raw)
        known = self._known.get(raw)
        if known is None:
            known = normalise_iccid(raw)
            if len(self._known) >= self.size:
                self._known.clear()  # safe under concurrent use: a lost entry is recomputed
            self._known[raw] = known
        return known
