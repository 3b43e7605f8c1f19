"""The OpenAPI document FastAPI generates, with the service's errors told as they are: every
operation may answer a problem (``application/problem+json``), FastAPI's own 422 schema
(which the service never sends) replaced by it, and the operations needing a key say so."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "description": "RFC 9457; `rule` is the id of the rule that refused (docs/rules.md)",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "rule": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "errors": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "required": ["type", "title", "status", "detail", "rule"],
}
PROBLEM = {
    "description": "a problem: refused (409, 422), unknown (404), no key (401), outside the "
    "key's scopes (403), over a limit (413, 429), views not there yet (503)",
    "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
}


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            routes=app.routes,
        )
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        schemas["Problem"] = PROBLEM_SCHEMA
        for item in document.get("paths", {}).values():
            for operation in item.values():
                responses = operation.setdefault("responses", {})
                responses.pop("422", None)
                responses["default"] = PROBLEM
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
