"""The paper's table: win rates recomputed from the release's judgments, beside the reported numbers."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from ..data.release import release_judgment_files
from ..judging.verdicts import load_release_verdicts
from .winrates import Bootstrap, win_rates

# Facts from the paper, not computed here. Source: Han (2023), "In-Context Alignment: Chat with
# Vanilla Language Models Before Fine-Tuning", arXiv:2308.04275 (GPT-4-0613 judge, LIMA test,
# 300 prompts; 5 samples per prompt vs text-davinci-003, 1 vs ChatGPT), as transcribed in the
# project's design notes (shared/DESIGN.md). Win rate = wins / comparisons.
REPORTED_SOURCE = "Han (2023), arXiv:2308.04275, GPT-4-judged win rates on the LIMA test prompts"
REPORTED = pl.DataFrame(
    {
        "system": [
            "llama2base-13B_zeroshot",
            "llama2-13B_icl-oasstgpt",
            "llama2-13B_icl-random-oasstgpt",
            "llama2chat-13B",
            "llama2-13B_icl-oasstgpt",
            "llama2-13B_icl-random-oasstgpt",
            "llama2chat-13B",
        ],
        "baseline": ["davinci003"] * 4 + ["chatgpt"] * 3,
        "reported_win": [0.114, 0.784, 0.629, 0.841, 0.163, 0.107, 0.307],
    }
)

# Readable names of the release's systems and baselines.
LABELS = {
    "llama2base-13B_zeroshot": "Llama-2-13B zero-shot",
    "llama2-13B_icl-oasstgpt": "Llama-2-13B in-context (retrieved)",
    "llama2-13B_icl-random-oasstgpt": "Llama-2-13B in-context (random)",
    "llama2chat-13B": "Llama-2-chat-13B",
    "davinci003": "text-davinci-003",
    "chatgpt": "ChatGPT",
}


def paper_table(
    release: str | Path | None = None, data_dir: str | Path | None = None, boot: Bootstrap | None = None
) -> pl.DataFrame:
    """Every release judgment file recomputed (win/draw/lose, CI, means) beside the reported win rate."""
    files = release_judgment_files(release, data_dir)
    verdicts = pl.concat([load_release_verdicts(f) for f in files])
    table = win_rates(verdicts, boot).join(REPORTED, on=["system", "baseline"], how="left")
    order = {name: i for i, name in enumerate(LABELS)}
    table = table.with_columns(
        pl.col("system").replace_strict(LABELS, default=pl.col("system")).alias("label"),
        pl.col("baseline").replace_strict(LABELS, default=pl.col("baseline")).alias("vs"),
        pl.col("baseline").replace_strict(order, default=len(order)).alias("_b"),
        pl.col("system").replace_strict(order, default=len(order)).alias("_s"),
    )
    return table.sort(["_b", "_s", "system"]).drop("_b", "_s")
