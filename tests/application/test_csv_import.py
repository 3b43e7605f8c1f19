"""Importing a delivery file (R-IO1): all or nothing, every bad row by its line number."""

from __future__ import annotations

import io
import logging
from typing import Any

import pytest
from helpers import event_count, iccids

from simledger import CsvImportError, SimLedger, SimStatus, SimType, UnknownSim

HEADER = "iccid,operator,sim_type,esim\n"


@pytest.fixture
def ledger_env(store_env: dict[str, str]) -> dict[str, str]:
    return store_env  # the ledger on every store


@pytest.fixture
def ledger_options() -> dict[str, Any]:
    return {"operators_without_integration": ("Orange",)}


def csv_text(*rows: str, header: str = HEADER) -> io.StringIO:
    return io.StringIO(header + "".join(row + "\n" for row in rows))


def spaced(iccid: str) -> str:
    return " ".join(iccid[i : i + 4] for i in range(0, len(iccid), 4))


def test_a_good_file_is_received_in_one_go(ledger: SimLedger) -> None:
    a, b, c, d, e = iccids(5)
    before = event_count(ledger)
    stream = csv_text(
        f"{a},3UK,prepaid,true",
        f"{spaced(b)},3UK,Subscription,NO",
        "",
        f"{c[:6]}-{c[6:]},Orange,paygo,",
        f" {d} , A1 ,PAYGO, Yes ",
        f'"{e}","3UK","subscription","0"',
    )

    received = ledger.import_sims_csv(stream)

    assert received == [a, b, c, d, e]
    assert event_count(ledger) == before + 5
    expected = {
        a: ("3UK", SimType.PREPAID, True, SimStatus.PENDING),
        b: ("3UK", SimType.SUBSCRIPTION, False, SimStatus.PENDING),
        c: ("Orange", SimType.PAYGO, False, SimStatus.NOT_AVAILABLE),
        d: ("A1", SimType.PAYGO, True, SimStatus.PENDING),
        e: ("3UK", SimType.SUBSCRIPTION, False, SimStatus.PENDING),
    }
    for key, (operator, sim_type, esim, status) in expected.items():
        sim = ledger.sim(key)
        assert (sim.operator, sim.sim_type, sim.esim, sim.status) == (
            operator,
            sim_type,
            esim,
            status,
        )
        assert (sim.activation_code is not None) == esim


def test_columns_may_come_in_any_order_and_case(ledger: SimLedger) -> None:
    [key] = iccids(1)
    stream = csv_text(f"1,{key},Orange,prepaid", header="ESIM, ICCID ,Operator,SIM_TYPE\n")
    assert ledger.import_sims_csv(stream) == [key]
    assert ledger.sim(key).esim is True


def test_a_binary_stream_with_a_bom_is_read_as_utf8(ledger: SimLedger) -> None:
    [key] = iccids(1)
    data = ("\ufeff" + HEADER + f"{key},3UK,prepaid,false\n").encode("utf-8")
    assert ledger.import_sims_csv(io.BytesIO(data)) == [key]


def test_every_bad_row_is_reported_by_line_and_nothing_is_recorded(ledger: SimLedger) -> None:
    good, known, dup, other = iccids(4)
    ledger.receive_sims([known], operator="3UK", sim_type="prepaid")
    before = event_count(ledger)
    stream = csv_text(
        f"{good},3UK,prepaid,false",  # line 2: fine
        f"{good[:-1]}{(int(good[-1]) + 1) % 10},3UK,prepaid,false",  # 3: Luhn
        "8944123,3UK,prepaid,false",  # 4: too short
        f"77{good[2:]},3UK,prepaid,false",  # 5: not 89
        f"89ab{good[4:]},3UK,prepaid,false",  # 6: letters
        f"{dup},,prepaid,false",  # 7: no operator
        f"{other},3UK,postpaid,false",  # 8: unknown SIM type
        f"{other},3UK,prepaid,maybe",  # 9: bad eSIM flag
        f"{other},3UK,prepaid",  # 10: too few fields
        f"{other},3UK,prepaid,false,extra",  # 11: too many fields
        "",  # 12: blank, skipped
        f"{known},3UK,prepaid,false",  # 13: already in the store
        f"{dup},3UK,prepaid,false",  # 14: fine (line 7 was bad but named it first)
        f"{spaced(dup)},3UK,prepaid,false",  # 15: duplicate of line 14
        "123,  ,nope,2",  # 16: several problems at once
    )

    with pytest.raises(CsvImportError) as caught:
        ledger.import_sims_csv(stream)

    errors = caught.value.errors
    assert caught.value.rule == "R-IO1"
    assert sorted(errors) == [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 16]
    assert "Luhn" in errors[3]
    assert "18 to 22" in errors[4]
    assert "starts with 89" in errors[5]
    assert "only digits" in errors[6]
    assert "operator is empty" in errors[7]
    assert "postpaid" in errors[8] and "prepaid, subscription, paygo" in errors[8]
    assert "maybe" in errors[9]
    assert "got 3" in errors[10]
    assert "got 5" in errors[11]
    assert "already received" in errors[13] and known in errors[13]
    assert "line 14" in errors[15]
    assert all(part in errors[16] for part in ("18 to 22", "operator", "nope", "'2'"))
    assert event_count(ledger) == before
    for key in (good, dup, other):
        with pytest.raises(UnknownSim):
            ledger.sim(key)


