"""The Responses use-case: a Responses request served as a chat request, and the stored responses
it can continue from.

`open` decides what the request may store and continue (only a project that keeps content
stores; `previous_response_id` then prepends the stored conversation), translates it onto the
canonical request and opens it with `ChatService` like any chat request: the same admission,
limits, routing, ledger and audit, no second serving path. The `ResponseTurn` it returns shapes
the run's outcome or events as this surface's answer, and stores the response before the answer
leaves (see `stored_responses.py`). Errors raised below name canonical parameters; they leave
here named as this surface names them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from modelyard.auth.directory import ProjectRecord
from modelyard.auth.principal import Principal
from modelyard.errors import (
    InvalidParameter,
    InvalidRequest,
    ModelyardError,
    NotFound,
    UpstreamStreamBroken,
)
from modelyard.policy.access import AccessPolicy
from modelyard.policy.rbac import Action
from modelyard.protocol.generation import (
    ChoiceFinished,
    Finished,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from modelyard.protocol.responses import ResponsesRequest
from modelyard.protocol.responses_chat import (
    Translation,
    assistant_message,
    in_surface_terms,
    to_chat_request,
)
from modelyard.protocol.responses_output import (
    Envelope,
    JsonObject,
    ResponseEvents,
    envelope_of,
    finished_response,
    input_items,
)
from modelyard.serving.chat import ChatService
from modelyard.serving.chat_run import ChatRun
from modelyard.serving.stored_responses import StoredResponse, StoredResponses

MAX_LIST_LIMIT = 100


class ResponsesService:
    def __init__(self, chat: ChatService, access: AccessPolicy, stored: StoredResponses) -> None:
        self._chat = chat
        self._access = access
        self._stored = stored

    async def open(
        self,
        body: ResponsesRequest,
        principal: Principal,
        request_id: str,
        timeout_s: float | None = None,
    ) -> ResponseTurn:
        """Everything that can fail with a clean status before output exists; `timeout_s` is
        the caller's own deadline."""
        previous: list[JsonObject] = []
        if body.previous_response_id is not None:
            project = self._access.acting_project(principal, Action.MODELS_USE)
            previous = await self._conversation(project, body.previous_response_id)
        translation = to_chat_request(body, previous)
        try:
            run = await self._chat.open_chat(
                translation.request, principal, request_id, None, timeout_s
            )
        except ModelyardError as error:
            in_surface_terms(error, translation.origins)
            raise
        # The project the request is served and billed in, whose retention decides.
        keeps = run.lifecycle.content_retention_days
        store = keeps is not None and body.store is not False
        return ResponseTurn(
            run=run,
            envelope=envelope_of(body, f"resp_{request_id}", run.created, store),
            body=body,
            translation=translation,
            project_id=run.lifecycle.project_id,
            keep_days=keeps if store else None,
            stored=self._stored,
        )

    async def retrieve(self, principal: Principal, response_id: str) -> JsonObject:
        project = self._access.acting_project(principal, Action.MODELS_USE)
        found = None
        if project.content_retention_days is not None:
            found = await self._stored.response(project.id, response_id)
        if found is None:
            raise _missing(response_id, "response_id")
        return found

    async def delete(self, principal: Principal, response_id: str) -> JsonObject:
        project = self._access.acting_project(principal, Action.MODELS_USE)
        if project.content_retention_days is None or not await self._stored.delete(
            project.id, response_id
        ):
            raise _missing(response_id, "response_id")
        return {"id": response_id, "object": "response", "deleted": True}

    async def input_items(
        self,
        principal: Principal,
        response_id: str,
        *,
        after: str | None = None,
        limit: int = 20,
        ascending: bool = False,
    ) -> JsonObject:
        """One page of the response's input items (newest first unless `ascending`)."""
        project = self._access.acting_project(principal, Action.MODELS_USE)
        items = None
        if project.content_retention_days is not None:
            items = await self._stored.input_items(project.id, response_id)
        if items is None:
            raise _missing(response_id, "response_id")
        ordered = items if ascending else items[::-1]
        if after is not None:
            position = next((i for i, item in enumerate(ordered) if item["id"] == after), None)
            if position is None:
                raise InvalidParameter(f"The response has no input item '{after}'.", param="after")
            ordered = ordered[position + 1 :]
        page = ordered[:limit]
        return {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(ordered) > len(page),
        }

    async def _conversation(self, project: ProjectRecord, response_id: str) -> list[JsonObject]:
        if project.content_retention_days is None:
            raise InvalidRequest(
                f"The project '{project.id}' keeps no content (zero retention), so it stores no "
                "responses and there is nothing to continue from. Send the whole conversation "
                "in 'input' instead, or have an admin turn retention on for the project "
                f"(content_retention_days, PATCH /admin/projects/{project.id}).",
                param="previous_response_id",
            )
        found = await self._stored.conversation(project.id, response_id)
        if found is None:
            raise _missing(response_id, "previous_response_id")
        return found


