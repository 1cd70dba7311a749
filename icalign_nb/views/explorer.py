"""An interactive view of one query: its retrieved demos, prompt, each system's answer and the verdicts."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import TYPE_CHECKING

import polars as pl

from ..study.explore import Exploration
from . import explain

if TYPE_CHECKING:
    import ipywidgets as widgets

# plain ASCII, so every font shows them (emoji turned into empty boxes without an emoji font)
VERDICT_MARK = {
    "win": "judge: win (+)",
    "draw": "judge: draw (=)",
    "lose": "judge: lose (-)",
    "invalid": "judge: invalid (?)",
}
REASONS = (
    ", and the three features of the answers that moved it most, each with its share of the judge's "
    "log-odds toward this answer (+ toward a win)"
)
MIN_COLUMN_PX = 280  # answer columns wrap onto a new row below this width


@dataclass
class Explorer:
    """The view of an exploration: one query at a time, as HTML or as a widget."""

    data: Exploration

    @property
    def query_ids(self) -> list[str]:
        """The queries, in eval-set order."""
        return self.data.query_ids

    def view_html(self, query_id: str, sample: int = 0) -> str:
        """The whole view of one query as HTML: every system's answer beside the baseline's, each with
        the judge's verdict and how it ended; then (folded) its demos, every candidate and why kept or
        skipped, and the prompt."""
        data = self.data
        r = data.retrievals.get(query_id)
        heading = f"{query_id}: {data.queries[query_id]}"
        parts = [f"<h3 style='{explain.WRAP}'>{html.escape(heading)}</h3>"]
        mine = data.answers.filter((pl.col("query_id") == query_id) & (pl.col("sample") == sample))
        judged = data.verdicts.filter((pl.col("query_id") == query_id) & (pl.col("sample") == sample))
        verdict = dict(zip(judged["system"].to_list(), judged["verdict"].to_list(), strict=True))
        columns, capped = {}, []
        for row in mine.iter_rows(named=True):
            mark = VERDICT_MARK.get(verdict.get(row["system"], ""), "not judged")
            line = explain.verdict_line(mark, data.reasons.get((row["system"], query_id, sample), ()))
            how = explain.ended(row.get("stopped_by"), row.get("n_generated_tokens"))
            name = "\n".join(p for p in (data.labels.get(row["system"], row["system"]), line, how) if p)
            columns[name] = row["response"]
            if row.get("stopped_by") == "length":
                capped.append(name)
        columns["baseline answer"] = data.baseline.get(query_id, "")
        title = f"answers, sample {sample}: the judge's verdict against the baseline" + (
            REASONS if data.reasons else ""
        )
        parts.append(explain.side_by_side(columns, title=title, capped=capped, min_width=MIN_COLUMN_PX))
        if r is not None and r.candidates:
            summary = f"the retrieved demos: {len(r.demo_ids)} of {len(r.candidates)} candidates kept"
            parts.append(
                f"<details><summary>{html.escape(summary)} (every candidate, and why)</summary>"
                f"{explain.candidates_view(r, data.pool, width=160).markup}</details>"
                f"<details><summary>the in-context prompt ({len(r.prompt):,} characters)</summary>"
                f"<pre style='{explain.WRAP}'>{html.escape(explain.prompt_excerpt(r.prompt))}</pre>"
                "</details>"
            )
        return "".join(parts)

    def show(self, query_id: str, sample: int = 0) -> None:
        """Display the view of one query (works without widgets)."""
        from IPython.display import display

        display(explain.Html(self.view_html(query_id, sample), f"{query_id}: {self.data.queries[query_id]}"))

    def widget(self) -> widgets.VBox:
        """A dropdown of queries (and of samples, when there are several) and the view, updated in place."""
        import ipywidgets as widgets

        labels = [(f"{q}: {explain.cut(self.data.queries[q], 70)}", q) for q in self.query_ids]
        picker = widgets.Dropdown(options=labels, description="query", layout=widgets.Layout(width="90%"))
        picker.add_class("icalign-query")
        samples = sorted(set(self.data.answers["sample"].to_list())) or [0]
        sample = widgets.Dropdown(options=samples, description="sample", layout=widgets.Layout(width="12em"))
        view = widgets.HTML(self.view_html(self.query_ids[0], samples[0]))
        view.add_class("icalign-view")

        def update(_: dict) -> None:
            view.value = self.view_html(picker.value, sample.value)

        picker.observe(update, names="value")
        sample.observe(update, names="value")
        return widgets.VBox([picker, sample, view] if len(samples) > 1 else [picker, view])
