"""The web console's SIM list page against the same page of the JSON API (issue 18), on
PostgreSQL, in one run, over one real ``simledger serve``.

    python bench/bench_console.py [--sims 1000000] [--requests 300] [--sort iccid] [--keep]
    python bench/bench_console.py --reuse SCHEMA ...   # a store kept by --keep

Setup (untimed): ``--sims`` active SIMs of one company (``bench/_service_setup.py``, as
``bench_http.py`` builds them) in a fresh schema, their views folded, the schema ANALYZEd
(the statistics autovacuum would have gathered on a store in use), a company key, then a
``simledger serve`` process (``SIMLEDGER_HTTP_RATE=0``) and a console session signed in with
that key through the sign-in form.

Timed, one client, one request at a time (latency, not throughput), ``--requests`` each, the
two sides taking turns request by request so both see the same machine:

* ``page``: ``GET /ui/sims?status=active&operator=Orange&sort=<--sort>&descending=1&limit=100``
  — the whole HTML page drawn on the server: the rows, the status chips with their counts
  (one count per status), the pending activity panel — following its "Next page" link for
  up to 5 pages, then from the first again;
* ``chips``: the status chips' counts the page then asks for by itself (htmx, on load:
  one count per status under the page's other filters), timed apart;
* ``api``: ``GET /v1/sims`` with the same query and cursors (``bench_http.py``'s list call).

Printed: p50, p95, p99 per side, and the page's p95 over the API's. The schema is dropped at
the end (``--keep`` keeps it)."""

from __future__ import annotations

import argparse
import html
import re
import sys
import time
import uuid

import httpx
from _common import create_schema, keep_or_drop, pg_connect, pg_env
from _service_setup import build_engine
from bench_http import served
from psycopg import sql

from simledger.application.ledger import SimLedger

QUERY = {"status": "active", "operator": "Orange", "descending": "1", "limit": "100"}
PAGES = 5
TARGET_MS = 50.0
NEXT = re.compile(r'<a href="([^"]+)" rel="next">')
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
CHIPS = re.compile(r'id="chips" hx-get="([^"]+)"')


def percentile(times: list[float], q: float) -> float:
    ordered = sorted(times) or [0.0]
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000


def sign_in(client: httpx.Client, key: str) -> None:
    form = client.get("/ui/sign-in")
    token = CSRF.search(form.text)
    assert token, form.text[:300]
    answer = client.post("/ui/sign-in", data={"key": key, "csrf": token.group(1)})
    assert answer.status_code == 200 and 'id="total"' in answer.text, answer.text[:300]


def run(url: str, key: str, sort: str, requests: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"page": [], "chips": [], "api": []}
    first_page = f"/ui/sims?{httpx.QueryParams({**QUERY, 'sort': sort})}"
    page_url, api_cursor, pages = first_page, None, 0
    with (
        httpx.Client(base_url=url, timeout=60, follow_redirects=True) as browser,
        httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {key}"}) as api,
    ):
        sign_in(browser, key)
        for _ in range(5):  # warm both paths (first-use caches, connections)
            browser.get(first_page).raise_for_status()
            api.get("/v1/sims", params={**QUERY, "sort": sort}).raise_for_status()
        for _ in range(requests):
            began = time.perf_counter()
            answer = browser.get(page_url)
            times["page"].append(time.perf_counter() - began)
            answer.raise_for_status()
            found = NEXT.search(answer.text)
            chips = CHIPS.search(answer.text)
            assert chips, answer.text[:500]
            began = time.perf_counter()
            browser.get(html.unescape(chips.group(1))).raise_for_status()
            times["chips"].append(time.perf_counter() - began)

            params = {**QUERY, "sort": sort, **({"cursor": api_cursor} if api_cursor else {})}
            began = time.perf_counter()
            listed = api.get("/v1/sims", params=params)
            times["api"].append(time.perf_counter() - began)
            listed.raise_for_status()

            pages += 1
            if found and pages % PAGES:
                page_url, api_cursor = html.unescape(found.group(1)), listed.json()["next_cursor"]
            else:
                page_url, api_cursor = first_page, None
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sims", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=300, help="per side")
    parser.add_argument("--sort", default="iccid")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--reuse", metavar="SCHEMA", help="a kept store of this script")
    args = parser.parse_args(argv)
    schema = args.reuse or f"bench_console_{uuid.uuid4().hex[:10]}"
    env = pg_env(schema)
    print(f"{args.sims:,} SIMs, {args.requests} requests per side, sort {args.sort}; {schema}")
    if not args.reuse:
        create_schema(schema)
    try:
        started = time.perf_counter()
        setup = SimLedger(env=env)
        try:
            if not args.reuse:
                build_engine(setup, args.sims, 100, 0)
            setup.catch_up_views()
            # The planner's statistics of the freshly loaded views, as autovacuum would
            # gather them on a store in use: without them a filtered page of 200,000 rows
            # took 600-800 ms (a bitmap scan and a sort) instead of about 10 ms.
            with pg_connect(schema) as conn:
                tables = conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,)
                ).fetchall()
                for (table,) in tables:
                    conn.execute(
                        sql.SQL("ANALYZE {}.{}").format(
                            sql.Identifier(schema), sql.Identifier(table)
                        )
                    )
            _, key = setup.keys.create(
                name="bench console", scopes=("sims:read",), company="Bench Logistics"
            )
        finally:
            setup.close()
        sys.stderr.write(f"setup: {time.perf_counter() - started:.0f} s\n")
        with served(env) as url:
            times = run(url, key, args.sort, args.requests)
        for side in ("page", "chips", "api"):
            t = times[side]
            print(
                f"  {side:<6} p50 {percentile(t, 0.5):7.2f} ms   p95 {percentile(t, 0.95):7.2f} ms"
                f"   p99 {percentile(t, 0.99):7.2f} ms   ({len(t)} requests)"
            )
        page95, api95 = percentile(times["page"], 0.95), percentile(times["api"], 0.95)
        verdict = "PASS" if page95 < TARGET_MS else "FAIL"
        print(
            f"  page p95 / API p95 = {page95 / max(api95, 1e-9):.2f}; "
            f"page p95 {page95:.2f} ms vs target < {TARGET_MS:g} ms: {verdict}"
        )
    finally:
        keep_or_drop(schema, args.keep or bool(args.reuse))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
