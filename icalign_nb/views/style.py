"""The figures' shared look: palette (colour-blind safe), markers, text sizes, titles, and saving.

Every figure has a title saying what it shows, labelled axes with units and a legend; colour never
carries meaning alone (markers or hatches repeat it). Figures made with a proxy judge say so in
their subtitle. `save_figure` writes PNG and SVG (text kept as text) atomically.
"""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import polars as pl
from matplotlib.figure import Figure

from ..files import atomic_write_bytes

# matplotlib's own colour-blind safe cycle (Tableau's "colorblind 10")
PALETTE = plt.style.library["tableau-colorblind10"]["axes.prop_cycle"].by_key()["color"]
BLUE, ORANGE, GREY, DARK_GREY, LIGHT_BLUE, DARK_ORANGE, MID_GREY, PALE_BLUE, LIGHT_ORANGE, PALE_GREY = PALETTE
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "<", ">", "h", "p", "*", "8", "d"]
STYLE = {
    "font.size": 12,
    "axes.titlesize": 14,
    "axes.labelsize": 12,
    "legend.fontsize": 10,
    "figure.titlesize": 15,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "svg.fonttype": "none",
    "text.parse_math": False,  # user text ($1,500 … $2,400) is shown as written, never as a formula
    "svg.hashsalt": "icalign-nb",
}
PROXY_NOTE = "judge: an offline proxy for GPT-4 (notebook 05 measures how often it agrees)"


def short(text: str, width: int = 70) -> str:
    """One line of text, cut with an ellipsis."""
    return textwrap.shorten(" ".join(text.split()), width=width, placeholder="…")


def system_names(table: pl.DataFrame, column: str = "system") -> pl.Series:
    """What a figure shows for each row's system: the table's `label` when it has one, else the id itself."""
    return table["label" if "label" in table.columns else column].cast(pl.String).alias("name")


def frame(table: pl.DataFrame) -> dict[str, list]:
    """A polars table as the columns seaborn reads (it makes its own frame; nulls count as missing)."""
    return table.to_dict(as_series=False)


def finish(fig: Figure, title: str, subtitle: str | None, legend_rows: int = 0, right: float = 1.0) -> None:
    """Bold title and grey subtitle at the top-left, room for a bottom legend, then a tight layout."""
    height = fig.get_figheight()
    # plain figure texts (not suptitle): tight_layout would reserve the room a second time
    fig.text(0.01, 1 - 0.1 / height, title, ha="left", va="top", fontsize=15, fontweight="bold")
    if subtitle:
        fig.text(0.01, 1 - 0.5 / height, subtitle, ha="left", va="top", fontsize=11, color="0.3")
    top = 1 - (0.85 if subtitle else 0.55) / height
    bottom = (0.1 + 0.3 * legend_rows) / height if legend_rows else 0
    fig.tight_layout(rect=(0, bottom, right, top))


class SavedPaths(list):
    """The paths a figure was saved to; shows nothing when it ends a notebook cell (the figure shows)."""

    def _ipython_display_(self) -> None:
        return None


def save_figure(fig: Figure, name: str, outdir: str | Path) -> list[Path]:
    """Write `name.png` (150 dpi) and `name.svg` into `outdir`, each atomically; return the paths
    (a list that a notebook cell ending with this call does not print)."""
    outdir = Path(outdir)
    paths = SavedPaths()
    # no dates and fixed SVG ids: a re-run changes a file only if its figure changed
    for ext, kwargs in (("png", {"dpi": 150}), ("svg", {"metadata": {"Date": None}})):
        buf = io.BytesIO()
        saving = {k: STYLE[k] for k in ("svg.hashsalt", "svg.fonttype")}  # read at save time
        with plt.rc_context(saving):
            fig.savefig(buf, format=ext, bbox_inches="tight", facecolor="white", **kwargs)
        path = outdir / f"{name}.{ext}"
        atomic_write_bytes(path, buf.getvalue())
        paths.append(path)
    return paths
