"""Routes and region pins changed at runtime, through the admin API and the CLI: validated with
clear errors, owners only, audited, and in force for the next request."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.routing.world import Deployment, chat, fake_upstreams, routing_gateway
from tests.support.gateway import GatewayProcess


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with fake_upstreams(2) as (eu, us):
        deployments = [
            Deployment("alpha-eu", "alpha", eu.base_url),
            Deployment("alpha-us", "alpha", us.base_url, region="us-east"),
            Deployment("beta-eu", "beta", eu.base_url),
        ]
        routes = [{"id": "from-catalog", "candidates": [{"deployment": "beta-eu"}]}]
        with routing_gateway(tmp_path_factory.mktemp("route-admin"), deployments, routes) as g:
            yield g


def cli(
    gateway: GatewayProcess, *args: str, key: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    env |= {"MODELYARD_URL": gateway.base_url, "MODELYARD_API_KEY": key or gateway.admin_key or ""}
    return subprocess.run(
        [sys.executable, "-m", "modelyard", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def answered_by(gateway: GatewayProcess, model: str, key: str | None = None) -> httpx.Response:
    return httpx.post(
        f"{gateway.base_url}/v1/chat/completions",
        json=chat(model),
        headers={"Authorization": f"Bearer {key or gateway.admin_key}"},
        timeout=30,
    )


def test_the_cli_creates_changes_lists_and_deletes_a_route(gateway: GatewayProcess) -> None:
    made = cli(
        gateway, "routes", "set", "cli-route", "--candidate", "alpha-us", "--candidate", "alpha-eu"
    )
    assert made.returncode == 0, made.stderr
    assert answered_by(gateway, "cli-route").headers["x-modelyard-deployment"] == "alpha-us"
    changed = cli(
        gateway, "routes", "set", "cli-route", "--strategy", "weighted",
        "--candidate", "alpha-us=0", "--candidate", "alpha-eu=5", "--max-attempts", "1",
    )  # fmt: skip
    assert changed.returncode == 0, changed.stderr
    reply = answered_by(gateway, "cli-route")
    assert reply.headers["x-modelyard-deployment"] == "alpha-eu"
    assert reply.headers["x-modelyard-route-reason"].startswith("route 'cli-route' (weighted)")
    listed = cli(gateway, "routes", "list")
    assert '"cli-route"' in listed.stdout and '"from-catalog"' in listed.stdout
    assert cli(gateway, "routes", "delete", "cli-route").returncode == 0
    gone = answered_by(gateway, "cli-route")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "model_not_found"
    events = gateway.admin("GET", "/admin/audit?limit=1000").json()["data"]
    actions = [e["action"] for e in events if e["object"] == "route:cli-route"]
    assert actions == ["routes.create", "routes.update", "routes.delete"]
    (update,) = [e for e in events if e["action"] == "routes.update"]
    assert "weighted over alpha-us (weight 0), alpha-eu (weight 5)" in update["reason"]


def test_a_catalog_route_can_be_replaced_and_removed_at_runtime(gateway: GatewayProcess) -> None:
    assert answered_by(gateway, "from-catalog").headers["x-modelyard-deployment"] == "beta-eu"
    listed = gateway.admin("GET", "/admin/routes").json()["data"]
    assert {r["id"]: r["source"] for r in listed}["from-catalog"] == "catalog"
    body = {"candidates": [{"deployment": "alpha-eu"}]}
    assert gateway.admin("PUT", "/admin/routes/from-catalog", body).status_code == 200
    assert answered_by(gateway, "from-catalog").headers["x-modelyard-deployment"] == "alpha-eu"
    assert gateway.admin("DELETE", "/admin/routes/from-catalog").status_code == 200
    assert answered_by(gateway, "from-catalog").status_code == 404
    again = gateway.admin(
        "PUT", "/admin/routes/from-catalog", {"candidates": [{"deployment": "beta-eu"}]}
    )
    assert again.status_code == 200, again.text
    assert answered_by(gateway, "from-catalog").headers["x-modelyard-deployment"] == "beta-eu"


@pytest.mark.parametrize(
    ("route", "body", "words"),
    [
        (
            "bad-dep",
            {"candidates": [{"deployment": "nowhere"}]},
            "no deployment has the id 'nowhere'",
        ),
        (
            "alpha",
            {"candidates": [{"deployment": "alpha-eu"}]},
            "already the name of model 'alpha'",
        ),
        (
            "twice",
            {"candidates": [{"deployment": "alpha-eu"}, {"deployment": "alpha-eu"}]},
            "listed twice",
        ),
        (
            "zero",
            {"strategy": "weighted", "candidates": [{"deployment": "alpha-eu", "weight": 0}]},
            "at least one weight above 0",
        ),
        (
            "alpha-us",
            {"candidates": [{"deployment": "alpha-eu"}]},
            "already the id of a deployment",
        ),
        ("lang", {"candidates": [{"deployment": "alpha-eu"}], "languages": ["xx"]}, "xx"),
        ("odd", {"candidates": [{"deployment": "alpha-eu"}], "strategy": "random"}, "strategy"),
    ],
)
def test_a_route_that_cannot_be_served_is_refused_by_name(
    gateway: GatewayProcess, route: str, body: dict[str, Any], words: str
) -> None:
    reply = gateway.admin("PUT", f"/admin/routes/{route}", body)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert words in error["message"], error
    assert answered_by(gateway, route).status_code in (404, 200)  # nothing was stored for it
    assert route not in {r["id"] for r in gateway.admin("GET", "/admin/routes").json()["data"]}


def test_only_owners_change_routes_and_widen_region_pins(gateway: GatewayProcess) -> None:
    made = gateway.admin(
        "POST", "/admin/projects", {"id": "pinned", "allowed_regions": ["eu-west"]}
    )
    assert made.status_code == 201, made.text
    assert made.json()["allowed_regions"] == ["eu-west"]
    key = gateway.admin("POST", "/admin/projects/pinned/keys", {"name": "k", "role": "admin"})
    project_admin = key.json()["key"]
    headers = {"Authorization": f"Bearer {project_admin}"}
    put = httpx.put(
        f"{gateway.base_url}/admin/routes/theirs",
        json={"candidates": [{"deployment": "alpha-eu"}]},
        headers=headers,
    )
    assert put.status_code == 403 and "catalog.manage" in put.json()["error"]["message"]
    widen = httpx.patch(
        f"{gateway.base_url}/admin/projects/pinned",
        json={"allowed_regions": ["eu-west", "us-east"]},
        headers=headers,
    )
    assert widen.status_code == 403 and "widen the regions" in widen.json()["error"]["message"]
    narrow_to_unknown = httpx.patch(
        f"{gateway.base_url}/admin/projects/pinned",
        json={"allowed_regions": ["mars"]},
        headers=headers,
    )
    assert narrow_to_unknown.status_code == 400
    assert "No deployment is in the region 'mars'" in narrow_to_unknown.json()["error"]["message"]
    # The pin holds for the project's key: the model's us-east deployment is never chosen.
    route = {"candidates": [{"deployment": "alpha-us"}, {"deployment": "alpha-eu"}]}
    assert gateway.admin("PUT", "/admin/routes/us-first", route).status_code == 200
    reply = answered_by(gateway, "us-first", key=project_admin)
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-modelyard-deployment"] == "alpha-eu"
    assert "region 'us-east' is not allowed" in reply.headers["x-modelyard-route-reason"]
    cli_pin = cli(gateway, "projects", "update", "pinned", "--any-region")
    assert cli_pin.returncode == 0, cli_pin.stderr
    assert gateway.admin("GET", "/admin/projects/pinned").json()["allowed_regions"] is None
    assert (
        answered_by(gateway, "us-first", key=project_admin).headers["x-modelyard-deployment"]
        == "alpha-us"
    )


def test_a_route_is_granted_by_its_name_and_grants_nothing_else(gateway: GatewayProcess) -> None:
    route = {"candidates": [{"deployment": "alpha-eu"}]}
    assert gateway.admin("PUT", "/admin/routes/granted", route).status_code == 200
    made = gateway.admin(
        "POST", "/admin/projects", {"id": "routes-only", "allowed_models": ["granted"]}
    )
    assert made.status_code == 201, made.text
    assert made.json()["allowed_models"] == ["granted"]
    key = gateway.admin(
        "POST", "/admin/projects/routes-only/keys", {"name": "k", "models": ["granted"]}
    ).json()["key"]
    assert answered_by(gateway, "granted", key=key).status_code == 200
    assert answered_by(gateway, "alpha", key=key).status_code in (403, 404)
    listed = httpx.get(
        f"{gateway.base_url}/v1/models", headers={"Authorization": f"Bearer {key}"}
    ).json()["data"]
    assert [m["id"] for m in listed] == ["granted"]
    unknown = gateway.admin(
        "POST", "/admin/projects", {"id": "typo", "allowed_models": ["granted", "grnated"]}
    )
    assert unknown.status_code == 400
    error = unknown.json()["error"]
    assert error["param"] == "allowed_models[1]" and "'grnated'" in error["message"]


def test_a_deployment_id_called_as_the_model_pins_that_deployment(gateway: GatewayProcess) -> None:
    for deployment in ("alpha-us", "alpha-eu"):
        reply = answered_by(gateway, deployment)
        assert reply.status_code == 200, reply.text
        assert reply.headers["x-modelyard-deployment"] == deployment
        assert reply.headers["x-modelyard-attempts"] == "1"