def test_one_bad_row_among_many_records_nothing(ledger: SimLedger) -> None:
    keys = iccids(1500)
    rows = [f"{key},3UK,subscription,no" for key in keys]
    rows[1000] = f"{keys[1000]},3UK,subscription,perhaps"
    before = event_count(ledger)
    with pytest.raises(CsvImportError) as caught:
        ledger.import_sims_csv(csv_text(*rows))
    assert list(caught.value.errors) == [1002]  # header is line 1, rows[0] is line 2
    assert event_count(ledger) == before
    with pytest.raises(UnknownSim):
        ledger.sim(keys[0])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "empty file"),
        ("\n\n", "empty file"),
        (f"{iccids(1)[0]},3UK,prepaid,false\n", "missing column(s) iccid, operator"),
        ("iccid,operator,sim_type\n", "missing column(s) esim"),
        ("iccid,operator,sim_type,esim,plan\n", "unknown column(s) 'plan'"),
        ("iccid,operator,type,esim\n", "unknown column(s) 'type'"),
        ("iccid,operator,sim_type,esim,esim\n", "named twice: esim"),
    ],
)
def test_a_wrong_or_missing_header_is_an_error_at_line_one(
    ledger: SimLedger, text: str, expected: str
) -> None:
    before = event_count(ledger)
    rows = f"{iccids(1, 50)[0]},3UK,prepaid,false\n"
    with pytest.raises(CsvImportError) as caught:
        ledger.import_sims_csv(io.StringIO(text + rows if text.strip() else text))
    assert list(caught.value.errors) == [1]
    assert expected in caught.value.errors[1]
    assert event_count(ledger) == before


def test_a_file_with_only_the_header_receives_nothing(ledger: SimLedger) -> None:
    before = event_count(ledger)
    assert ledger.import_sims_csv(csv_text()) == []
    assert event_count(ledger) == before


def test_line_numbers_count_lines_of_quoted_fields(ledger: SimLedger) -> None:
    a, b = iccids(2)
    stream = csv_text(f'{a},"3UK\nnorth",prepaid,false', f"{b},3UK,prepaid,bad")
    with pytest.raises(CsvImportError) as caught:
        ledger.import_sims_csv(stream)
    # line 2's operator holds a newline (R-IN1); b's row starts at line 4, not 3
    assert list(caught.value.errors) == [2, 4]
    assert "control character U+000A" in caught.value.errors[2]


def test_progress_is_logged_every_ten_thousand_rows(caplog: pytest.LogCaptureFixture) -> None:
    ledger = SimLedger()
    rows = [f"{key},3UK,prepaid,false" for key in iccids(10_001)]
    rows[-1] += "x"  # refused at the end: the reading is logged all the same
    with (
        caplog.at_level(logging.INFO, logger="simledger"),
        pytest.raises(CsvImportError) as caught,
    ):
        ledger.import_sims_csv(csv_text(*rows))
    assert list(caught.value.errors) == [10_002]
    progress = [r.getMessage() for r in caplog.records if "csv.import.progress" in r.getMessage()]
    assert len(progress) == 1
    assert '"rows": 10000' in progress[0]


def test_bytes_that_are_not_utf8_are_refused_at_their_line(ledger: SimLedger) -> None:
    a, b, c, d = iccids(4)
    data = (
        HEADER.encode()
        + f"{a},3UK,prepaid,false\n".encode()
        + f"{b},T\xe9l\xe9com,prepaid,false\n".encode("latin-1")  # line 3
        + f'{c},"3UK\n\xe9",prepaid,false\n'.encode("latin-1")  # line 5 (in a quoted field)
        + f"{d},3UK,prepaid,maybe\n".encode()  # line 6: still read and reported
    )
    before = event_count(ledger)
    with pytest.raises(CsvImportError) as caught:
        ledger.import_sims_csv(io.BytesIO(data))
    errors = caught.value.errors
    assert caught.value.rule == "R-IO1"
    assert list(errors) == [3, 5, 6]
    assert errors[3] == "not UTF-8 text: byte 0xE9 at character 23; save the file as UTF-8"
    assert errors[5].startswith("not UTF-8 text: byte 0xE9 at character 1;")
    assert "maybe" in errors[6]
    assert event_count(ledger) == before


def test_a_header_that_is_not_utf8_is_refused_at_line_one(ledger: SimLedger) -> None:
    [key] = iccids(1)
    data = "iccid,op\xe9rator,sim_type,esim\n" + f"{key},3UK,prepaid,false\n"
    with pytest.raises(CsvImportError) as caught:
        ledger.import_sims_csv(io.BytesIO(b"\xef\xbb\xbf" + data.encode("latin-1")))
    assert list(caught.value.errors) == [1]
    assert caught.value.errors[1].startswith("not UTF-8 text: byte 0xE9 at character 9;")


def test_a_utf8_file_with_a_bom_and_accents_is_received(ledger: SimLedger) -> None:
    [key] = iccids(1)
    data = ("\ufeff" + HEADER + f"{key},Télécom,prepaid,false\n").encode("utf-8")
    assert ledger.import_sims_csv(io.BytesIO(data)) == [key]
    assert ledger.sim(key).operator == "Télécom"
