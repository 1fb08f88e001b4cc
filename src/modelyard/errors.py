"""The one error tree of the gateway.

Every failure a client can see is a `ModelyardError`. Status, OpenAI error type, a stable
snake_case code and `retryable` (whether another attempt, here or on another deployment, may
succeed; what a router reads) are class attributes; the message is for people and never decides
behaviour.
`api/errors.py` is the only place that renders these to HTTP. `StartupError` is separate: it
stops `modelyard serve` before it binds, with a message for the operator.

    ModelyardError                         [r] = retryable: another attempt may succeed
    ├── InvalidRequest (400 invalid_request_error)
    │   ├── MalformedJson                 code=invalid_json
    │   ├── InvalidParameter              code=invalid_parameter (param names the field)
    │   ├── UnsupportedParameter          code=unsupported_parameter
    │   ├── ContextLengthExceeded         code=context_length_exceeded
    │   ├── UnsupportedSchema             code=unsupported_schema
    │   ├── CapabilityUnavailable         code=capability_unavailable
    │   ├── NoEligibleDeployment          code=no_eligible_deployment (each candidate and why)
    │   └── UpstreamRejected              code=upstream_rejected_request
    ├── AuthenticationFailed (401)        code=invalid_api_key
    ├── PermissionDenied (403)            code=permission_denied (says action, resource, why)
    ├── NotFound (404)
    │   ├── ModelNotFound                 code=model_not_found
    │   └── RouteNotFound                 code=not_found
    ├── MethodNotAllowed (405)            code=method_not_allowed
    ├── Conflict (409)                    code=conflict
    ├── IdempotencyKeyReused (422)        code=idempotency_key_reused
    ├── BodyTooLarge (413)                code=request_too_large
    ├── RateLimited (429) [r]             code=rate_limited (Retry-After, x-ratelimit-*)
    │   └── InsufficientQuota             code=insufficient_quota (budget; remaining amount)
    ├── UpstreamFailed (502) [r]          code=upstream_error
    │   ├── UpstreamStreamBroken [r]      code=upstream_stream_broken
    │   └── InvalidModelOutput            code=invalid_model_output
    ├── LocalEngineFailed (502) [r]       code=engine_failed (the engine process died mid-request)
    ├── UpstreamTimeout (504) [r]         code=upstream_timeout
    │   └── DeadlineExceeded              code=deadline_exceeded (the request's own deadline)
    ├── ServiceUnavailable (503) [r]
    │   ├── EngineBusy [r]                code=engine_overloaded (Retry-After)
    │   ├── EngineUnavailable [r]         code=engine_unavailable (starting, restarting, broken)
    │   ├── UpstreamUnavailable [r]       code=upstream_unavailable
    │   ├── BacklogFull [r]               code=backlog_full (what must be recorded cannot be yet)
    │   ├── NoHealthyDeployment [r]       code=no_healthy_deployment (breakers open, engines down)
    │   └── NotReady [r]                  code=not_ready
    └── InternalError (500)               code=internal_error
"""

from __future__ import annotations

from typing import ClassVar

# The statuses of the two endings that are not errors: an answer, and a client that left before
# it (nginx's 499: never sent, only recorded). Every other status belongs to an error class.
OK_STATUS = 200
CLIENT_CLOSED_STATUS = 499


class StartupError(Exception):
    """The configuration cannot be served (bad catalog, missing weights); never seen by clients."""


class ModelyardError(Exception):
    status: ClassVar[int] = 500
    type: ClassVar[str] = "server_error"
    code: ClassVar[str] = "internal_error"
    # Whether another attempt (on this or another deployment) may succeed.
    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        retry_after_s: int | None = None,
        headers: dict[str, str] | None = None,
        upstream_usage: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        # (prompt, completion) tokens an upstream reported consuming before it failed: billed.
        self.upstream_usage = upstream_usage
        # Extra response headers (the x-ratelimit-* family on a 429).
        self.headers = headers or {}
        self.param = param
        self.retry_after_s = retry_after_s


