"""The log set-up of a gateway process: one line format at the configured level, the same in the
supervisor and in each worker (a spawned worker starts with no logging configured)."""

from __future__ import annotations

import logging

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT)
