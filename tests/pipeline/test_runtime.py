"""How a failed job ends (mia_audit/pipeline/runtime.py run_script): bad input and unreadable or
unwritable files in one line naming the file, a bug with its traceback at ERROR, visible."""

from __future__ import annotations

import errno
import sys
import types

import numpy as np
import pandas as pd
import pytest

from mia_audit.errors import ConfigError, DataError
from mia_audit.pipeline import runtime

snakemake = None  # the object Snakemake gives a script; run_script reads it from its caller's globals


@pytest.fixture
def job(tmp_path, monkeypatch):
    """A job with one Parquet input and one output, as Snakemake's ``snakemake`` object names them."""
    src = tmp_path / "audit" / "record_risk.parquet"
    src.parent.mkdir()
    pd.DataFrame({"auc": np.linspace(0.5, 1, 500)}).to_parquet(src)
    out = tmp_path / "subgroups" / "sex.tsv"
    out.parent.mkdir()
    sm = types.SimpleNamespace(input=[str(src)], output=[str(out)])
    monkeypatch.setitem(globals(), "snakemake", sm)
    return src, out, tmp_path / "job.log"


def _run(main, log):
    with pytest.raises(SystemExit) as ended:
        runtime.run_script(main, str(log))
    assert ended.value.code == 1
    text = log.read_text()
    assert "Traceback" not in text and len(text.strip().splitlines()) == 1, text
    return text


def test_bad_input_is_one_line(job) -> None:
    _, _, log = job

    def main(_):
        raise ConfigError("config key audit.n_targets = 199 leaves fewer than 2 reference models")

    assert "ERROR ConfigError: config key audit.n_targets = 199" in _run(main, log)


def test_a_damaged_parquet_input_names_the_file_and_the_rebuild(job) -> None:
    src, _, log = job
    data = src.read_bytes()
    src.write_bytes(data[: len(data) // 2])  # truncated, as after a full disk

    def main(_):
        pd.read_parquet(snakemake.input[0])

    text = _run(main, log)
    assert f"reading input {src}" in text and f"snakemake --force {src}" in text


def test_a_full_disk_while_writing_names_the_output(job) -> None:
    _, out, log = job

    def main(_):
        with open(snakemake.output[0], "w") as fh:  # noqa: F841 (the open file names the output)
            raise OSError(errno.ENOSPC, "No space left on device")

    text = _run(main, log)
    assert f"OSError: No space left on device — writing output {out}; free disk space" in text


def test_a_file_too_large(job) -> None:
    _, out, log = job

    def main(_):
        raise OSError(errno.EFBIG, "File too large", snakemake.output[0])

    assert f"writing output {out}; the file system does not take a file this large" in _run(main, log)


def test_a_bug_keeps_its_traceback_at_error(job) -> None:
    """A ValueError of a bug is not reported as bad input: its traceback is logged at ERROR."""
    _, _, log = job

    def main(_):
        np.zeros(3).reshape(2, 2)  # ValueError: a bug, not the user's input

    with pytest.raises(ValueError):
        runtime.run_script(main, str(log))
    text = log.read_text()
    assert "ERROR unexpected failure (a bug, not bad input" in text
    assert "Traceback (most recent call last)" in text and "reshape" in text


def test_data_errors_are_value_errors_for_callers() -> None:
    assert issubclass(DataError, ValueError) and issubclass(ConfigError, DataError)
    assert runtime.is_file_error(FileNotFoundError(2, "gone")) and not runtime.is_file_error(KeyError("x"))
    assert sys.modules[__name__].snakemake is None  # the fixture put it back