class InvalidRequest(ModelyardError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class MalformedJson(InvalidRequest):
    code = "invalid_json"


class InvalidParameter(InvalidRequest):
    code = "invalid_parameter"


class UnsupportedParameter(InvalidRequest):
    code = "unsupported_parameter"


class ContextLengthExceeded(InvalidRequest):
    code = "context_length_exceeded"


class UnsupportedSchema(InvalidRequest):
    code = "unsupported_schema"


class CapabilityUnavailable(InvalidRequest):
    code = "capability_unavailable"


class NoEligibleDeployment(InvalidRequest):
    """No candidate of the model or route can serve this request (region, capability,
    language); the message lists each candidate and why it was excluded. A context window that
    seems too small only sends its candidate to the back: the count is an estimate, and the
    largest window's own refusal is the answer when none fits."""

    code = "no_eligible_deployment"


class AuthenticationFailed(ModelyardError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(ModelyardError):
    status = 403
    type = "permission_error"
    code = "permission_denied"


class NotFound(ModelyardError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class RouteNotFound(NotFound):
    code = "not_found"


class MethodNotAllowed(ModelyardError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class Conflict(ModelyardError):
    status = 409
    type = "invalid_request_error"
    code = "conflict"


class IdempotencyKeyReused(ModelyardError):
    status = 422
    type = "invalid_request_error"
    code = "idempotency_key_reused"


class BodyTooLarge(ModelyardError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class RateLimited(ModelyardError):
    """A rate limit or the concurrency cap refused the request; it may pass after Retry-After."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limited"
    retryable = True


class InsufficientQuota(RateLimited):
    """A budget would be exceeded; the message says which and what remains. Not retryable
    until the budget's window turns over or it is raised."""

    type = "insufficient_quota"
    code = "insufficient_quota"
    retryable = False


class UpstreamRejected(InvalidRequest):
    """The upstream refused the request as invalid; its reason is passed on."""

    code = "upstream_rejected_request"


class UpstreamFailed(ModelyardError):
    status = 502
    type = "server_error"
    code = "upstream_error"
    retryable = True


class UpstreamStreamBroken(UpstreamFailed):
    code = "upstream_stream_broken"


class InvalidModelOutput(UpstreamFailed):
    """The model's output broke the request's schema and could not be repaired."""

    code = "invalid_model_output"
    retryable = False


class LocalEngineFailed(ModelyardError):
    """A local model's engine process died while generating; it is being restarted."""

    status = 502
    type = "server_error"
    code = "engine_failed"
    retryable = True


class UpstreamTimeout(ModelyardError):
    status = 504
    type = "server_error"
    code = "upstream_timeout"
    retryable = True


class DeadlineExceeded(UpstreamTimeout):
    """The request's deadline passed before an attempt had output: no attempt may follow, and
    the deployment is not blamed for a wait the caller cut short."""

    code = "deadline_exceeded"
    retryable = False


class ServiceUnavailable(ModelyardError):
    status = 503
    type = "server_error"
    code = "service_unavailable"
    retryable = True


class EngineBusy(ServiceUnavailable):
    code = "engine_overloaded"


class EngineUnavailable(ServiceUnavailable):
    """A local model's engine is loading, restarting after a crash, or failing its self-test."""

    code = "engine_unavailable"


class UpstreamUnavailable(ServiceUnavailable):
    code = "upstream_unavailable"


class BacklogFull(ServiceUnavailable):
    """A background writer's backlog is full (the database is slow or away): the request is
    refused before any work rather than produce a record that could not be kept."""

    code = "backlog_full"


class NoHealthyDeployment(ServiceUnavailable):
    """Every candidate that could serve the request is failing right now (circuit breaker open,
    local engine down, its own rate limit full); the message lists each and why. A candidate
    resting after a 429 is still tried last, so its own 429 is the answer when it is alone."""

    code = "no_healthy_deployment"


class NotReady(ServiceUnavailable):
    code = "not_ready"


class InternalError(ModelyardError):
    status = 500
    type = "server_error"
    code = "internal_error"
