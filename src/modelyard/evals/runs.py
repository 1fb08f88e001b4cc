"""The evaluation runs as the admin API sees them: who may make, feed, settle and read a run.

Making a run, adding its results, settling and changing its status need the right to use
models in the run's project; reading needs the right to read the project. A run of a project
the caller holds no role on does not exist for them (404, naming neither the project nor its
run). Creating a run is audited; a run id that exists already resumes that run (status back
to `running`). Methods are synchronous (they talk to the database); call them off the loop.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from modelyard.audit.events import AuditEvent
from modelyard.auth.directory import Directory, ProjectRecord
from modelyard.auth.principal import Principal
from modelyard.errors import Conflict, InvalidParameter, NotFound
from modelyard.evals.outcome import CaseResult
from modelyard.evals.stats import summarize
from modelyard.evals.store import EvalRun, EvalStore
from modelyard.policy.access import AccessPolicy
from modelyard.policy.rbac import Action
from modelyard.protocol.evals import ResultIn, ResultsPost, RunCreate, RunPatch

JsonObject = dict[str, Any]


class EvalRuns:
    def __init__(
        self,
        store: EvalStore,
        directory: Directory,
        policy: AccessPolicy,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._directory = directory
        self._policy = policy
        self._clock = clock

    def create(self, principal: Principal, body: RunCreate) -> tuple[bool, JsonObject]:
        """(created, the run): a new run, or the existing one of that id, resumed."""
        if body.project is not None:
            project = self._policy.require(principal, Action.MODELS_USE, body.project)
        else:
            project = self._policy.acting_project(principal, Action.MODELS_USE)
        if body.id is not None:
            existing = self._store.run(body.id)
            if existing is not None:
                return False, self._resume(principal, existing, project).to_json()
        run = EvalRun(
            id=body.id or _new_run_id(self._clock()),
            project_id=project.id,
            created_at=self._clock(),
            created_by=principal.subject,
            suites=tuple(body.suites),
            models=tuple(body.models),
            repeats=body.repeats,
            status="running",
            params=body.params,
        )
        event = AuditEvent(
            actor=principal.subject,
            action="evals.create",
            object=f"eval_run:{run.id}",
            outcome="succeeded",
            reason=f"suites {', '.join(run.suites)}; models {', '.join(run.models)}; "
            f"repeats {run.repeats}",
            project_id=project.id,
            client_ip=principal.client_ip,
        )
        created = self._store.create_run(run, event)
        if created is None:
            # Made a moment ago by a concurrent call with the same id.
            existing = self._store.run(run.id)
            if existing is None:
                raise Conflict(f"The run id '{run.id}' could not be used; retry.", param="id")
            return False, self._resume(principal, existing, project).to_json()
        return True, created.to_json()

    def list_runs(self, principal: Principal, project_id: str | None) -> JsonObject:
        if project_id is not None:
            self._policy.require(principal, Action.PROJECTS_READ, project_id)
            scope: list[str] | None = [project_id]
        elif principal.is_owner():
            scope = None
        else:
            scope = [
                p.id
                for p in self._directory.projects.values()
                if self._policy.decide(principal, Action.PROJECTS_READ, p).allowed
            ]
        return {"object": "list", "data": [run.to_json() for run in self._store.runs(scope)]}

    def show(self, principal: Principal, run_id: str) -> JsonObject:
        run, _ = self._run_for(principal, run_id, Action.PROJECTS_READ)
        summaries = summarize(self._store.results(run.id))
        return run.to_json() | {"summary": [asdict(summary) for summary in summaries]}

    def results(self, principal: Principal, run_id: str) -> JsonObject:
        run, _ = self._run_for(principal, run_id, Action.PROJECTS_READ)
        data = [result_json(result) for result in self._store.results(run.id)]
        return {"object": "list", "data": data}

    def add_results(self, principal: Principal, run_id: str, body: ResultsPost) -> JsonObject:
        run, project = self._run_for(principal, run_id, Action.MODELS_USE)
        for index, result in enumerate(body.results):
            if result.run_id != run.id:
                raise InvalidParameter(
                    f"The result is of the run '{result.run_id}', not '{run.id}'.",
                    param=f"results[{index}].run_id",
                )
        keep_output = project.content_retention_days is not None
        stored = self._store.add_results(
            run.id, [_case_result(r) for r in body.results], keep_output, self._clock()
        )
        return {"stored": stored}

    def settle(self, principal: Principal, run_id: str) -> JsonObject:
        run, _ = self._run_for(principal, run_id, Action.MODELS_USE)
        settlement = self._store.settle(run)
        return {"settled": settlement.settled, "pending": settlement.pending}

    def update(self, principal: Principal, run_id: str, body: RunPatch) -> JsonObject:
        run, _ = self._run_for(principal, run_id, Action.MODELS_USE)
        return self._store.set_status(run, body.status).to_json()

    def _resume(self, principal: Principal, run: EvalRun, project: ProjectRecord) -> EvalRun:
        if run.project_id != project.id:
            # Whether the other project's run is visible or not, the id is not free here.
            raise Conflict(
                f"The run id '{run.id}' is used by another project; choose another id.",
                param="id",
            )
        self._policy.require(principal, Action.MODELS_USE, run.project_id)
        return run if run.status == "running" else self._store.set_status(run, "running")

    def _run_for(
        self, principal: Principal, run_id: str, action: Action
    ) -> tuple[EvalRun, ProjectRecord]:
        run = self._store.run(run_id)
        if run is None or principal.role_in(run.project_id) is None:
            raise NotFound(f"The eval run '{run_id}' does not exist.", param="run")
        return run, self._policy.require(principal, action, run.project_id)


def result_json(result: CaseResult) -> JsonObject:
    shaped = asdict(result)
    shaped["tags"] = list(result.tags)
    return shaped


def _case_result(wire: ResultIn) -> CaseResult:
    return CaseResult(**(wire.model_dump() | {"tags": tuple(wire.tags)}))


def _new_run_id(now: datetime) -> str:
    return f"run-{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
