"""Every route, for every role in its own project and in another, and for every bad credential,
generated from the role definitions (`ROLE_ACTIONS`) and the admin route table (`ADMIN_ROUTES`).

Inference routes have no table in src, so the action each needs is declared here; a test checks
that this table and `ADMIN_ROUTES` together cover every route the application serves.

Expected answers: a role that grants the action succeeds (2xx: each route gets a valid minimal
request); a role that does not gets a 403 naming the action and the resource; a project the
key holds no role on is a 404, never a 403; a missing, malformed, wrong, expired or revoked key
is a 401. Every error has the OpenAI error shape, except on the Anthropic Messages surface
(`/v1/messages*`, and `/v1/models` asked with `anthropic-version`), where it has Anthropic's.
"""

from __future__ import annotations

import json
import re
import secrets
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from modelyard.api.admin.routes import ADMIN_ROUTES
from modelyard.policy.rbac import ROLE_ACTIONS, Action, Role
from tests.access.world import (
    AUDIT,
    CHAT,
    FEEDBACK,
    HOME,
    MEMBER,
    OTHER,
    RESPONSE,
    Credential,
    World,
)

# "path": the project is named in the path (or query); "acting": the request acts in the key's
# own project; "gateway": no project at all.
Scope = Literal["path", "acting", "gateway"]


class Outcome(Enum):
    ALLOWED = "2xx"
    DENIED = "403 naming the action"
    HIDDEN = "404"
    UNAUTHENTICATED = "401"


class BadCredential(Enum):
    MISSING = "missing key"
    MALFORMED = "malformed Authorization header"
    WRONG = "wrong key"
    EXPIRED = "expired key"
    REVOKED = "revoked key"


@dataclass(frozen=True)
class Endpoint:
    method: str
    template: str  # as routed: /admin/projects/{project}/keys/{key_id}
    actions: frozenset[Action]  # any one of them grants; empty: any authenticated caller
    scope: Scope
    query: str = ""
    body: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    fixed: Mapping[str, str] = field(default_factory=dict)  # placeholders that never vary
    # Only a role held on `*` (the owner) may, whatever the role definitions grant.
    owners_only: bool = False

    @property
    def name(self) -> str:
        asked = f" ({ANTHROPIC_VERSION})" if ANTHROPIC_VERSION in self.headers else ""
        return f"{self.method} {self.template}{self.query}{asked}"

    @property
    def anthropic(self) -> bool:
        """Whether it answers in the Anthropic Messages API's shapes, errors included."""
        return self.template.startswith(MESSAGES) or ANTHROPIC_VERSION in self.headers


USE = frozenset({Action.MODELS_USE})
BROWSE = frozenset({Action.CATALOG_READ})
AZURE_INFERENCE = "?api-version=2024-05-01-preview"
AZURE_OPENAI = "?api-version=2024-10-21"
EMBED = {"model": "acme-embed", "input": "hi"}
STORED = "/v1/responses/{response_id}"
MESSAGES = "/v1/messages"
MESSAGE = {"model": "acme-small", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}
COUNT = {"model": "acme-small", "messages": MESSAGE["messages"]}
ANTHROPIC_VERSION = "anthropic-version"
AS_ANTHROPIC = {ANTHROPIC_VERSION: "2023-06-01"}
# The owner acts in the default project unless it names one; stored responses are HOME's.
IN_HOME = {"x-modelyard-project": HOME}

