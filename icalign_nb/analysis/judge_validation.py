"""Validating the fitted judge: three offline judges against GPT-4's verdicts, on the same footing.

The fitted judge out of fit (nested: each system left out of the fit, its prompts split in five
folds, so no validated verdict's system or prompt was fitted; also with prompts only held out, and
without reference answers), the embedding proxy and "the longer answer wins", all read from the
same feature differences and compared with GPT-4's verdicts the same way (`analysis.agreement`).
A validated fit is the shipped coefficients file's recipe: fit on everything, record the numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl

from ..data.fetch import fetch
from ..data.release import release_judgment_files
from ..data.remote import REMOTE_FILES
from ..files import sha256_file
from ..judging.degenerate import CONSTRUCTED, KINDS, constructed_losses
from ..judging.features import FEATURE_NAMES, FEATURES, embedder
from ..judging.fit import (
    DAVINCI,
    Coefficients,
    FitData,
    fit_data,
    fit_digest,
    fit_models,
    out_of_fit,
    read_coefficients,
)
from ..judging.labelled import Labelled, annotations_labelled, release_labelled, source_digests
from ..judging.spec import EMBEDDING_DRAW_MARGIN, SHIPPED, JudgeSpec, coefficients_path
from .agreement import agreement_row
from .length import length_controlled
from .winrates import Bootstrap

POOLED = "annotated models (pooled)"
ANNOTATIONS = tuple(sorted(r for r in REMOTE_FILES if r.startswith("alpaca_eval/annotations/")))
ANNOTATION_REFERENCE = "alpaca-eval-gpt4"  # GPT-4's own answers to the 805 instructions
RELEASE_REFERENCE = "chatgpt"  # ChatGPT's answers to the LIMA prompts


def labelled_sources(
    release: str | Path | None,
    annotations: Sequence[str | Path] | None,
    reference: str | None = None,
    data_dir: str | Path | None = None,
) -> tuple[list[Labelled], dict[str, str]]:
    """GPT-4's verdicts to fit to, and each input file's sha256: a folder of release-format verdicts
    and/or AlpacaEval annotation files (with `reference` answers); with neither, the pinned release
    and AlpacaEval 1's pinned GPT-4 annotations (reference: GPT-4's answers)."""
    files: list[Path] = []
    notes: list[Path] = []
    if release is None and annotations is None:
        files = release_judgment_files(None, data_dir)
        notes = [fetch(name, data_dir) for name in ANNOTATIONS]
        reference = reference or ANNOTATION_REFERENCE
    else:
        files = release_judgment_files(release, data_dir) if release is not None else []
        notes = [Path(a) for a in annotations or []]
    items = release_labelled(files, RELEASE_REFERENCE, data_dir) + annotations_labelled(
        notes, reference, data_dir
    )
    return items, source_digests([*files, *notes])


def validated_fit(
    items: Sequence[Labelled],
    sources: dict[str, str],
    boot: Bootstrap | None = None,
    validate: bool = True,
    say: Callable[[str], None] | None = None,
    constructed: bool = True,
) -> Coefficients:
    """Fit the judge on every item (plus, unless told not to, constructed degenerate losses built from
    their baseline answers), and (asked) record its nested out-of-fit validation beside the embedding
    proxy's and the length rule's."""

    if constructed:
        items = [*items, *constructed_losses(items)]
    if say:
        say(f"features of {len(items)} comparisons (texts embedded once, then read from the cache)")
    data = fit_data(items, embedder().embed)
    models = fit_models(data)
    validation: dict = {}
    if validate:
        verdicts = validation_verdicts(data, say)
        table = validation_table(verdicts, boot)
        lengths = length_controlled_table(verdicts, data, boot)
        validation = validation_summary(table, win_rate_spearman(table, sorted(DAVINCI)), lengths)
    verdicts = data.verdicts
    described = {
        "sha256": fit_digest(items),
        "sources": sources,
        "comparisons": len(items),
        "decisive": int(np.isin(verdicts, ["win", "lose"]).sum()),
        "with_reference": int(data.has_reference.sum()),
        "systems": sorted({f"{x.system} vs {x.baseline}" for x in items if x.judge != CONSTRUCTED}),
        "constructed": {
            kind: sorted({x.query_id for x in items if x.system == f"{CONSTRUCTED}:{kind}"}) for kind in KINDS
        },
    }
    return Coefficients(models, described, validation)


JUDGES = {
    "fitted": "fitted judge (out of fit: system and prompts)",
    "fitted_prompts": "fitted judge (out of fit: prompts only)",
    "fitted_no_reference": "fitted judge without reference (out of fit: system and prompts)",
    "embedding": "embedding proxy",
    "length": "the longer answer wins",
}


def without_references(data: FitData) -> FitData:
    """The same comparisons as if none had a reference answer."""
    diffs = data.diffs.copy()
    diffs[:, [FEATURE_NAMES.index(f.name) for f in FEATURES if f.reference]] = np.nan
    return FitData([replace(x, reference=None) for x in data.items], diffs)


def embedding_verdicts(data: FitData, margin: float = EMBEDDING_DRAW_MARGIN) -> np.ndarray:
    """The embedding proxy's verdicts, read from the reference-cosine difference (`invalid`: no reference).

    The same number the embedding judge compares: the two answers' MiniLM cosines to the reference
    (first 256 tokens), the system's minus the baseline's, a draw within `margin`."""
    d = data.diffs[:, FEATURE_NAMES.index("reference_cosine")]
    out = np.where(d > margin, "win", np.where(d < -margin, "lose", "draw"))
    return np.where(np.isnan(d), "invalid", out)


def length_verdicts(data: FitData) -> np.ndarray:
    """ "The longer answer wins": more words wins, equal word counts draw."""
    d = data.diffs[:, FEATURE_NAMES.index("log_words")]
    return np.where(d > 0, "win", np.where(d < 0, "lose", "draw"))


def validation_verdicts(data: FitData, say: Callable[[str], None] | None = None) -> pl.DataFrame:
    """Every labelled comparison with GPT-4's verdict and each offline judge's (`JUDGES`), one row each."""
    columns: dict[str, np.ndarray] = {}
    if say:
        say("fitting the nested out-of-fit models (each system left out, prompts in 5 folds)")
    columns["fitted"] = out_of_fit(data)[1]
    if say:
        say("fitting with prompts only held out")
    columns["fitted_prompts"] = out_of_fit(data, leave_system_out=False)[1]
    if say:
        say("fitting without reference answers")
    columns["fitted_no_reference"] = out_of_fit(without_references(data))[1]
    columns["embedding"] = embedding_verdicts(data)
    columns["length"] = length_verdicts(data)
    base = pl.DataFrame(
        {
            "source": [x.judge for x in data.items],
            "system": [x.system for x in data.items],
            "baseline": [x.baseline for x in data.items],
            "query_id": [x.query_id for x in data.items],
            "sample": [x.sample for x in data.items],
            "ref": [x.verdict for x in data.items],
        }
    )
    frames = [
        base.with_columns(judge=pl.lit(name), verdict=pl.Series(v.tolist())) for name, v in columns.items()
    ]
    return pl.concat(frames).filter(pl.col("source") != CONSTRUCTED).drop("source")


def validation_table(
    verdicts: pl.DataFrame, boot: Bootstrap | None = None, pooled: bool = True
) -> pl.DataFrame:
    """Per judge, system and baseline: agreement with GPT-4 and both win rates, with intervals; plus one
    row per judge pooling the annotated models (the systems whose baseline is AlpacaEval's davinci-003)."""
    boot = boot or Bootstrap()
    valid = verdicts.filter((pl.col("ref") != "invalid") & (pl.col("verdict") != "invalid"))
    rows = []
    for (judge, system, baseline), group in valid.group_by(
        "judge", "system", "baseline", maintain_order=True
    ):
        rows.append({"judge": judge, "system": system, "baseline": baseline, **agreement_row(group, boot)})
    if pooled:
        annotated = valid.filter(pl.col("query_id").str.starts_with("ae-"))
        for (judge,), group in annotated.group_by("judge", maintain_order=True):
            keyed = group.with_columns(query_id=pl.col("query_id") + "/" + pl.col("system"))
            rows.append(
                {
                    "judge": judge,
                    "system": POOLED,
                    "baseline": group["baseline"][0],
                    **agreement_row(keyed, boot),
                }
            )
    return pl.DataFrame(rows, infer_schema_length=None)


def win_rate_spearman(table: pl.DataFrame, baselines: Sequence[str]) -> pl.DataFrame:
    """Per judge: Spearman correlation of its win rates with GPT-4's across the systems judged against
    one of `baselines` (the pooled row left out), and how many systems that is."""
    rows = []
    systems = table.filter(pl.col("baseline").is_in(list(baselines)) & (pl.col("system") != POOLED))
    for (judge,), group in systems.group_by("judge", maintain_order=True):
        rho = spearman_rho(group["win_judge"], group["win_reference"])
        err = (group["win_judge"] - group["win_reference"]).abs()
        rows.append(
            {"judge": judge, "systems": group.height, "spearman": float(rho), "max_win_gap": float(err.max())}
        )
    return pl.DataFrame(rows)


def spearman_rho(a: pl.Series, b: pl.Series) -> float:
    """Spearman's rank correlation: Pearson's on average ranks (ties share their mean rank)."""
    ra, rb = a.rank("average").to_numpy(), b.rank("average").to_numpy()
    return float(np.corrcoef(ra, rb)[0, 1]) if len(ra) > 1 else float("nan")


def validation_summary(
    table: pl.DataFrame, spearman: pl.DataFrame, lengths: pl.DataFrame | None = None
) -> dict:
    """The validation numbers a coefficients file records: per system and baseline, GPT-4's win rate and
    each judge's agreement and win rate, each as [value, 95% low, 95% high], and (given) the
    length-controlled win rates; per judge, the Spearman correlation of win rates across systems vs
    davinci-003 and the largest win-rate gap."""
    systems: dict[tuple[str, str], dict] = {}
    for row in table.iter_rows(named=True):
        entry = systems.setdefault(
            (row["system"], row["baseline"]),
            {
                "system": row["system"],
                "baseline": row["baseline"],
                "n": row["n"],
                "decisive": row["decisive"],
                "gpt4_win": _triple(row, "win_reference"),
            },
        )
        entry[row["judge"]] = {"agreement": _triple(row, "agreement", "ci"), "win": _triple(row, "win_judge")}
    for row in (lengths if lengths is not None else pl.DataFrame()).iter_rows(named=True):
        entry = systems.get((row["system"], row["baseline"]))
        if entry is not None:
            entry.setdefault("length_controlled", {})[row["judge"]] = _triple(row, "lc_win", "lc_ci")
    return {
        "judges": JUDGES,
        "definition": "agreement: share of GPT-4's decisive verdicts the judge matched (its draws miss); "
        "[value, 95% interval] resampling prompts",
        "systems": list(systems.values()),
        "spearman": {
            r["judge"]: {
                "systems": r["systems"],
                "spearman": _round(r["spearman"]),
                "max_win_gap": _round(r["max_win_gap"]),
            }
            for r in spearman.to_dicts()
        },
    }


def length_controlled_table(
    verdicts: pl.DataFrame, data: FitData, boot: Bootstrap | None = None, judges: Sequence[str] = ("fitted",)
) -> pl.DataFrame:
    """Per system and baseline, the length-controlled win rate (`analysis.length`) of GPT-4's verdicts
    (judge `gpt4`) and of each of `judges`' (out of fit): how much of a win rate is more than length."""

    diffs = pl.DataFrame(
        {
            "system": [x.system for x in data.items],
            "baseline": [x.baseline for x in data.items],
            "query_id": [x.query_id for x in data.items],
            "sample": [x.sample for x in data.items],
            "length_diff": [len(x.answer) - len(x.baseline_answer) for x in data.items],
        }
    )
    rows = []
    chosen = verdicts.filter(pl.col("judge").is_in(list(judges)))
    for (system, baseline), part in chosen.group_by("system", "baseline", maintain_order=True):
        lengths = diffs.filter((pl.col("system") == system) & (pl.col("baseline") == baseline))
        lengths = lengths.select("query_id", "sample", "length_diff")
        gpt4 = part.filter(pl.col("judge") == judges[0]).with_columns(
            verdict=pl.col("ref"), order=pl.lit("single")
        )
        for judge, frame in (("gpt4", gpt4), *((j, part.filter(pl.col("judge") == j)) for j in judges)):
            frame = frame.with_columns(pl.lit(judge).alias("judge"), order=pl.lit("single"))
            lc = length_controlled(frame, lengths, boot)
            rows.append({"judge": judge, "system": system, "baseline": baseline, **lc})
    return pl.DataFrame(rows, infer_schema_length=None)


def recorded_validation(validation: dict) -> pl.DataFrame:
    """A coefficients file's recorded validation as the table `validation_table` makes."""
    rows = []
    for entry in validation.get("systems", []):
        for judge in JUDGES:
            if judge not in entry:
                continue
            agreement, win, ref = entry[judge]["agreement"], entry[judge]["win"], entry["gpt4_win"]
            rows.append(
                {
                    "judge": judge,
                    "system": entry["system"],
                    "baseline": entry["baseline"],
                    "n": entry["n"],
                    "decisive": entry["decisive"],
                    **dict(zip(("agreement", "ci_low", "ci_high"), agreement, strict=True)),
                    **dict(zip(("win_judge", "win_judge_ci_low", "win_judge_ci_high"), win, strict=True)),
                    **dict(
                        zip(
                            ("win_reference", "win_reference_ci_low", "win_reference_ci_high"),
                            ref,
                            strict=True,
                        )
                    ),
                }
            )
    return pl.DataFrame(rows, infer_schema_length=None)


def recorded_length_control(validation: dict) -> pl.DataFrame:
    """A coefficients file's recorded length-controlled win rates: one row per system and baseline, GPT-4's
    and the fitted judge's (out of fit) beside their raw win rates, in percent."""
    rows = []
    for entry in validation.get("systems", []):
        lc = entry.get("length_controlled")
        if not lc or "fitted" not in entry:
            continue
        rows.append(
            {
                "system": entry["system"],
                "baseline": entry["baseline"],
                "GPT-4 win": _percent(entry["gpt4_win"][0]),
                "GPT-4 at equal length": _percent(lc["gpt4"][0]),
                "GPT-4 95% interval": _interval(lc["gpt4"]),
                "fitted win": _percent(entry["fitted"]["win"][0]),
                "fitted at equal length": _percent(lc["fitted"][0]),
                "fitted 95% interval": _interval(lc["fitted"]),
            }
        )
    return pl.DataFrame(rows, infer_schema_length=None)


def _percent(value: float | None) -> float | None:
    return None if value is None else round(100 * value, 1)


def _interval(triple: list) -> str:
    return "-" if triple[1] is None else f"[{100 * triple[1]:.1f}, {100 * triple[2]:.1f}]"


def _triple(row: dict, key: str, ci: str | None = None) -> list[float | None]:
    """[value, low, high] of a column and its interval columns (`<ci>_low`, else `<key>_ci_low`)."""
    prefix = ci or f"{key}_ci"
    return [_round(row[key]), _round(row[f"{prefix}_low"]), _round(row[f"{prefix}_high"])]


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def out_of_fit_agreement(
    items: Sequence[Labelled], boot: Bootstrap | None = None, say: Callable[[str], None] | None = None
) -> pl.DataFrame:
    """The fitted judge refitted on `items`, nested (each system left out, prompts in five folds), and
    its agreement with their verdicts per system and baseline."""

    if say:
        say(f"features of {len(items)} comparisons; nested refits (each system left out, prompts in 5 folds)")
    data = fit_data(items, embedder().embed)
    verdicts = out_of_fit(data)[1]
    frame = pl.DataFrame(
        {
            "system": [x.system for x in items],
            "baseline": [x.baseline for x in items],
            "query_id": [x.query_id for x in items],
            "sample": [x.sample for x in items],
            "ref": [x.verdict for x in items],
            "verdict": verdicts.tolist(),
            "judge": ["fitted (out of fit)"] * len(items),
        }
    )
    return validation_table(frame, boot, pooled=False)


def in_fit_note(spec: JudgeSpec, files: Sequence[Path]) -> str | None:
    """A warning line when a fitted judge's coefficients were fitted to some of these verdict files."""

    fitted = set(read_coefficients(coefficients_path(spec.model)).fit_data.get("sources", {}).values())
    inside = [Path(f).name for f in files if sha256_file(Path(f)) in fitted]
    if not inside:
        return None
    shown = ", ".join(inside[:3]) + (", ..." if len(inside) > 3 else "")
    return (
        f"note: the fitted judge was fitted to {len(inside)} of these verdict files ({shown}): "
        "agreement on them is in fit; --out-of-fit measures it out of fit"
    )


def fitted_judge_validation(
    recompute: bool = False,
    data_dir: str | Path | None = None,
    boot: Bootstrap | None = None,
    say: Callable[[str], None] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, str]:
    """The shipped fitted judge's validation: (table as `validation_table`, Spearman per judge,
    length-controlled win rates as `recorded_length_control`, where the numbers come from). Recorded in
    its coefficients file when it was fitted, or (`recompute`) measured again here from the pinned
    release and annotations (minutes; embeddings are cached)."""

    if recompute:
        items, sources = labelled_sources(None, None, None, data_dir)
        data = fit_data([*items, *constructed_losses(items)], _embedder())
        verdicts = validation_verdicts(data, say)
        table = validation_table(verdicts, boot)
        summary = validation_summary(
            table, win_rate_spearman(table, sorted(DAVINCI)), length_controlled_table(verdicts, data, boot)
        )
        source = f"measured now ({len(sources)} verdict files)"
    else:
        coefficients = read_coefficients(coefficients_path(SHIPPED))
        summary = coefficients.validation
        source = (
            f"recorded in the shipped coefficients (fit data sha256 {coefficients.fit_data['sha256'][:12]})"
        )
    table = recorded_validation(summary)
    return table, win_rate_spearman(table, sorted(DAVINCI)), recorded_length_control(summary), source


def _embedder() -> Callable[[list[str]], np.ndarray]:

    return embedder().embed


def validation_wide(
    table: pl.DataFrame, judges: Sequence[str] = ("fitted", "embedding", "length")
) -> pl.DataFrame:
    """One row per system: GPT-4's win rate, then each judge's agreement and win rate (percent)."""
    base = table.filter(pl.col("judge") == judges[0]).select(
        "system", "baseline", "decisive", (100 * pl.col("win_reference")).round(1).alias("GPT-4 win")
    )
    for judge in judges:
        part = table.filter(pl.col("judge") == judge).select(
            "system",
            "baseline",
            (100 * pl.col("agreement")).round(1).alias(f"{judge} agreement"),
            (100 * pl.col("win_judge")).round(1).alias(f"{judge} win"),
        )
        base = base.join(part, on=["system", "baseline"], how="left")
    return base
