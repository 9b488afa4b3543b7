"""The figures' shared style: one consistent look, sized for a paper column."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np

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


def save(fig, png, pdf) -> None:
    """Write the figure as PNG and PDF and release it."""
    fig.savefig(png)
    fig.savefig(pdf)
    plt.close(fig)


def stars(p: float) -> str:
    """Significance stars of a p-value: *** < 0.001, ** < 0.01, * < 0.05, else n.s.; n/a if undefined."""
    if not np.isfinite(p):
        return "n/a"
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else "n.s."