INFERENCE = (
    Endpoint("POST", "/v1/chat/completions", USE, "acting", body=CHAT),
    Endpoint("POST", "/chat/completions", USE, "acting", body=CHAT),
    Endpoint("POST", "/v1/embeddings", USE, "acting", body=EMBED),
    Endpoint("POST", "/embeddings", USE, "acting", body=EMBED),
    Endpoint("GET", "/v1/models", BROWSE, "acting"),
    Endpoint("GET", "/v1/models/{model}", BROWSE, "acting", fixed={"model": "acme-small"}),
    Endpoint("POST", "/v1/responses", USE, "acting", body=RESPONSE),
    Endpoint("POST", "/responses", USE, "acting", body=RESPONSE),
    # Each case names a response stored in HOME just before (made by `concrete_request`).
    Endpoint("GET", STORED, USE, "acting", headers=IN_HOME),
    Endpoint("DELETE", STORED, USE, "acting", headers=IN_HOME),
    Endpoint("GET", STORED + "/input_items", USE, "acting", headers=IN_HOME),
    Endpoint("POST", MESSAGES, USE, "acting", body=MESSAGE),
    Endpoint("POST", MESSAGES + "/count_tokens", USE, "acting", body=COUNT),
    # The same routes as the OpenAI models list, answering in Anthropic's shapes.
    Endpoint("GET", "/v1/models", BROWSE, "acting", headers=AS_ANTHROPIC),
    Endpoint(
        "GET",
        "/v1/models/{model}",
        BROWSE,
        "acting",
        headers=AS_ANTHROPIC,
        fixed={"model": "acme-small"},
    ),
    Endpoint("POST", "/models/chat/completions", USE, "acting", AZURE_INFERENCE, CHAT),
    Endpoint(
        "POST", "/models/embeddings", USE, "acting", AZURE_INFERENCE, {**EMBED, "input": ["hi"]}
    ),
    Endpoint(
        "GET",
        "/models/info",
        BROWSE,
        "acting",
        AZURE_INFERENCE,
        headers={"azureml-model-deployment": "acme-small"},
    ),
    Endpoint(
        "POST",
        "/openai/deployments/{deployment}/chat/completions",
        USE,
        "acting",
        AZURE_OPENAI,
        {"messages": CHAT["messages"]},
        fixed={"deployment": "acme-small"},
    ),
    Endpoint(
        "POST",
        "/openai/deployments/{deployment}/embeddings",
        USE,
        "acting",
        AZURE_OPENAI,
        {"input": "hi"},
        fixed={"deployment": "acme-embed"},
    ),
    Endpoint("GET", "/metrics", frozenset({Action.METRICS_READ}), "gateway", owners_only=True),
    # Its body names a request served in HOME (made by `concrete_request`).
    Endpoint("POST", FEEDBACK, USE, "acting", headers={"x-modelyard-project": HOME}),
)

P = "/admin/projects/{project}"
ROUTE = "/admin/routes/{route}"
RUN = "/admin/evals/{run}"
# A valid minimal body for each admin route that takes one, from a name unique to the case.
ADMIN_BODIES: dict[tuple[str, str], Callable[[str], dict[str, Any]]] = {
    ("POST", "/admin/projects"): lambda unique: {"id": unique},
    ("PATCH", P): lambda unique: {"description": f"touched by {unique}"},
    ("PUT", P + "/members/{subject}"): lambda unique: {"role": "viewer"},
    ("POST", P + "/keys"): lambda unique: {"name": unique, "role": "viewer"},
    ("POST", P + "/keys/{key_id}/rotate"): lambda unique: {"grace_seconds": 0},
    # Limits left out are unlimited: an empty body limits nothing the other cases rely on.
    ("PUT", P + "/limits"): lambda unique: {},
    ("PUT", P + "/keys/{key_id}/limits"): lambda unique: {},
    ("PUT", ROUTE): lambda unique: {"candidates": [{"deployment": "acme-small-eu"}]},
    ("POST", "/admin/evals"): lambda unique: {"id": unique, **EVAL_RUN},
    ("POST", RUN + "/results"): lambda unique: {"results": []},
    ("PATCH", RUN): lambda unique: {"status": "finished"},
}
EVAL_RUN = {"suites": ["extraction"], "models": ["acme-small"], "repeats": 1}


