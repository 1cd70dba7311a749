"""Every reader of the paper's release takes whichever systems a folder holds, and the release explorer
(notebook 08) shows them: release folders are made here from the four systems of the reference data
(copies under the other released systems' names, subsets, one baseline only, judgments without answers)."""

from __future__ import annotations

import html
import json
import shutil
from dataclasses import replace
from pathlib import Path

import matplotlib
import polars as pl
import pytest

from icalign_nb.analysis.paper_table import paper_table
from icalign_nb.analysis.winrates import Bootstrap
from icalign_nb.data.release import RELEASE_SYSTEMS, release_judgment_files
from icalign_nb.errors import UserError
from icalign_nb.study import release as paper_figs
from icalign_nb.study.release_explore import (
    PaperDemoSource,
    Selection,
    explore_release,
    questions,
    select_prompts,
    system_summary,
)
from icalign_nb.study.study import Study
from icalign_nb.views.release_explorer import ReleaseExplorer

matplotlib.use("Agg")

ZERO, ICL, RANDOM, CHAT = (
    "llama2base-13B_zeroshot",
    "llama2-13B_icl-oasstgpt",
    "llama2-13B_icl-random-oasstgpt",
    "llama2chat-13B",
)
# The other released systems, each a copy of one of the four here (answers and judgments alike).
COPIES = {
    "llama2-70B_icl-oasstgpt": ICL,
    "llama1-13B_icl-oasstgpt": RANDOM,
    "llama2chat-7B": CHAT,
    "guanaco-7B": ZERO,
    "guanaco-13B": CHAT,
}
MINE = "my-model"  # a system the paper does not know (its files have no pin)
# The systems the release judged against ChatGPT too.
VS_CHATGPT = {ICL, RANDOM, CHAT, "llama2-70B_icl-oasstgpt", "guanaco-13B"}
BOOT = Bootstrap(n=50)


def outputs(system: str) -> str:
    return f"{system}_outputs_temp0.7.jsonl"


def judged(system: str, baseline: str) -> str:
    return f"{system}_vs_{baseline}_autoeval.jsonl"


def release_copy(
    src: Path, dst: Path, systems: dict[str, str], baselines: tuple[str, ...] = ("davinci003", "chatgpt")
) -> Path:
    """A release folder: the baselines' answers, and per system (name -> source system) its outputs and
    its judgments against the baselines named, where the source has them."""
    dst.mkdir(parents=True)
    for name in ("davinci003_results.jsonl", "chatgpt_results.jsonl"):
        shutil.copy(src / name, dst / name)
    for name, source in systems.items():
        shutil.copy(src / outputs(source), dst / outputs(name))
        for baseline in baselines:
            if (src / judged(source, baseline)).exists():
                shutil.copy(src / judged(source, baseline), dst / judged(name, baseline))
    return dst


@pytest.fixture()
def release(shared_data: Path) -> Path:
    return shared_data / "paper_release"


