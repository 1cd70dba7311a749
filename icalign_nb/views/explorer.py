"""An interactive view of one query: its retrieved demos, prompt, each system's answer and the verdicts."""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from ..analysis.winrates import combine_orders
from ..data.loaders import load_baseline, load_pool
from ..generation.rundir import RETRIEVALS, read_retrievals, retrieval_for
from ..retrieval.retriever import Retrieval
from . import explain
from .systems import SystemsSetup, answers

VERDICT_MARK = {"win": "✅ win", "draw": "➖ draw", "lose": "❌ lose", "invalid": "⚠️ invalid"}


@dataclass
class Explorer:
    """Everything the view needs, indexed by query id."""

    query_ids: list[str]
    queries: dict[str, str]
    retrievals: dict[str, Retrieval]
    pool: pl.DataFrame
    answers: pl.DataFrame
    verdicts: pl.DataFrame
    baseline: dict[str, str]

    @classmethod
    def build(
        cls,
        runs: dict[str, Path],
        verdicts: pl.DataFrame,
        setup: SystemsSetup,
        baseline: str,
        data_dir: str | None = None,
    ) -> Explorer:
        """Load the runs' answers, the combined verdicts, the retrievals that built the prompts (of the
        `paper` run, else the first run that retrieved) and the baseline answers."""
        base = load_baseline(baseline, data_dir)
        by_prompt = {p.strip(): r for p, r in zip(base["prompt"], base["response"], strict=True)}
        table = answers(runs)
        firsts = table.unique("query_id", keep="first", maintain_order=True)
        ids, texts = firsts["query_id"].to_list(), firsts["query"].to_list()
        retrieving = [p for p in ("paper", *runs) if p in runs and (runs[p] / RETRIEVALS).exists()]
        recorded = read_retrievals(runs[retrieving[0]]) if retrieving else {}
        chosen = {q: r for q in ids if (r := retrieval_for(recorded, q, 0)) is not None and r.candidates}
        pool = load_pool(setup.base.retrieval.pool, data_dir) if chosen else pl.DataFrame()
        return cls(
            ids,
            dict(zip(ids, texts, strict=True)),
            chosen,
            pool,
            table,
            combine_orders(verdicts),
            {qid: by_prompt.get(text.strip(), "") for qid, text in zip(ids, texts, strict=True)},
        )

    def view_html(self, query_id: str, sample: int = 0) -> str:
        """The whole view of one query as HTML."""
        r = self.retrievals.get(query_id)
        parts = [f"<h3>{html.escape(query_id)}: {html.escape(self.queries[query_id])}</h3>"]
        if r is not None and r.candidates:
            table = explain.candidate_table(r, self.pool, width=90).filter(pl.col("decision") == "kept")
            rows = "".join(
                f"<tr><td>{t['rank']}</td><td>{t['score']}</td><td>{t['tokens']}</td>"
                f"<td>{html.escape(t['category'])}</td><td>{html.escape(t['demo prompt'])}</td></tr>"
                for t in table.iter_rows(named=True)
            )
            parts.append(
                f"<b>{len(r.demo_ids)} retrieved demos kept</b> (of {len(r.candidates)} candidates)"
                "<table><tr><th>rank</th><th>score</th><th>tokens</th><th>category</th><th>prompt</th></tr>"
                f"{rows}</table>"
                f"<details><summary>the in-context prompt ({len(r.prompt):,} characters)</summary>"
                f"<pre style='white-space:pre-wrap'>{html.escape(explain.prompt_excerpt(r.prompt))}</pre>"
                "</details>"
            )
        mine = self.answers.filter((pl.col("query_id") == query_id) & (pl.col("sample") == sample))
        judged = self.verdicts.filter((pl.col("query_id") == query_id) & (pl.col("sample") == sample))
        verdict = dict(zip(judged["system"].to_list(), judged["verdict"].to_list(), strict=True))
        columns = {
            f"{row['system']} — {VERDICT_MARK.get(verdict.get(row['system'], ''), 'not judged')}": row[
                "response"
            ]
            for row in mine.iter_rows(named=True)
        }
        columns["baseline answer"] = self.baseline.get(query_id, "")
        parts.append(
            explain.side_by_side(columns, title="answers (verdict of the judge against the baseline)")
        )
        return "".join(parts)

    def show(self, query_id: str, sample: int = 0) -> None:
        """Display the view of one query (works without widgets)."""
        from IPython.display import HTML, display

        display(HTML(self.view_html(query_id, sample)))

    def widget(self) -> object:
        """A dropdown of queries and the view, updated in place (ipywidgets)."""
        import ipywidgets as widgets

        labels = [(f"{q}: {explain.cut(self.queries[q], 70)}", q) for q in self.query_ids]
        picker = widgets.Dropdown(options=labels, description="query", layout=widgets.Layout(width="90%"))
        view = widgets.HTML(self.view_html(self.query_ids[0]))

        def update(change: dict) -> None:
            view.value = self.view_html(change["new"])

        picker.observe(update, names="value")
        return widgets.VBox([picker, view])