# Admin routes that take their project in the query, and what they do without one: read the
# whole gateway (owners only), or answer anyone about just the projects they may read.
PROJECT_IN_QUERY: dict[tuple[str, str], Literal["owners only", "filtered"]] = {
    ("GET", AUDIT): "owners only",
    ("GET", "/admin/usage"): "filtered",
    ("GET", "/admin/evals"): "filtered",
}


def requirement(action: str) -> tuple[frozenset[Action], bool]:
    """(actions, owners only) from a route's declared `action`: 'any', 'owner' or 'a | b'."""
    if action in ("any", "owner"):
        return frozenset(), action == "owner"
    return frozenset(Action(name.strip()) for name in action.split("|")), False


def admin_endpoints() -> list[Endpoint]:
    endpoints = []
    for route in ADMIN_ROUTES:
        actions, owners_only = requirement(route.action)
        without_project = PROJECT_IN_QUERY.get((route.method, route.path))
        if without_project is not None:
            endpoints.append(
                Endpoint(route.method, route.path, actions, "path", "?project={project}")
            )
            endpoints.append(
                Endpoint(
                    route.method,
                    route.path,
                    actions if without_project == "owners only" else frozenset(),
                    "gateway",
                    owners_only=without_project == "owners only",
                )
            )
            continue
        # A run belongs to one project: naming it names the project as surely.
        scope: Scope = "path" if "{project}" in route.path or "{run}" in route.path else "gateway"
        endpoints.append(
            Endpoint(route.method, route.path, actions, scope, owners_only=owners_only)
        )
    return endpoints


ENDPOINTS = (*admin_endpoints(), *INFERENCE)


@dataclass(frozen=True)
class Case:
    endpoint: Endpoint
    who: Role | BadCredential
    project: str | None  # the project named in the path; None when the route names none
    expected: Outcome

    @property
    def label(self) -> str:
        return self.who.value


def expected_outcome(endpoint: Endpoint, role: Role, project: str | None) -> Outcome:
    """What the role definitions say: role keys belong to HOME; the owner holds every project."""
    if endpoint.scope == "path" and role is not Role.OWNER and project != HOME:
        return Outcome.HIDDEN
    if endpoint.owners_only:
        return Outcome.ALLOWED if role is Role.OWNER else Outcome.DENIED
    if not endpoint.actions or ROLE_ACTIONS[role] & endpoint.actions:
        return Outcome.ALLOWED
    return Outcome.DENIED


def role_cases(endpoint: Endpoint) -> list[Case]:
    projects = (HOME, OTHER) if endpoint.scope == "path" else (None,)
    return [
        Case(endpoint, role, project, expected_outcome(endpoint, role, project))
        for role in Role
        for project in projects
    ]


def credential_cases(endpoint: Endpoint) -> list[Case]:
    project = HOME if endpoint.scope == "path" else None
    return [Case(endpoint, bad, project, Outcome.UNAUTHENTICATED) for bad in BadCredential]


ROLE_CASES = [case for endpoint in ENDPOINTS for case in role_cases(endpoint)]
CREDENTIAL_CASES = [case for endpoint in ENDPOINTS for case in credential_cases(endpoint)]


# -- running a case ----------------------------------------------------------------------------


def credential_for(world: World, case: Case) -> Credential:
    if isinstance(case.who, Role):
        return world.credential(case.who)
    if case.who is BadCredential.MISSING:
        return Credential("missing", {})
    if case.who is BadCredential.MALFORMED:
        return Credential("malformed", {"authorization": "Basic YWRtaW46aHVudGVyMg=="})
    if case.who is BadCredential.WRONG:
        # A real key id with a secret that is not its own.
        real = world.credential(Role.ADMIN)
        return Credential.bearer("wrong", f"myd-{real.key_id}-{'x' * 43}")
    if case.who is BadCredential.EXPIRED:
        return world.expired_key()
    return world.revoked_key()


def may_mint_in(role: Role, project: str) -> bool:
    if role is Role.OWNER:
        return True
    minting = {Action.KEYS_MANAGE, Action.KEYS_MANAGE_OWN}
    return project == HOME and bool(ROLE_ACTIONS[role] & minting)


