"""The validate stage (rule validate_dataset): every check of a data set before prepare_dataset
may replace earlier outputs — the data set's own checks (:func:`mia_audit.data.prepare.validate`)
and that the sampling design gives every target model a patient
(:func:`mia_audit.sampling.membership.check_design`)."""

from __future__ import annotations

import pandas as pd

from mia_audit.data.prepare import validate
from mia_audit.sampling.membership import check_design


def validate_dataset(spec: dict, dataset: str) -> tuple[dict, pd.DataFrame]:
    """``(report, range_flags)`` of :func:`~mia_audit.data.prepare.validate`; a DataError naming
    the file, column or key at the first failed check."""
    report, flags = validate(spec, dataset=dataset)
    source = report.get("source") or report.get("root") or report["adapter"]
    check_design(spec["n_models"], report["pool_patients"], spec["membership_seed"], source, f"datasets.{dataset}")
    return report, flags
