"""The floor of the HTTP stack simledger serves on (bench_http.py's ``floor`` and ``raw``
phases): uvicorn with ``simledger serve``'s settings and one route that answers a fixed JSON
body with no work at all. What a request costs here is what any route costs before its own
work: through FastAPI (``floor``), or through a bare ASGI callable, no framework (``raw``).

    python bench/_bare_app.py PORT [raw]
"""

from __future__ import annotations

import sys
from typing import Any

import uvicorn
from fastapi import FastAPI

app = FastAPI()
BODY = b'{"items":[],"limit":100,"sort":"iccid"}'


@app.get("/v1/floor")
def floor(limit: int = 100, sort: str = "iccid") -> dict[str, object]:
    return {"items": [], "limit": limit, "sort": sort}


async def raw(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": BODY})


if __name__ == "__main__":
    served = raw if sys.argv[2:] == ["raw"] else app
    uvicorn.run(
        served, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False
    )