def concrete_request(
    world: World, case: Case, who: Credential
) -> tuple[str, Mapping[str, Any] | None]:
    """The path and body of this case, after making what the route acts on (a member, a key)."""
    endpoint = case.endpoint
    project = case.project or HOME
    unique = world.unique("matrix")
    values = {
        "project": project,
        "subject": unique,
        "key_id": "nokey0000000",
        "route": unique,
        "run": "norun",
        **endpoint.fixed,
    }
    if "{response_id}" in endpoint.template:
        # Fresh for every case, bad credentials included: a refusal is never just 'not found'.
        values["response_id"] = world.stored_response_id()
    if isinstance(case.who, Role):
        if "{run}" in endpoint.template:
            body = {"project": project, **EVAL_RUN}
            made = world.api.call("POST", "/admin/evals", world.owner, json=body)
            assert made.status_code == 201, made.text
            values["run"] = made.json()["id"]
        if endpoint.template == ROUTE and endpoint.method == "DELETE":
            body = ADMIN_BODIES[("PUT", ROUTE)](unique)
            put = world.api.call("PUT", ROUTE.format(**values), world.owner, json=body)
            assert put.status_code == 200, put.text
        if endpoint.template == MEMBER and endpoint.method == "DELETE":
            put = world.api.call(
                "PUT", MEMBER.format(**values), world.owner, json={"role": "viewer"}
            )
            assert put.status_code == 200, put.text
        if "{key_id}" in endpoint.template:
            # Developers manage their own keys only, so whoever may mint here makes the target.
            minter = who if may_mint_in(case.who, project) else world.owner
            values["key_id"] = world.mint(project, minter, role="viewer")["id"]
    path = endpoint.template.format(**values) + endpoint.query.format(**values)
    if endpoint.template == FEEDBACK:
        return path, {"request_id": world.served_request_id(), "score": 1}
    make_body = ADMIN_BODIES.get((endpoint.method, endpoint.template))
    return path, make_body(unique) if make_body is not None else endpoint.body


def run_case(world: World, case: Case, who: Credential | None = None) -> list[str]:
    """What is wrong with the answer this case got (nothing: as expected); `who` stands in for
    the case's own credential."""
    who = who or credential_for(world, case)
    path, body = concrete_request(world, case, who)
    response = world.api.call(
        case.endpoint.method, path, who, json=body, headers=case.endpoint.headers
    )
    return answer_problems(case, response)


def answer_problems(case: Case, response: httpx.Response) -> list[str]:
    status = response.status_code
    if case.expected is Outcome.ALLOWED:
        return [] if 200 <= status < 300 else [f"got {status} {response.text[:200]}"]
    wanted = {Outcome.DENIED: 403, Outcome.HIDDEN: 404, Outcome.UNAUTHENTICATED: 401}
    if status != wanted[case.expected]:
        return [f"got {status} {response.text[:200]}"]
    anthropic = case.endpoint.anthropic
    problems = (anthropic_shape_problems if anthropic else error_shape_problems)(response)
    if problems:
        return problems
    error = error_fields(response.json(), anthropic)
    if case.expected is Outcome.DENIED:
        return denial_problems(case, error)
    if case.expected is Outcome.HIDDEN:
        if "does not exist" not in error["message"]:
            return [f"404 without 'does not exist': {error['message']!r}"]
        if anthropic and error["type"] != "not_found_error":
            return [f"404 typed {error['type']}"]
    if case.expected is Outcome.UNAUTHENTICATED and (
        error["type"] != "authentication_error" or error["code"] != "invalid_api_key"
    ):
        return [f"401 typed {error['type']}/{error['code']}"]
    return []


def error_fields(body: Mapping[str, Any], anthropic: bool) -> Mapping[str, Any]:
    """The error's message, type, code and param, from either shape (Anthropic's carries our
    code and the param in `details`)."""
    error: Mapping[str, Any] = body["error"]
    if not anthropic:
        return error
    details = error.get("details", {})
    return {
        "message": error["message"],
        "type": error["type"],
        "code": details.get("error_code"),
        "param": details.get("param"),
    }


