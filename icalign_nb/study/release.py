"""The release's tables behind notebook 05's figures: reported win rates, recomputed ones, the headline,
length, and an offline judge's view of the same answers. Systems and baselines stay keyed by their
release ids; each table carries `label` (and `vs` for the baseline) for display."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from ..analysis.agreement import agreement_on_release
from ..analysis.length import answer_lengths, with_length_control
from ..analysis.paper_table import paper_table, reported_table
from ..analysis.winrates import Bootstrap, headline_numbers, paired_comparison, win_rates
from ..checks import in_range
from ..data.release import release_judgment_files, release_label, release_names, release_order
from ..judging.run import JudgeRun
from ..judging.spec import DEFAULT_JUDGE, parse_judge_spec
from ..judging.verdicts import load_release_verdicts

RELEASE_HINT = (
    "To recompute from the release: set ICALIGN_DATA_DIR to a folder holding paper_release/ "
    "(or pass -p release_dir DIR), or run `icalign paper-table` once online to fetch it "
    "(pinned, sha256-checked)."
)
ZERO_SHOT, IN_CONTEXT = "llama2base-13B_zeroshot", "llama2-13B_icl-oasstgpt"  # the paper's headline


@dataclass(frozen=True)
class ProxySetup:
    """How an offline judge is run on the release's answers."""

    baseline: str = "davinci003"  # release baseline the systems are compared with
    reference: str = "chatgpt"  # release answers a reference-guided judge measures closeness to
    judge: str = DEFAULT_JUDGE  # judge spec
    prompts: int = 300  # first N prompts of the 300 (fewer: faster, wider intervals)

    def __post_init__(self) -> None:
        in_range("proxy_prompts", self.prompts, at_least=1, whole=True)
        parse_judge_spec(self.judge)


def labelled(table: pl.DataFrame) -> pl.DataFrame:
    """A release table with `label` (system) and `vs` (baseline) columns for display, in the paper's order."""
    out = table.with_columns(
        pl.col("system").map_elements(release_label, return_dtype=pl.String).alias("label")
    )
    if "baseline" in out.columns:
        out = out.with_columns(
            pl.col("baseline").map_elements(release_label, return_dtype=pl.String).alias("vs")
        )
    order = pl.col("system").map_elements(release_order, return_dtype=pl.Int64)
    return out.with_columns(order.alias("_order")).sort("_order", maintain_order=True).drop("_order")


def figure_table(
    release: Path | None, proxy: pl.DataFrame | None = None, boot: Bootstrap | None = None
) -> pl.DataFrame:
    """Rows for `plot_paper_table`: reported, recomputed with CIs (if the release is here), an offline
    judge's (if run), in percent."""
    if release is None:
        return labelled(reported_table().with_columns((pl.col("reported_win") * 100).alias("reported")))
    table = paper_table(release, boot=boot)  # every system the folder holds; reported where the paper did
    out = _percent(table, "recomputed").with_columns((table["reported_win"] * 100).alias("reported"))
    if proxy is not None and proxy.height:
        out = out.join(_percent(proxy, "proxy"), on=["system", "baseline"], how="left")
    return labelled(out)


def _percent(table: pl.DataFrame, name: str) -> pl.DataFrame:
    """A win-rate table's win and interval in percent, named `name`, `name_ci_low`, `name_ci_high`."""
    return table.select(
        "system",
        "baseline",
        (pl.col("win") * 100).alias(name),
        *((pl.col(c) * 100).alias(f"{name}_{c}") for c in ("ci_low", "ci_high")),
    )


def proxy_on_release(release: Path, setup: ProxySetup) -> tuple[pl.DataFrame, pl.DataFrame]:
    """An offline judge on the release's answers: (its verdicts per system, its agreement with GPT-4)."""
    judge = JudgeRun(Path("."), setup.baseline, parse_judge_spec(setup.judge), reference=setup.reference)
    files = judgment_files(release, setup.baseline)
    return agreement_on_release(files, judge, release, prompts=setup.prompts)


def judgment_files(release: Path, baseline: str) -> list[Path]:
    """The folder's judgment files against one baseline, its systems in the paper's order (unknown last)."""
    return sorted(
        release.glob(f"*_vs_{baseline}_autoeval.jsonl"),
        key=lambda f: (release_order(release_names(f)[0]), f.name),
    )


def release_verdicts(release: Path) -> pl.DataFrame:
    """The GPT-4 verdicts of every judgment file of the release, one table (labelled)."""
    return labelled(pl.concat([load_release_verdicts(f) for f in release_judgment_files(release)]))


def release_headline(release: Path, boot: Bootstrap) -> tuple[tuple, tuple, dict] | None:
    """The paper's headline from its release: (zero-shot win, CI), (in-context win, CI), and their paired
    ratio and difference, all vs text-davinci-003 (the arguments of `plot_headline`); None when the
    folder lacks either system's judgments."""
    files = [release / f"{s}_vs_davinci003_autoeval.jsonl" for s in (ZERO_SHOT, IN_CONTEXT)]
    if not all(f.is_file() for f in files):
        return None
    zero, icl = (load_release_verdicts(f) for f in files)
    top = paired_comparison(icl, zero, boot)
    rates = [win_rates(v, boot).row(0, named=True) for v in (zero, icl)]
    zero_w, icl_w = ((r["win"], r["ci_low"], r["ci_high"]) for r in rates)
    return zero_w, icl_w, headline_numbers(top)


def release_lengths(
    release: Path, baseline: str = "davinci003", boot: Bootstrap | None = None
) -> tuple[pl.DataFrame, dict[str, pl.DataFrame]]:
    """Every release system's verdicts against `baseline` with its answers' length difference: (win rates
    with the length-controlled columns, labelled; per-system features for `system_breakdowns`, by id, in
    the paper's order)."""
    verdicts, lengths = [], {}
    for f in judgment_files(release, baseline):
        system, _ = release_names(f)
        verdicts.append(load_release_verdicts(f))
        lengths[system] = answer_lengths(f, baseline)
    table = pl.concat(verdicts)
    lc = with_length_control(win_rates(table, boot), table, lengths, boot)
    return labelled(lc), {
        name: feats.rename({"length_diff": "length_diff_chars"}) for name, feats in lengths.items()
    }
