"""LangChain's ChatAnthropic against the gateway's Messages surface on the bundled local model."""

from __future__ import annotations

from langchain_anthropic import ChatAnthropic
from langchain_core.messages import AIMessageChunk, HumanMessage, ToolMessage
from pydantic import BaseModel, SecretStr

from tests.support.gateway import GatewayProcess


class GetWeather(BaseModel):
    """Get the current weather in a city."""

    city: str


def chat_model(gateway: GatewayProcess, max_tokens: int = 16) -> ChatAnthropic:
    return ChatAnthropic(
        base_url=gateway.base_url,
        api_key=SecretStr(str(gateway.admin_key)),
        model="smollm2",
        max_tokens=max_tokens,
        max_retries=0,
        temperature=0,
    )


def test_invoke_answers_with_text_and_usage(gateway: GatewayProcess) -> None:
    answer = chat_model(gateway).invoke("Say hello.")
    assert isinstance(answer.content, str) and answer.content
    assert answer.usage_metadata is not None
    assert answer.usage_metadata["output_tokens"] > 0
    assert answer.usage_metadata["input_tokens"] > answer.usage_metadata["output_tokens"] // 16
    assert answer.response_metadata["stop_reason"] in ("end_turn", "max_tokens")


def test_stream_yields_chunks_that_add_up(gateway: GatewayProcess) -> None:
    chunks = list(chat_model(gateway).stream("Say hello."))
    assert len(chunks) > 2 and all(isinstance(c, AIMessageChunk) for c in chunks)
    whole = chunks[0]
    for chunk in chunks[1:]:
        whole += chunk
    assert whole.text
    assert whole.usage_metadata is not None and whole.usage_metadata["output_tokens"] > 0


def test_bound_tools_are_called_and_the_result_answered(gateway: GatewayProcess) -> None:
    # Room for the whole call: one cut by max_tokens has no input to parse.
    model = chat_model(gateway, 80).bind_tools([GetWeather], tool_choice="GetWeather")
    question = HumanMessage("What is the weather in Paris?")
    called = model.invoke([question])
    (call,) = called.tool_calls
    assert call["name"] == "GetWeather" and isinstance(call["args"]["city"], str)
    assert call["id"] is not None and call["id"].startswith("toolu_")
    answer = chat_model(gateway).invoke(
        [question, called, ToolMessage("Sunny, 24 C", tool_call_id=call["id"])]
    )
    assert not answer.tool_calls and answer.text