def json_body(response: httpx.Response) -> tuple[Any, list[str]]:
    try:
        return response.json(), []
    except ValueError:
        return None, [f"error body is not JSON: {response.text[:200]!r}"]


def anthropic_shape_problems(response: httpx.Response) -> list[str]:
    """{"type": "error", "error": {"type", "message", "details"?}, "request_id"}, the request id
    also in the `request-id` header, as Anthropic's SDK reads it."""
    body, problems = json_body(response)
    if problems:
        return problems
    error = body.get("error") if isinstance(body, dict) else None
    if (
        set(body) != {"type", "error", "request_id"}
        or body["type"] != "error"
        or not isinstance(error, dict)
    ):
        return [f"not the Anthropic error shape: {body!r}"]
    if not {"type", "message"} <= set(error) <= {"type", "message", "details"}:
        problems.append(f"error fields are {sorted(error)}")
    if not isinstance(error.get("message"), str) or not error["message"]:
        problems.append("error.message is not a non-empty string")
    if not isinstance(error.get("type"), str):
        problems.append("error.type is not a string")
    details = error.get("details", {})
    if (
        not isinstance(details, dict)
        or not set(details) <= {"error_code", "param"}
        or not all(isinstance(value, str) for value in details.values())
    ):
        problems.append(f"error.details is not {{error_code, param?}} of strings: {details!r}")
    request_id = body["request_id"]
    if not request_id or request_id != response.headers.get("request-id"):
        problems.append(f"request_id {request_id!r} is not the request-id header")
    return problems


def error_shape_problems(response: httpx.Response) -> list[str]:
    body, problems = json_body(response)
    if problems:
        return problems
    error = body.get("error") if isinstance(body, dict) else None
    if set(body) != {"error"} or not isinstance(error, dict):
        return [f"not the OpenAI error shape: {body!r}"]
    if set(error) != {"message", "type", "param", "code"}:
        problems.append(f"error fields are {sorted(error)}")
    if not isinstance(error.get("message"), str) or not error["message"]:
        problems.append("error.message is not a non-empty string")
    if not isinstance(error.get("type"), str):
        problems.append("error.type is not a string")
    for name in ("param", "code"):
        if not isinstance(error.get(name), str | None):
            problems.append(f"error.{name} is neither a string nor null")
    return problems


DENIAL = re.compile(r"Permission denied: '(?P<action>[^']+)' on (?P<resource>.+?): .+\.")


def denial_problems(case: Case, error: Mapping[str, Any]) -> list[str]:
    if (error["type"], error["code"]) != ("permission_error", "permission_denied"):
        return [f"403 typed {error['type']}/{error['code']}"]
    match = DENIAL.fullmatch(error["message"])
    if match is None:
        return [f"403 message does not name action and resource: {error['message']!r}"]
    problems = []
    # A route declared 'owner' names no action of its own; any real one will do.
    named = case.endpoint.actions or frozenset(Action)
    if match["action"] not in named:
        problems.append(f"403 names '{match['action']}', not one of the route's actions")
    if (
        case.endpoint.scope != "gateway"
        and f"project '{case.project or HOME}'" not in match["resource"]
    ):
        problems.append(f"403 resource {match['resource']!r} does not name the project")
    return problems


def mismatch_report(failures: list[str]) -> str:
    return f"{len(failures)} mismatches:\n" + "\n".join(failures)


# -- the matrix --------------------------------------------------------------------------------


