"""The `modelyard` command: argument parsing only; the work happens in the modules it calls."""

from __future__ import annotations

import argparse
import ipaddress
import os
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from modelyard import __version__
from modelyard.admin_cli import add_admin_commands, run_admin_command
from modelyard.auth.admin_key import load_or_create_admin_key
from modelyard.errors import StartupError
from modelyard.eval_cli import add_eval_commands, run_eval_command
from modelyard.observability.logs import configure_logging
from modelyard.settings import Settings
from modelyard.workers import require_shared_counters

DESCRIPTION = (
    "Modelyard: a self-hosted model catalog and inference gateway. 'modelyard serve' runs it; "
    "the other commands manage projects, keys, limits, usage, evaluations and the audit log of a "
    "running gateway (MODELYARD_URL, MODELYARD_API_KEY)."
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="modelyard", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"modelyard {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8080)")
    serve.add_argument("--catalog", type=Path, help="YAML catalog file (default: the bundled one)")
    serve.add_argument("--data-dir", type=Path, help="where state is kept (default ./.modelyard)")
    serve.add_argument("--tls-cert", type=Path, metavar="FILE", help="PEM certificate: serve HTTPS")
    serve.add_argument("--tls-key", type=Path, metavar="FILE", help="PEM private key of --tls-cert")
    serve.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="worker processes sharing the port (default 1; more need MODELYARD_REDIS_URL)",
    )
    serve.add_argument(
        "--trusted-proxy",
        action="append",
        metavar="CIDR",
        help="a proxy whose X-Forwarded-For is believed (repeatable; default: none)",
    )
    add_admin_commands(commands)
    add_eval_commands(commands)
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve_command(args)
    if args.command in ("projects", "keys", "audit", "usage", "limits", "routes", "deployments"):
        return run_admin_command(args)
    if args.command == "eval":
        return run_eval_command(args)
    return 2


def serve_command(args: argparse.Namespace) -> int:
    overrides = {
        key: value
        for key, value in {
            "host": args.host,
            "port": args.port,
            "catalog": args.catalog,
            "data_dir": args.data_dir,
            "tls_certfile": args.tls_cert,
            "tls_keyfile": args.tls_key,
            "trusted_proxies": tuple(args.trusted_proxy) if args.trusted_proxy else None,
            "workers": args.workers,
        }.items()
        if value is not None
    }
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        print(f"modelyard: invalid settings: {exc}", file=sys.stderr)
        return 2
    try:
        require_shared_counters(settings)
        check_tls_files(settings.tls_certfile, settings.tls_keyfile)
    except StartupError as exc:
        print(f"modelyard: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    configured = settings.admin_key.get_secret_value() if settings.admin_key else None
    admin = load_or_create_admin_key(settings.data_dir, configured)
    try:
        from modelyard.app import create_app

        # With workers, this app serves nothing: building it does the one-time start-up work
        # (checks, server secret, migrations, default project) before they race for it.
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
    tls = settings.tls_certfile is not None
    if not tls and not is_loopback(settings.host):
        print(
            f"modelyard: warning: {settings.host} is reachable from other machines over plain "
            "HTTP; keys and prompts cross the network unencrypted (use --tls-cert/--tls-key)",
            file=sys.stderr,
            flush=True,
        )
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    scheme = "https" if tls else "http"
    print(f"Modelyard listening on {scheme}://{host}:{settings.port}/v1", flush=True)
    if settings.workers > 1:
        app.state.modelyard.close()
        from modelyard.workers import serve_workers

        return serve_workers(settings, admin.digest)
    from modelyard.http_server import serve_in_process

    return serve_in_process(app, settings)


def check_tls_files(certfile: Path | None, keyfile: Path | None) -> None:
    """Refuse, before binding, TLS that is half-configured or whose files cannot be served."""
    if certfile is None and keyfile is None:
        return
    if certfile is None or keyfile is None:
        unset = (
            "--tls-cert (MODELYARD_TLS_CERTFILE)"
            if certfile is None
            else "--tls-key (MODELYARD_TLS_KEYFILE)"
        )
        raise StartupError(f"TLS needs both a certificate and a key; {unset} is not set")
    for flag, path in (("--tls-cert", certfile), ("--tls-key", keyfile)):
        if not path.is_file():
            raise StartupError(f"{flag} {path} does not exist or is not a file")
        if not os.access(path, os.R_OK):
            raise StartupError(f"{flag} {path} is not readable")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        # A password makes an encrypted key fail here rather than prompt on the terminal.
        context.load_cert_chain(certfile, keyfile, password="")
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            problem = "the key does not belong to the certificate"
        else:
            problem = f"not a PEM certificate and unencrypted private key ({exc.reason or exc})"
        raise StartupError(f"cannot serve TLS with {certfile} and {keyfile}: {problem}") from None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name that may resolve anywhere