def _missing(response_id: str, param: str) -> NotFound:
    # The same answer for another project's response as for one that never existed.
    return NotFound(
        f"No response '{response_id}' found. Responses are stored only by projects that keep "
        "content, and only until they expire.",
        param=param,
    )


@dataclass
class ResponseTurn:
    """One opened Responses request: its run, and how its answer is shaped and stored."""

    run: ChatRun
    envelope: Envelope
    body: ResponsesRequest
    translation: Translation = field(repr=False)
    project_id: str
    # Days the project keeps content, when this response is to be stored; None: it is not.
    keep_days: int | None
    stored: StoredResponses = field(repr=False)
    # The stream's shaper (its sequence numbers), once streaming started.
    _shaper: ResponseEvents | None = field(default=None, init=False, repr=False)

    def headers(self) -> dict[str, str]:
        return self.run.headers()

    def cost_header(self) -> dict[str, str]:
        return self.run.cost_header()

    def abandon(self) -> None:
        self.run.abandon()

    async def answer(self) -> JsonObject:
        """The whole response, stored (when it is to be) before it is returned."""
        try:
            outcome = await self.run.outcome()
        except ModelyardError as error:
            in_surface_terms(error, self.translation.origins)
            raise
        choice = outcome.choices[0]
        response = finished_response(
            self.envelope,
            outcome.model,
            choice.text,
            choice.tool_calls,
            choice.finish_reason,
            outcome.usage,
        )
        await self._keep(response, choice.text, choice.tool_calls)
        return response

    async def events(self) -> AsyncIterator[list[JsonObject]]:
        """The stream's events; a failure after the start is an `error` event, then
        `response.failed`, and the stream ends (the run has recorded the failure)."""
        shaper = self._shaper = ResponseEvents(self.envelope, self.run.card.id)
        # Events made together are yielded together: the stream sends them in one write.
        yield shaper.opening()
        finish_reason = "stop"
        usage: Usage | None = None
        events = self.run.events()
        try:
            async for event in events:
                if isinstance(event, TextDelta):
                    yield shaper.text_delta(event.text)
                elif isinstance(event, ToolCallDelta):
                    yield shaper.tool_call(event)
                elif isinstance(event, ChoiceFinished):
                    finish_reason = event.finish_reason
                elif isinstance(event, Finished):
                    usage = event.usage
            # The run has ended here (its usage is on its way to the ledger).
            if usage is None:
                raise UpstreamStreamBroken("The generation ended without a result.")
            response, closing = shaper.closing(finish_reason, usage)
            await self._keep(response, shaper.text, tuple(shaper.calls))
            yield [*closing, shaper.announced(response)]
        except ModelyardError as error:
            yield shaper.failure(in_surface_terms(error, self.translation.origins))
        finally:
            await events.aclose()

    def failure_events(self, error: ModelyardError) -> list[JsonObject]:
        """For a failure the stream could not report itself (the gateway's own), numbered after
        what was sent."""
        shaper = self._shaper or ResponseEvents(self.envelope, self.run.card.id)
        return shaper.failure(in_surface_terms(error, self.translation.origins))

    async def _keep(
        self, response: JsonObject, text: str, calls: tuple[ToolCallDelta, ...]
    ) -> None:
        if self.keep_days is None:
            return
        await self.stored.put(
            StoredResponse(
                id=self.envelope.id,
                project_id=self.project_id,
                response=response,
                input_items=input_items(self.body, self.envelope),
                conversation=[*self.translation.conversation, assistant_message(text, calls)],
                retention_days=self.keep_days,
            )
        )
