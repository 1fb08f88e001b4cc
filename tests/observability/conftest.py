"""What the observability tests share: a fake OpenAI-compatible upstream and an OTLP receiver,
one of each per test module (their recorded requests and spans are the module's own)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from modelyard.testing.fake_upstream import FakeUpstream
from tests.support.otlp_receiver import OtlpReceiver


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver().running() as running:
        yield running


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream().running() as running:
        yield running
