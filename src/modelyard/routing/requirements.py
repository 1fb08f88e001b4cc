"""What one request needs of a deployment, and why a candidate cannot serve it.

Computed once per request, before any strategy looks at the candidates: the capabilities the
request uses (tools, JSON schema, streaming, images), the prompt's language when the route asks
for one, and the regions the caller's project allows; a candidate that fails one of them is
excluded with the reason a person reads in the error, the header and the usage record. Data
residency is checked first and never relaxed. The tokens the request needs are an estimate, so
they only order the candidates (`fits`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from modelyard.catalog.cards import Capability, Deployment, ModelCard
from modelyard.protocol.chat import (
    ChatCompletionRequest,
    ImagePart,
    UserMessage,
    estimate_prompt_tokens,
    message_text,
)

# Below this many characters a user message says too little about its language on its own.
SHORT_MESSAGE_CHARS = 40


@dataclass(frozen=True)
class Requirements:
    capabilities: frozenset[Capability]
    # Estimated prompt tokens and the output asked for (max_tokens times n; 0 when not asked).
    prompt_tokens: int
    output_tokens: int
    # The regions the caller's project allows; None for any.
    regions: frozenset[str] | None
    # The languages the route serves, and the prompt's (None when not detected or not asked).
    languages: tuple[str, ...] | None = None
    language: str | None = None

    def exclusion(
        self, deployment: Deployment, card: ModelCard, enforced: frozenset[Capability]
    ) -> str | None:
        """Why `deployment` cannot serve this request, or None when it can."""
        if self.regions is not None and deployment.region not in self.regions:
            return f"its region '{deployment.region}' is not allowed for this project"
        for capability in sorted(self.capabilities):
            if not card.supports(capability) and capability not in enforced:
                return f"it does not support {capability}"
        if self.language is not None and self.languages is not None:
            if self.language not in self.languages:
                return f"the route serves {', '.join(self.languages)}, not '{self.language}'"
            if self.language not in card.languages:
                return f"its model does not list the prompt's language '{self.language}'"
        return None

    def fits(self, card: ModelCard) -> bool:
        """Whether the prompt (as estimated) and the output asked for fit the context window.
        An estimate decides order, not eligibility: a candidate that seems too small is tried
        last, largest first, and its engine or upstream gives the exact answer."""
        return self.prompt_tokens + self.output_tokens <= card.context_window


def requirements_for(
    request: ChatCompletionRequest,
    needed: frozenset[Capability],
    regions: frozenset[str] | None,
    languages: tuple[str, ...] | None,
    detect: Callable[[str, tuple[str, ...]], str | None],
) -> Requirements:
    """`needed`: what the output contract requires (tools, JSON); `languages`: the route's."""
    capabilities = {Capability.CHAT, *needed}
    if request.stream:
        capabilities.add(Capability.STREAMING)
    if _has_images(request):
        capabilities.add(Capability.VISION)
    max_tokens = request.requested_max_tokens() or 0
    language = detect(prompt_sample(request), languages) if languages else None
    return Requirements(
        capabilities=frozenset(capabilities),
        prompt_tokens=estimate_prompt_tokens(request),
        output_tokens=max_tokens * request.choice_count(),
        regions=regions,
        languages=languages,
        language=language,
    )


def prompt_sample(request: ChatCompletionRequest) -> str:
    """The text whose language counts: the last user message, with the earlier ones when it is
    too short to tell."""
    texts = [message_text(m.content) for m in request.messages if isinstance(m, UserMessage)]
    sample = ""
    for text in reversed(texts):
        sample = f"{text}\n{sample}" if sample else text
        if len(sample) >= SHORT_MESSAGE_CHARS:
            break
    return sample


def _has_images(request: ChatCompletionRequest) -> bool:
    return any(
        isinstance(m, UserMessage)
        and isinstance(m.content, list)
        and any(isinstance(part, ImagePart) for part in m.content)
        for m in request.messages
    )
