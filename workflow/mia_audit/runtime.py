"""Glue for the workflow's scripts: logging to the rule's log file and clean failures."""

from __future__ import annotations

import logging
import sys
import traceback
from typing import Callable

from .errors import DataError


def script_logger(log_path: str | None, name: str = "mia_audit") -> logging.Logger:
    """A logger writing to the rule's log file and to stderr (so progress shows in the console)."""
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    logger.handlers.clear()
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        handlers.append(logging.FileHandler(log_path, mode="w"))
    for h in handlers:
        h.setFormatter(fmt)
        logger.addHandler(h)
    logger.propagate = False
    return logger


def run_script(main: Callable[[logging.Logger], None], log_path: str | None) -> None:
    """Run a script's main; a bad-input error ends the job with its one-line message."""
    log = script_logger(log_path)
    try:
        main(log)
    except (DataError, ValueError, KeyError, FileNotFoundError) as err:
        log.error("%s: %s", type(err).__name__, err)
        log.debug(traceback.format_exc())
        sys.exit(1)
    except Exception:
        log.error("unexpected failure:\n%s", traceback.format_exc())
        raise
