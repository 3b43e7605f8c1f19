"""CSV import and export of SimLedger (R-IO1, R-BK4): a delivery file received in one
transaction, the SIM list view written out page by page. The formats themselves are in
adapters/csv_format.py."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Mapping
from typing import IO, Any, Protocol

from simledger.adapters.csv_format import (
    EXPORT_COLUMNS,
    EXPORT_PAGE,
    IMPORT_COLUMNS,
    LIST_SEPARATOR,
    csv_value,
    export_row,
    text_stream,
)
from simledger.adapters.logs import get_logger
from simledger.application.commands.lifecycle import LifecycleCommands
from simledger.application.delivery_import import Delivery, Group, new_sims
from simledger.application.unit_of_work import UnitOfWork, command
from simledger.domain.errors import CsvImportError, InvalidInput, InvalidValue, shown
from simledger.projections.models import Page

__all__ = [
    "EXPORT_COLUMNS",
    "EXPORT_FILTERS",
    "EXPORT_PAGE",
    "IMPORT_COLUMNS",
    "LIST_SEPARATOR",
    "PROGRESS_EVERY",
    "CsvTransfer",
    "csv_value",
    "export_row",
]

log = get_logger("simledger")

PROGRESS_EVERY = 10_000
"""Rows between two progress log records of an export."""

EXPORT_FILTERS = frozenset(
    {
        "status",
        "sim_type",
        "operator",
        "company",
        "label",
        "group_id",
        "search",
        "sort",
        "descending",
    }
)
"""The keywords of ``sims()`` that ``export_sims_csv`` accepts."""


class SimList(Protocol):
    """Where an export reads the SIM list view from (the ledger's ``sims``)."""

    @property
    def sims(self) -> Callable[..., Page]: ...


class CsvTransfer:
    """Delivery import (received as ``lifecycle`` receives SIMs) and SIM list export (read
    from ``listing``)."""

    def __init__(self, uow: UnitOfWork, lifecycle: LifecycleCommands, listing: SimList) -> None:
        self.uow = uow
        self.lifecycle = lifecycle
        self.listing = listing

    def import_sims_csv(self, stream: IO[str] | IO[bytes] | Iterable[str]) -> list[str]:
        """Receive the SIMs of a delivery file (header ``iccid,operator,sim_type,esim``).

        All or nothing (R-IO1): any bad row raises :class:`CsvImportError` whose ``errors``
        maps the line number in the file (header = line 1) of EVERY bad row to its reasons
        (in line order), and nothing is recorded. A good file is received in one transaction
        (written a chunk at a time: memory does not grow with the file,
        application/delivery_import.py) through the same path as ``receive_sims`` (each
        SIM ``pending``, or ``not_available`` for an operator without integration).
        Returns the ICCIDs received, in file order.

        A binary stream is read once, as it comes (a pipe works), as UTF-8 (a BOM first is
        dropped); a line with bytes that are not UTF-8 is a bad row, reported at that line.
        """
        if (
            stream is None
            or isinstance(stream, (str, bytes, bytearray, Mapping))
            or not (hasattr(stream, "read") or isinstance(stream, Iterable))
        ):
            raise InvalidValue(
                f"a delivery file is a stream or an iterable of lines, not {shown(stream)}",
                rule="R-IN4",
            )
        delivery = Delivery(stream)
        try:
            return self._receive_delivery(delivery)
        finally:
            delivery.close()

    @command
    def _receive_delivery(self, delivery: Delivery) -> list[str]:
        """Check the rows against the store, then save them all in one transaction, a chunk
        of SIMs at a time (re-run on conflict)."""
        errors = {**delivery.errors, **delivery.received(self.uow.existing)}
        if errors:
            log.info("csv.import.refused", bad=len(errors))
            raise CsvImportError(dict(sorted(errors.items())))
        groups: set[Group] = set()
        make = self.lifecycle.new_sims
        count = self.uow.save_chunks(
            lambda: (new_sims(chunk, make, groups) for chunk in delivery.rows())
        )
        if count is None:  # a store without chunked saves (in memory): one save
            sims = [s for chunk in delivery.rows() for s in new_sims(chunk, make, groups)]
            if sims:
                self.uow.save(*sims)
            count = len(sims)
        log.info("sims.imported", count=count, groups=len(groups))
        return list(delivery.iccids)

    def export_sims_csv(self, /, stream: IO[str] | IO[bytes], **filters: Any) -> int:
        """Write the SIM list rows that ``sims(**filters)`` selects as CSV (R-BK4); returns
        how many rows were written (the header not counted).

        ``filters`` are the keywords of ``sims()`` except the paging ones: ``status``,
        ``sim_type``, ``operator``, ``company``, ``label``, ``group_id``, ``search``,
        ``sort`` and ``descending``. ``limit`` and ``cursor`` are refused (an export holds
        the whole selection; the view is read 1,000 rows at a time through its cursors), as
        is any other keyword, with :class:`InvalidInput` (R-BK4) before anything is written;
        a bad filter value is refused as ``sims()`` refuses it, also before anything is
        written.

        The file: the header :data:`EXPORT_COLUMNS` (every column of the SIM list view, in
        the order of ``SimListItem``), then one row per SIM in the order ``sort`` /
        ``descending`` give. Fields are those of ``sims()`` in text form (:func:`csv_value`):
        empty for None, ``true``/``false``, enum values, plain decimals, ISO 8601 UTC times,
        labels and rules joined with ``;``; ``days_left`` and ``this_month_mb`` as the view
        computes them with the ledger's clock when each page is read. A text cell that
        begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a ``'`` in
        front, so a spreadsheet does not run it as a formula (numbers are never changed).
        Reading the file back
        with ``csv.DictReader`` gives, row by row, those same strings. An empty selection
        writes the header alone.

        This is NOT a delivery file: ``import_sims_csv`` reads only ``iccid,operator,
        sim_type,esim`` (:data:`IMPORT_COLUMNS`) and refuses an export's header.

        ``stream``: a text stream (open files with ``newline=""``; rows end with CRLF as
        RFC 4180 says), or a binary one, written as UTF-8. Progress is logged every
        :data:`PROGRESS_EVERY` rows.
        """
        if not hasattr(stream, "write"):
            raise InvalidValue(
                f"an export is written to a stream, not {shown(stream)}", rule="R-IN4"
            )
        paging = sorted({"limit", "cursor"} & set(filters))
        if paging:
            raise InvalidInput(
                f"an export holds every SIM the filters select: {' and '.join(paging)} "
                "cannot be given (R-BK4)",
                rule="R-BK4",
            )
        unknown = sorted(set(filters) - EXPORT_FILTERS)
        if unknown:
            raise InvalidInput(
                f"unknown export filter(s) {', '.join(unknown)}; "
                f"the filters are {', '.join(sorted(EXPORT_FILTERS))}",
                rule="R-BK4",
            )
        listing = self.listing
        page = listing.sims(**filters, limit=EXPORT_PAGE)  # refuses bad filters: nothing written
        log.info("csv.export.start", total=page.total, filters=sorted(filters))
        written = 0
        with text_stream(stream) as text:
            writer = csv.writer(text, lineterminator="\r\n")
            writer.writerow(EXPORT_COLUMNS)
            while True:
                writer.writerows(export_row(item) for item in page.items)
                before, written = written, written + len(page.items)
                if written // PROGRESS_EVERY > before // PROGRESS_EVERY:
                    log.info("csv.export.progress", rows=written, total=page.total)
                if page.next_cursor is None:
                    break
                page = listing.sims(**filters, limit=EXPORT_PAGE, cursor=page.next_cursor)
        log.info("csv.export.written", rows=written)
        return written
