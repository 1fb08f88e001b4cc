"""Whether a Principal may do an Action on a project, or use a model: a Decision with a reason.

Projects the caller holds no role on are reported as missing (404), never as forbidden, so
their existence does not leak. Everything else that says no is a 403 naming the action, the
resource and the rule that refused it.
"""

from __future__ import annotations

from functools import lru_cache

from modelyard.auth.directory import Directory, ProjectRecord
from modelyard.auth.principal import Principal
from modelyard.errors import NotFound, PermissionDenied
from modelyard.policy.networks import AllowedNetworks
from modelyard.policy.rbac import Action, Decision, role_allows


class AccessDenied(PermissionDenied):
    """A 403 that remembers the decision, so the edge can audit it."""

    def __init__(self, decision: Decision, subject: str) -> None:
        super().__init__(
            f"Permission denied: '{decision.action}' on {decision.resource}: {decision.reason}."
        )
        self.decision = decision
        self.subject = subject


class AccessPolicy:
    def __init__(self, directory: Directory) -> None:
        self._directory = directory

    def project_for(self, principal: Principal, project_id: str) -> ProjectRecord:
        """The project, if the caller holds any role on it; otherwise 404."""
        project = self._directory.projects.get(project_id)
        if project is None or principal.role_in(project_id) is None:
            raise NotFound(f"The project '{project_id}' does not exist.", param="project")
        return project

    def decide(self, principal: Principal, action: Action, project: ProjectRecord) -> Decision:
        resource = f"project '{project.id}'"
        role = principal.role_in(project.id)
        if role is None:
            return Decision(False, action, resource, "you hold no role on this project")
        if not role_allows(role, action):
            return Decision(False, action, resource, f"the role '{role}' does not grant '{action}'")
        # The project's networks bind its own members and keys; owners administer every
        # project from wherever they are.
        if (
            project.allowed_cidrs is not None
            and not principal.is_owner()
            and not _networks(project.allowed_cidrs).allows(principal.client_ip)
        ):
            return Decision(
                False,
                action,
                resource,
                f"the client address {principal.client_ip or 'unknown'} is outside the "
                "project's allowed networks",
            )
        return Decision(True, action, resource, f"granted by the role '{role}'")

    def require(self, principal: Principal, action: Action, project_id: str) -> ProjectRecord:
        project = self.project_for(principal, project_id)
        self._enforce(principal, self.decide(principal, action, project))
        return project

    def acting_project(self, principal: Principal, action: Action) -> ProjectRecord:
        """The project a model or catalog request acts in, after checking the action there."""
        if principal.project is None:
            raise PermissionDenied(
                f"Permission denied: '{action}' needs a project: you have roles on several, "
                "so name one in the x-modelyard-project header.",
                param="x-modelyard-project",
            )
        return self.require(principal, action, principal.project)

    def require_owner(self, principal: Principal, action: Action, resource: str) -> None:
        """Gateway-wide actions (every project at once) belong to owners alone."""
        if not principal.is_owner():
            reason = "only an owner may do this across every project"
            self._enforce(principal, Decision(False, action, resource, reason))

    def decide_model(self, principal: Principal, project: ProjectRecord, model: str) -> Decision:
        resource = f"model '{model}'"
        if project.allowed_models is not None and model not in project.allowed_models:
            return Decision(
                False,
                Action.MODELS_USE,
                resource,
                f"the project '{project.id}' does not allow this model",
            )
        if principal.models is not None and model not in principal.models:
            allowed = ", ".join(sorted(principal.models)) or "none"
            return Decision(
                False, Action.MODELS_USE, resource, f"this key is limited to: {allowed}"
            )
        return Decision(True, Action.MODELS_USE, resource, "allowed")

    def require_model(self, principal: Principal, model: str) -> ProjectRecord:
        project = self.acting_project(principal, Action.MODELS_USE)
        self._enforce(principal, self.decide_model(principal, project, model))
        return project

    def may_see_model(self, principal: Principal, project: ProjectRecord, model: str) -> bool:
        return self.decide_model(principal, project, model).allowed

    @staticmethod
    def _enforce(principal: Principal, decision: Decision) -> None:
        if not decision.allowed:
            raise AccessDenied(decision, principal.subject)


@lru_cache(maxsize=1024)
def _networks(cidrs: tuple[str, ...]) -> AllowedNetworks:
    return AllowedNetworks.from_cidrs(cidrs)
