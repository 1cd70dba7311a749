"""The playground's widgets: a question box, the pool, the number of demos and new tokens, Answer and
Stop; then the candidate demos and the prompt, and the direct and in-context answers filling in side
by side as their tokens arrive (markdown rendered), each headed by how far it got and how it ended.

The work runs on a thread of its own, so the Stop button is heard while both answers decode; the
controller (`study/playground.py`) does it, this module only shows it.
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..errors import UserError, first_line
from ..study.playground import ALL_THAT_FIT, DIRECT, IN_CONTEXT, Asked, Playground
from . import explain

if TYPE_CHECKING:
    import ipywidgets as widgets

SAVED_COPY = "[the playground: run this notebook in JupyterLab to ask your own question]"
MIN_COLUMN_PX = 280  # the two answers sit side by side down to this width each, then one above the other


def heading(asked: Asked, column: str) -> str:
    """A column's heading: its name, then tokens so far and, once it ended, how."""
    stream = asked.streams[column]
    if stream.result is not None:
        return f"{column} ({explain.ended(stream.result.stopped_by, stream.result.n_generated_tokens)})"
    if stream.tokens:
        return f"{column} (writing… {stream.tokens} tokens)"
    return f"{column} (reading its prompt…)"


def column_html(asked: Asked, column: str) -> str:
    """One answer as it stands: heading, the markdown so far, a note if it was cut at the cap."""
    stream = asked.streams[column]
    text = stream.result.response if stream.result is not None else stream.text
    capped = stream.result is not None and stream.result.stopped_by == "length"
    note = f"<div style='{explain.WRAP};{explain.NOTE}'>{explain.CUT_NOTE}</div>" if capped else ""
    body = explain.answer_html(text, markdown=True) if text or stream.result is not None else ""
    return explain.panel(heading(asked, column), body, note)


def status_line(asked: Asked) -> str:
    """What the playground is doing, in one line (the first token's delay once it came)."""
    first = [s.first_token_at for s in asked.streams.values() if s.first_token_at is not None]
    if asked.done:
        took = time.perf_counter() - asked.started
        return f"done in {took:.1f} s" + (f"; first token after {min(first):.1f} s" if first else "")
    if first:
        return f"both answers decode together; first token after {min(first):.1f} s"
    return "reading the prompts…"


class PlaygroundView:
    """The widgets of one playground; `widget()` gives the whole box to display."""

    def __init__(self, playground: Playground, question: str = "", pools: Sequence[str] = ()) -> None:
        import ipywidgets as widgets

        self.playground = playground
        study = playground.study
        choices = list(dict.fromkeys([study.pool, *pools]))
        self.question = widgets.Textarea(
            value=question, placeholder="Ask the base model anything", layout=widgets.Layout(width="98%")
        )
        self.question.add_class("icalign-question")
        self.pool = widgets.Dropdown(
            options=choices, value=study.pool, description="pool", layout={"width": "220px"}
        )
        self.demos = widgets.IntSlider(
            value=ALL_THAT_FIT,
            min=0,
            max=ALL_THAT_FIT,
            description="demos",
            tooltip="20: all that fit",
            layout={"width": "320px"},
        )
        self.new_tokens = widgets.BoundedIntText(
            value=study.max_new_tokens, min=1, max=4096, description="new tokens", layout={"width": "180px"}
        )
        self.new_tokens.add_class("icalign-new-tokens")
        self.ask = widgets.Button(
            description="Answer", button_style="primary", icon="play", layout={"width": "110px"}
        )
        self.stop = widgets.Button(description="Stop", disabled=True, icon="stop", layout={"width": "90px"})
        self.ask.add_class("icalign-answer-button")
        self.stop.add_class("icalign-stop-button")
        self.status = widgets.HTML()
        self.status.add_class("icalign-status")
        self.demos_view = widgets.HTML()
        self.columns = {name: widgets.HTML() for name in (DIRECT, IN_CONTEXT)}
        for name, box in self.columns.items():
            box.add_class("icalign-stream-direct" if name == DIRECT else "icalign-stream-in-context")
            box.layout = widgets.Layout(min_width=f"{MIN_COLUMN_PX}px", flex="1 1 0")
        self.box: widgets.VBox | None = None
        self.asked: Asked | None = None
        self.thread: threading.Thread | None = None
        self.ask.on_click(lambda _: self.start())
        self.stop.on_click(lambda _: self.halt())

    def _repr_mimebundle_(self, **kwargs: object) -> dict:
        """The live widget; a saved copy of the notebook (no widgets in it) shows a sentence instead."""
        bundle = self.widget()._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = SAVED_COPY
        return bundle

    def widget(self) -> widgets.VBox:
        """The playground, ready to display (one box, however often it is asked for)."""
        import ipywidgets as widgets

        if self.box is not None:
            return self.box

        controls = widgets.HBox(
            [self.pool, self.demos, self.new_tokens, self.ask, self.stop],
            layout=widgets.Layout(flex_flow="row wrap", align_items="center"),
        )
        answers = widgets.HBox(list(self.columns.values()), layout=widgets.Layout(flex_flow="row wrap"))
        self.box = widgets.VBox([self.question, controls, self.status, self.demos_view, answers])
        return self.box

    def say(self, text: str) -> None:
        """One line of status."""
        self.status.value = f"<div style='{explain.WRAP}'>{html.escape(text)}</div>"

    def start(self) -> None:
        """Answer the question on a thread of its own (one question at a time)."""
        if self.thread is not None and self.thread.is_alive():
            return
        self.ask.disabled, self.stop.disabled = True, False
        self.thread = threading.Thread(target=self.run, args=(self.question.value,), daemon=True)
        self.thread.start()

    def halt(self) -> None:
        """Stop both answers at the next step."""
        if self.asked is not None:
            self.asked.stop.set()
        self.stop.disabled = True

    def run(self, question: str) -> None:
        """Retrieve, show the demos and prompt, then stream both answers; a user mistake is one line."""
        try:
            self.say("retrieving demos… (a pool's first use embeds it once: minutes for a large pool)")
            for box in self.columns.values():
                box.value = ""
            asked = self.playground.prepare(
                question, self.pool.value, self.demos.value, self.new_tokens.value
            )
            self.asked = asked
            self.demos_view.value = self.demos_html(asked)
            for name in self.columns:
                self.show(asked, name)
            self.say(status_line(asked))
            self.playground.answer(asked, self.show)
            self.say(status_line(asked))
        except UserError as exc:
            self.say(f"cannot answer: {first_line(exc)}")
        finally:
            self.ask.disabled, self.stop.disabled = False, True

    def show(self, asked: Asked, column: str) -> None:
        """Redraw one answer's column (called as its tokens arrive)."""
        self.columns[column].value = column_html(asked, column)
        if asked.streams[column].tokens == 1 or asked.done:
            self.say(status_line(asked))

    def demos_html(self, asked: Asked) -> str:
        """The question's candidates (kept ones in bold, why the others were not) and its prompt, folded."""
        r = asked.retrieval
        table = explain.candidates_view(r, asked.pool, width=160).markup
        prompt = html.escape(explain.prompt_excerpt(r.prompt))
        return (
            f"<details><summary>{len(r.demo_ids)} of {len(r.candidates)} candidate demos kept "
            f"(every candidate, and why)</summary>{table}</details>"
            f"<details><summary>the in-context prompt ({len(r.prompt):,} characters)</summary>"
            f"<pre style='{explain.WRAP}'>{prompt}</pre></details>"
        )
