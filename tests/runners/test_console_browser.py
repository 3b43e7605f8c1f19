"""The web console in a real browser: Debian's chromium driven by Playwright, against a real
``simledger serve`` (SQLite; the tenancy of every page on PostgreSQL too is
test_console_pages.py's). One server and one browser for the module.

Sign in, filter, sort, page (and back), select, bulk pause with one refusal, the carrier
simulator's answers through the service, pending activity changing by itself, a SIM's page
and the SIM as of an earlier version, sign out; the keyboard alone through the list and the
bulk dialog; a label on every control; the CSRF token required.

``SIMLEDGER_SCREENSHOTS=docs`` also saves the README's screenshots there."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator

import pytest
from console_world import A, ConsoleWorld, seed
from http_serve import Served, serve
from playwright.sync_api import Browser, Page, expect, sync_playwright

from simledger.adapters.carrier.answers_http import HttpAnswers
from simledger.adapters.carrier.simulator import SimulatedCarrier
from simledger.application.forwarding import Forwarder
from simledger.application.ledger import SimLedger

CHROMIUM = os.environ.get("SIMLEDGER_CHROMIUM", "/usr/bin/chromium")
SECRET = "console-carrier-secret"
SHOTS = os.environ.get("SIMLEDGER_SCREENSHOTS")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ConsoleWorld, Served]]:
    tmp = tmp_path_factory.mktemp("console-browser")
    env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(tmp / "s.db")}
    made = seed(env)
    extra = {"SIMLEDGER_CARRIER_SECRET": SECRET, "SIMLEDGER_HTTP_RATE": "0"}
    with serve(env, tmp / "serve.log", extra) as served:
        yield made, served


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        message = f"no chromium at {CHROMIUM} (make test installs Debian's chromium)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI is set: the browser tests must run")
        pytest.skip(message)
    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=CHROMIUM)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser, site: tuple[ConsoleWorld, Served]) -> Iterator[Page]:
    context = browser.new_context(base_url=site[1].url, viewport={"width": 1440, "height": 900})
    context.set_default_timeout(10_000)
    opened = context.new_page()
    try:
        yield opened
    finally:
        context.close()


def _sign_in(page: Page, key: str, path: str = "/ui/sims") -> None:
    page.goto(path)
    expect(page).to_have_url(re.compile(r"/ui/sign-in\?next="))
    page.get_by_label("API key").fill(key)
    page.keyboard.press("Enter")
    expect(page.locator("h1")).not_to_have_text("Sign in")


def _rows(page: Page) -> list[str]:
    cells = page.locator("tr[data-iccid]")
    return [str(cells.nth(i).get_attribute("data-iccid")) for i in range(cells.count())]


def test_sign_in_filter_sort_page_back_and_sign_out(
    page: Page, site: tuple[ConsoleWorld, Served]
) -> None:
    made, _ = site
    p = page
    _sign_in(p, made.a_key)
    loc = p.locator
    expect(loc("#total")).to_have_text("18")
    # the chips' counts arrive by themselves after the page (htmx, on load)
    expect(loc('a[data-status="active"] .count')).to_have_text(str(len(made.a_active)))
    expect(loc('a[data-status="blank"] .count')).to_have_text(str(len(made.a_blank)))
    assert set(_rows(p)) == set(made.a_active + made.a_blank)
    assert not any(iccid in p.content() for iccid in made.b_sims)
    loc('a[data-status="active"]').click()
    expect(p).to_have_url(re.compile(r"status=active"))
    expect(loc("#total")).to_have_text(str(len(made.a_active)))
    expect(loc('a[data-status="active"]')).to_have_attribute("aria-current", "true")
    loc('a[data-sort="iccid"]').click()  # sorted by ICCID already: now the other way
    expect(p).to_have_url(re.compile(r"descending=1"))
    expect(loc("th[aria-sort]")).to_have_attribute("aria-sort", "descending")
    assert _rows(p) == sorted(made.a_active, reverse=True)
    loc('a[data-sort="operator"]').click()
    expect(loc("th[aria-sort]")).to_have_attribute("aria-sort", "ascending")
    p.goto("/ui/sims?status=active&limit=10")
    first = _rows(p)
    assert first == sorted(made.a_active)[:10]
    loc("a[rel=next]").click()
    expect(p).to_have_url(re.compile(r"cursor=.*page=2"))
    expect(loc("tr[data-iccid]")).to_have_count(len(made.a_active) - 10)
    assert _rows(p) == sorted(made.a_active)[10:]
    p.go_back()
    expect(loc("tr[data-iccid]")).to_have_count(10)
    assert _rows(p) == first
    p.get_by_label("Search").fill(made.a_active[3])
    p.get_by_role("button", name="Apply").click()
    expect(loc("#total")).to_have_text("1")
    expect(p).to_have_url(re.compile(rf"search={made.a_active[3]}"))
    p.get_by_role("button", name="Sign out").click()
    expect(loc("h1")).to_have_text("Sign in")
    p.goto("/ui/sims")
    expect(p).to_have_url(re.compile(r"/ui/sign-in"))


def test_bulk_pause_with_a_refusal_confirmed_by_the_carrier_then_the_sim_as_it_was(
    page: Page, site: tuple[ConsoleWorld, Served]
) -> None:
    made, served = site
    p = page
    loc = p.locator
    _sign_in(p, made.a_key, "/ui/sims?limit=100")
    paused = made.a_active[1:3]
    refused = made.a_blank[0]
    # keyboard alone: a box ticked with Space, the dialog opened with Enter, confirmed by
    # Enter on its focused button
    first_box = p.get_by_label(f"Select {paused[0]}")
    first_box.focus()
    p.keyboard.press("Space")
    expect(first_box).to_be_checked()
    p.get_by_label(f"Select {paused[1]}").check()
    p.get_by_label(f"Select {refused}").check()
    pause = p.get_by_role("button", name="Pause data…")
    pause.focus()
    p.keyboard.press("Enter")
    dialog = loc("dialog")
    expect(dialog.locator("h2")).to_have_text("Pause data of 3 SIMs?")
    confirm = dialog.get_by_role("button", name="Pause 3 SIMs")
    expect(confirm).to_be_focused()
    if SHOTS:
        p.screenshot(path=f"{SHOTS}/console-bulk-confirm.png")
    p.keyboard.press("Enter")
    expect(loc("dialog .accepted-count")).to_have_text("2")
    expect(loc("dialog .rejected-count")).to_have_text("1")
    expect(loc("dialog table.rejected")).to_contain_text(refused)
    expect(loc("dialog table.rejected")).to_contain_text("R-SIM4")
    operation = loc("dialog p code").inner_text()
    row = loc(f'#activity tr[data-operation="{operation}"]')
    expect(row.locator(".pending")).to_have_text("2")  # refreshed at once (HX-Trigger)
    expect(row.locator(".confirmed")).to_have_text("0")
    # the carrier simulator answers, signed, through the running service
    ledger = SimLedger(env=made.env)
    answers = HttpAnswers(served.url, SECRET)
    try:
        Forwarder(ledger, SimulatedCarrier(), answers_via=answers).run_until_idle()
    finally:
        answers.close()
        ledger.close()
    expect(row.locator(".confirmed")).to_have_text("2", timeout=15_000)  # by itself (polling)
    expect(row.locator(".pending")).to_have_text("0")
    loc("dialog").get_by_role("link", name="Close").click()
    expect(loc("dialog")).to_have_count(0)
    if SHOTS:
        p.goto("/ui/sims")
        expect(loc('a[data-status="active"] .count')).to_be_visible()
        p.screenshot(path=f"{SHOTS}/console-sims.png", full_page=True)
    p.goto("/ui/sims?limit=100")
    loc(f'a[href="/ui/sims/{paused[0]}"]').click()
    expect(loc("h1")).to_contain_text(paused[0])
    expect(loc("h1 .status")).to_have_text("Suspended")
    timeline = loc("ol.timeline")
    expect(timeline).to_contain_text("Paused")
    expect(timeline).to_contain_text("by alice at A")  # who asked: the company's key
    expect(timeline).to_contain_text("by carrier answers (signed)")
    timeline.get_by_role("link", name="as of version 1").click()
    expect(p).to_have_url(re.compile(r"version=1"))
    status = loc('tr[data-field="status"]')
    expect(status).to_have_class(re.compile("changed"))
    expect(status.locator(".now")).to_have_text("Suspended")
    expect(status.locator(".then")).to_have_text("Pending")
    expect(loc('tr[data-field="company"] .then')).to_have_text("—")
    expect(loc('tr[data-field="company"] .now')).to_have_text(A)


def test_esim_qr_labels_escape_and_the_csrf_token_in_the_browser(
    page: Page, site: tuple[ConsoleWorld, Served]
) -> None:
    made, _ = site
    p = page
    loc = p.locator
    _sign_in(p, made.a_key, f"/ui/sims/{made.a_esim}")
    expect(loc("figure.qr svg")).to_have_count(1)
    expect(loc("figure.qr")).to_contain_text("LPA:1$smdp.example.com$ACME-0001")
    if SHOTS:  # the eSIM beside itself as it was before its company and package
        p.goto(f"/ui/sims/{made.a_esim}?version=3")
        p.screenshot(path=f"{SHOTS}/console-sim.png", full_page=True)
    unlabelled = """() => [...document.querySelectorAll(
            'input:not([type=hidden]), select, textarea')]
        .filter(e => e.labels.length === 0 && !e.getAttribute('aria-label'))
        .map(e => e.outerHTML)"""
    assert p.evaluate(unlabelled) == []
    p.goto("/ui/sims")
    assert p.evaluate(unlabelled) == []
    p.get_by_label("Select all 18 matching").check()
    p.get_by_role("button", name="Resume data…").click()
    expect(loc("dialog h2")).to_have_text("Resume data of 18 SIMs?")
    assert p.evaluate(unlabelled) == []
    expect(p.get_by_label("Yes, I want to resume these 18 SIMs")).to_be_focused()
    p.keyboard.press("Escape")
    expect(loc("dialog")).to_have_count(0)
    # the session's cookie alone is not enough: a form post without the token is refused
    request = p.request
    form: dict[str, str | float | bool] = {"kind": "pause", "iccid": made.a_active[5]}
    assert request.post("/ui/bulk/confirm", form=form).status == 403
    token = loc('input[name="csrf"]').first.get_attribute("value")
    assert token
    assert request.post("/ui/bulk/confirm", form={**form, "csrf": token}).status == 200
