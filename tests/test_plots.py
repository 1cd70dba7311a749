"""Plot functions: every figure renders, has a title and labelled axes, and saves as real PNG + SVG."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
import pytest  # noqa: E402

from icalign_nb.analysis.poolmap import DemoMap, MapConfig, cluster_names  # noqa: E402
from icalign_nb.retrieval.retriever import Candidate, Retrieval  # noqa: E402
from icalign_nb.views import result_plots, retrieval_plots  # noqa: E402
from icalign_nb.views.style import save_figure  # noqa: E402


def _texts(fig: plt.Figure) -> str:
    return " ".join(t.get_text() for t in fig.texts)


def _check_saved(fig: plt.Figure, tmp_path, name: str) -> None:
    paths = save_figure(fig, name, tmp_path)
    assert [p.suffix for p in paths] == [".png", ".svg"]
    image = plt.imread(paths[0])
    assert image.shape[0] > 300 and image.shape[1] > 600
    assert paths[1].read_text(encoding="utf-8").lstrip().startswith("<?xml")
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporaries
    plt.close(fig)


@pytest.fixture()
def retrieval() -> Retrieval:
    reasons = ["kept", "kept", "over_instance_limit", "kept", "over_budget", "after_stop"]
    cands = [
        Candidate(f"d{i}", i + 1, 10.0 - i, 200 + 150 * (r == "over_instance_limit"), r == "kept", r)
        for i, r in enumerate(reasons)
    ]
    return Retrieval("q1", "How do I boil an egg?", "paper", ["d3", "d1", "d0"], cands, "prompt", [], 700)


@pytest.fixture()
def demo_map() -> DemoMap:
    rng = np.random.default_rng(0)
    xy = rng.normal(size=(30, 2))
    cluster = np.repeat([0, 1, 2], 10)
    unit = rng.normal(size=(30, 8))
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    centres = np.stack([unit[cluster == c].mean(0) for c in range(3)])
    ids = [f"d{i}" for i in range(30)]
    return DemoMap(ids, xy, cluster, ["a: x", "b: y", "c: z"], ["a"] * 30, MapConfig(), unit, centres)


def test_retrieval_choices_figure(retrieval: Retrieval, tmp_path) -> None:
    fig = retrieval_plots.plot_retrieval_choices(retrieval)
    assert "3 of 6 candidates kept" in _texts(fig)
    assert all(ax.get_ylabel() for ax in fig.axes)
    legend = " ".join(t.get_text() for t in fig.legends[0].get_texts())
    assert "kept" in legend and "700 tokens" in legend and "per-demo limit" in legend
    _check_saved(fig, tmp_path, "choices")


def test_demo_map_with_queries_and_links(demo_map: DemoMap, tmp_path) -> None:
    qxy, nearest = demo_map.place(demo_map.unit[:2] + 0.01)
    assert qxy.shape == (2, 2) and nearest.tolist() == [0, 0]
    fig = retrieval_plots.plot_demo_map(
        demo_map, queries_xy=qxy, query_labels=["first?", "second?"], links={0: ["d1", "d2"]}
    )
    legend = " ".join(t.get_text() for t in fig.axes[0].get_legend().get_texts())
    assert "a: x (10)" in legend and "Q1: first?" in legend and "evaluation query" in legend
    assert fig.axes[0].get_xlabel().startswith("UMAP")
    _check_saved(fig, tmp_path, "map")


def test_demos_kept_winrates_breakdown_paper_table(tmp_path) -> None:
    _check_saved(retrieval_plots.plot_demos_kept([8, 9, 9, 10, 12], budget=3000), tmp_path, "kept")
    table = pl.DataFrame(
        {
            "system": ["zero-shot", "in-context"],
            "n": [10, 10],
            "win": [0.1, 0.6],
            "draw": [0.1, 0.1],
            "lose": [0.8, 0.3],
            "ci_low": [0.0, 0.3],
            "ci_high": [0.3, 0.9],
        }
    )
    fig = result_plots.plot_winrates(table, "davinci-003")
    assert "proxy" in _texts(fig)  # the default note labels the proxy judge
    _check_saved(fig, tmp_path, "winrate")
    by = table.with_columns(pl.Series("group", ["1-5", "1-5"]))
    _check_saved(
        result_plots.plot_breakdown(by, "group", "demos (count)", "Win rate by demos"), tmp_path, "bd"
    )
    paper = pl.DataFrame(
        {
            "system": ["zero-shot", "in-context", "in-context"],
            "baseline": ["davinci-003", "davinci-003", "ChatGPT"],
            "reported": [11.4, 78.4, 16.3],
            "recomputed": [11.4, 78.4, None],
        }
    )
    _check_saved(result_plots.plot_paper_table(paper), tmp_path, "paper")
    agreement = pl.DataFrame(
        {"system": ["a"], "agreement": [0.8], "ci_low": [0.7], "ci_high": [0.9], "decisive": [9]}
    )
    _check_saved(result_plots.plot_agreement(agreement), tmp_path, "agreement")


def test_generation_summary(tmp_path) -> None:
    stats = pl.DataFrame(
        {
            "system": ["zero-shot", "in-context"],
            "answers": [4, 4],
            "prompt_tokens": [20.0, 2900.0],
            "answer_tokens": [30.0, 80.0],
            "stopped_at_stop": [0, 3],
            "stopped_at_eos": [3, 0],
            "hit_length_cap": [1, 1],
        }
    )
    _check_saved(result_plots.plot_generation_summary(stats), tmp_path, "gen")


def test_cluster_names_use_category_and_terms() -> None:
    texts = ["python function list", "python code loop", "bake bread oven", "bread flour oven", "bread rolls"]
    categories = ["coding", "coding", "cooking", "cooking", "coding"]
    names = cluster_names(texts, categories, np.array([0, 0, 1, 1, 1]), 2, 2)
    assert names[0] == "coding 100%: python"  # a word in one text only, or a request word, never names it
    assert names[1] == "cooking 67%: bread, oven"


def test_bars_draw_the_tables_own_numbers_under_their_labels(tmp_path) -> None:
    table = pl.DataFrame(
        {
            "system": ["paper", "random", "paper", "random"],
            "label": ["in-context (retrieved demos)", "in-context (random demos)"] * 2,
            "group": ["short", "short", "long", "long"],
            "n": [40, 40, 40, 5],
            "win": [0.6, 0.4, 0.7, 0.5],
            "ci_low": [0.45, 0.3, 0.55, 0.2],
            "ci_high": [0.75, 0.55, 0.85, 0.8],
        }
    )
    fig = result_plots.plot_breakdown(
        table, "group", "length", "Win rate by length", all_systems=["paper", "random"]
    )
    ax = fig.axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[:2] == ["in-context (retrieved demos)", "in-context (random demos)"]  # labels, not ids
    bars = {round(b.get_height(), 6): b for c in ax.containers for b in c}
    assert sorted(bars) == [40, 50, 60, 70]  # the estimates as given, not re-estimated
    drawn = [ln.get_ydata() for ln in ax.lines if np.isfinite(ln.get_ydata()).any()]
    spans = sorted((round(np.nanmin(y), 6), round(np.nanmax(y), 6)) for y in drawn)
    assert spans == [(30, 55), (45, 75), (55, 85)]  # the given intervals; none for the group of 5
    assert bars[50].get_hatch() == "//" and bars[60].get_hatch() in (None, "")
    assert "n = 5–40" in " ".join(t.get_text() for t in ax.get_xticklabels())
    _check_saved(fig, tmp_path, "breakdown")
    ids_only = result_plots.plot_winrates(
        table.drop("label").filter(pl.col("group") == "short"), "davinci-003"
    )
    assert [t.get_text() for t in ids_only.axes[0].get_yticklabels()] == ["paper", "random"]
    plt.close(ids_only)


def test_head_to_head_draws_each_pairs_shares_and_net_preference(tmp_path) -> None:
    table = pl.DataFrame(
        {
            "label_a": ["in-context (retrieved demos)", "instruction-tuned chat model (zero-shot)"],
            "label_b": ["zero-shot (direct prompt)", "in-context (retrieved demos)"],
            "n": [44, 44],
            "win": [0.5, 0.25],
            "draw": [0.2, 0.05],
            "lose": [0.3, 0.7],
            "win_ci_low": [0.35, 0.1],
            "win_ci_high": [0.65, 0.4],
            "net": [0.2, -0.45],
            "net_ci_low": [-0.1, -0.7],
            "net_ci_high": [0.45, -0.2],
        }
    )
    fig = result_plots.plot_head_to_head(table, "Head to head", "a subtitle")
    shares, net = fig.axes[:2]
    widths = sorted(round(p.get_width(), 6) for p in shares.patches)
    assert widths == [5, 20, 25, 30, 50, 70]  # win, draw and lose of both pairs, as given (%)
    assert sorted(round(p.get_width(), 6) for p in net.patches) == [-45, 20]
    labels = [t.get_text() for t in shares.get_yticklabels()]
    assert labels[0] == "in-context (retrieved demos)\nagainst zero-shot (direct prompt)"
    texts = [t.get_text() for t in net.texts]
    assert texts == ["+20 [-10, +45]", "-45 [-70, -20]"]
    _check_saved(fig, tmp_path, "head_to_head")
