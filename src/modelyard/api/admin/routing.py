"""The /admin routes of routing: the routes in force and their runtime changes, and every
deployment's health as the router sees it."""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response

from modelyard.api.admin.handling import AdminRoute, mutate, read
from modelyard.api.authentication import caller
from modelyard.api.parsing import read_model
from modelyard.catalog.routes import ROUTE_ID_PATTERN, RouteFields
from modelyard.errors import InvalidParameter
from modelyard.state import app_state


async def list_routes(request: Request) -> Response:
    principal = await caller(request)
    return await read(lambda: app_state(request).admin.routes.list_routes(principal))


async def put_route(request: Request) -> Response:
    principal = await caller(request)
    body = await read_model(request, RouteFields, frozenset())
    route_id = _route_id(request)
    return await mutate(
        request, lambda: app_state(request).admin.routes.put_route(principal, route_id, body)
    )


async def delete_route(request: Request) -> Response:
    principal = await caller(request)
    route_id = _route_id(request)
    return await mutate(
        request, lambda: app_state(request).admin.routes.delete_route(principal, route_id)
    )


async def list_deployments(request: Request) -> Response:
    principal = await caller(request)
    return await read(lambda: app_state(request).admin.deployments.list_deployments(principal))


def _route_id(request: Request) -> str:
    route_id: str = request.path_params["route"]
    if len(route_id) > 200 or ROUTE_PATTERN.fullmatch(route_id) is None:
        raise InvalidParameter(
            "A route id is 1 to 200 letters, digits and ._:- starting with a letter or digit.",
            param="route",
        )
    return route_id


ROUTE_PATTERN = re.compile(ROUTE_ID_PATTERN)

ROUTING_ROUTES = (
    AdminRoute("GET", "/admin/routes", list_routes, "Routes in force", "catalog.read"),
    AdminRoute(
        "PUT",
        "/admin/routes/{route}",
        put_route,
        "Create or replace a route (owner)",
        "owner",
        RouteFields,
    ),
    AdminRoute("DELETE", "/admin/routes/{route}", delete_route, "Delete a route (owner)", "owner"),
    AdminRoute(
        "GET",
        "/admin/deployments",
        list_deployments,
        "Deployments' health, breakers, load and latency (owner)",
        "owner",
    ),
)
