"""Tables and HTML that explain retrieval choices and answers in notebooks (no plotting here).

The HTML sets its own alignment and wrapping with inline `style` attributes: JupyterLab right-aligns
table cells and breaks `<pre>` text mid-word by default, and the sanitizer that renders untrusted
outputs (an executed record opened later) drops `<style>` blocks but keeps `style` attributes.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import polars as pl

from ..retrieval.retriever import Retrieval


class Answer(Protocol):
    """What a side-by-side view reads of a generated answer (a generation result has these)."""

    response: str
    n_generated_tokens: int
    stopped_by: str


EMPTY = "(empty answer: the model ended it at once)"
CUT_NOTE = "[cut here: the answer reached the max_new_tokens cap]"
ENDED = {
    "stop": "ended at the stop text",
    "eos": "ended by the model",
    "length": "cut at the length cap",
    "unknown": "ended at the stop text or by the model (the server did not say which)",
    "cancelled": "stopped (Stop was pressed)",
}
DECISIONS = {  # short words: the decision column is narrow
    "kept": "kept",
    "over_instance_limit": "skipped: too long",
    "over_budget": "skipped: over budget, packing stops",
    "after_stop": "not tried",
    "over_k": "skipped: past max demos",
}

# Inline styles (kept by Lab's sanitizer): left-aligned, top-aligned, whole words.
CELL = "text-align:left;vertical-align:top;padding:4px 8px;border:1px solid #ccc"
NUMBER_HEAD = "text-align:right;vertical-align:top;padding:4px 8px;border:1px solid #ccc"
NUMBER = NUMBER_HEAD + ";white-space:nowrap"
TABLE = "table-layout:fixed;width:100%;border-collapse:collapse;margin:0 0 8px 0"
WRAP = "white-space:pre-wrap;word-break:normal;overflow-wrap:break-word;text-align:left;margin:0"
GRID = "display:grid;grid-template-columns:repeat(auto-fit,minmax({min}px,1fr));gap:8px;text-align:left"
PROSE = "word-break:normal;overflow-wrap:break-word;text-align:left;margin:0"  # rendered markdown
NOTE = "color:#a0522d;font-style:italic"  # sienna: readable on white, not a status colour
PANEL = "border:1px solid #ccc;padding:6px 8px;text-align:left;vertical-align:top;min-width:0"


@dataclass(frozen=True)
class Html:
    """An HTML fragment that a notebook shows as HTML; plain text where HTML cannot be shown."""

    markup: str
    text: str = ""

    def _repr_html_(self) -> str:
        return self.markup

    def __repr__(self) -> str:
        return self.text or "(HTML)"

    def __str__(self) -> str:
        return self.markup


def retrieval_summary(retrievals: Sequence[Retrieval]) -> pl.DataFrame:
    """One row per query: demos kept, their tokens, scores, and why the others were left out."""
    rows = []
    for r in retrievals:
        reasons = Counter(c.reason for c in r.candidates)
        kept = [c for c in r.candidates if c.kept]
        scores = [c.score for c in kept if c.score is not None]
        rows.append(
            {
                "query_id": r.query_id,
                "query": r.query,
                "demos_kept": len(r.demo_ids),
                "kept_tokens": sum(c.n_tokens for c in kept),
                "budget": r.budget,
                "top_score": max(scores) if scores else None,
                "mean_kept_score": sum(scores) / len(scores) if scores else None,
                "over_instance_limit": reasons.get("over_instance_limit", 0),
                "over_budget": reasons.get("over_budget", 0),
                "after_stop": reasons.get("after_stop", 0),
            }
        )
    return pl.DataFrame(rows)


def candidate_table(retrieval: Retrieval, pool: pl.DataFrame, width: int = 80) -> pl.DataFrame:
    """A query's candidates best first: rank, score, tokens, decision, and the demo's prompt."""
    prompts = dict(zip(pool["id"].to_list(), pool["prompt"].to_list(), strict=True))
    categories = dict(zip(pool["id"].to_list(), pool["category"].to_list(), strict=True))
    return pl.DataFrame(
        [
            {
                "rank": c.rank,
                "score": None if c.score is None else round(c.score, 3),
                "tokens": c.n_tokens,
                "decision": c.reason,
                "category": categories.get(c.id, ""),
                "demo prompt": cut(prompts.get(c.id, ""), width),
            }
            for c in retrieval.candidates
        ],
        schema={
            "rank": pl.Int64,
            "score": pl.Float64,
            "tokens": pl.Int64,
            "decision": pl.String,
            "category": pl.String,
            "demo prompt": pl.String,
        },
    )


def candidates_view(retrieval: Retrieval, pool: pl.DataFrame, width: int = 200) -> Html:
    """Every candidate of a query as a readable table: kept ones in bold, the reason for the others,
    and the running total of kept tokens against the budget."""
    table = candidate_table(retrieval, pool, width)
    total, running = 0, []
    for decision, tokens in zip(table["decision"], table["tokens"], strict=True):
        total += tokens if decision == "kept" else 0
        running.append(total if decision == "kept" else None)
    shown = table.select(
        "rank",
        "score",
        "tokens",
        pl.Series("kept total", running, dtype=pl.Int64),
        pl.col("decision").replace(DECISIONS),
        (pl.col("category") + " · " + pl.col("demo prompt")).alias("demo (category · prompt)"),
    )
    kept = sum(c.kept for c in retrieval.candidates)
    title = (
        f"{kept} of {len(retrieval.candidates)} candidates kept"
        + (f" (budget {retrieval.budget:,} tokens)" if retrieval.budget else "")
        + "; best first, kept ones in bold"
    )
    widths = {"rank": "3em", "score": "4.5em", "tokens": "4.2em", "kept total": "4.5em", "decision": "8.5em"}
    bold = [d == "kept" for d in table["decision"]]
    markup = html_table(shown, widths, title, bold, "icalign-candidates")
    return Html(markup, f"{title}\n{plain_table(shown)}")


def html_table(
    frame: pl.DataFrame,
    widths: Mapping[str, str] | None = None,
    title: str | None = None,
    bold_rows: Sequence[bool] | None = None,
    css_class: str = "",
) -> str:
    """Every row of a frame as an HTML table (no shape or dtype rows): text left, numbers right,
    whole words wrapped; `widths` are CSS widths of some columns ("4em"), the others share the rest."""
    widths = dict(widths or {})
    cols = "".join(f"<col style='width:{widths[c]}'>" if c in widths else "<col>" for c in frame.columns)
    numeric = {c for c, t in frame.schema.items() if t.is_numeric()}
    head = "".join(
        f"<th style='{NUMBER_HEAD if c in numeric else CELL}'>{html.escape(c)}</th>" for c in frame.columns
    )
    rows = []
    for i, row in enumerate(frame.iter_rows()):
        weight = ";font-weight:bold" if bold_rows is not None and bold_rows[i] else ""
        cells = "".join(
            f"<td style='{(NUMBER if c in numeric else CELL) + weight}'>{_cell_text(v)}</td>"
            for c, v in zip(frame.columns, row, strict=True)
        )
        rows.append(f"<tr>{cells}</tr>")
    caption = f"<caption style='text-align:left;padding:4px 0'><b>{html.escape(title)}</b></caption>"
    return (
        f"<table class='{css_class}' style='{TABLE}'>{caption if title else ''}<colgroup>{cols}</colgroup>"
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _cell_text(value: object) -> str:
    """A table cell's escaped text (empty for a missing value)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}"
    return f"<span style='{WRAP}'>{html.escape(str(value))}</span>"


