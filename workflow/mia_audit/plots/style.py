"""The figures' shared style: one consistent look, sized for a paper column."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.layout_engine import PlaceHolderLayoutEngine

COLUMN_WIDTH_IN = 3.5  # one column of a two-column paper
STYLE = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "figure.dpi": 150,
    "savefig.dpi": 300,
    "savefig.bbox": "tight",
    "pdf.fonttype": 42,
}
FLOOR = 1e-4  # log ROC axes start here


def legend_below(fig, axes, handles=None, labels=None, ncol: int = 1, gap: float = 0.01, **kwargs):
    """A legend under ``axes`` (one axis or several side by side), below their tick labels and
    axis labels, so that it never covers data. Call it after ``fig.tight_layout()``; the saved
    figure grows to hold it (``savefig.bbox: tight``). Handles and labels default to those of
    the axes (duplicates dropped)."""
    axes = list(np.atleast_1d(axes))
    if handles is None:
        seen: dict = {}
        for ax in axes:
            for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
                seen.setdefault(lab, h)
        labels, handles = list(seen), list(seen.values())
    if not handles:
        return None
    # the axes' tight boxes lay out their ticks, labels and titles themselves: no full draw needed
    renderer = fig.canvas.get_renderer()
    to_fig = fig.transFigure.inverted()
    bottom = min(ax.get_tightbbox(renderer).transformed(to_fig).y0 for ax in axes)
    left = min(ax.get_position().x0 for ax in axes)
    right = max(ax.get_position().x1 for ax in axes)
    return fig.legend(
        handles,
        labels,
        loc="upper center",
        bbox_to_anchor=((left + right) / 2, bottom - gap),
        bbox_transform=fig.transFigure,
        ncol=ncol,
        frameon=False,
        **kwargs,
    )


def save(fig, png, pdf) -> None:
    """Write the figure as PNG and PDF and release it.

    Both show the figure's tight bounding box (it grows to hold legends placed outside the
    axes), measured once at the PNG's resolution, as ``savefig(bbox_inches="tight")`` measures
    it for the PNG, and used for both files: measuring costs a layout pass of every text, as
    much as drawing, and the PDF's own text metrics move its box by a fraction of a point.
    Saved under :data:`STYLE`, as drawn: a 300-dpi PNG and a PDF with TrueType (Type 42)
    fonts, which journals' submission systems accept (Type 3 fonts they often refuse)."""
    with plt.rc_context(STYLE):
        screen_dpi = fig.dpi
        fig.set_dpi(plt.rcParams["savefig.dpi"])  # lay text out as the PNG will
        try:
            fig.draw_without_rendering()
            box = fig.get_tightbbox().padded(plt.rcParams["savefig.pad_inches"])
        finally:
            fig.set_dpi(screen_dpi)
        if isinstance(fig.get_layout_engine(), PlaceHolderLayoutEngine):
            # what fig.tight_layout() leaves behind: the layout is done, yet savefig would
            # lay every text out once more before each file to look for an engine to run
            fig.set_layout_engine(None)
        fig.savefig(png, bbox_inches=box)
        fig.savefig(pdf, bbox_inches=box)
    plt.close(fig)


def stars(p: float) -> str:
    """Significance stars of a p-value: *** < 0.001, ** < 0.01, * < 0.05, else n.s.; n/a if undefined."""
    if not np.isfinite(p):
        return "n/a"
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else "n.s."
