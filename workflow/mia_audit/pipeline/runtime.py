"""Glue for the workflow's scripts and Snakefile: logging to the rule's log file, clean failures
(one line, no traceback, for bad input), the torch device.

Light to import: torch is imported only when a device is resolved.
"""

from __future__ import annotations

import contextlib
import logging
import os
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
    """Run a script's main and end a failed job with a message that fits what went wrong.

    * bad input — what the code raises as :class:`DataError` (a :class:`~mia_audit.errors.ConfigError`, an
      :class:`~mia_audit.integrity.IntegrityError` …): one line, its message, no traceback;
    * a file that cannot be read or written — :class:`OSError` (a full disk or quota, a file
      too large, a damaged Parquet file: pyarrow's errors and pandas' reading errors count as
      such): one line naming the file and what to do (:func:`file_error_line`);
    * anything else is a bug: its full traceback goes to the log at ERROR and the exception
      propagates (Snakemake shows it too).

    The job's files come from the ``snakemake`` object of the calling script, to name the file
    an error without a file name concerns.
    """
    log = script_logger(log_path)
    job = sys._getframe(1).f_globals.get("snakemake")
    try:
        main(log)
    except DataError as err:
        log.error("%s: %s", type(err).__name__, err)
        sys.exit(1)
    except Exception as err:
        if not is_file_error(err):
            log.error(
                "unexpected failure (a bug, not bad input: please report it with this log):\n%s", traceback.format_exc()
            )
            raise
        log.error("%s", file_error_line(err, job_files(job)))
        sys.exit(1)


def is_file_error(err: BaseException) -> bool:
    """Whether ``err`` says that a file cannot be read or written: an :class:`OSError`, a pyarrow
    error (a damaged Parquet file) or pandas' CSV reading errors (a truncated table)."""
    if isinstance(err, OSError):
        return True
    names = {f"{c.__module__}.{c.__qualname__}" for c in type(err).__mro__}
    return bool(names & {"pyarrow.lib.ArrowException", "pandas.errors.EmptyDataError", "pandas.errors.ParserError"})


def job_files(job) -> dict[str, str]:
    """``{absolute path: 'input'|'output'}`` of a Snakemake job's files (``snakemake`` object of a script)."""
    out: dict[str, str] = {}
    if job is None:
        return out
    for role in ("output", "input"):
        for item in getattr(job, role, None) or []:
            for f in [item] if isinstance(item, str | os.PathLike) else list(item):
                out.setdefault(os.path.abspath(str(f)), role)
    return out


def _file_of(err: BaseException, files: dict[str, str]) -> tuple[str | None, str | None]:
    """The job file an error concerns: its ``filename``, or the innermost frame of its traceback
    holding a path that is (or lies inside) one of ``files``; ``(path, role)`` or ``(None, None)``."""

    def match(value) -> tuple[str | None, str | None]:
        name = getattr(value, "name", None)  # an open file
        if isinstance(name, str) and not isinstance(value, str | os.PathLike):
            value = name
        if not isinstance(value, str | os.PathLike):
            return None, None
        try:
            path = os.path.abspath(os.fspath(value))
        except (TypeError, ValueError):
            return None, None
        for f, role in files.items():
            if path == f or path.startswith(f + os.sep):
                return f, role
        return None, None

    filename = getattr(err, "filename", None)
    if filename is not None:
        found = match(filename)
        return found if found[0] else (os.fspath(filename), None)
    frames = []
    tb = err.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        for value in frame.f_locals.values():
            found = match(value)
            if found[0]:
                return found
    return None, None


def file_error_line(err: BaseException, files: dict[str, str]) -> str:
    """One line for an error reading or writing a file: the error, the file and what to do."""
    import errno as errno_codes

    path, role = _file_of(err, files)
    code = getattr(err, "errno", None)
    text = " ".join(str(getattr(err, "strerror", None) or err).split()) or type(err).__name__
    if code in (errno_codes.ENOSPC, errno_codes.EDQUOT):
        advice = "free disk space (or raise the quota), then run the workflow again"
    elif code == errno_codes.EFBIG:
        advice = "the file system does not take a file this large: use a results folder on another one"
    elif code in (errno_codes.EACCES, errno_codes.EPERM, errno_codes.EROFS):
        advice = "give the workflow permission to write there, or use another results folder"
    elif role == "input":
        advice = (
            f"if the file is damaged, rebuild it with: snakemake --force {path} (add your usual "
            "--cores/--configfile/--profile), then run the workflow again"
        )
    else:
        advice = "check the file and the disk, then run the workflow again"
    if path is None:
        listed = ", ".join(list(files)[:6]) + (" …" if len(files) > 6 else "")
        where = f"one of this job's files ({listed})" if files else "a file of this job"
    else:
        where = {"input": f"reading input {path}", "output": f"writing output {path}"}.get(role, f"file {path}")
    return f"{type(err).__name__}: {text} — {where}; {advice}"


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
