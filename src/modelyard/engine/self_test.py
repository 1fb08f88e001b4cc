"""The start-up self-test: before an engine says it is ready, it decodes a few tokens of two
sequences in one batch, through the same scheduler that serves requests. A build or CPU path that
crashes or produces nothing is then found at start, named with its model and reason, instead of
at the first request.
"""

from __future__ import annotations

from typing import Any

from modelyard.engine.model import LoadedModel
from modelyard.engine.scheduler import Admitted, Scheduler
from modelyard.engine.wire import GenerateCommand, Sampling

SELF_TEST_TOKENS = 4
GREEDY = Sampling(temperature=0.0, top_p=1.0, presence_penalty=0.0, frequency_penalty=0.0, seed=0)


class SelfTestFailed(Exception):
    """The engine loaded but could not generate."""


def run_self_test(model: LoadedModel, grammars: Any, scheduler: Scheduler) -> None:
    events: list[list[Any]] = []
    scheduler.set_emit(events.extend)
    prompts = ["Hello", "Count: 1, 2,"]
    for number, text in enumerate(prompts):
        command = GenerateCommand(
            id=-1 - number,
            pieces=[(text, True)],
            sampling=GREEDY,
            max_tokens=SELF_TEST_TOKENS,
            max_output_tokens=SELF_TEST_TOKENS,
            stops=[],
            choices=1,
            grammar=None,
            fairness_key="self-test",
        )
        prompt = model.tokenizer.tokenize(command.pieces, model.add_bos)
        scheduler.submit(Admitted(command, prompt, SELF_TEST_TOKENS, None))
    scheduler.run_until_idle()
    finished = [event for event in events if event[0] == "finished"]
    failed = [event for event in events if event[0] == "failed"]
    if failed or len(finished) != len(prompts):
        raise SelfTestFailed(f"the self-test generation failed ({failed or 'no result'})")
    if not any(event[3] > 0 for event in finished) and not _all_ended_at_once(events):
        raise SelfTestFailed("the self-test generated no tokens")
    scheduler.reset()


def _all_ended_at_once(events: list[list[Any]]) -> bool:
    """A model may legitimately end both answers at once with an end-of-generation token."""
    return all(event[3] == "stop" for event in events if event[0] == "choice")
