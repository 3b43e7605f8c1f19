"""The SIMs a bulk form names: the boxes ticked, or "all N matching" the list's query (at most
``BULK_LIMIT``, R-BK1)."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.datastructures import FormData

from simledger.domain.bulk import BULK_LIMIT
from simledger.domain.errors import BulkLimitExceeded
from simledger.runners.http.auth import Caller
from simledger.runners.http.console.query import ListQuery, checked, every_item, fetch


@dataclass(frozen=True)
class Selection:
    iccids: list[str]
    query: ListQuery
    all_matching: bool

    def hidden_fields(self) -> list[tuple[str, str]]:
        """The form fields that name this selection again (the next step re-reads it)."""
        fields = [("q", self.query.selection())]
        if self.all_matching:
            return [*fields, ("all", "1")]
        return fields + [("iccid", iccid) for iccid in self.iccids]


def selected(caller: Caller, form: FormData) -> Selection:
    query = ListQuery.from_text(str(form.get("q", "")))
    if checked(form, "all"):
        total = fetch(caller, query, cursor="", limit=1).total
        if total > BULK_LIMIT:
            raise BulkLimitExceeded(f"{total} SIMs match; at most {BULK_LIMIT} at a time")
        iccids = [item.iccid for item in every_item(caller, query, cap=BULK_LIMIT)]
        return Selection(iccids, query, True)
    ticked = [str(v)[:100] for v in form.getlist("iccid")[: BULK_LIMIT + 1] if str(v).strip()]
    if len(ticked) > BULK_LIMIT:
        raise BulkLimitExceeded(f"more than {BULK_LIMIT} SIMs ticked; at most {BULK_LIMIT}")
    return Selection(list(dict.fromkeys(ticked)), query, False)
