"""One GGUF model loaded with llama.cpp's C API, and the context its sequences decode in.

The context holds `parallel` sequences, each in a KV-cache stream of its own (`kv_unified` off)
of `context_window` cells. Separate streams cost memory (parallel x context window cells), but
they keep a sequence's cells in the same order whatever else is in the batch, so a greedy
sequence decodes to the same tokens alone or batched (with one shared stream, attention sums
run in a different order and greedy outputs drift), and no sequence can take another's cells.
"""

from __future__ import annotations

import ctypes
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llama_cpp

from modelyard.engine.prompt_tokens import PromptTokenizer, piece_bytes

log = logging.getLogger(__name__)

GGML_LOG_LEVEL_ERROR = 3
# Tokens one decode step takes at most (prompt chunks and the sequences' next tokens together).
STEP_TOKENS = 512


class ModelLoadFailed(Exception):
    """llama.cpp could not load the GGUF file or make a context for it."""


@dataclass(frozen=True)
class ModelSettings:
    path: Path
    context_window: int
    parallel: int
    threads: int
    flash_attention: bool = False


@llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
def _log_errors_only(level: int, text: bytes, _user_data: ctypes.c_void_p) -> None:
    """llama.cpp's own log, errors only: its info lines are noise, and nothing of a prompt."""
    if level == GGML_LOG_LEVEL_ERROR:
        log.error("llama.cpp: %s", text.decode("utf-8", "replace").rstrip())


def silence_llama_cpp() -> None:
    """Route llama.cpp's (and ggml's) log through `_log_errors_only` from here on."""
    llama_cpp.llama_log_set(_log_errors_only, ctypes.c_void_p(0))


class LoadedModel:
    def __init__(self, settings: ModelSettings) -> None:
        silence_llama_cpp()
        llama_cpp.llama_backend_init()
        model_params = llama_cpp.llama_model_default_params()
        model = llama_cpp.llama_model_load_from_file(str(settings.path).encode(), model_params)
        if not model:
            raise ModelLoadFailed(f"llama.cpp could not load {settings.path.name}")
        self.model = model
        context_params = llama_cpp.llama_context_default_params()
        context_params.n_ctx = settings.context_window * settings.parallel
        context_params.n_seq_max = settings.parallel
        context_params.kv_unified = False
        context_params.n_batch = STEP_TOKENS
        context_params.n_ubatch = STEP_TOKENS
        context_params.n_threads = settings.threads
        context_params.n_threads_batch = settings.threads
        context_params.no_perf = True
        # ggml's CPU flash attention computes a row differently depending on how many rows are
        # in the batch (a long prompt evaluated whole, or just its last token after a cached
        # prefix), so with it on a greedy answer may change with what shares the batch. Off,
        # every path gives the same tokens (and llama-cpp-python's default is off too).
        context_params.flash_attn_type = (
            llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
            if settings.flash_attention
            else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        context = llama_cpp.llama_init_from_model(model, context_params)
        if not context:
            llama_cpp.llama_model_free(model)
            raise ModelLoadFailed("llama.cpp could not create a context for the model")
        self.context = context
        self.memory = llama_cpp.llama_get_memory(context)
        self.vocab = llama_cpp.llama_model_get_vocab(model)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self.vocab))
        self.context_window = int(llama_cpp.llama_n_ctx_seq(context))
        self.parallel = settings.parallel
        self.add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self.vocab))
        self.tokenizer = PromptTokenizer(self.vocab)
        self._piece_buffer = ctypes.create_string_buffer(256)

    def metadata(self, key: str) -> str | None:
        buffer = ctypes.create_string_buffer(1 << 16)
        length = llama_cpp.llama_model_meta_val_str(self.model, key.encode(), buffer, len(buffer))
        if length < 0:
            return None
        if length >= len(buffer):
            buffer = ctypes.create_string_buffer(length + 1)
            llama_cpp.llama_model_meta_val_str(self.model, key.encode(), buffer, len(buffer))
        return buffer.value.decode("utf-8", "replace")

    def special_text(self, token: int) -> str:
        if token < 0:
            return ""
        text: bytes = llama_cpp.llama_vocab_get_text(self.vocab, token)
        return text.decode("utf-8", "replace")

    def bos_text(self) -> str:
        return self.special_text(int(llama_cpp.llama_vocab_bos(self.vocab)))

    def eos_text(self) -> str:
        return self.special_text(int(llama_cpp.llama_vocab_eos(self.vocab)))

    def piece(self, token: int) -> bytes:
        return piece_bytes(self.vocab, token, self._piece_buffer)

    def pieces(self) -> list[bytes]:
        """Every token's text, as generated output."""
        return [self.piece(token) for token in range(self.n_vocab)]

    def is_end_of_generation(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self.vocab, token))

    def max_token_bytes(self) -> int:
        """The longest text any one token stands for (special tokens included)."""
        buffer = ctypes.create_string_buffer(256)
        longest = 1
        for token in range(self.n_vocab):
            length = llama_cpp.llama_token_to_piece(self.vocab, token, buffer, len(buffer), 0, True)
            longest = max(longest, abs(length))
        return longest

    def logits_row(self, batch_index: int) -> Any:
        return llama_cpp.llama_get_logits_ith(self.context, batch_index)

    def forget(self, seq: int, from_position: int) -> None:
        """Drop a sequence's cells from `from_position` on (-1 would mean all of them)."""
        llama_cpp.llama_memory_seq_rm(self.memory, seq, from_position, -1)

    def close(self) -> None:
        llama_cpp.llama_free(self.context)
        llama_cpp.llama_model_free(self.model)
