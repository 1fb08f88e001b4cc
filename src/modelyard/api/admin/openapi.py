"""GET /openapi.json: the OpenAPI 3.1 description of the admin API, built from the route table
and the wire models, so it cannot drift from what the routes accept."""

from __future__ import annotations

import re
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from modelyard import __version__
from modelyard.api.admin.routes import ADMIN_ROUTES

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}
_ERRORS = {
    "400": "Invalid input; `param` names the field",
    "401": "Missing, malformed, expired or revoked credential",
    "403": "Denied: the body names the action, the resource and why",
    "404": "Not found (or in a project you hold no role on)",
}


def build_spec() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {"Error": _ERROR}
    for route in ADMIN_ROUTES:
        operation: dict[str, Any] = {
            "summary": route.summary,
            "operationId": route.handler.__name__,
            "description": f"Requires the action: `{route.action}`.",
            "security": [{"apiKey": []}, {"bearer": []}],
            "parameters": [
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                for name in re.findall(r"{(\w+)}", route.path)
            ],
            "responses": {
                str(route.status): {
                    "description": "OK",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                **{
                    code: {
                        "description": text,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                        },
                    }
                    for code, text in _ERRORS.items()
                },
            },
        }
        if route.method in ("POST", "PATCH", "PUT", "DELETE"):
            operation["parameters"].append(
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "maxLength": 200},
                    "description": "Retries with the same key get the first answer.",
                }
            )
        if route.body is not None:
            name = route.body.__name__
            schemas[name] = route.body.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
            schemas.update(schemas[name].pop("$defs", {}))
            operation["requestBody"] = {
                "required": route.method != "POST" or not route.path.endswith("/rotate"),
                "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}
                },
            }
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "Modelyard admin API", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "api-key"},
                "bearer": {"type": "http", "scheme": "bearer"},
            },
        },
    }


async def openapi_json(request: Request) -> Response:
    return Response(orjson.dumps(build_spec()), media_type="application/json")
