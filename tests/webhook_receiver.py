"""A webhook receiver for the delivery tests, run as a process of its own:

    python tests/webhook_receiver.py PORT OUT_FILE SECRET [--fail-every N] [--delay S]

Every POST to ``/hook/<name>`` has its signature checked with SECRET (``/bad/<name>``: with
another secret, so every delivery there is refused 401); every ``N``-th request answers 500
(the receiver "fails one request in two" with N = 2) and each answer but a 401 waits
``delay`` seconds.
One JSON line per request is appended to OUT_FILE *before* the answer is sent (flushed): the
path, the status answered, whether it stalls (``--stall N``: the N-th accepted POST hangs,
so that a test can kill the deliverer in the middle of that batch), and the events'
positions and ids: a deliverer killed while waiting leaves the batch recorded as received."""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SIGNATURE_HEADER = "X-Simledger-Signature"

WRONG_SECRET = "not-the-secret-of-any-subscription"


def verify(secret: str, header: str | None, body: bytes) -> bool:
    """HTTP.md's check, written as a receiver would from the contract alone (no simledger
    import: the process starts in a few milliseconds)."""
    parts = dict(p.split("=", 1) for p in (header or "").split(",") if "=" in p)
    stamp, given = parts.get("t", ""), parts.get("v1", "")
    if not stamp.isdigit() or abs(time.time() - int(stamp)) > 300:
        return False
    expected = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256)
    return hmac.compare_digest(expected.hexdigest(), given)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("out")
    parser.add_argument("secret")
    parser.add_argument("--fail-every", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--stall", type=int, default=0, help="the N-th accepted POST hangs 30 s")
    args = parser.parse_args()
    lock = threading.Lock()
    count = {"n": 0, "accepted": 0}
    out = open(args.out, "a", encoding="utf-8")  # noqa: SIM115 (the server's life)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            secret = WRONG_SECRET if self.path.startswith("/bad/") else args.secret
            with lock:
                count["n"] += 1
                nth = count["n"]
            if not verify(secret, self.headers.get(SIGNATURE_HEADER), body):
                status = 401
            elif args.fail_every and nth % args.fail_every == 0:
                status = 500
            else:
                status = 200
            stall = False
            if status == 200:
                with lock:
                    count["accepted"] += 1
                    stall = count["accepted"] == args.stall
            events = json.loads(body)["events"] if status != 401 else []
            line = {
                "path": self.path,
                "status": status,
                "positions": [e["position"] for e in events],
                "ids": [e["id"] for e in events],
                "aggregates": [e["aggregate_id"] for e in events],
                "stalled": stall,
            }
            with lock:
                out.write(json.dumps(line) + "\n")
                out.flush()
            time.sleep(30 if stall else args.delay if status != 401 else 0)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a: object) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
