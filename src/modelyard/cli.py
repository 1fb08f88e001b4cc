"""The `modelyard` command: argument parsing only; the work happens in the modules it calls."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from modelyard import __version__
from modelyard.auth.admin_key import load_or_create_admin_key
from modelyard.errors import StartupError
from modelyard.settings import Settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="modelyard", description=__doc__)
    parser.add_argument("--version", action="version", version=f"modelyard {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8080)")
    serve.add_argument("--catalog", type=Path, help="YAML catalog file (default: the bundled one)")
    serve.add_argument("--data-dir", type=Path, help="where state is kept (default ./.modelyard)")
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve_command(args)
    return 2


def serve_command(args: argparse.Namespace) -> int:
    overrides = {
        key: value
        for key, value in {
            "host": args.host,
            "port": args.port,
            "catalog": args.catalog,
            "data_dir": args.data_dir,
        }.items()
        if value is not None
    }
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        print(f"modelyard: invalid settings: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    configured = settings.admin_key.get_secret_value() if settings.admin_key else None
    admin = load_or_create_admin_key(settings.data_dir, configured)
    try:
        from modelyard.app import create_app

        app = create_app(settings, admin_digest=admin.digest)
    except StartupError as exc:
        print(f"modelyard: {exc}", file=sys.stderr)
        return 2
    if admin.new_key:
        print(
            "\nGenerated the admin API key (shown only this once; only its hash is stored in "
            f"{settings.data_dir / 'admin-key.sha256'}):\n\n    {admin.new_key}\n",
            flush=True,
        )
    print(f"Modelyard listening on http://{settings.host}:{settings.port}/v1", flush=True)

    import uvicorn

    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        http="httptools",
        loop="uvloop",
        timeout_graceful_shutdown=10,
    )
    return 0
