"""Glue for the workflow's scripts and Snakefile: logging to the rule's log file, clean failures
(one line, no traceback, for bad input), the torch device.

Light to import: torch is imported only when a device is resolved.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import traceback
from collections.abc import Callable

from mia_audit.errors import DataError


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


@contextlib.contextmanager
def config_errors_as_one_line():
    """For the Snakefile: a bad configuration (a :class:`DataError`, or a schema violation from
    ``snakemake.utils.validate``) ends Snakemake with one line naming the key and what was
    expected, instead of a traceback or a dump of the whole schema. Other errors pass through."""
    try:
        yield
    except DataError as err:
        _stop(f"{type(err).__name__}: {err}")
    except Exception as err:
        import jsonschema

        cause = err if isinstance(err, jsonschema.ValidationError) else err.__context__
        if not isinstance(cause, jsonschema.ValidationError):
            raise
        from mia_audit.settings import describe_schema_error

        _stop(f"ConfigError: {describe_schema_error(cause)} (config/schema.yaml documents every key)")


def _stop(message: str):
    try:
        from snakemake.logging import logger

        logger.error(message)
    except Exception:  # outside Snakemake
        print(message, file=sys.stderr)
    raise SystemExit(1)
