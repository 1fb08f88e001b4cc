"""The /admin routes of evaluation runs: make or resume a run, add its results, settle them
from the ledger, change its status, and read runs, one run with its summary, its results."""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response

from modelyard.api.admin.handling import AdminRoute, mutate, mutate_answering, read
from modelyard.api.authentication import caller
from modelyard.api.parsing import read_model
from modelyard.errors import InvalidParameter
from modelyard.protocol.evals import RUN_ID_PATTERN, ResultsPost, RunCreate, RunPatch
from modelyard.state import app_state


async def create_run(request: Request) -> Response:
    principal = await caller(request)
    body = await read_model(request, RunCreate, frozenset())
    runs = app_state(request).evals

    def act() -> tuple[int, dict[str, object]]:
        created, run = runs.create(principal, body)
        return (201 if created else 200), run

    return await mutate_answering(request, act)


async def list_runs(request: Request) -> Response:
    principal = await caller(request)
    project = request.query_params.get("project")
    return await read(lambda: app_state(request).evals.list_runs(principal, project))


async def show_run(request: Request) -> Response:
    principal = await caller(request)
    run_id = _run_id(request)
    return await read(lambda: app_state(request).evals.show(principal, run_id))


async def list_results(request: Request) -> Response:
    principal = await caller(request)
    run_id = _run_id(request)
    return await read(lambda: app_state(request).evals.results(principal, run_id))


async def add_results(request: Request) -> Response:
    principal = await caller(request)
    run_id = _run_id(request)
    body = await read_model(request, ResultsPost, frozenset())
    return await mutate(
        request, lambda: app_state(request).evals.add_results(principal, run_id, body)
    )


async def settle_run(request: Request) -> Response:
    principal = await caller(request)
    run_id = _run_id(request)
    return await mutate(request, lambda: app_state(request).evals.settle(principal, run_id))


async def update_run(request: Request) -> Response:
    principal = await caller(request)
    run_id = _run_id(request)
    body = await read_model(request, RunPatch, frozenset())
    return await mutate(request, lambda: app_state(request).evals.update(principal, run_id, body))


def _run_id(request: Request) -> str:
    run_id: str = request.path_params["run"]
    if RUN_PATTERN.fullmatch(run_id) is None:
        raise InvalidParameter(
            "A run id is 1 to 64 letters, digits and ._:- starting with a letter or digit.",
            param="run",
        )
    return run_id


RUN_PATTERN = re.compile(RUN_ID_PATTERN)
RUN = "/admin/evals/{run}"
USE = "models.use"
READ = "projects.read"

EVALS_ROUTES = (
    AdminRoute(
        "POST",
        "/admin/evals",
        create_run,
        "Start an evaluation run (201), or resume the run of that id (200)",
        USE,
        RunCreate,
        201,
    ),
    AdminRoute("GET", "/admin/evals", list_runs, "Evaluation runs you may read", READ),
    AdminRoute("GET", RUN, show_run, "One run, with quality intervals per model and tag", READ),
    AdminRoute("PATCH", RUN, update_run, "Mark a run finished or interrupted", USE, RunPatch),
    AdminRoute("GET", RUN + "/results", list_results, "A run's case results", READ),
    AdminRoute(
        "POST",
        RUN + "/results",
        add_results,
        "Add case results (idempotent per model, case and repeat)",
        USE,
        ResultsPost,
    ),
    AdminRoute(
        "POST",
        RUN + "/settle",
        settle_run,
        "Copy each result's cost and tokens from the usage ledger",
        USE,
    ),
)
