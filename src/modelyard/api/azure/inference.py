"""The Azure AI Inference surface under /models: what `ChatCompletionsClient(endpoint=
"http://host/models")` calls. Streams carry no in-band error event: the Azure SDK would skip it
and report success, so a failed stream is cut instead (CLIENTS.md gotcha 4)."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from modelyard.api.authentication import caller
from modelyard.api.azure.conventions import (
    DROPPED_HEADER,
    ExtraParameters,
    apply_extra_parameters,
    check_api_version,
    dropped_header_value,
    extra_parameters_policy,
)
from modelyard.api.chat import respond_chat
from modelyard.api.parsing import M, json_object, parse_model
from modelyard.api.sse import AZURE_INFERENCE, EventStreamResponse
from modelyard.catalog.cards import Capability
from modelyard.errors import InvalidParameter
from modelyard.protocol.chat import UNSUPPORTED_PARAMETERS, ChatCompletionRequest
from modelyard.protocol.embeddings import EmbeddingsRequest
from modelyard.state import AppState, app_state, request_id

DEPLOYMENT_HEADER = "azureml-model-deployment"


async def chat_completions(request: Request) -> Response | EventStreamResponse:
    state = app_state(request)
    principal = await caller(request)
    body, headers = await _read_body(request, state, ChatCompletionRequest, UNSUPPORTED_PARAMETERS)
    return await respond_chat(request, body, principal, framing=AZURE_INFERENCE, headers=headers)


async def embeddings(request: Request) -> Response:
    state = app_state(request)
    principal = await caller(request)
    body, headers = await _read_body(request, state, EmbeddingsRequest, frozenset())
    result, more = await state.embeddings.embed(body, principal, request_id(request))
    return Response(
        orjson.dumps(result), media_type="application/json", headers={**headers, **more}
    )


async def _read_body(
    request: Request, state: AppState, model: type[M], unsupported: frozenset[str]
) -> tuple[M, dict[str, str]]:
    """The canonical request, after api-version, model defaulting and the extra-parameters
    policy; plus the header that reports dropped parameters, if any were."""
    check_api_version(request)
    policy = extra_parameters_policy(request)
    raw = json_object(await request.body())
    if "model" not in raw:
        raw["model"] = endpoint_model(request, state)
    dropped = apply_extra_parameters(raw, policy, model)
    body = parse_model(
        orjson.dumps(raw),
        model,
        unsupported,
        allow_extras=policy is ExtraParameters.PASS_THROUGH,
    )
    return body, ({DROPPED_HEADER: dropped_header_value(dropped)} if dropped else {})


async def model_info(request: Request) -> Response:
    """The SDK's `get_model_info()` (and `load_client()`) send no model: without a deployment
    header or a default, the caller's only chat model is the one meant."""
    state = app_state(request)
    principal = await caller(request)
    check_api_version(request)
    if request.headers.get(DEPLOYMENT_HEADER) or state.settings.default_model:
        name = endpoint_model(request, state)
    else:
        chat_models = state.models.chat_model_ids(principal)
        if len(chat_models) != 1:
            raise InvalidParameter(
                f"No model: send the '{DEPLOYMENT_HEADER}' header naming one of "
                f"{', '.join(chat_models) or 'your models'} (this endpoint has no default model).",
                param=DEPLOYMENT_HEADER,
            )
        name = chat_models[0]
    card = state.models.card_of(name, principal)  # 404 unless the caller may see it
    model_type = "chat_completion" if card.supports(Capability.CHAT) else "embeddings"
    info = {"model_name": card.id, "model_type": model_type, "model_provider_name": card.publisher}
    return Response(orjson.dumps(info), media_type="application/json")


def endpoint_model(request: Request, state: AppState) -> str:
    """The model named outside the body: the deployment header, else the endpoint default."""
    named = request.headers.get(DEPLOYMENT_HEADER) or state.settings.default_model
    if not named:
        raise InvalidParameter(
            f"No model: send 'model' in the body or the '{DEPLOYMENT_HEADER}' header "
            "(this endpoint has no default model).",
            param="model",
        )
    return named
