"""The floor of the HTTP stack simledger serves on (bench_http.py's ``floor`` phase): FastAPI
on uvicorn with ``simledger serve``'s settings and one route that answers a fixed JSON body
with no work at all. What a request costs here is what any route costs before its own work.

    python bench/_bare_app.py PORT
"""

from __future__ import annotations

import sys

import uvicorn
from fastapi import FastAPI

app = FastAPI()


@app.get("/v1/floor")
def floor(limit: int = 100, sort: str = "iccid") -> dict[str, object]:
    return {"items": [], "limit": limit, "sort": sort}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
