"""The figure helpers the workflow's figure jobs share: saving, and one job drawing an
experiment's figures (mia_audit.plots.experiment). The figures themselves are drawn from a
real run's tables in tests/workflow/test_workflow.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mia_audit.errors import DataError
from mia_audit.plots import experiment, style


def _figure_with_legend_below():
    with style.plt.rc_context(style.STYLE):
        fig, ax = style.plt.subplots(figsize=(style.COLUMN_WIDTH_IN, 2.4))
        ax.plot([0, 1], [0, 1], label="a long label that widens the figure beyond its axes")
        ax.set(xlabel="x", ylabel="y", title="title")
        fig.tight_layout()
        style.legend_below(fig, ax)
    return fig


def _media_box(pdf: bytes) -> np.ndarray:
    line = next(line for line in pdf.split(b"\n") if b"MediaBox" in line)
    return np.array(line.split(b"[")[1].split(b"]")[0].split(), dtype=float)


def test_save_writes_what_savefig_tight_writes(tmp_path):
    """style.save writes the PNG that savefig's tight box writes, and a PDF whose box (the
    PNG's, measured once) is within a point of the PDF's own tight box."""
    fig = _figure_with_legend_below()
    with style.plt.rc_context(style.STYLE):
        fig.savefig(tmp_path / "ref.png", bbox_inches="tight")
        fig.savefig(tmp_path / "ref.pdf", bbox_inches="tight")
    ref_png = np.asarray(Image.open(tmp_path / "ref.png"))
    style.save(fig, tmp_path / "fig.png", tmp_path / "fig.pdf")
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "fig.png")), ref_png)
    pdf = (tmp_path / "fig.pdf").read_bytes()
    ours, ref = _media_box(pdf), _media_box((tmp_path / "ref.pdf").read_bytes())
    # the same box in points (72 per inch) as the PNG's pixels at 300 dpi
    np.testing.assert_allclose(ours[2:], np.array(ref_png.shape[1::-1]) * 72 / style.STYLE["savefig.dpi"], atol=0.25)
    np.testing.assert_allclose(ours, ref, atol=1.0)
    # saved in the style it was drawn in: 300 dpi, the legend below the axes inside the saved
    # area, TrueType (Type 42) fonts in the PDF rather than Type 3
    assert ref_png.shape[0] > 2.4 * style.STYLE["savefig.dpi"]
    assert b"/FontFile2" in pdf and b"/Type3" not in pdf


def test_a_figure_that_cannot_be_drawn_names_itself_and_its_table(tmp_path):
    records = tmp_path / "record_risk.parquet"
    pd.DataFrame({"record_id": [0, 1], "auc": [0.5, 0.6]}).to_parquet(records)  # no se, no auc_emp
    outputs = {
        "se": (str(tmp_path / "se.png"), str(tmp_path / "se.pdf")),
        "binormal_check": (str(tmp_path / "binormal_check.png"), str(tmp_path / "binormal_check.pdf")),
    }
    with pytest.raises(DataError) as err:
        experiment.draw_experiment({"records": str(records)}, outputs, [], title="pbc / mlp")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"figure {tmp_path / 'se.png'} could not be drawn from {records}: KeyError")
    assert not list(tmp_path.glob("*.p*f")) and not list(tmp_path.glob("*.png"))
