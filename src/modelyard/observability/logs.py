"""The log set-up of a gateway process: every line of the process in one format at the configured
level, the same in the supervisor and in each worker (a spawned worker starts with no logging
configured).

Two formats. `text` is for a terminal: `time LEVEL logger: message`, access lines as a readable
one-liner. `json` is for a log shipper: one JSON object per line (`ts` in UTC, `level`,
`logger`, `message`, and an access line's fields as top-level keys). An exception in a JSON line
is its class and where it was raised, never its text: exception texts can quote the request
(pydantic's do), and no prompt may reach a log.
"""

from __future__ import annotations

import logging
import sys
import time
import traceback
from types import TracebackType
from typing import Literal

import orjson

from modelyard.observability.access_log import ACCESS_FIELDS, describe

LogFormat = Literal["text", "json"]
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Libraries whose informational lines say nothing an operator needs (Alembic narrates every
# start-up's migration check): only their warnings are shown, unless the level asks for debug.
QUIET_LIBRARIES = ("alembic",)
# Frames of an exception's origin that a JSON line names (file, line, function only).
EXCEPTION_FRAMES = 4


def configure_logging(level: str, log_format: LogFormat = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter(LOG_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    # Neither format shows the thread or the process, and reading them is most of a log
    # record's making (`os.getpid` is a system call), on every access line.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    if log_format == "json":
        # Python's warnings would otherwise go to stderr as multi-line text.
        logging.captureWarnings(True)
    if logging.getLogger().level > logging.DEBUG:
        for name in QUIET_LIBRARIES:
            logging.getLogger(name).setLevel(logging.WARNING)


class TextFormatter(logging.Formatter):
    """The human line; an access line's message is its fields, readably."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        fields = getattr(record, ACCESS_FIELDS, None)
        if fields is not None:
            record.message = describe(fields)
        return super().formatMessage(record)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": utc_timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, ACCESS_FIELDS, None)
        if fields is not None:
            line.update(fields)
        if record.exc_info is not None and record.exc_info[0] is not None:
            exc_type, _, tb = record.exc_info
            line["exception"] = {"type": exc_type.__name__, "where": origin(tb)}
        return orjson.dumps(line).decode()


def utc_timestamp(created: float) -> str:
    """ISO-8601 in UTC with milliseconds: `2026-01-31T09:41:07.250Z`."""
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created * 1000) % 1000:03d}Z"


def origin(tb: TracebackType | None, frames: int = EXCEPTION_FRAMES) -> str:
    """Where an exception was raised, innermost first: `file.py:12 function < caller.py:40 f`."""
    extracted = traceback.extract_tb(tb)[-frames:]
    return " < ".join(
        f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}" for f in reversed(extracted)
    )