@pytest.fixture()
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Judge replies and fetches of these tests kept out of the user's cache."""
    monkeypatch.setenv("ICALIGN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture()
def stand_ins(monkeypatch: pytest.MonkeyPatch) -> None:
    """The copies stand in for released files the reference data lacks: their names are unpinned here (a
    file under a pinned name must be the pinned file, and a copy is not), so they are read as they are."""
    from icalign_nb.data import pins

    for name in COPIES:
        for file in (outputs(name), judged(name, "davinci003"), judged(name, "chatgpt")):
            if file in pins.BY_NAME:
                monkeypatch.setitem(pins.BY_NAME, file, replace(pins.BY_NAME[file], sha256=None))


def explore(folder: Path, study: Study | None = None, prompts: int = 0, demos=None):
    return explore_release(study or Study(), folder, prompts, demos)


def whole_release(release: Path, folder: Path) -> Path:
    """The nine released systems (the five not here as copies), judged as the release judged them, and
    one system the paper does not know."""
    release_copy(release, folder, {s: s for s in (ZERO, ICL, RANDOM, CHAT)} | COPIES)
    for name in set(COPIES) - VS_CHATGPT:
        (folder / judged(name, "chatgpt")).unlink(missing_ok=True)
    shutil.copy(folder / outputs(ICL), folder / outputs("my-model"))
    shutil.copy(folder / judged(ICL, "davinci003"), folder / judged("my-model", "davinci003"))
    return folder


def test_the_whole_release_is_read_whichever_systems_a_folder_holds(
    release: Path, tmp_path: Path, stand_ins: None
) -> None:
    folder = whole_release(release, tmp_path / "nine")
    table = paper_table(folder, boot=BOOT)
    rows = {(r["system"], r["baseline"]): r for r in table.iter_rows(named=True)}
    davinci = [s for s, b in rows if b == "davinci003"]
    assert davinci == [*RELEASE_SYSTEMS, "my-model"]  # the paper's order, an unknown system last
    assert {s for s, b in rows if b == "chatgpt"} == VS_CHATGPT
    for name, source in COPIES.items():
        row = rows[(name, "davinci003")]
        assert row["label"] == RELEASE_SYSTEMS[name].label
        assert row["reported_win"] == RELEASE_SYSTEMS[name].reported["davinci003"]
        assert row["win"] == rows[(source, "davinci003")]["win"]
    assert rows[("my-model", "davinci003")]["label"] == "my-model"
    # the figure's rows: every judged pair, the reported number where the paper gives one
    figure = paper_figs.figure_table(folder, boot=BOOT)
    assert (
        figure.height == len(rows)
        and figure.filter(pl.col("system") == "my-model")["reported"].is_null().all()
    )
    assert paper_figs.release_headline(folder, BOOT) is not None
    lengths, per_system = paper_figs.release_lengths(folder, "davinci003", BOOT)
    assert list(per_system) == davinci == lengths["system"].to_list()  # the paper's order, for colours too
    # the explorer: every system with answers, in the paper's order, labelled
    data = explore(folder)
    assert data.systems == [*RELEASE_SYSTEMS, "my-model"]
    assert data.overview.height == 300 * 10 and data.samples == 5
    summary = system_summary(data)
    by_id = {r["system"]: r for r in summary.iter_rows(named=True)}
    assert by_id["llama2-70B_icl-oasstgpt"]["reported_davinci003"] == 0.885
    assert f"{100 * by_id[ICL]['win_davinci003']:.1f}" == "78.4"
    assert by_id["guanaco-13B"]["n_chatgpt"] == 300 and by_id["guanaco-7B"]["n_chatgpt"] == 0
    text = ReleaseExplorer(data).summary().markup
    assert "Llama-2-70B in-context (retrieved)" in text and "(paper: 88.5%)" in text


@pytest.mark.slow
def test_the_figures_show_every_system_of_the_folder(release: Path, tmp_path: Path, stand_ins: None) -> None:
    from PIL import Image

    from icalign_nb.views.result_plots import plot_paper_table, plot_score_distributions
    from icalign_nb.views.style import save_figure

    folder = whole_release(release, tmp_path / "nine")
    verdicts = paper_figs.release_verdicts(folder).filter(pl.col("baseline") == "davinci003")
    fig = plot_score_distributions(verdicts, "GPT-4's scores", "ten systems: the histograms wrap after five")
    drawn = [ax for ax in fig.axes if ax.has_data()]
    assert len(drawn) == 10 and len({round(ax.get_position().y0, 2) for ax in drawn}) == 2
    titles = " ".join(ax.get_title(loc="left") for ax in drawn)
    assert "Guanaco-13B" in titles and "my-model" in titles
    save_figure(fig, "scores", tmp_path)
    table = paper_figs.figure_table(folder, boot=BOOT)
    fig = plot_paper_table(table, note="ten systems vs davinci-003, five vs ChatGPT")
    ticks = [t.get_text().replace("\n", " ") for ax in fig.axes for t in ax.get_xticklabels()]
    assert len(ticks) == 15 and any("Llama-2-70B" in t for t in ticks)
    save_figure(fig, "table", tmp_path)
    with Image.open(tmp_path / "table.png") as image:
        assert image.width > 1600  # room for fifteen systems' names


def test_the_data_directory_gives_the_systems_its_release_folder_holds(release: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    release_copy(release, data_dir / "paper_release", {ZERO: ZERO, "guanaco-7B": ZERO})
    files = release_judgment_files(data_dir=data_dir)
    assert [f.name for f in files] == [judged("guanaco-7B", "davinci003"), judged(ZERO, "davinci003")]


def test_a_subset_has_no_headline_and_only_the_questions_its_systems_answer(
    release: Path, tmp_path: Path
) -> None:
    folder = release_copy(release, tmp_path / "two", {ZERO: ZERO, CHAT: CHAT})
    assert paper_figs.release_headline(folder, BOOT) is None
    assert paper_table(folder, boot=BOOT).height == 3  # two vs davinci-003, the chat model vs ChatGPT
    data = explore(folder)
    assert data.systems == [ZERO, CHAT]
    names = [q.name for q in questions(data.systems)]
    assert "in-context wins, zero-shot loses" not in names and "chat beats in-context" not in names
    for q in questions(data.systems):
        select_prompts(data, q.selection)  # every question it offers works
    view = ReleaseExplorer(data)
    assert "offline judge: not run" in view.prompt_html("lima-010", 2)
    assert "proxy_prompts = 0" in view.summary().markup


def test_one_baseline_only_and_judgments_without_answers(release: Path, tmp_path: Path) -> None:
    folder = release_copy(release, tmp_path / "odd", {CHAT: CHAT}, baselines=("davinci003",))
    shutil.copy(release / outputs(ICL), folder / outputs(ICL))
    shutil.copy(release / judged(ICL, "chatgpt"), folder / judged(ICL, "chatgpt"))  # vs ChatGPT only
    shutil.copy(release / judged(RANDOM, "davinci003"), folder / judged(RANDOM, "davinci003"))  # no answers
    data = explore(folder)
    assert data.systems == [ICL, CHAT]
    assert any(RANDOM in note and "left out" in note for note in data.notes)
    by_id = {r["system"]: r for r in system_summary(data).iter_rows(named=True)}
    assert by_id[ICL]["n_davinci003"] == 0 and by_id[ICL]["n_chatgpt"] == 300
    assert by_id[CHAT]["n_chatgpt"] == 0 and by_id[CHAT]["n_davinci003"] == 1500
    view = ReleaseExplorer(data)
    first, second = view.prompt_html("lima-003", 0), view.prompt_html("lima-003", 1)
    assert "GPT-4 vs ChatGPT:" in first and "GPT-4 vs ChatGPT:" not in second
    assert "GPT-4: this sample was not judged" in second
    assert "not judged" in view.summary().markup
    assert data.overview.filter(pl.col("system") == ICL)["judged"].sum() == 0


def test_a_file_whose_prompts_are_out_of_order_is_refused(release: Path, tmp_path: Path) -> None:
    folder = release_copy(release, tmp_path / "bad", {CHAT: CHAT, MINE: CHAT})
    for name in (CHAT, MINE):
        lines = (folder / outputs(name)).read_text().splitlines()
        lines[4], lines[5] = lines[5], lines[4]
        (folder / outputs(name)).write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=rf"{outputs(CHAT)}: sha256 .* is not the pinned"):
        explore(folder)  # a released file: its pin refuses it
    (folder / outputs(CHAT)).unlink()
    for baseline in ("davinci003", "chatgpt"):
        (folder / judged(CHAT, baseline)).unlink()
    with pytest.raises(UserError, match=rf"{outputs(MINE)}:5: field 'prompt' is not the release's prompt"):
        explore(folder)  # a file without a pin: the prompts' order


def test_a_prompt_shows_gpt4s_scores_and_explanation_and_every_sample(release: Path) -> None:
    data = explore(release)
    view = ReleaseExplorer(data)
    replies = [json.loads(line) for line in (release / judged(ICL, "davinci003")).read_text().splitlines()]
    answers = [json.loads(line) for line in (release / outputs(ICL)).read_text().splitlines()]
    for sample in range(5):
        page = view.prompt_html("lima-003", sample)
        raw = replies[3]["autoeval_text_list"][sample]
        first, _, rest = raw.strip().partition("\n")
        s1, s2 = (float(x) for x in first.split())
        assert html.escape(rest.strip()) in page
        assert f"GPT-4 vs text-davinci-003: {s1:g} vs {s2:g}" in page
        answer = answers[3]["response_list"][sample]
        assert html.escape(answer) in page and f"length: {len(answer):,} characters" in page
        assert html.escape(f"each system's sample {sample + 1} of 5") in page
    davinci = json.loads((release / "davinci003_results.jsonl").read_text().splitlines()[3])["response"]
    assert html.escape(davinci) in page
    with pytest.raises(UserError, match="unknown prompt 'lima-300'"):
        view.prompt_html("lima-300")


def verdict_counts(release: Path, system: str) -> dict[str, dict[str, int]]:
    """GPT-4's wins and losses per prompt, read straight from a judgment file."""
    out = {}
    for i, line in enumerate((release / judged(system, "davinci003")).read_text().splitlines()):
        pairs = [
            tuple(float(x) for x in r.strip().splitlines()[0].split()[:2])
            for r in json.loads(line)["autoeval_text_list"]
        ]
        out[f"lima-{i:03d}"] = {"win": sum(a > b for a, b in pairs), "lose": sum(a < b for a, b in pairs)}
    return out


def test_the_overview_selects_and_sorts_as_the_files_say(release: Path) -> None:
    data = explore(release)
    icl, zero, chat = (verdict_counts(release, s) for s in (ICL, ZERO, CHAT))
    wins_loses = select_prompts(data, Selection("a_wins_b_loses", ICL, ZERO, "prompt"))
    assert wins_loses == [q for q in data.query_ids if icl[q]["win"] >= 3 and zero[q]["lose"] >= 3]
    beats = select_prompts(data, Selection("a_beats_b", CHAT, ICL, "wins"))
    assert set(beats) == {q for q in data.query_ids if chat[q]["win"] > icl[q]["win"]}
    assert [chat[q]["win"] for q in beats] == sorted((chat[q]["win"] for q in beats), reverse=True)
    by_length = select_prompts(data, Selection("all", ICL, None, "length"))
    means = {q: sum(map(len, data.answers[(ICL, q)])) / 5 for q in data.query_ids}
    assert by_length == sorted(data.query_ids, key=lambda q: -means[q])
    assert select_prompts(data, Selection(search="WEBCAM macos")) == ["lima-003"]
    assert select_prompts(data, Selection(search="lima-042")) == ["lima-042"]
    assert select_prompts(data, Selection("disagree", ICL)) == []  # the offline judge was not run
    view = ReleaseExplorer(data)
    page = view.overview_html(Selection("a_beats_b", CHAT, ICL, "wins"))
    assert f"{len(beats)} of 300 prompts: Llama-2-chat-13B beats Llama-2-13B in-context (retrieved)" in page
    assert page.count("<tr>") == len(beats) + 1
    assert len(view.chosen_prompts()) == 3 and view.chosen_prompts("lima-001, lima-007") == [
        "lima-001",
        "lima-007",
    ]
    with pytest.raises(UserError, match="record_prompts: unknown prompt 'lima-1'"):
        view.chosen_prompts("lima-1")


def test_the_offline_judge_is_the_studys_and_its_disagreements_are_counted(
    release: Path, private_cache: Path
) -> None:
    """The study's judge makes the offline verdicts: here the chat model's recorded GPT-4 replies, which
    judge only the chat model's answers (on any other system's it refuses). A system holding the chat
    model's answers with the in-context system's GPT-4 judgments: the recorded judge agrees with GPT-4
    on the chat model and disagrees on the other exactly where the two files do."""
    study = Study(judge=f"recorded:{release / judged(CHAT, 'davinci003')}")
    with pytest.raises(UserError, match="were never judged by it"):
        explore(release, study, prompts=10)
    mixed = release_copy(release, private_cache.parent / "mixed", {CHAT: CHAT}, baselines=("davinci003",))
    shutil.copy(mixed / outputs(CHAT), mixed / outputs(MINE))
    shutil.copy(release / judged(ICL, "davinci003"), mixed / judged(MINE, "davinci003"))
    data = explore(mixed, study, prompts=10)
    assert data.offline_judge is not None and "recorded" in data.offline_judge
    overview = data.overview.filter(pl.col("query_id").is_in([f"lima-{i:03d}" for i in range(10)]))
    assert overview.filter(pl.col("system") == CHAT)["disagree"].sum() == 0
    chat, icl = (
        [
            [r.strip().splitlines()[0] for r in json.loads(line)["autoeval_text_list"]]
            for line in (release / judged(s, "davinci003")).read_text().splitlines()[:10]
        ]
        for s in (CHAT, ICL)
    )

    def sign(first_line: str) -> int:
        a, b = (float(x) for x in first_line.split()[:2])
        return (a > b) - (a < b)

    expected = sum(
        sign(c) * sign(i) == -1
        for cs, ics in zip(chat, icl, strict=True)
        for c, i in zip(cs, ics, strict=True)
    )
    assert overview.filter(pl.col("system") == MINE)["disagree"].sum() == expected > 0
    assert data.overview.filter(pl.col("query_id") == "lima-299")["disagree"].sum() == 0  # not judged
    page = ReleaseExplorer(data).prompt_html("lima-000", 0)
    assert "offline judge: win (+)" in page or "offline judge: lose (-)" in page
    assert "offline judge: not run on this prompt (it judged the first 10" in ReleaseExplorer(
        data
    ).prompt_html("lima-010")
    assert list((private_cache / "judgments").glob("*.jsonl"))  # judged once, cached like any judgment


@pytest.mark.slow  # loads an encoder and a tokenizer
def test_the_papers_demos_or_one_line_why_not(release: Path, shared_data: Path) -> None:
    study = Study(data_dir=str(shared_data))
    missing = explore(release, study, demos=PaperDemoSource())
    line = missing.demos.note
    assert line.startswith(
        "The paper's demos are not shown: the paper's pool (oasst-gpt-9k) could not be had"
    )
    assert "\n" not in line and html.escape(line) in ReleaseExplorer(missing).prompt_html("lima-000")
    # the same retrieval over a pool, encoder and tokenizer that are here
    here = explore(release, demos=PaperDemoSource(pool="starter", encoder="minilm", tokenizer="tiny-random"))
    page = ReleaseExplorer(here).prompt_html("lima-003")
    assert "the demos the paper&#x27;s retrieval picks:" in page and "candidates kept" in page
    r = here.demos.get("lima-003")
    assert r is not None and r.preset == "paper" and len(r.candidates) == 20 and r.demo_ids


def test_the_widget_follows_the_search_the_prompt_and_the_sample(release: Path) -> None:
    view = ReleaseExplorer(explore(release))
    box = view.widget()
    controls, overview, picker, sample, shown = box.children
    question = controls.children[0].children[0]
    search = controls.children[2].children[1]
    assert "wins and Llama-2-13B zero-shot loses" in overview.value and picker.options
    search.value = "webcam"  # lima-003: in-context won all 5 samples, zero-shot lost all 5
    assert [v for _, v in picker.options] == ["lima-003"] and picker.value == "lima-003"
    assert "1 of 300 prompts" in overview.value
    question.value = len(questions(view.data.systems)) - 1  # every prompt: the search stays
    assert [v for _, v in picker.options] == ["lima-003"] and "prompt order" in overview.value
    assert "<h3 style=" in shown.value and "lima-003: How do I find out" in shown.value
    before = shown.value
    sample.value = 2
    assert shown.value != before and "each system&#x27;s sample 3 of 5" in shown.value
    search.value = ""
    assert len(picker.options) == 300 and picker.value == "lima-003"


@pytest.mark.slow  # the fitted judge loads its sentence encoder on a cache miss
def test_the_fitted_judges_offline_verdicts_say_what_moved_them(release: Path) -> None:
    """With the fitted judge (the default), each offline verdict names the three features that moved it,
    said of the system's answer (Assistant 1, as GPT-4 saw it), each with its log-odds share."""
    data = explore(release, Study(), prompts=2)
    assert data.offline_judge is not None and "fitted" in data.offline_judge
    moved = data.offline_reasons[(ZERO, "lima-000")]
    assert sorted(moved) == sorted(data.offline[(ZERO, "lima-000")]) and all(
        len(r) == 3 for r in moved.values()
    )
    words, share = moved[0][0]
    page = ReleaseExplorer(data).prompt_html("lima-000", 0)
    assert html.escape(f"{words} ({share:+.1f})") in page and "the three features that moved it most" in page
