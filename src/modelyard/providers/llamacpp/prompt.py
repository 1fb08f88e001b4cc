"""The messages a local model's chat template sees for one request.

Templates of small open models know only system/user/assistant text, so the gateway writes the
rest in: tool descriptions and the JSON schema go into the system message, assistant tool calls
are echoed in the model's own call syntax, and `developer` becomes `system`.
"""

from __future__ import annotations

from modelyard.protocol.chat import AssistantMessage, Message, message_text
from modelyard.providers.llamacpp.tool_format import (
    json_system_prompt,
    render_tool_calls,
    tool_system_prompt,
)
from modelyard.structured.contract import OutputContract

# Mistral's documented guardrail prompt, which `safe_prompt: true` asks to prepend.
SAFE_PROMPT = (
    "Always assist with care, respect, and truth. Respond with utmost utility yet securely. "
    "Avoid harmful, unethical, prejudiced, or negative content. Ensure replies promote fairness "
    "and positivity."
)

PlainMessage = dict[str, str]


def prompt_messages(
    messages: list[Message], contract: OutputContract, safe_prompt: bool = False
) -> list[PlainMessage]:
    plain = [_plain(message) for message in messages]
    guidance = []
    if safe_prompt:
        guidance.append(SAFE_PROMPT)
    if contract.tool_mode != "none":
        guidance.append(
            tool_system_prompt(contract.callable_tools, contract.tool_mode == "required")
        )
    if contract.json_schema is not None:
        guidance.append(json_system_prompt(contract.json_schema))
    if not guidance:
        return plain
    if plain and plain[0]["role"] == "system":
        first = plain[0]["content"]
        return [{"role": "system", "content": "\n\n".join([*guidance, first])}, *plain[1:]]
    return [{"role": "system", "content": "\n\n".join(guidance)}, *plain]


def _plain(message: Message) -> PlainMessage:
    role = "system" if message.role == "developer" else message.role
    if isinstance(message, AssistantMessage) and message.tool_calls:
        calls = [(call.function.name, call.function.arguments) for call in message.tool_calls]
        text = message_text(message.content)
        return {"role": role, "content": (text + "\n" if text else "") + render_tool_calls(calls)}
    return {"role": role, "content": message_text(message.content)}
