"""How one sequence picks its next token: llama.cpp's sampler chain, with the parameters the
request asked for and the grammar's mask applied to the logits first.

The chain matches what llama-cpp-python's `generate` built for the same arguments (penalties,
then greedy at temperature 0, else top-p, temperature and a seeded draw), so outputs do not
change with the engine's process boundary.
"""

from __future__ import annotations

from typing import Any

import llama_cpp
import numpy as np

from modelyard.engine.constraint import Closing, GrammarConstraint
from modelyard.engine.wire import Sampling

# How many recent tokens presence and frequency penalties look at (llama-cpp-python's default).
PENALTY_WINDOW = 64


class Sampler:
    def __init__(self, sampling: Sampling, seed: int, n_vocab: int) -> None:
        self._n_vocab = n_vocab
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        add = llama_cpp.llama_sampler_chain_add
        if sampling.presence_penalty or sampling.frequency_penalty:
            add(
                chain,
                llama_cpp.llama_sampler_init_penalties(
                    n_vocab,
                    PENALTY_WINDOW,
                    1.0,
                    sampling.frequency_penalty,
                    sampling.presence_penalty,
                ),
            )
        if sampling.temperature <= 0.0:
            add(chain, llama_cpp.llama_sampler_init_greedy())
        else:
            if sampling.top_k > 0:
                add(chain, llama_cpp.llama_sampler_init_top_k(sampling.top_k))
            add(chain, llama_cpp.llama_sampler_init_top_p(sampling.top_p, 1))
            add(chain, llama_cpp.llama_sampler_init_temp(sampling.temperature))
            add(chain, llama_cpp.llama_sampler_init_dist(seed & 0xFFFFFFFF))
        self._chain = chain

    def sample(
        self,
        context: Any,
        batch_index: int,
        constraint: GrammarConstraint | None,
        closing: Closing | None = None,
        avoid: int | None = None,
    ) -> int:
        """The next token from the logits of `batch_index` in the last decoded batch; the chain
        records it (for penalties) as it returns it. `closing` and `avoid`: see
        `GrammarConstraint.mask`."""
        if constraint is not None:
            row = llama_cpp.llama_get_logits_ith(context, batch_index)
            logits = np.ctypeslib.as_array(row, shape=(self._n_vocab,))
            constraint.mask(logits, closing, avoid)
        return int(llama_cpp.llama_sampler_sample(self._chain, context, batch_index))

    def close(self) -> None:
        if self._chain is not None:
            llama_cpp.llama_sampler_free(self._chain)
            self._chain = None