def test_matrix_has_one_case_per_route_role_project_and_credential() -> None:
    scoped = [endpoint for endpoint in ENDPOINTS if endpoint.scope == "path"]
    unscoped = len(ENDPOINTS) - len(scoped)
    # Routes with the project in the query appear twice: with one, and without.
    assert len(ENDPOINTS) == len(ADMIN_ROUTES) + len(PROJECT_IN_QUERY) + len(INFERENCE)
    assert len(ROLE_CASES) == len(Role) * (2 * len(scoped) + unscoped)
    assert len(CREDENTIAL_CASES) == len(BadCredential) * len(ENDPOINTS)
    keys = Counter(
        (case.endpoint.name, case.label, case.project) for case in ROLE_CASES + CREDENTIAL_CASES
    )
    assert max(keys.values()) == 1, "a case is generated twice"
    by_role = Counter((case.who, case.expected) for case in ROLE_CASES)
    assert by_role[(Role.OWNER, Outcome.DENIED)] == by_role[(Role.OWNER, Outcome.HIDDEN)] == 0
    for role in Role:
        assert by_role[(role, Outcome.ALLOWED)] > 0, f"{role} is allowed nothing"
        if role is not Role.OWNER:
            assert by_role[(role, Outcome.DENIED)] > 0, f"{role} is denied nothing"
            assert by_role[(role, Outcome.HIDDEN)] == len(scoped)
    # Every admin route that takes a body has a valid one here.
    for route in ADMIN_ROUTES:
        if route.body is not None:
            assert (route.method, route.path) in ADMIN_BODIES, route.path


def test_every_served_route_is_in_the_matrix(in_process_app: Starlette) -> None:
    not_guarded = {"/healthz", "/readyz", "/openapi.json"}
    served = {
        (method, re.sub(r"{(\w+):\w+}", r"{\1}", route.path))
        for route in in_process_app.routes
        if isinstance(route, Route) and route.path not in not_guarded
        for method in route.methods or ()
        if method != "HEAD"
    }
    assert served == {(endpoint.method, endpoint.template) for endpoint in ENDPOINTS}


# Routes that answer otherwise than the definitions say: src bugs, each reported.
# Routes whose answers are known to differ from the definitions, with the reason.
KNOWN_MISMATCHES: dict[str, str] = {}


def matrix_params() -> list[Any]:
    return [
        pytest.param(
            endpoint,
            id=endpoint.name,
            marks=[pytest.mark.xfail(strict=True, reason=KNOWN_MISMATCHES[endpoint.name])]
            if endpoint.name in KNOWN_MISMATCHES
            else [],
        )
        for endpoint in ENDPOINTS
    ]


@pytest.mark.parametrize("endpoint", matrix_params())
def test_route_answers_each_role_and_bad_credential_as_defined(
    world: World, endpoint: Endpoint
) -> None:
    cases = role_cases(endpoint) + [
        case for case in credential_cases(endpoint) if case.who is not BadCredential.REVOKED
    ]
    assert len(cases) == len(Role) * (2 if endpoint.scope == "path" else 1) + 4
    failures = []
    for case in cases:
        failures += [
            f"{endpoint.name} | {case.label} | {case.project or '-'} | "
            f"expected {case.expected.value} | {problem}"
            for problem in run_case(world, case)
        ]
    assert not failures, mismatch_report(failures)


def test_revoked_key_is_refused_on_every_route(world: World) -> None:
    cases = [case for case in CREDENTIAL_CASES if case.who is BadCredential.REVOKED]
    assert len(cases) == len(ENDPOINTS)
    failures = [
        f"{case.endpoint.name} | {case.label} | expected 401 | {problem}"
        for case in cases
        for problem in run_case(world, case)
    ]
    assert not failures, mismatch_report(failures)


ANTHROPIC_ENDPOINTS = [endpoint for endpoint in ENDPOINTS if endpoint.anthropic]


def in_x_api_key(who: Credential) -> Credential:
    """The same key sent as Anthropic's older SDKs send it."""
    assert who.key is not None
    return Credential(f"{who.label} in x-api-key", {"x-api-key": who.key}, who.key, who.key_id)


