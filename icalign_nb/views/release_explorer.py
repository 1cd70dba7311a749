"""The release explorer, as people see it: an overview of every prompt (GPT-4's verdicts per system, one
mark per sample, sortable and filterable) and one prompt at a time (the baselines' answers, each
system's sample with GPT-4's two scores and explanation, the offline judge's verdict, the answer's
length, the paper's demos), as HTML or as widgets."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import TYPE_CHECKING

import polars as pl

from ..errors import UserError
from ..study.release_explore import (
    MAIN_BASELINE,
    MARKS,
    RELEASE_BASELINES,
    RULES,
    SORTS,
    ReleaseExploration,
    Selection,
    questions,
    select_prompts,
    system_summary,
)
from . import explain

if TYPE_CHECKING:
    import ipywidgets as widgets

VERDICT_WORDS = {"win": "win (+)", "draw": "draw (=)", "lose": "lose (-)", "invalid": "unreadable (?)"}
LEGEND = (
    "One mark per sample, GPT-4 against text-davinci-003: + the system's answer preferred, = a draw, "
    "- davinci-003's preferred, ? an unreadable reply. Under the marks: the answers' mean length in "
    "characters, and how many samples the offline judge called the other way (win against lose)."
)
REASONS = (
    " with the three features that moved it most, each with its share of the judge's log-odds toward "
    "the system's answer, + toward a win"
)
MIN_PANEL_PX = 320  # system panels wrap onto a new row below this width
SCROLL = "max-height:{px}px;overflow-y:auto;border:1px solid #ccc;padding:0 4px"
SMALL = "font-size:90%;color:#444"
MONO = "font-family:monospace;white-space:pre"
TD = "padding:2px 6px;border:1px solid #ccc;vertical-align:top;text-align:left"  # Lab right-aligns cells
MARKED = "background:#eef3fb"  # the columns of systems A and B
BLOCK = "text-align:left;line-height:1.4"  # a widget's HTML otherwise spaces lines as its controls


@dataclass
class ReleaseExplorer:
    """The view of a release exploration: the overview, one prompt, or both as widgets."""

    data: ReleaseExploration

    # ------------------------------------------------------------ what was read

    def summary(self) -> explain.Html:
        """What the folder holds: each system's GPT-4 win rates recomputed, the paper's, the offline
        judge's, and one line for everything left out."""
        data = self.data
        numbers = system_summary(data)
        table = pl.DataFrame(
            {
                "system": numbers["label"],
                **{
                    f"GPT-4 vs {data.labels[b]}": [
                        _rate(r[f"win_{b}"], r[f"n_{b}"], r[f"reported_{b}"])
                        for r in numbers.iter_rows(named=True)
                    ]
                    for b in RELEASE_BASELINES
                },
                "offline judge vs text-davinci-003": [
                    _rate(r["offline_win"], r["offline_n"])
                    + (
                        f"; agrees with GPT-4 on {100 * r['offline_agreement']:.1f}% of its decisive verdicts"
                        if r["offline_agreement"] is not None
                        else ""
                    )
                    for r in numbers.iter_rows(named=True)
                ],
            }
        )
        judge = data.offline_judge or "not run"
        title = (
            f"{len(data.systems)} systems x {len(data.query_ids)} prompts from {data.release}: "
            f"win rates (paper's reported ones in brackets); offline judge: {judge}"
        )
        notes = "".join(
            f"<div style='{explain.WRAP};{explain.NOTE}'>{html.escape(n)}</div>" for n in data.notes
        )
        markup = explain.html_table(table, {"system": "16em"}, title, css_class="icalign-release-summary")
        return explain.Html(f"<div style='text-align:left'>{markup}{notes}</div>", explain.plain_table(table))

    # ------------------------------------------------------------ the overview

    def overview_html(self, selection: Selection | None = None, height: int = 420) -> str:
        """Every prompt the selection lists as a grid: the prompt, davinci-003's answer length, and per
        system its marks; systems A and B shaded."""
        data = self.data
        selection = selection or questions(data.systems)[-1].selection
        ids = select_prompts(data, selection)
        cells = {
            (q, s): (m, ln, d)
            for q, s, m, ln, d in data.overview.select(
                "query_id", "system", "marks", "length", "disagree"
            ).iter_rows()
        }
        base = data.baselines.get(MAIN_BASELINE, {})
        head_cells = [("prompt", ""), ("davinci-003 chars", "")] + [
            (data.labels[s], MARKED if s in (selection.a, selection.b) else "") for s in data.systems
        ]
        head = "".join(f"<th style='{TD};{shade}'>{html.escape(name)}</th>" for name, shade in head_cells)
        rows = []
        for qid in ids:
            length = f"{len(base[qid]):,}" if qid in base else ""
            row = [
                f"<td style='{TD}'><b>{qid}</b> {html.escape(explain.cut(data.prompts[qid], 140))}</td>"
                f"<td style='{TD};text-align:right'>{length}</td>"
            ]
            for system in data.systems:
                marks, mean, disagree = cells.get((qid, system), ("", None, 0))
                shade = MARKED if system in (selection.a, selection.b) else ""
                under = f"{mean:,.0f} ch" if mean is not None else "no answers"
                under += f"; {disagree} differ" if disagree else ""
                row.append(
                    f"<td style='{TD};{shade}'><div style='{MONO}'>{html.escape(marks or '.')}</div>"
                    f"<div style='{SMALL}'>{under}</div></td>"
                )
            rows.append(f"<tr>{''.join(row)}</tr>")
        cols = "<col style='width:30%'><col style='width:5.5em'>" + "<col>" * len(data.systems)
        table = (
            f"<table class='icalign-release-overview' style='{explain.TABLE};{explain.WRAP}'>"
            f"<colgroup>{cols}</colgroup><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        )
        what = self.describe(selection)
        count = f"{len(ids)} of {len(data.query_ids)} prompts: {what}"
        return (
            f"<div style='{BLOCK}'><div style='{explain.WRAP};font-weight:bold;margin:4px 0'>"
            f"{html.escape(count)}</div><div style='{explain.WRAP};{SMALL};margin-bottom:4px'>{LEGEND}</div>"
            f"<div style='{SCROLL.format(px=height)}'>{table}</div></div>"
        )

    def describe(self, selection: Selection) -> str:
        """The selection in words, with the systems' names."""
        names = self.data.labels
        a, b = names.get(selection.a or "", "-"), names.get(selection.b or "", "-")
        rule, sort = RULES[selection.rule].format(a=a, b=b), SORTS[selection.sort].format(a=a, b=b)
        search = f"; containing '{selection.search}'" if selection.search.strip() else ""
        return f"{rule}; {sort}{search}"

    def counts(self) -> explain.Html:
        """How many prompts each of the paper's questions finds."""
        lines = [
            f"{q.name}: {len(select_prompts(self.data, q.selection))} prompts ({self.describe(q.selection)})"
            for q in questions(self.data.systems)
        ]
        body = "".join(f"<li style='{explain.WRAP}'>{html.escape(line)}</li>" for line in lines)
        return explain.Html(f"<ul style='text-align:left'>{body}</ul>", "\n".join(lines))

    def show_overview(self, selection: Selection | None = None) -> None:
        """Display the overview (works without widgets)."""
        from IPython.display import display

        display(explain.Html(self.overview_html(selection), "the release's overview"))

    # ------------------------------------------------------------ one prompt

    def prompt_html(self, query_id: str, sample: int = 0) -> str:
        """One prompt: the prompt, the baselines' answers, each system's sample with GPT-4's scores and
        explanation, the offline judge's verdict and the answer's length; then the paper's demos."""
        data = self.data
        if query_id not in data.prompts:
            raise UserError(f"unknown prompt '{query_id}' (lima-000 … lima-{len(data.query_ids) - 1:03d})")
        parts = [f"<h3 style='{explain.WRAP}'>{html.escape(f'{query_id}: {data.prompts[query_id]}')}</h3>"]
        columns = {
            f"{data.labels[b]} ({len(answers[query_id]):,} characters)": answers[query_id]
            for b, answers in data.baselines.items()
            if query_id in answers
        }
        parts.append(explain.side_by_side(columns, "the baselines' answers", min_width=MIN_PANEL_PX))
        panels = [self._panel(system, query_id, sample) for system in data.systems]
        title = f"each system's sample {sample + 1} of {data.samples}"
        if data.offline_reasons:
            title += f" (the offline judge's verdict{REASONS})"
        parts.append(
            f"<div style='{explain.WRAP};font-weight:bold;margin:8px 0 4px 0'>{html.escape(title)}</div>"
            f"<div style='{explain.GRID.format(min=MIN_PANEL_PX)}'>{''.join(panels)}</div>"
        )
        parts.append(self._demos(query_id))
        return f"<div style='{BLOCK}'>{''.join(parts)}</div>"

    def _panel(self, system: str, query_id: str, sample: int) -> str:
        """One system's sample: its marks, GPT-4's scores and explanation, the offline verdict, length."""
        data = self.data
        answers = data.answers.get((system, query_id), [])
        judged = data.gpt4.get((system, MAIN_BASELINE, query_id), {})
        marks = " ".join(
            (f"[{_mark(judged, s)}]" if s == sample else _mark(judged, s)) for s in range(len(answers))
        )
        lines = [f"samples vs davinci-003: {marks}"]
        explanations = []
        for baseline in RELEASE_BASELINES:
            name = data.labels[baseline]
            reply = data.gpt4.get((system, baseline, query_id), {}).get(sample)
            if reply is None:
                continue
            scores = f"{reply.score_system:g} vs {reply.score_baseline:g}" if reply.scored else "no scores"
            lines.append(f"GPT-4 vs {name}: {scores}, {VERDICT_WORDS.get(reply.verdict, reply.verdict)}")
            explanations.append(
                f"<div class='icalign-explanation' style='{explain.WRAP};{SMALL};border-top:1px dashed #bbb;"
                f"padding-top:4px;margin-top:6px'><b>GPT-4's explanation (Assistant 1: this answer, "
                f"Assistant 2: {html.escape(name)}'s):</b> "
                f"{html.escape(reply.explanation or '(none after the scores)')}</div>"
            )
        if not explanations:
            lines.append("GPT-4: this sample was not judged")
        lines.append(f"offline judge: {self._offline(system, query_id, sample)}")
        text = answers[sample] if sample < len(answers) else ""
        lines.append(f"length: {len(text):,} characters" if sample < len(answers) else "no such sample")
        facts = "".join(f"<div style='{explain.WRAP};{SMALL}'>{html.escape(line)}</div>" for line in lines)
        name = html.escape(data.labels[system])
        return (
            f"<div class='icalign-system' style='{explain.PANEL}'>"
            f"<div style='{explain.WRAP};font-weight:bold;margin-bottom:2px'>{name}</div>"
            f"{facts}<div class='icalign-answer' style='{explain.WRAP};margin-top:6px'>"
            f"{html.escape(text or explain.EMPTY)}</div>{''.join(explanations)}</div>"
        )

    def _offline(self, system: str, query_id: str, sample: int) -> str:
        """The offline judge's verdict on one sample, or why there is none."""
        data = self.data
        found = data.offline.get((system, query_id), {}).get(sample)
        if found is not None:
            moved = data.offline_reasons.get((system, query_id), {}).get(sample, ())
            return explain.verdict_line(VERDICT_WORDS.get(found, found), moved)
        if data.offline_judge is None:
            return "not run"
        if data.query_ids.index(query_id) >= data.offline_prompts:
            return f"not run on this prompt (it judged the first {data.offline_prompts}: proxy_prompts)"
        return "not judged (no judgment vs davinci-003 here)"

    def _demos(self, query_id: str) -> str:
        """The demos the paper's retrieval picks (folded), or the one line why they are not shown."""
        demos = self.data.demos
        r = demos.get(query_id)
        if r is None:
            return (
                f"<div style='{explain.WRAP};{explain.NOTE};margin-top:8px'>{html.escape(demos.note)}</div>"
            )
        summary = (
            f"the demos the paper's retrieval picks: {len(r.demo_ids)} of {len(r.candidates)} candidates kept"
        )
        return (
            f"<details style='margin-top:8px'><summary>{html.escape(summary)}</summary>"
            f"{explain.candidates_view(r, demos.pool, width=160).markup}</details>"
        )

    def show(self, query_id: str, sample: int = 0) -> None:
        """Display one prompt (works without widgets)."""
        from IPython.display import display

        display(
            explain.Html(self.prompt_html(query_id, sample), f"{query_id}: {self.data.prompts[query_id]}")
        )

    def chosen_prompts(self, given: str = "", n: int = 3) -> list[str]:
        """Prompts to show in a record: the ids given (comma-separated), else the top prompt of each of
        the paper's first `n` questions (distinct)."""
        if given.strip():
            ids = [q.strip() for q in given.split(",") if q.strip()]
            unknown = [q for q in ids if q not in self.data.prompts]
            if unknown:
                raise UserError(f"record_prompts: unknown prompt '{unknown[0]}' (ids lima-000 … lima-299)")
            return ids
        chosen: list[str] = []
        for q in questions(self.data.systems):
            found = [p for p in select_prompts(self.data, q.selection) if p not in chosen]
            if found and len(chosen) < n:
                chosen.append(found[0])
        return chosen

    # ------------------------------------------------------------ widgets

    def widget(self) -> widgets.VBox:
        """The overview's controls (a question, systems A and B, a rule, a sort, a search), the overview,
        then a prompt picker over the prompts it lists, a sample switch and the prompt's view."""
        import ipywidgets as widgets

        data = self.data
        asked = questions(data.systems)
        systems = [(data.labels[s], s) for s in data.systems]
        wide = widgets.Layout(width="auto")
        question = widgets.Dropdown(
            options=[(q.name, i) for i, q in enumerate(asked)], description="question", layout=wide
        )
        a = widgets.Dropdown(options=systems, description="system A", layout=wide)
        b = widgets.Dropdown(options=systems, description="system B", layout=wide)
        rule = widgets.Dropdown(options=_named(RULES), description="show", layout=wide)
        sort = widgets.Dropdown(options=_named(SORTS), description="sort", layout=wide)
        search = widgets.Text(placeholder="words of the prompt, or an id", description="search", layout=wide)
        search.add_class("icalign-release-search")
        full = widgets.Layout(width="100%")
        overview = widgets.HTML(layout=full)
        overview.add_class("icalign-release-overview-view")
        picker = widgets.Dropdown(description="prompt", layout=widgets.Layout(width="95%"))
        picker.add_class("icalign-release-prompt")
        sample = widgets.ToggleButtons(
            options=[(str(i + 1), i) for i in range(max(data.samples, 1))],
            description="sample",
            style={"button_width": "3em", "description_width": "initial"},
        )
        sample.add_class("icalign-release-sample")
        view = widgets.HTML(layout=full)
        view.add_class("icalign-release-view")
        quiet = {"now": False}  # a question sets several controls: redraw once, after the last

        def selection() -> Selection:
            return Selection(rule.value, a.value, b.value, sort.value, search.value)

        def redraw_prompt(_: dict | None = None) -> None:
            if not quiet["now"] and picker.value is not None:
                view.value = self.prompt_html(picker.value, sample.value)

        def redraw_overview(_: dict | None = None) -> None:
            if quiet["now"]:
                return
            chosen = selection()
            overview.value = self.overview_html(chosen)
            ids = select_prompts(data, chosen)
            current = picker.value
            quiet["now"] = True
            picker.options = [(f"{q}: {explain.cut(data.prompts[q], 90)}", q) for q in ids]
            picker.value = current if current in ids else (ids[0] if ids else None)
            quiet["now"] = False
            if picker.value != current or not view.value:
                redraw_prompt()

        def ask(_: dict | None = None) -> None:
            chosen = asked[question.value].selection
            quiet["now"] = True
            a.value, b.value = chosen.a, chosen.b
            rule.value, sort.value = chosen.rule, chosen.sort
            quiet["now"] = False
            redraw_overview()

        question.observe(ask, names="value")
        for control in (a, b, rule, sort, search):
            control.observe(redraw_overview, names="value")
        picker.observe(redraw_prompt, names="value")
        sample.observe(redraw_prompt, names="value")
        ask()
        controls = widgets.VBox(
            [widgets.HBox([question, rule]), widgets.HBox([a, b]), widgets.HBox([sort, search])]
        )
        return widgets.VBox([controls, overview, picker, sample, view])


def _named(choices: dict[str, str]) -> list[tuple[str, str]]:
    """Dropdown options of rules or sorts, the systems called A and B."""
    return [(text.format(a="A", b="B"), key) for key, text in choices.items()]


def _mark(judged: dict, sample: int) -> str:
    """One sample's ASCII mark (GPT-4 vs davinci-003)."""
    return MARKS.get(judged[sample].verdict, "?") if sample in judged else "."


def _rate(win: float | None, n: int, reported: float | None = None) -> str:
    """A win rate in words: "78.4% of 1,500 (paper: 78.4%)", or "not judged"."""
    if win is None:
        return "not judged"
    paper = f" (paper: {100 * reported:.1f}%)" if reported is not None else ""
    return f"{100 * win:.1f}% of {n:,}{paper}"
