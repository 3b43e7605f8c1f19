"""The log's seal, pure (R-ES5): checkpoints over positions find a reorder across
aggregates, a removed tail, a rewritten checkpoint; a witness is POSITION:HASH."""

from __future__ import annotations

import pytest

from simledger.domain.log_seal import Checkpoint, SealCheck, SealFold, read_witness

Event = tuple[int, str, int, str, bytes]
LOG: list[Event] = [
    (1, "a", 1, "t:A", b"{1}"),
    (2, "b", 1, "t:B", b"{2}"),
    (3, "a", 2, "t:A", b"{3}"),
    (4, "b", 2, "t:B", b"{4}"),
    (5, "a", 3, "t:A", b"{5}"),
]


def sealed(log: list[Event], *positions: int) -> list[Checkpoint]:
    checkpoints: list[Checkpoint] = []
    for position in positions:
        previous = checkpoints[-1] if checkpoints else Checkpoint(0, "")
        fold = SealFold(previous.hash)
        for event in log:
            if previous.position < event[0] <= position:
                fold.add(*event)
        checkpoints.append(Checkpoint(position, fold.hexdigest(), previous.position))
    return checkpoints


def check(checkpoints: list[Checkpoint], log: list[Event]) -> list[tuple[str, int]]:
    seal = SealCheck(checkpoints)
    for event in log:
        seal.add(*event)
    return [(p.kind, p.position) for p in seal.finish(log[-1][0] if log else 0)]


def test_an_untouched_log_holds_and_events_after_the_last_checkpoint_are_free() -> None:
    assert check(sealed(LOG, 2, 4), LOG) == []
    assert check(sealed(LOG, 2, 4), [*LOG, (6, "c", 1, "t:C", b"{6}")]) == []


def test_two_events_of_different_aggregates_swapped_are_found() -> None:
    swapped = [LOG[0], LOG[1], (3, "b", 2, "t:B", b"{4}"), (4, "a", 2, "t:A", b"{3}"), LOG[4]]
    assert check(sealed(LOG, 2, 4), swapped) == [("sealed-range", 4)]


def test_the_newest_sealed_events_removed_are_found() -> None:
    assert check(sealed(LOG, 2, 5), LOG[:3]) == [("truncated", 5)]
    assert check(sealed(LOG, 2, 3, 5), LOG[:1]) == [("truncated", 5)]


def test_a_rewritten_or_removed_checkpoint_is_found() -> None:
    first, second, third = sealed(LOG, 1, 3, 5)
    rewritten = Checkpoint(second.position, "0" * 64, second.previous)
    assert check([first, rewritten, third], LOG) == [("sealed-range", 3), ("sealed-range", 5)]
    assert ("seal-table", 5) in check([first, third], LOG)


def test_a_witness_is_position_and_hash() -> None:
    kept = sealed(LOG, 3)[0]
    assert read_witness(str(kept)) == Checkpoint(kept.position, kept.hash)
    assert SealCheck([kept]).witness(Checkpoint(3, kept.hash)) is None
    assert SealCheck([kept]).witness(Checkpoint(2, kept.hash)) is not None
    for bad in ("3", "x:" + kept.hash, "3:abc", "3:" + "g" * 64):
        with pytest.raises(ValueError):
            read_witness(bad)
