"""``simledger regular-group …``, ``always-on``, ``sessions`` and ``list --regular-group``,
run in-process on a SQLite file (the command line's own parsing and exit codes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import iccids

from simledger.runners.cli import main


def run(capsys: pytest.CaptureFixture[str], db: Path, *args: str) -> tuple[int, str, str]:
    code = main([*args, "--db", str(db)])
    out, err = capsys.readouterr()
    return code, out, err


def test_groups_always_on_and_sessions_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "fleet.db"
    a, b = iccids(2)
    csv = tmp_path / "in.csv"
    csv.write_text(f"iccid,operator,sim_type,esim\n{a},3UK,prepaid,false\n{b},3UK,prepaid,false\n")
    assert run(capsys, db, "import", str(csv))[0] == 0
    code, out, _ = run(capsys, db, "regular-group", "create", "north", a, b)
    assert code == 0
    group = out.strip()
    code, out, _ = run(capsys, db, "regular-group", "create", "south")
    south = out.strip()
    assert run(capsys, db, "regular-group", "remove", group, b)[0] == 0
    assert run(capsys, db, "regular-group", "rename", group, "north-east")[0] == 0
    code, out, _ = run(capsys, db, "regular-group", "show", group, "--format", "json")
    shown = json.loads(out)
    assert (shown["name"], shown["members"]) == ("north-east", [a])
    code, out, _ = run(capsys, db, "list", "--regular-group", group, "--format", "json")
    assert [i["iccid"] for i in json.loads(out)["items"]] == [a]
    code, _, err = run(capsys, db, "regular-group", "add", group, a)
    assert code == 2 and err.startswith("error: R-RG2:")
    assert run(capsys, db, "regular-group", "delete", group, "--move-to", south)[0] == 0
    code, out, _ = run(capsys, db, "regular-group", "show", south)
    assert a in out and "1 SIM(s)" in out
    assert run(capsys, db, "always-on", a)[0] == 0
    code, _, err = run(capsys, db, "always-on", a)
    assert code == 2 and err.startswith("error: R-AO1:")
    records = tmp_path / "sessions.jsonl"
    lines = [
        {"record_id": "s1", "iccid": a, "kind": "session_started", "at": "2024-01-15T09:00:00Z"},
        {"record_id": "s1", "iccid": a, "kind": "session_started", "at": "2024-01-15T09:00:00Z"},
        {"record_id": "s2", "iccid": b, "kind": "paused", "at": "2024-01-15T09:00:00Z"},
    ]
    records.write_text("".join(json.dumps(line) + "\n" for line in lines))
    code, out, _ = run(capsys, db, "sessions", str(records))
    assert code == 1 and out.startswith("applied 1, duplicates 1, rejected 1")
    code, out, _ = run(capsys, db, "list", "--format", "json")
    rows = {i["iccid"]: i for i in json.loads(out)["items"]}
    assert (rows[a]["in_session"], rows[a]["always_on"], rows[b]["in_session"]) == (
        "yes",
        True,
        "n/a",
    )
    assert rows[a]["regular_groups"] == [south]
