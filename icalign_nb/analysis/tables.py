"""Printing result tables as aligned text, JSON or CSV."""

from __future__ import annotations

import json
import math

import polars as pl

from ..errors import UserError
from .winrates import WINRATE_COLUMNS

FORMATS = ("table", "json", "csv")
PERCENT = {
    "win",
    "draw",
    "lose",
    "ci_low",
    "ci_high",
    "reported_win",
    "agreement",
    "agreement_all",
    "win_judge",
    "win_reference",
    "win_a",
    "win_b",
    "diff",
    "lc_win",
    "lc_ci_low",
    "lc_ci_high",
}


def _clean(value: object) -> object:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def to_json(df: pl.DataFrame, columns: list[str] | None = None) -> str:
    """A JSON list of row objects (NaN as null), optionally only `columns` in that order."""
    rows = df.select(columns).to_dicts() if columns else df.to_dicts()
    return json.dumps([{k: _clean(v) for k, v in r.items()} for r in rows], indent=2, ensure_ascii=False)


def _cell(name: str, value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if name in PERCENT and isinstance(value, float):
        return f"{100 * value:.1f}%"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def to_text(df: pl.DataFrame, columns: list[str] | None = None) -> str:
    """An aligned plain-text table; fractions shown as percentages."""
    columns = columns or df.columns
    cells = [[_cell(c, row[c]) for c in columns] for row in df.iter_rows(named=True)]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def render(df: pl.DataFrame, fmt: str, json_columns: list[str] | None = None) -> str:
    """The table in one of `FORMATS`."""
    if fmt == "json":
        return to_json(df, json_columns)
    if fmt == "csv":
        return df.write_csv()
    if fmt == "table":
        return to_text(df)
    raise UserError(f"unknown format '{fmt}' ({', '.join(FORMATS)})")


# The JSON contract of `icalign winrate`: the table's columns without `judge` (named in `system`).
WINRATE_JSON_KEYS = [c for c in WINRATE_COLUMNS if c != "judge"]


def label_proxies(table: pl.DataFrame) -> pl.DataFrame:
    """A proxy judge's name goes into the `system` value (JSON keeps its keys and still says it)."""
    return table.with_columns(
        pl.when(pl.col("judge").str.ends_with("(proxy judge)"))
        .then(pl.format("{} [{}]", pl.col("system"), pl.col("judge")))
        .otherwise(pl.col("system"))
        .alias("system")
    )
