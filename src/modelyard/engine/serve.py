"""The engine process: one local model, loaded, self-tested, then serving the gateway.

`python -m modelyard.engine CONFIG_JSON` is started by the gateway (see
`providers/llamacpp/engine_process.py`) with one end of a socket pair as file descriptor `fd`.
The process dies with its parent (PR_SET_PDEATHSIG) and when the socket closes. Three threads:
the decode loop (this process's main thread), a reader of the gateway's commands, and an
admission thread that tokenizes and checks requests, so neither a long prompt nor a busy loop
delays a cancellation.

Nothing a client sent is ever logged here: errors are logged by class and request number only.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import queue
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from modelyard.engine import cpu_backend
from modelyard.engine.wire import (
    ChannelClosed,
    CountCommand,
    EngineConfig,
    EngineInfo,
    GenerateCommand,
    encode_frame,
    read_frame,
)

log = logging.getLogger("modelyard.engine")

PR_SET_PDEATHSIG = 1
# The gateway's event loop must get the CPU at once when a token is ready: llama.cpp's OpenMP
# threads spin between operations, and at equal priority the loop waits for a scheduler slice.
NICENESS = 5


class Channel:
    """The engine's end of the socket pair; writes come from several threads."""

    def __init__(self, fd: int) -> None:
        self.sock = socket.socket(fileno=fd)
        self._lock = threading.Lock()

    def send(self, events: list[list[Any]]) -> None:
        frame = encode_frame(events)
        with self._lock:
            self.sock.sendall(frame)


def main(argv: list[str]) -> int:
    config = EngineConfig.from_json(argv[0])
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(levelname)s engine[{config.deployment}] %(message)s",
        stream=sys.stderr,
    )
    _die_with_parent()
    with contextlib.suppress(OSError):
        os.nice(NICENESS)
    channel = Channel(config.fd)
    try:
        runtime = _load(config, channel)
    except Exception as exc:
        log.error("could not start: %s", exc)
        with contextlib.suppress(OSError):
            channel.send([["load_failed", str(exc)]])
        return 3
    model, grammars, scheduler, info = runtime
    channel.send([["ready", info.to_wire()]])
    scheduler.set_emit(channel.send)
    admissions: queue.Queue[GenerateCommand | CountCommand | None] = queue.Queue()
    threading.Thread(target=grammars.build_tokenizer, name="grammar-tokenizer", daemon=True).start()
    threading.Thread(
        target=_admit_loop, args=(admissions, model, grammars, scheduler, channel), daemon=True
    ).start()
    threading.Thread(target=_read_loop, args=(channel, admissions, scheduler), daemon=True).start()
    scheduler.run()
    return 0


def _load(config: EngineConfig, channel: Channel) -> tuple[Any, Any, Any, EngineInfo]:
    # Imported here: these load llama.cpp, and a failure must reach the gateway as a message.
    import llama_cpp

    from modelyard.engine.constraint import GrammarCompiler
    from modelyard.engine.model import LoadedModel, ModelSettings, silence_llama_cpp
    from modelyard.engine.scheduler import Scheduler
    from modelyard.engine.self_test import run_self_test

    silence_llama_cpp()
    lib_dir = Path(llama_cpp.llama_cpp._base_path)
    scores = cpu_backend.variant_scores(lib_dir)
    variant = cpu_backend.choose_variant(scores, config.excluded_variants)
    # Said first: if what follows crashes, the gateway knows which build to avoid next time.
    channel.send([["loading", variant]])
    cpu_backend.load_variant(lib_dir, variant)
    log.info("CPU backend: %s (of %s)", variant, ", ".join(sorted(scores)) or "built in")
    model = LoadedModel(
        ModelSettings(
            config.gguf,
            config.context_window,
            config.parallel,
            config.threads,
            config.flash_attention,
        )
    )
    template = model.metadata("tokenizer.chat_template")
    if not template:
        raise RuntimeError(f"{config.gguf.name} has no chat template")
    grammars = GrammarCompiler(model.vocab, model.n_vocab, model.pieces())
    scheduler = Scheduler(model, lambda events: None)
    started = time.perf_counter()
    run_self_test(model, grammars, scheduler)
    self_test_ms = (time.perf_counter() - started) * 1000
    info = EngineInfo(
        chat_template=template,
        bos_text=model.bos_text(),
        eos_text=model.eos_text(),
        context_window=model.context_window,
        parallel=model.parallel,
        max_token_bytes=model.max_token_bytes(),
        special_texts=model.tokenizer.special_texts,
        cpu_variant=variant,
        system_info=llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip(),
        self_test_ms=round(self_test_ms, 1),
    )
    return model, grammars, scheduler, info


def _read_loop(channel: Channel, admissions: queue.Queue[Any], scheduler: Any) -> None:
    """Commands from the gateway; when it goes away, so does this process."""
    try:
        while True:
            command = read_frame(channel.sock)
            if command.get("op") == "generate":
                admissions.put(GenerateCommand.from_wire(command))
            elif command.get("op") == "count":
                # Tokenized on the admission thread: the tokenizer's buffer is not shared.
                admissions.put(CountCommand.from_wire(command))
            elif command.get("op") == "cancel":
                scheduler.cancel(int(command["id"]))
    except (ChannelClosed, OSError):
        pass
    except Exception as exc:  # a malformed command: the gateway is broken, stop serving it
        log.error("unreadable command from the gateway (%s)", type(exc).__name__)
    scheduler.close()
    admissions.put(None)


def _admit_loop(
    admissions: queue.Queue[GenerateCommand | CountCommand | None],
    model: Any,
    grammars: Any,
    scheduler: Any,
    channel: Channel,
) -> None:
    from modelyard.engine.admission import RequestRejected, admit

    while (command := admissions.get()) is not None:
        if isinstance(command, CountCommand):
            channel.send([_count(model, command)])
            continue
        try:
            admitted = admit(model, grammars, command)
        except RequestRejected as rejected:
            scheduler.forget_cancel(command.id)
            channel.send([rejected.rejection.event(command.id)])
            continue
        except Exception as exc:
            log.error("admission of request %d failed (%s)", command.id, type(exc).__name__)
            scheduler.forget_cancel(command.id)
            channel.send([["rejected", command.id, "internal_error", "admission failed", {}]])
            continue
        channel.send([["admitted", command.id, len(admitted.prompt)]])
        scheduler.submit(admitted)


def _count(model: Any, command: CountCommand) -> list[Any]:
    """The tokens a generation of this prompt would evaluate (what its usage reports)."""
    try:
        tokens = model.tokenizer.tokenize(command.pieces, model.add_bos)
    except Exception as exc:
        log.error("counting request %d failed (%s)", command.id, type(exc).__name__)
        return ["rejected", command.id, "internal_error", "counting failed", {}]
    return ["counted", command.id, len(tokens)]


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when the gateway dies, however it dies."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