@pytest.mark.parametrize("endpoint", ANTHROPIC_ENDPOINTS, ids=lambda endpoint: endpoint.name)
def test_anthropic_surface_answers_a_key_in_x_api_key_as_in_authorization(
    world: World, endpoint: Endpoint
) -> None:
    keyed = (BadCredential.WRONG, BadCredential.EXPIRED, BadCredential.REVOKED)
    cases = role_cases(endpoint) + [
        case for case in credential_cases(endpoint) if case.who in keyed
    ]
    failures = [
        f"{endpoint.name} | {case.label} in x-api-key | expected {case.expected.value} | {problem}"
        for case in cases
        for problem in run_case(world, case, in_x_api_key(credential_for(world, case)))
    ]
    # Two different keys at once are refused, whichever of them would have been allowed.
    developer, viewer = world.credential(Role.DEVELOPER), world.credential(Role.VIEWER)
    assert viewer.key is not None
    both = Credential("two keys", {**developer.headers, "x-api-key": viewer.key})
    two_keys = Case(endpoint, BadCredential.WRONG, None, Outcome.UNAUTHENTICATED)
    failures += [
        f"{endpoint.name} | bearer and another x-api-key | expected 401 | {problem}"
        for problem in run_case(world, two_keys, both)
    ]
    assert not failures, mismatch_report(failures)


STORED_ROUTES = [
    (endpoint.method, endpoint.template)
    for endpoint in INFERENCE
    if "{response_id}" in endpoint.template
]


def test_a_stored_response_is_missing_to_every_other_project(world: World) -> None:
    """Read, listed, deleted or continued from by another project, a response of HOME answers
    exactly as one that never existed (its existence does not leak), also in a project that
    keeps content; and it is still there for HOME afterwards."""
    keeping = world.minted_credential(
        world.create_project(content_retention_days=1), role="developer"
    )
    forgetting = world.credential(Role.DEVELOPER, OTHER)
    made = world.stored_response_id()
    never = f"resp_{secrets.token_hex(12)}"

    def asked(method: str, template: str, who: Credential, response_id: str) -> httpx.Response:
        if method == "POST":
            body = {**RESPONSE, "previous_response_id": response_id}
            return world.api.call(method, template, who, json=body)
        return world.api.call(method, template.format(response_id=response_id), who)

    requests = [*STORED_ROUTES, ("POST", "/v1/responses")]
    assert len(requests) == 4
    for who in (keeping, forgetting):
        for method, template in requests:
            where = f"{method} {template} as {who.label}"
            theirs = asked(method, template, who, made)
            # A project that keeps nothing cannot continue at all, whatever the id.
            expected = 400 if method == "POST" and who is forgetting else 404
            assert theirs.status_code == expected, f"{where}: {theirs.text[:200]}"
            assert error_shape_problems(theirs) == [], where
            nobodys = asked(method, template, who, never)
            assert theirs.json() == json.loads(nobodys.text.replace(never, made)), where
    home = world.api.call("GET", STORED.format(response_id=made), world.credential(Role.DEVELOPER))
    assert home.status_code == 200, home.text
    assert home.json()["id"] == made


# -- what the matrix rests on ------------------------------------------------------------------


def test_every_admin_route_is_dispatched(world: World) -> None:
    # Paths without a GET handler (members/{subject}, keys/{id}/revoke, .../rotate) once
    # answered 500 to everything: the dispatcher looked up handlers["GET"] eagerly.
    answers = {
        f"{route.method} {route.path}": world.api.call(
            route.method,
            route.path.format(
                project=HOME, subject="nobody", key_id="nokey", route="noroute", run="norun"
            ),
        ).status_code
        for route in ADMIN_ROUTES
    }
    assert answers == dict.fromkeys(answers, 401)


def test_openapi_names_the_action_of_every_admin_route(world: World) -> None:
    spec = world.api.call("GET", "/openapi.json").json()
    for route in ADMIN_ROUTES:
        operation = spec["paths"][route.path][route.method.lower()]
        assert route.action in operation["description"], route.path
