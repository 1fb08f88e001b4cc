"""`modelyard projects|keys|usage|limits|routes|deployments|audit ...`: the admin API from a
terminal. Commands call a running gateway over HTTP (so they are authorized and audited exactly
like the API), except `audit verify`, which reads the database directly to check the chain.

The gateway URL comes from --url or MODELYARD_URL, the caller's key from --key or
MODELYARD_API_KEY (never echoed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from typing import Any
from urllib.parse import urlencode

import httpx

from modelyard.protocol.admin import FEEDBACK_MEASURES, USAGE_MEASURES

DEFAULT_URL = "http://127.0.0.1:8080"


def add_admin_commands(commands: Any) -> None:
    projects = commands.add_parser("projects", help="manage projects and their members")
    connection_options(projects)
    p = projects.add_subparsers(dest="action", required=True)
    p.add_parser("list", help="projects you hold a role on")
    show = p.add_parser("show", help="one project")
    show.add_argument("project")
    create = p.add_parser("create", help="create a project (owner)")
    create.add_argument("project")
    _project_fields(create)
    change = p.add_parser("update", help="change a project")
    change.add_argument("project")
    _project_fields(change)
    change.add_argument("--all-models", action="store_true", help="lift the model allowlist")
    change.add_argument("--any-network", action="store_true", help="lift the CIDR allowlist")
    change.add_argument("--any-region", action="store_true", help="lift the region pin")
    change.add_argument("--no-content-logging", action="store_true", help="zero retention")
    members = p.add_parser("members", help="a project's role bindings")
    members.add_argument("project")
    grant = p.add_parser("grant", help="give a subject a role on a project")
    grant.add_argument("project")
    grant.add_argument("subject")
    grant.add_argument("role", choices=["admin", "developer", "viewer", "auditor"])
    remove = p.add_parser("remove-member", help="remove a subject's role on a project")
    remove.add_argument("project")
    remove.add_argument("subject")

    keys = commands.add_parser("keys", help="manage API keys")
    connection_options(keys)
    k = keys.add_subparsers(dest="action", required=True)
    listing = k.add_parser("list", help="a project's keys")
    listing.add_argument("project")
    mint = k.add_parser("create", help="mint a key (printed once)")
    mint.add_argument("project")
    mint.add_argument("name")
    mint.add_argument("--role", default="developer")
    mint.add_argument("--model", action="append", dest="models", help="limit to (repeatable)")
    mint.add_argument("--expires-at", help="ISO 8601 time with offset")
    for verb in ("revoke", "rotate"):
        sub = k.add_parser(verb, help=f"{verb} a key")
        sub.add_argument("project")
        sub.add_argument("key_id")
        if verb == "rotate":
            sub.add_argument("--grace-seconds", type=int, default=24 * 3600)

    usage = commands.add_parser("usage", help="usage and cost report")
    connection_options(usage)
    usage.add_argument(
        "--group-by",
        default="day,project_id",
        help="of day,project_id,key_id,model,deployment,route,arm",
    )
    usage.add_argument("--since", help="first day (default: 30 days ago)")
    usage.add_argument("--until", help="last day (default: today)")
    usage.add_argument("--project")
    usage.add_argument("--csv", action="store_true", help="print CSV instead of a table")
    usage.set_defaults(action="report")

    limits = commands.add_parser("limits", help="budgets and rate limits of a project or key")
    connection_options(limits)
    lim = limits.add_subparsers(dest="action", required=True)
    show_limits = lim.add_parser("show")
    show_limits.add_argument("project")
    show_limits.add_argument("--key-id")
    set_limits = lim.add_parser("set", help="replace the limits (anything not given: unlimited)")
    set_limits.add_argument("project")
    set_limits.add_argument("--key-id")
    for period in ("day", "month", "total"):
        set_limits.add_argument(f"--{period}-usd", help=f"{period} budget in US dollars")
    set_limits.add_argument("--rpm", type=int, help="requests per minute")
    set_limits.add_argument("--tpm", type=int, help="tokens per minute")
    set_limits.add_argument("--max-concurrent", type=int)

    route_commands = commands.add_parser("routes", help="list, create, change or delete routes")
    connection_options(route_commands)
    r = route_commands.add_subparsers(dest="action", required=True)
    r.add_parser("list", help="the routes in force")
    put = r.add_parser("set", help="create or replace a route (owner)")
    put.add_argument("route")
    put.add_argument(
        "--strategy",
        default="priority",
        choices=["priority", "weighted", "least_latency", "cheapest", "least_busy"],
    )
    put.add_argument(
        "--candidate",
        action="append",
        dest="candidates",
        required=True,
        metavar="DEPLOYMENT[=WEIGHT]",
        help="a deployment, in order, with its weight for weighted routes (repeatable)",
    )
    put.add_argument("--language", action="append", dest="languages", help="ISO 639-1 code")
    put.add_argument("--max-attempts", type=int)
    put.add_argument("--description")
    drop = r.add_parser("delete", help="delete a route (owner)")
    drop.add_argument("route")

    deployments = commands.add_parser("deployments", help="health, breakers, load, latency")
    connection_options(deployments)
    deployments.set_defaults(action="list")

    audit = commands.add_parser("audit", help="read or verify the audit log")
    a = audit.add_subparsers(dest="action", required=True)
    verify = a.add_parser("verify", help="check the hash chain in the database")
    verify.add_argument("--database-url", help="default: SQLite in --data-dir")
    verify.add_argument("--data-dir", help="default ./.modelyard")
    verify.add_argument(
        "--expect-head",
        metavar="SEQ:HASH",
        help="a head printed by an earlier verify: the log must still contain it",
    )
    show_log = a.add_parser("list", help="recent events (auditor or owner)")
    connection_options(show_log)
    show_log.add_argument("--project")
    show_log.add_argument("--actor")
    show_log.add_argument("--action", dest="event_action", metavar="ACTION")
    show_log.add_argument("--after-seq", type=int, default=0)
    show_log.add_argument("--limit", type=int, default=100)


def run_admin_command(args: argparse.Namespace) -> int:
    if args.command == "audit" and args.action == "verify":
        return _verify_audit(args)
    try:
        method, path, body = _request_for(args)
    except ValueError as exc:
        print(f"modelyard: {exc}", file=sys.stderr)
        return 2
    target = gateway_target(args)
    if target is None:
        return 2
    url, key = target
    headers = {"authorization": f"Bearer {key}"}
    if method != "GET":
        # A retry of this very command after a network error cannot act twice.
        headers["idempotency-key"] = str(uuid.uuid4())
    try:
        response = httpx.request(method, url + path, json=body, headers=headers, timeout=60)
    except httpx.HTTPError as exc:
        print(
            f"modelyard: cannot reach the gateway at {url}: {type(exc).__name__}", file=sys.stderr
        )
        return 1
    if response.headers.get("content-type", "").startswith("text/csv"):
        print(response.text, end="")
        return 0
    payload = response.json()
    if response.status_code >= 400:
        error = payload.get("error", {})
        print(f"modelyard: {response.status_code} {error.get('message')}", file=sys.stderr)
        return 1
    if args.command == "usage":
        print(usage_table(payload["group_by"], payload["data"]))
        return 0
    print(json.dumps(payload, indent=2))
    return 0


def usage_table(group_by: list[str], rows: list[dict[str, Any]]) -> str:
    columns = [*group_by, *USAGE_MEASURES]
    if "deployment" in group_by:
        columns += FEEDBACK_MEASURES
    cells = [columns] + [[str(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)) for line in cells
    )


def _request_for(args: argparse.Namespace) -> tuple[str, str, dict[str, Any] | None]:
    action = args.action
    if args.command == "projects":
        base = "/admin/projects"
        if action == "list":
            return "GET", base, None
        project = f"{base}/{args.project}"
        if action == "show":
            return "GET", project, None
        if action == "create":
            return "POST", base, {"id": args.project, **_project_body(args)}
        if action == "update":
            body = _project_body(args)
            if args.all_models:
                body["allowed_models"] = None
            if args.any_network:
                body["allowed_cidrs"] = None
            if args.any_region:
                body["allowed_regions"] = None
            if args.no_content_logging:
                body["content_retention_days"] = None
            return "PATCH", project, body
        if action == "members":
            return "GET", f"{project}/members", None
        if action == "grant":
            return "PUT", f"{project}/members/{args.subject}", {"role": args.role}
        return "DELETE", f"{project}/members/{args.subject}", None
    if args.command == "keys":
        keys = f"/admin/projects/{args.project}/keys"
        if action == "list":
            return "GET", keys, None
        if action == "create":
            key_body: dict[str, Any] = {"name": args.name, "role": args.role}
            if args.models:
                key_body["models"] = args.models
            if args.expires_at:
                key_body["expires_at"] = args.expires_at
            return "POST", keys, key_body
        if action == "revoke":
            return "POST", f"{keys}/{args.key_id}/revoke", None
        return "POST", f"{keys}/{args.key_id}/rotate", {"grace_seconds": args.grace_seconds}
    if args.command == "usage":
        params = {"group_by": args.group_by, "since": args.since, "until": args.until}
        params |= {"project": args.project, "format": "csv" if args.csv else None}
        query = "&".join(f"{k}={v}" for k, v in params.items() if v)
        return "GET", f"/admin/usage?{query}", None
    if args.command == "limits":
        path = f"/admin/projects/{args.project}"
        path += f"/keys/{args.key_id}/limits" if args.key_id else "/limits"
        if action == "show":
            return "GET", path, None
        budgets = {
            period: value
            for period, value in (
                ("day", args.day_usd),
                ("month", args.month_usd),
                ("total", args.total_usd),
            )
            if value is not None
        }
        limits_body: dict[str, Any] = {"budgets_usd": budgets}
        for field, value in (
            ("requests_per_minute", args.rpm),
            ("tokens_per_minute", args.tpm),
            ("max_concurrent", args.max_concurrent),
        ):
            if value is not None:
                limits_body[field] = value
        return "PUT", path, limits_body
    if args.command == "routes":
        if action == "list":
            return "GET", "/admin/routes", None
        if action == "delete":
            return "DELETE", f"/admin/routes/{args.route}", None
        return "PUT", f"/admin/routes/{args.route}", _route_body(args)
    if args.command == "deployments":
        return "GET", "/admin/deployments", None
    asked = {
        "after_seq": args.after_seq,
        "limit": args.limit,
        "project": args.project,
        "actor": args.actor,
        "action": args.event_action,
    }
    query = urlencode({name: value for name, value in asked.items() if value is not None})
    return "GET", "/admin/audit?" + query, None


def _verify_audit(args: argparse.Namespace) -> int:
    from modelyard.audit.cli import verify_command
    from modelyard.settings import Settings

    overrides = {
        name: value
        for name, value in (("database_url", args.database_url), ("data_dir", args.data_dir))
        if value is not None
    }
    return verify_command(Settings(**overrides).database(), args.expect_head)


def connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help=f"gateway URL (default $MODELYARD_URL or {DEFAULT_URL})")
    parser.add_argument("--key", help="API key (default $MODELYARD_API_KEY)")


def gateway_target(args: argparse.Namespace) -> tuple[str, str] | None:
    """The gateway's URL and the caller's key, from the options or the environment; None (said
    on stderr) when there is no key."""
    key = args.key or os.environ.get("MODELYARD_API_KEY")
    if not key:
        print("modelyard: set MODELYARD_API_KEY or pass --key", file=sys.stderr)
        return None
    return (args.url or os.environ.get("MODELYARD_URL") or DEFAULT_URL).rstrip("/"), key


def _project_fields(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--description")
    parser.add_argument("--model", action="append", dest="models", help="allow (repeatable)")
    parser.add_argument("--cidr", action="append", dest="cidrs", help="allow (repeatable)")
    parser.add_argument(
        "--region", action="append", dest="regions", help="pin requests to (repeatable)"
    )
    parser.add_argument("--content-retention-days", type=int, help="opt in to content logging")


def _project_body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if args.description is not None:
        body["description"] = args.description
    if args.models:
        body["allowed_models"] = args.models
    if args.cidrs:
        body["allowed_cidrs"] = args.cidrs
    if args.regions:
        body["allowed_regions"] = args.regions
    if args.content_retention_days is not None:
        body["content_retention_days"] = args.content_retention_days
    return body


def _route_body(args: argparse.Namespace) -> dict[str, Any]:
    candidates = []
    for given in args.candidates:
        deployment, _, weight = given.partition("=")
        if weight and not weight.isdigit():
            raise ValueError(f"--candidate {given}: the weight must be a whole number")
        candidates.append({"deployment": deployment, "weight": int(weight or 1)})
    body: dict[str, Any] = {"strategy": args.strategy, "candidates": candidates}
    if args.languages:
        body["languages"] = args.languages
    if args.max_attempts is not None:
        body["max_attempts"] = args.max_attempts
    if args.description is not None:
        body["description"] = args.description
    return body
