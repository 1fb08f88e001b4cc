"""Typed, frozen start-up settings.

Everything the gateway needs to know before it starts comes from here: command-line flags
override `MODELYARD_*` environment variables, which override the defaults below. Settings are
read once and never change while the process runs.
"""

from __future__ import annotations

import socket
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_CATALOG = "default"
MIB = 1024 * 1024


def packaged_catalog_path() -> Path:
    """The catalog that ships inside the package (SmolLM2 on the embedded engine)."""
    return Path(str(resources.files("modelyard.catalog").joinpath("default.yaml")))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MODELYARD_", frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    catalog: Path | None = None
    data_dir: Path = Path(".modelyard")
    admin_key: SecretStr | None = None
    max_body_bytes: int = Field(default=4 * MIB, gt=0)
    # Bounds on each connection (see http_protocol.py): the request line and headers, in bytes
    # and in time, and the longest pause inside a request body.
    max_header_bytes: int = Field(default=64 * 1024, ge=1024)
    request_head_timeout_s: float = Field(default=10.0, gt=0)
    body_idle_timeout_s: float = Field(default=30.0, gt=0)
    # How long an idle kept-alive connection stays open. Longer than clients keep theirs
    # (httpx, under the openai and anthropic SDKs: 5 s) and than load balancers' idle timeouts
    # (60 s): a client that reuses a connection the server is closing at that moment gets a
    # reset, and a POST is not retried.
    keep_alive_s: int = Field(default=65, ge=1, le=3600)
    # Threads llama.cpp uses per loaded model; 0 means one per CPU core.
    engine_threads: int = Field(default=0, ge=0)
    # Requests that may wait for a local model while its slots are all generating; one more
    # gets a 503.
    engine_queue_depth: int = Field(default=16, ge=0)
    # Sequences a local model decodes together (continuous batching); a deployment's
    # `options.parallel` overrides it. Each slot holds the model's whole context window.
    engine_parallel: int = Field(default=4, ge=1, le=64)
    # The largest `n` (choices per request) accepted.
    max_choices: int = Field(default=4, ge=1)
    # The model the Azure AI Inference endpoint serves when a request names none.
    default_model: str | None = None
    log_level: str = "info"
    # `text` for a terminal; `json`: one JSON object per line, for a log shipper.
    log_format: Literal["text", "json"] = "text"
    # One line per HTTP request on the `modelyard.access` logger (no content, no keys).
    access_log: bool = True
    # Where projects, keys and the audit log live; default: SQLite in the data directory.
    database_url: str | None = None
    # How often (seconds) a replica checks the database for configuration changed elsewhere
    # (keys, projects, members, limits); a revocation on one replica holds on all within this.
    config_poll_s: float = Field(default=1.0, gt=0)
    # The longest a chat request may take, every attempt and the pauses between them included;
    # a caller may ask for less (`x-modelyard-timeout-s`, or the SDKs' `x-stainless-timeout`).
    request_timeout_s: float = Field(default=600.0, gt=0, le=3600)
    # A deployment's circuit breaker opens after this many failures in a row, or when at least
    # `breaker_error_rate` of 10 or more attempts in 30 s failed; it lets one request probe the
    # deployment after `breaker_cooldown_s` (doubled after each failed probe, up to 60 s).
    # 0 turns circuit breakers off.
    breaker_failures: int = Field(default=5, ge=0)
    breaker_error_rate: float = Field(default=0.5, gt=0, le=1)
    breaker_cooldown_s: float = Field(default=5.0, gt=0, le=60)
    # Keys API keys are hashed and idempotent replies sealed with. Replicas must share one;
    # a single machine generates it into the data directory on first start.
    secret: SecretStr | None = None
    # YAML file configuring OIDC/JWT bearer tokens from an identity provider (issuer, audience,
    # JWKS, claim-to-role mappings); None: only API keys are accepted.
    auth_config: Path | None = None
    # TLS: serve HTTPS from these PEM files (both or neither).
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None
    # Redis for budget and rate-limit counters shared by replicas; None: in-process counters
    # (one machine). Counters fail closed: Redis unreachable means requests get 503.
    redis_url: SecretStr | None = None
    # This replica's stable name, so that after a crash it settles what it left open; by default
    # host and port, which survive a restart.
    replica_id: str | None = None
    # False turns off the usage ledger, budgets and rate limits: for measuring their cost in
    # benchmarks only. Nothing is billed or limited while it is off.
    accounting: bool = True
    # Records each background writer (usage ledger, content log, audit log) holds while the
    # database is slow or away; when one is full, new work that would add to it gets 503.
    writer_backlog: int = Field(default=10_000, ge=1)
    # Failed logins from one client address recorded one by one per minute; further ones are
    # counted into one record (unauthenticated traffic must not grow the audit log unbounded).
    audit_failed_logins_per_minute: int = Field(default=10, ge=1)
    # Proxies (CIDRs) whose X-Forwarded-For is believed; from anyone else it is ignored.
    trusted_proxies: tuple[str, ...] = ()
    # Worker processes serving one listening socket; more than one needs `redis_url` (each
    # worker is a replica of its own, named `<replica>/w<i>`).
    workers: int = Field(default=1, ge=1)
    # The longest a stored Responses API response is kept (a project keeping content for fewer
    # days keeps it for fewer); a fraction of a day is allowed.
    responses_ttl_days: float = Field(default=30.0, gt=0, le=3650)

    # Prometheus metrics on /metrics; False turns them off (and /metrics answers 404).
    metrics: bool = True
    # A project label on request and token counts: one series per project and deployment.
    metrics_project_label: bool = False
    # A scrape token for /metrics (`Authorization: Bearer <token>`), besides owners' keys.
    metrics_token: SecretStr | None = None
    # /metrics without credentials: only when the operator says so.
    metrics_public: bool = False
    # The web console at /console; False: not served (404), the API alone.
    console: bool = True

    def catalog_path(self) -> Path:
        return self.catalog if self.catalog is not None else packaged_catalog_path()

    def replica(self) -> str:
        return self.replica_id or f"{socket.gethostname()}:{self.port}"

    def embedded_database_file(self) -> Path:
        return self.data_dir.resolve() / "modelyard.db"

    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.embedded_database_file()}"
