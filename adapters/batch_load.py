"""Load many aggregates at once (bulk operations over thousands of SIMs)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from eventsourcing.application import AggregateNotFoundError, Application


def load_many(app: Application[str], ids: Sequence[str]) -> dict[str, Any]:
    """The aggregates found for ``ids`` (snapshots used), keyed by id; missing ids omitted."""
    found: dict[str, Any] = {}
    for aggregate_id in dict.fromkeys(ids):
        try:
            found[aggregate_id] = app.repository.get(aggregate_id)
        except AggregateNotFoundError:
            continue
    return cast(dict[str, Any], found)
