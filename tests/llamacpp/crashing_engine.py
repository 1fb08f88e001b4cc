"""An engine process that crashes like a miscompiled fast path: loading the best CPU backend build
this machine supports, it dies with SIGSEGV before it is ready (as the AMX path did on one Xeon);
told to avoid that build, it becomes the real engine. Started by the gateway's `EngineProcess`
in place of `python -m modelyard.engine`."""

from __future__ import annotations

import os
import signal
import socket
import sys
from pathlib import Path

import llama_cpp

from modelyard.engine import cpu_backend
from modelyard.engine.wire import EngineConfig, encode_frame

config = EngineConfig.from_json(sys.argv[-1])
scores = cpu_backend.variant_scores(Path(llama_cpp.llama_cpp._base_path))
best = cpu_backend.choose_variant(scores)
if best not in config.excluded_variants:
    channel = socket.socket(fileno=config.fd)
    channel.sendall(encode_frame([["loading", best]]))
    os.kill(os.getpid(), signal.SIGSEGV)
os.execv(sys.executable, [sys.executable, "-m", "modelyard.engine", sys.argv[-1]])