def plain_table(frame: pl.DataFrame) -> str:
    """Every row of a frame as plain text, tab-separated (what a terminal or a static copy shows)."""
    lines = ["\t".join(frame.columns)]
    lines += ["\t".join("" if v is None else str(v) for v in row) for row in frame.iter_rows()]
    return "\n".join(lines)


def pick_examples(retrievals: Sequence[Retrieval], n: int = 2) -> list[Retrieval]:
    """Queries worth showing: one where a demo was skipped for length, then the fewest and most kept."""
    if not retrievals:
        return []
    chosen: list[Retrieval] = []
    skipped = [r for r in retrievals if any(c.reason == "over_instance_limit" for c in r.candidates)]
    by_count = sorted(retrievals, key=lambda r: len(r.demo_ids))
    for r in [*skipped[:1], by_count[0], by_count[-1], *retrievals]:
        if len(chosen) >= n:
            break
        if r not in chosen:
            chosen.append(r)
    return chosen


def prompt_excerpt(prompt: str, head: int = 600, tail: int = 700) -> str:
    """The start and the end of a long prompt, with how much was left out in between."""
    if len(prompt) <= head + tail + 80:
        return prompt
    left_out = len(prompt) - head - tail
    return f"{prompt[:head]}\n\n[… {left_out} characters left out …]\n\n{prompt[-tail:]}"


