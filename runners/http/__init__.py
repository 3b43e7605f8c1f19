"""The HTTP service (`simledger serve`, /work HTTP.md): FastAPI over one SimLedger.

``create_app(ledger_factory)`` builds the app: app.py (frame, middleware), auth.py (keys,
scopes, the company a key sees), problems.py (errors as problem+json), one routes_*.py per
group of endpoints."""
