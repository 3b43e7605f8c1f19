"""The web console's pages in-process (the app of ``simledger serve``, on SQLite and
PostgreSQL): a company key's pages never show another company's SIM, group, operation or
name, in any page or answer; another company's things answer as unknown ones do; every
form needs the session's CSRF token; the session cookie's flags; refusals as messages."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote_plus

import httpx
import pytest
from console_world import CSRF, ConsoleWorld, console_iccids, seed, sign_in
from fastapi.testclient import TestClient
from http_serve import store_for, store_params

from simledger.application.ledger import SimLedger
from simledger.runners.http.app import create_app
from simledger.runners.http.settings import Settings


@pytest.fixture(scope="module", params=store_params())
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ConsoleWorld, TestClient]]:
    tmp: Path = tmp_path_factory.mktemp("console")
    with store_for(request, tmp) as env:
        made = seed(env)
        app = create_app(lambda: SimLedger(env=dict(env)), Settings(rate_per_second=0))
        with TestClient(app, base_url="https://console.test") as client:
            yield made, client


def _client(pair: tuple[ConsoleWorld, TestClient]) -> TestClient:
    _, client = pair
    client.cookies.clear()
    return client


def test_sign_in_sets_a_strict_httponly_secure_cookie_and_sign_out_ends_the_session(
    world: tuple[ConsoleWorld, TestClient],
) -> None:
    made, client = world[0], _client(world)
    assert (
        client.get("/ui/sims", follow_redirects=False)
        .headers["location"]
        .startswith("/ui/sign-in?next=")
    )
    token = CSRF.search(client.get("/ui/sign-in").text)
    assert token
    answer = client.post(
        "/ui/sign-in",
        data={"key": made.a_key, "csrf": token.group(1), "next": "//evil.example/"},
        follow_redirects=False,
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/sims"
    cookie = next(c for c in answer.headers.get_list("set-cookie") if "simledger_session" in c)
    flags = cookie.lower()
    assert "httponly" in flags and "samesite=strict" in flags and "secure" in flags
    assert made.a_key not in " ".join(answer.headers.get_list("set-cookie"))
    page = client.get("/ui/sims")
    assert page.status_code == 200 and "alice at A" in page.text
    csrf = CSRF.search(page.text)
    assert csrf
    assert client.post("/ui/sign-out", data={}).status_code == 403  # no token: refused
    out = client.post("/ui/sign-out", data={"csrf": csrf.group(1)}, follow_redirects=False)
    assert out.status_code == 303
    assert client.get("/ui/sims", follow_redirects=False).status_code == 303


def test_a_wrong_key_or_a_missing_sign_in_token_is_refused(
    world: tuple[ConsoleWorld, TestClient],
) -> None:
    client = _client(world)
    token = CSRF.search(client.get("/ui/sign-in").text)
    assert token
    wrong = client.post("/ui/sign-in", data={"key": "slk_nope", "csrf": token.group(1)})
    assert wrong.status_code == 401 and "unknown or revoked key" in wrong.text
    client.cookies.clear()
    forged = client.post("/ui/sign-in", data={"key": world[0].a_key, "csrf": "guess"})
    assert forged.status_code == 403 and "CSRF" in forged.text


def test_every_form_needs_the_sessions_csrf_token(world: tuple[ConsoleWorld, TestClient]) -> None:
    made, client = world[0], _client(world)
    csrf = sign_in(client, made.a_key)
    one = made.a_active[1]
    for path, data in (
        ("/ui/bulk/confirm", {"kind": "pause", "iccid": one}),
        ("/ui/bulk", {"kind": "pause", "iccid": one}),
        ("/ui/groups/new", {"iccid": one}),
        ("/ui/groups", {"name": "x", "package_id": made.package, "iccid": one}),
        (f"/ui/groups/{made.b_group}/delete", {}),
    ):
        for token in (None, "wrong", csrf[:-1]):
            sent = data if token is None else {**data, "csrf": token}
            answer = client.post(path, data=sent)
            assert answer.status_code == 403, (path, token, answer.text[:300])
            assert "CSRF token" in answer.text and "Traceback" not in answer.text
    # the header htmx sends counts as the form field does
    answer = client.post(
        "/ui/bulk/confirm",
        data={"kind": "pause", "iccid": one},
        headers={"X-CSRF-Token": csrf, "HX-Request": "true"},
    )
    assert answer.status_code == 200 and "Pause data of 1 SIM?" in answer.text


def _pages_of_a(made: ConsoleWorld, client: TestClient, csrf: str) -> list[httpx.Response]:
    b_active, b_one, _ = made.b_sims
    hx = {"X-CSRF-Token": csrf, "HX-Request": "true"}
    return [
        client.get("/ui/sims?limit=1000"),
        client.get("/ui/sims", params={"company": "acme-b"}),
        client.get("/ui/sims", params={"search": b_active}),
        client.get("/ui/sims", params={"group_id": made.b_group}),
        client.get("/ui/sims", params={"status": "active", "sort": "company", "descending": "1"}),
        client.get("/ui/sims.csv"),
        client.get(f"/ui/sims/{b_active}"),
        client.get(f"/ui/sims/{b_active}?version=1"),
        client.get("/ui/groups"),
        client.get("/ui/activity"),
        client.post("/ui/bulk/confirm", data={"kind": "pause", "iccid": [b_active]}, headers=hx),
        client.post(
            "/ui/bulk",
            data={"kind": "resume", "iccid": [b_active], "idempotency": "t-1"},
            headers=hx,
        ),
        client.post(
            "/ui/groups",
            data={"name": "steal", "package_id": made.package, "iccid": [b_one]},
            headers=hx,
        ),
        client.post(f"/ui/groups/{made.b_group}/delete", data={"move_to": ""}, headers=hx),
    ]


def test_a_company_key_never_sees_another_companys_things_in_any_page(
    world: tuple[ConsoleWorld, TestClient],
) -> None:
    made, client = world[0], _client(world)
    csrf = sign_in(client, made.a_key)
    pages = _pages_of_a(made, client, csrf)
    for page in pages:
        assert page.status_code < 500, (page.request.url, page.text[:500])
        assert "Traceback" not in page.text
        shown = [secret for secret in made.b_private if secret in page.text]
        # what A itself asked for is named back (in "what was tried", in the page's own
        # links), as an unknown thing would be; nothing else of B's appears
        sent = unquote_plus(str(page.request.url)) + (page.request.content or b"").decode()
        asked = {secret for secret in made.b_private if secret in unquote_plus(sent)}
        assert set(shown) <= asked, (page.request.url, shown)
    listed, *_ = pages
    rows = set(re.findall(r'data-iccid="(\d+)"', listed.text))
    assert rows == set(made.a_active + made.a_blank)
    assert 'id="total">18<' in listed.text
    exported = list(csv.DictReader(io.StringIO(pages[5].text)))
    assert {row["iccid"] for row in exported} == rows
    assert {row["company"] for row in exported} == {"acme-a"}
    # another company's SIM answers exactly as one that does not exist
    unknown = console_iccids(1, 900)[0]
    missing = client.get(f"/ui/sims/{unknown}")
    theirs = pages[6]
    assert theirs.status_code == missing.status_code == 404
    assert theirs.text.replace(made.b_sims[0], "X") == missing.text.replace(unknown, "X")
    assert "R-SIM1" in theirs.text and "What was tried: open the SIM" in theirs.text
    assert "no SIM with ICCID" in pages[11].text and "0</b> SIMs accepted" in pages[11].text
    # B's things are untouched: B still sees its group and its pending operation
    client.cookies.clear()
    sign_in(client, made.b_key)
    assert "b-pool" in client.get("/ui/groups").text
    assert made.b_operation in client.get("/ui/activity").text.replace("\n", "") or (
        made.b_operation[:8] in client.get("/ui/activity").text
    )


def test_refusals_are_messages_with_the_rule_and_what_was_tried(
    world: tuple[ConsoleWorld, TestClient],
) -> None:
    made, client = world[0], _client(world)
    csrf = sign_in(client, made.a_key)
    hx = {"X-CSRF-Token": csrf, "HX-Request": "true"}
    bad_sort = client.get("/ui/sims?sort=nope")
    assert bad_sort.status_code == 422 and "R-SIM2" in bad_sort.text
    assert "What was tried: list the SIMs with sort=nope" in bad_sort.text
    bad_status = client.get("/ui/sims?status=sleeping")
    assert bad_status.status_code == 422 and "unknown status" in bad_status.text
    # R-SG2: an active SIM (it has a package) cannot join a shared group
    refused = client.post(
        "/ui/groups",
        data={"name": "g1", "package_id": made.package, "iccid": [made.a_active[2]]},
        headers=hx,
    )
    assert refused.status_code == 409 and "R-SG2" in refused.text
    assert "What was tried: create the shared group &#39;g1&#39;" in refused.text
    nothing = client.post("/ui/bulk/confirm", data={"kind": "pause"}, headers=hx)
    assert nothing.status_code == 422 and "select at least one SIM" in nothing.text
    many = client.post(
        "/ui/bulk",
        data={"kind": "pause", "all": "1", "q": "status=active", "idempotency": "t-2"},
        headers=hx,
    )
    assert many.status_code == 422 and "Yes, I want to pause" in many.text
    asked = client.post(
        "/ui/bulk/confirm", data={"kind": "pause", "all": "1", "q": "status=active"}, headers=hx
    )
    assert "Pause data of 14 SIMs?" in asked.text
    csv_link = re.search(
        r'<a href="([^"]+)" hx-boost="false" download>Download these 14', asked.text
    )
    assert csv_link, asked.text
    exported = client.get(csv_link.group(1).replace("&amp;", "&")).text.splitlines()
    assert len(exported) == 1 + 14
    version = client.get(f"/ui/sims/{made.a_active[0]}?version=999")
    assert version.status_code == 200 and "R-" in version.text and "version 999" in version.text
    assert made.a_esim in version.text and "<svg" in version.text  # the eSIM's QR code


COUNT = re.compile(r'data-status="(\w+)"[^>]*>[^<]*<span class="count">(\d+)<')


def test_status_chips_count_under_the_other_filters(
    world: tuple[ConsoleWorld, TestClient],
) -> None:
    made, client = world[0], _client(world)
    sign_in(client, made.a_key)
    page = client.get("/ui/sims", params={"operator": "Telefonica", "status": "active"})
    chips = re.search(r'id="chips" hx-get="([^"]+)"', page.text)
    assert chips, page.text[:500]
    counts = client.get(chips.group(1).replace("&amp;", "&")).text
    found = dict(COUNT.findall(counts))
    # Telefonica: the 13 active SIMs of A (B's active one is not counted); the status chip
    # chosen does not narrow its own count
    assert found["active"] == "13" and found["blank"] == "0" and found["suspended"] == "0"
    everything = client.get("/ui/sims/counts").text
    found = dict(COUNT.findall(everything))
    assert (found["active"], found["blank"]) == ("14", "4")


def test_shared_groups_created_from_a_selection_listed_and_deleted(
    world: tuple[ConsoleWorld, TestClient],
) -> None:
    made, client = world[0], _client(world)
    csrf = sign_in(client, made.a_key)
    hx = {"X-CSRF-Token": csrf, "HX-Request": "true"}
    first, second = made.a_blank[:2], made.a_blank[2:]
    dialog = client.post("/ui/groups/new", data={"iccid": first}, headers=hx)
    assert "Create a shared group of 2 SIMs" in dialog.text
    for name, members in (("pool-1", first), ("pool-2", second)):
        made_group = client.post(
            "/ui/groups",
            data={"name": name, "package_id": made.package, "iccid": members},
            headers=hx,
        )
        assert made_group.status_code == 200 and "created with 2 SIMs" in made_group.text
    listed = client.get("/ui/groups").text
    ids = dict(re.findall(r'<tr id="g-([0-9a-f-]+)">\s*<td>([\w-]+)<', listed))
    by_name = {name: group_id for group_id, name in ids.items()}
    assert set(by_name) == {"pool-1", "pool-2"}
    for iccid in made.a_blank:
        assert f'href="/ui/sims/{iccid}"' in listed
    # a locked group takes no member (R-SG3): the refusal is shown, nothing changes
    moved = client.post(
        f"/ui/groups/{by_name['pool-1']}/delete",
        data={"move_to": by_name["pool-2"], "csrf": csrf},
    )
    assert "R-SG" in moved.text and "What was tried: delete the shared group" in moved.text
    assert "pool-1" in moved.text
    gone = client.post(f"/ui/groups/{by_name['pool-1']}/delete", data={"csrf": csrf})
    assert gone.status_code == 200 and "deleted" in gone.text
    assert "pool-1" not in gone.text.split("<main", 1)[1].split("What was tried")[0]
    sim = client.get(f"/ui/sims/{first[0]}").text
    assert "SharedGroup" in sim  # its history shows the group's events beside its own


def test_a_sim_as_it_was_at_a_moment_beside_now(world: tuple[ConsoleWorld, TestClient]) -> None:
    made, client = world[0], _client(world)
    sign_in(client, made.a_key)
    iccid = made.a_active[4]
    now = client.get(f"/ui/sims/{iccid}").text
    moments = re.findall(r'<time datetime="([^"]+)">', now)
    received = moments[-1]  # the timeline is newest first: its last entry is the receipt
    then = client.get(f"/ui/sims/{iccid}", params={"as_of": received}).text
    status = re.search(
        r'data-field="status">.*?class="now">(\w+)<.*?class="then">([\w ]+)<', then, re.S
    )
    assert status and status.groups() == ("Active", "Pending"), then[-3000:]
    # the page's picker sends a moment without a zone: read as UTC (a moment before the SIM
    # existed is refused with the rule, beside now)
    early = client.get(f"/ui/sims/{iccid}", params={"as_of": "2001-01-01T00:00"})
    assert (
        early.status_code == 200 and "What was tried: see the SIM as it was at 2001" in early.text
    )
    bad = client.get(f"/ui/sims/{iccid}", params={"as_of": "yesterday"})
    assert "R-IN3" in bad.text and "not a time" in bad.text and 'class="now"' in bad.text
