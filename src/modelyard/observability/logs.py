"""The log set-up of a gateway process: one line format at the configured level, the same in the
supervisor and in each worker (a spawned worker starts with no logging configured)."""

from __future__ import annotations

import logging

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Libraries whose informational lines say nothing an operator needs (Alembic narrates every
# start-up's migration check): only their warnings are shown, unless the level asks for debug.
QUIET_LIBRARIES = ("alembic",)


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT)
    if logging.getLogger().level > logging.DEBUG:
        for name in QUIET_LIBRARIES:
            logging.getLogger(name).setLevel(logging.WARNING)