def text_view(text: str, heading: str | None = None) -> Html:
    """A long text (a prompt) with its line breaks, wrapped at whole words, under an optional heading."""
    top = f"<div style='{WRAP};font-weight:bold;margin:4px 0'>{html.escape(heading)}</div>" if heading else ""
    body = f"<pre style='{WRAP};border:1px solid #ccc;padding:6px 8px'>{html.escape(text)}</pre>"
    plain = f"{heading}\n\n{text}" if heading else text
    return Html(f"<div style='text-align:left'>{top}{body}</div>", plain)


def markdown_html(text: str) -> str:
    """An answer's markdown as HTML (lists, bold, code, tables), its own HTML shown as text, never run;
    every line break kept (a base model's repeated lines stay visible as lines)."""
    import mistune

    render = mistune.create_markdown(escape=True, hard_wrap=True, plugins=["strikethrough", "table"])
    return f"<div class='icalign-answer' style='{PROSE}'>{render(text)}</div>"


def answer_html(text: str, markdown: bool = False) -> str:
    """One answer as HTML: its markdown rendered, or its text as written (wrapped at whole words)."""
    if markdown and text:
        return markdown_html(text)
    return f"<div class='icalign-answer' style='{WRAP}'>{html.escape(text or EMPTY)}</div>"


def panel(name: str, body: str, note: str = "") -> str:
    """One column of a side-by-side view: a bold heading over an HTML body, and an optional note."""
    heading = f"<div style='{WRAP};font-weight:bold;margin-bottom:4px'>{html.escape(name)}</div>"
    return f"<div style='{PANEL}'>{heading}{body}{note}</div>"


def side_by_side(
    columns: Mapping[str, str],
    title: str | None = None,
    capped: Collection[str] = (),
    min_width: int = 260,
    markdown: bool = False,
) -> str:
    """HTML of texts in equal columns (e.g. a direct answer beside an in-context one): left-aligned,
    wrapped at whole words; the columns wrap onto new rows when each would be narrower than
    `min_width` pixels. The texts of the columns named in `capped` are marked as cut at the length cap;
    `markdown` renders each text's markdown."""
    panels = []
    for name, text in columns.items():
        note = f"<div style='{WRAP};{NOTE}'>{CUT_NOTE}</div>" if name in capped else ""
        panels.append(panel(name, answer_html(text, markdown), note))
    heading = f"<div style='{WRAP};font-weight:bold;margin:4px 0'>{html.escape(title)}</div>" if title else ""
    grid = f"<div style='{GRID.format(min=min_width)}'>{''.join(panels)}</div>"
    return f"<div style='text-align:left'>{heading}{grid}</div>"


def results_side_by_side(results: Mapping[str, Answer], title: str | None = None) -> Html:
    """Generation results in columns, each headed by its name, its length and how it ended, their
    markdown rendered."""
    columns, capped = {}, []
    for name, r in results.items():
        key = f"{name} ({ended(r.stopped_by, r.n_generated_tokens)})"
        columns[key] = r.response
        if r.stopped_by == "length":
            capped.append(key)
    text = "\n\n".join(f"== {k}\n{v or EMPTY}" for k, v in columns.items())
    return Html(side_by_side(columns, title, capped, markdown=True), text)


def verdict_line(verdict: str, reasons: Sequence[tuple[str, float]] = ()) -> str:
    """A verdict and what moved it, in words: "judge: win (+) — longer (+0.8), fewer repeated lines
    (+0.5)" (each reason with its share of the judge's log-odds toward this answer)."""
    moved = ", ".join(f"{words} ({share:+.1f})" for words, share in reasons)
    return f"{verdict} — {moved}" if moved else verdict


def ended(stopped_by: str | None, n_tokens: int | None = None) -> str:
    """How an answer ended, in words ("80 tokens, cut at the length cap")."""
    how = ENDED.get(stopped_by or "", f"ended: {stopped_by}" if stopped_by else "")
    count = f"{n_tokens} tokens" if n_tokens is not None else ""
    return ", ".join(p for p in (count, how) if p)


def cut(text: str, width: int) -> str:
    """One line, at most `width` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"
