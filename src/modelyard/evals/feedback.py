"""Production feedback, the quality signal of served requests: a caller who may use the
project's models rates one of the project's requests (`POST /v1/feedback`).

The request must be one of the acting project's usage records; one feedback per request and
rater (the key, or the caller's subject when there is no key), a second replacing the first.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from modelyard.auth.principal import Principal
from modelyard.ledger.feedback import Feedback, FeedbackStore
from modelyard.policy.access import AccessPolicy
from modelyard.policy.rbac import Action
from modelyard.protocol.evals import FeedbackPost


class FeedbackService:
    def __init__(
        self,
        store: FeedbackStore,
        policy: AccessPolicy,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._policy = policy
        self._clock = clock

    def give(self, principal: Principal, body: FeedbackPost) -> dict[str, Any]:
        project = self._policy.acting_project(principal, Action.MODELS_USE)
        given = Feedback(
            request_id=body.request_id,
            project_id=project.id,
            rater=principal.key_id or f"{principal.kind}:{principal.subject}",
            key_id=principal.key_id,
            subject=principal.subject,
            score=body.score,
            labels=tuple(body.labels),
            created_at=self._clock(),
        )
        replaced = self._store.give(given)
        return {
            "object": "feedback",
            "request_id": given.request_id,
            "project_id": given.project_id,
            "key_id": given.key_id,
            "score": given.score,
            "labels": list(given.labels),
            "created_at": given.created_at.isoformat(),
            # A rater's second feedback on a request replaces the first.
            "replaced": replaced,
        }
