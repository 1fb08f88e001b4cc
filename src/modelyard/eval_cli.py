"""`modelyard eval run|list|show|export|recommend`: the evaluation harness from a terminal.

Every command talks to a running gateway over HTTP with the caller's key (--url or MODELYARD_URL,
--key or MODELYARD_API_KEY), so cases are served, limited, billed and audited exactly like an
application's requests. Suites are refused before anything runs when they are malformed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from modelyard.admin_cli import connection_options, gateway_target
from modelyard.evals import report
from modelyard.evals.bundled import BUNDLED_SUITES, bundled_suite
from modelyard.evals.estimate import estimate_run
from modelyard.evals.gateway_client import GatewayClient, GatewayError, GatewayUnreachable
from modelyard.evals.outcome import CaseResult
from modelyard.evals.recommend import Recommendation, recommend, route_entries
from modelyard.evals.runner import RunRefused, RunRequest, run_evaluation, stored_results
from modelyard.evals.stats import ALL_TAGS, Comparison, Summary, compare, summarize
from modelyard.evals.suite import SuiteError, load_suite
from modelyard.money import dollars

INTERRUPTED_EXIT = 130


def add_eval_commands(commands: Any) -> None:
    evaluate = commands.add_parser(
        "eval", help="benchmark models on task suites and route to the cheapest adequate one"
    )
    e = evaluate.add_subparsers(dest="action", required=True)

    run = e.add_parser("run", help="run suites against models through the gateway")
    connection_options(run)
    run.add_argument(
        "suites", nargs="+", metavar="SUITE", help=f"a file, or one of {', '.join(BUNDLED_SUITES)}"
    )
    run.add_argument(
        "--models",
        action="append",
        required=True,
        metavar="A,B,...",
        help="models, deployments or routes (comma-separated, repeatable)",
    )
    run.add_argument("--repeats", type=_positive, default=1, help="runs of each case (default 1)")
    run.add_argument(
        "--concurrency", type=_positive, default=4, help="requests in flight per model (4)"
    )
    run.add_argument("--run-id", help="resume this run (or name a new one)")
    run.add_argument("--project", help="the project to run in (default: the key's)")
    run.add_argument(
        "--estimate", action="store_true", help="print requests and worst-case cost; send nothing"
    )
    run.add_argument(
        "--settle-timeout-s",
        type=float,
        default=30.0,
        help="how long to wait for the ledger's costs after the cases (30)",
    )
    _export_options(run)

    listing = e.add_parser("list", help="evaluation runs you may see")
    connection_options(listing)
    listing.add_argument("--project")

    show = e.add_parser("show", help="a run's summary table")
    connection_options(show)
    show.add_argument("run")

    export = e.add_parser("export", help="write a run as JSON, CSV or an HTML report")
    connection_options(export)
    export.add_argument("run")
    _export_options(export)

    advise = e.add_parser("recommend", help="per tag, the cheapest model good enough; its routes")
    connection_options(advise)
    advise.add_argument("run")
    advise.add_argument(
        "--min-quality", type=float, required=True, help="the bar for the interval's lower bound"
    )
    advise.add_argument("--max-p95-latency-ms", type=float)
    advise.add_argument("--prefix", default="", help="route ids are PREFIX + tag")
    output = advise.add_mutually_exclusive_group()
    output.add_argument("--write", type=Path, metavar="FILE", help="write a YAML of routes:")
    output.add_argument(
        "--apply", action="store_true", help="create the routes through the admin API"
    )


def run_eval_command(args: argparse.Namespace) -> int:
    target = gateway_target(args)
    if target is None:
        return 2
    url, key = target
    command = {
        "run": _run,
        "list": _list,
        "show": _show,
        "export": _export,
        "recommend": _recommend,
    }[args.action]
    try:
        return asyncio.run(command(GatewayClient(url, key), args))
    except (SuiteError, RunRefused, ValueError) as refused:
        print(f"modelyard: {refused}", file=sys.stderr)
        return 2
    except GatewayError as error:
        print(f"modelyard: {error.status} {error.message}", file=sys.stderr)
        return 1
    except GatewayUnreachable as error:
        print(f"modelyard: cannot reach the gateway at {url}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("modelyard: interrupted; finished results are stored", file=sys.stderr)
        return INTERRUPTED_EXIT


# -- commands ------------------------------------------------------------------------------------


async def _run(client: GatewayClient, args: argparse.Namespace) -> int:
    suites = [load_suite(resolve_suite(name)) for name in args.suites]
    models = tuple(m.strip() for given in args.models for m in given.split(",") if m.strip())
    if not models:
        raise ValueError("--models names no model")
    async with client:
        if args.estimate:
            cases = [case for suite in suites for case in suite.cases]
            print(render_estimate(estimate_run(cases, models, args.repeats, await client.models())))
            return 0
        request = RunRequest(
            suites=tuple(suites),
            suite_names=tuple(args.suites),
            models=models,
            repeats=args.repeats,
            concurrency=args.concurrency,
            run_id=args.run_id,
            project=args.project,
            settle_timeout_s=args.settle_timeout_s,
        )
        outcome = await run_evaluation(client, request, sys.stderr)
        run_id = str(outcome.run["id"])
        results = await stored_results(client, run_id)
        print(
            f"run {run_id}: {outcome.ran} results run, {outcome.skipped} already stored, ", end=""
        )
        print(f"{outcome.errors} errors")
        if outcome.pending:
            print(
                f"{outcome.pending} results have no usage record yet (requests refused before "
                f"admission have none); 'modelyard eval run ... --run-id {run_id}' settles again"
            )
        print(report.render_table(*_analysis(results)))
        _write_exports(args, outcome.run, results)
    return 0


async def _list(client: GatewayClient, args: argparse.Namespace) -> int:
    path = "/admin/evals" + (f"?project={args.project}" if args.project else "")
    async with client:
        runs = _rows(await client.admin("GET", path))
    print(render_runs(runs))
    return 0


async def _show(client: GatewayClient, args: argparse.Namespace) -> int:
    async with client:
        run = await client.admin("GET", f"/admin/evals/{args.run}")
        results = await stored_results(client, args.run)
    print(f"run {run['id']} ({run['status']}), project {run['project_id']}, {run['created_at']}")
    print(f"suites {', '.join(run['suites'])}; models {', '.join(run['models'])}")
    print(report.render_table(*_analysis(results)))
    return 0


async def _export(client: GatewayClient, args: argparse.Namespace) -> int:
    if not (args.json or args.csv or args.report):
        raise ValueError("name at least one of --json, --csv, --report")
    async with client:
        run = await client.admin("GET", f"/admin/evals/{args.run}")
        results = await stored_results(client, args.run)
    _write_exports(args, run, results)
    return 0


async def _recommend(client: GatewayClient, args: argparse.Namespace) -> int:
    async with client:
        results = await stored_results(client, args.run)
        if not results:
            raise ValueError(f"run '{args.run}' has no results")
        advice = recommend(summarize(results), args.min_quality, args.max_p95_latency_ms)
        print(render_recommendations(advice, args.min_quality))
        entries = route_entries(advice, args.prefix)
        if args.write is not None:
            args.write.write_text(yaml.safe_dump({"routes": entries}, sort_keys=False))
            print(f"wrote {len(entries)} routes to {args.write}")
        if args.apply:
            for entry in entries:
                body = {name: value for name, value in entry.items() if name != "id"}
                await client.admin("PUT", f"/admin/routes/{entry['id']}", body)
                print(f"applied route {entry['id']}")
    return 0


# -- rendering -----------------------------------------------------------------------------------


def render_estimate(estimates: Sequence[Any]) -> str:
    lines = []
    total = 0
    for estimate in estimates:
        if estimate.max_cost_micros is None:
            lines.append(f"{estimate.model}: {estimate.requests} requests; not in the catalog")
            continue
        total += estimate.max_cost_micros
        line = (
            f"{estimate.model}: {estimate.requests} requests, at most "
            f"${dollars(estimate.max_cost_micros)}"
        )
        if estimate.judge_calls:
            line += f" (plus {estimate.judge_calls} judge calls, not estimated)"
        lines.append(line)
    lines.append(f"total: at most ${dollars(total)} at catalog prices (nothing was sent)")
    return "\n".join(lines)


def render_runs(runs: Sequence[dict[str, Any]]) -> str:
    columns = ("id", "status", "project_id", "created_at", "models", "suites")
    cells = [list(columns)] + [
        [
            ", ".join(map(str, value)) if isinstance(value := run.get(c), list) else str(value)
            for c in columns
        ]
        for run in runs
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return "\n".join(
        "  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


def render_recommendations(advice: Sequence[Recommendation], min_quality: float) -> str:
    lines = []
    for item in advice:
        chosen = item.chosen
        if chosen is None:
            lines.append(
                f"{item.tag}: no model meets the bar (quality lower bound >= {min_quality})"
            )
        else:
            lines.append(
                f"{item.tag}: {chosen.model} (deployment {chosen.deployment}), quality "
                f"{report.quality_text(chosen)}, ${report.cost_per_1k_cases(chosen)} per 1k cases"
            )
            others = [s.model for s in item.qualified[1:]]
            if others:
                lines.append(f"  also good enough, dearer: {', '.join(others)}")
        lines += [f"  excluded {model}: {why}" for model, why in item.excluded]
    return "\n".join(lines) if lines else "no tags in this run"


# -- helpers -------------------------------------------------------------------------------------


def resolve_suite(name: str) -> Path:
    """A suite file: the path given, or the bundled suite of that name."""
    path = Path(name)
    if path.exists():
        return path
    if name in BUNDLED_SUITES:
        return bundled_suite(name)
    known = ", ".join(BUNDLED_SUITES)
    raise SuiteError(path, None, None, f"is neither a file nor a bundled suite ({known})")


def _analysis(results: Sequence[CaseResult]) -> tuple[list[Summary], list[Comparison]]:
    summaries = summarize(results)
    tags = sorted({s.tag for s in summaries}, key=lambda tag: (tag != ALL_TAGS, tag))
    comparisons = [c for tag in tags for c in compare(results, tag)]
    return summaries, comparisons


def _write_exports(
    args: argparse.Namespace, run: dict[str, Any], results: list[CaseResult]
) -> None:
    if not (args.json or args.csv or args.report):
        return
    summaries, comparisons = _analysis(results)
    if args.json:
        args.json.write_text(report.render_json(run, summaries, comparisons, results))
    if args.csv:
        args.csv.write_text(report.render_csv(results))
    if args.report:
        from modelyard.evals.html_report import render_html

        args.report.write_text(render_html(run, summaries, comparisons, results))


def _rows(payload: Any) -> list[dict[str, Any]]:
    rows = payload.get("data", []) if isinstance(payload, dict) else payload
    return list(rows)


def _export_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", type=Path, metavar="FILE", help="the run, summaries, results")
    parser.add_argument("--csv", type=Path, metavar="FILE", help="one row per result")
    parser.add_argument("--report", type=Path, metavar="FILE.html", help="the HTML report")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value
