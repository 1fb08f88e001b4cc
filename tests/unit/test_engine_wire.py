"""The gateway and an engine process agree on commands and frames."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from modelyard.engine.wire import (
    MAX_FRAME_BYTES,
    ChannelClosed,
    EngineConfig,
    GenerateCommand,
    Sampling,
    decode_length,
    encode_frame,
    read_frame,
)


def test_a_generate_command_survives_the_wire() -> None:
    command = GenerateCommand(
        id=7,
        pieces=[("<|im_start|>user\n", False), ("hi <|im_end|>", True)],
        sampling=Sampling(0.7, 0.9, 0.1, 0.2, 42),
        max_tokens=None,
        max_output_tokens=2048,
        stops=["\n\n"],
        choices=2,
        grammar="start: /a+/",
        fairness_key="key-1",
        close_within_budget=True,
    )
    first, second = socket.socketpair()
    with first, second:
        first.sendall(encode_frame(command.to_wire()))
        assert GenerateCommand.from_wire(read_frame(second)) == command


def test_an_engine_config_survives_its_command_line() -> None:
    config = EngineConfig("d", Path("/m/x.gguf"), 4096, 4, 2, 5, ("zen4",))
    assert EngineConfig.from_json(config.to_json()) == config


def test_a_closed_channel_and_an_oversized_frame_are_refused() -> None:
    first, second = socket.socketpair()
    with second:
        first.close()
        with pytest.raises(ChannelClosed):
            read_frame(second)
    with pytest.raises(ChannelClosed, match="larger than allowed"):
        decode_length((MAX_FRAME_BYTES + 1).to_bytes(4, "little"))
