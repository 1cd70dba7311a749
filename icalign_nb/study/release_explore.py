"""What notebook 08 shows of the paper's release: every prompt's answers by each system the release folder
holds, GPT-4's two scores and written explanation of each, an offline judge's verdicts on the same
answers, a per-prompt overview to sort and filter, and the demos the paper's retrieval picks for a
prompt where its pool, encoder and tokenizer can be had.

Systems are the stems of the folder's `*_outputs_temp0.7.jsonl` files, whichever they are (labelled
with the paper's names where known). GPT-4's verdicts against text-davinci-003 (5 samples) drive the
overview; those against ChatGPT (the release judged one sample) are shown where a file holds them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from ..data.loaders import load_baseline
from ..data.release import (
    RELEASE_BASELINES,
    RELEASE_SYSTEMS,
    load_release_judgments,
    load_release_outputs,
    locate_release,
    release_label,
    release_names,
    release_order,
)
from ..errors import UserError, first_line
from ..judging.backends.fitted import moved_in_words
from ..judging.spec import fitted_models, parse_judge_spec
from ..judging.verdicts import load_release_verdicts
from .release import IN_CONTEXT, ZERO_SHOT, ProxySetup, proxy_on_release
from .study import Study

if TYPE_CHECKING:
    from ..retrieval.retriever import Retrieval, Retriever

OUTPUTS_SUFFIX = "_outputs_temp0.7.jsonl"
MAIN_BASELINE = "davinci003"  # the baseline of the overview: 5 GPT-4 verdicts per prompt and system
CHAT = "llama2chat-13B"  # the paper's aligned model of the same size


@dataclass(frozen=True)
class Judgment:
    """One GPT-4 reply of the release: the two scores of its first line, the verdict, its explanation."""

    score_system: float | None
    score_baseline: float | None
    verdict: str  # win | draw | lose | invalid
    explanation: str  # the reply after its first line

    @property
    def scored(self) -> bool:
        """Whether the reply's two scores could be read."""
        return self.score_system is not None and self.score_baseline is not None


@dataclass(frozen=True)
class PaperDemoSource:
    """Where the paper's demos come from: its pool, encoder and the tokenizer its packing counts with."""

    pool: str = "oasst-gpt-9k"
    encoder: str = "contriever"
    tokenizer: str = "llama-2-13b"


@dataclass
class PaperDemos:
    """The paper's retrieval for the release's prompts, run for one prompt when it is first asked for."""

    retriever: Retriever | None
    prompts: dict[str, str]
    note: str = ""  # why there are no demos (one line), when there are none
    _done: dict[str, Retrieval] = field(default_factory=dict, init=False, repr=False)

    @property
    def pool(self) -> pl.DataFrame:
        """The demonstration pool (empty when there is none)."""
        return self.retriever.pool if self.retriever is not None else pl.DataFrame()

    def get(self, query_id: str) -> Retrieval | None:
        """The demos the paper's retrieval picks for one prompt (None when they cannot be had)."""
        if self.retriever is None:
            return None
        if query_id not in self._done:
            query = pl.DataFrame({"id": [query_id], "prompt": [self.prompts[query_id]]})
            self._done[query_id] = self.retriever.retrieve(query)[0]
        return self._done[query_id]


@dataclass(frozen=True)
class ReleaseExploration:
    """Everything the release explorer shows, indexed by prompt id (`lima-000` …) and system id."""

    release: Path
    query_ids: list[str]
    prompts: dict[str, str]
    baselines: dict[str, dict[str, str]]  # baseline id -> query id -> answer
    systems: list[str]  # system ids, in the paper's order
    labels: dict[str, str]  # system and baseline ids -> what people read
    answers: dict[tuple[str, str], list[str]]  # (system, query id) -> its samples
    gpt4: dict[tuple[str, str, str], dict[int, Judgment]]  # (system, baseline, query id) -> sample -> reply
    offline: dict[tuple[str, str], dict[int, str]]  # (system, query id) -> sample -> offline verdict
    # the same -> what moved the offline verdict: features said of the system's answer, with their log-odds
    # shares toward it (the fitted judge's three strongest; empty for another judge)
    offline_reasons: dict[tuple[str, str], dict[int, list[tuple[str, float]]]]
    offline_judge: str | None  # the offline judge's label (None: not run)
    offline_prompts: int  # the offline judge judged the first this many prompts
    agreement: pl.DataFrame  # the offline judge's agreement with GPT-4 per system
    overview: pl.DataFrame  # one row per (prompt, system): see `overview_table`
    demos: PaperDemos
    notes: list[str]  # what was left out, one line each

    @property
    def samples(self) -> int:
        """Samples per prompt (the most any system has)."""
        return max((len(a) for a in self.answers.values()), default=0)


# ---------------------------------------------------------------- loading


def release_systems(release: Path) -> tuple[list[str], list[str]]:
    """(systems with answers in the folder, in the paper's order; lines about judgment files whose
    system has no answers there)."""
    systems = sorted(
        (p.name.removesuffix(OUTPUTS_SUFFIX) for p in release.glob(f"*{OUTPUTS_SUFFIX}")),
        key=lambda s: (release_order(s), s),
    )
    orphans = sorted({release_names(p)[0] for p in release.glob("*_vs_*_autoeval.jsonl")} - set(systems))
    notes = [f"{s}: judgments but no {s}{OUTPUTS_SUFFIX} in {release}; left out" for s in orphans]
    return systems, notes


def release_prompts(release: Path, systems: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """The prompts in file order (from the davinci-003 answers, else the first system's outputs)."""
    source = release / f"{MAIN_BASELINE}_results.jsonl"
    if source.is_file():
        table = load_baseline(source).select("prompt")
    elif systems:
        table = load_release_outputs(release / f"{systems[0]}{OUTPUTS_SUFFIX}").filter(pl.col("sample") == 0)
    else:
        raise UserError(f"{release}: no *{OUTPUTS_SUFFIX} and no {MAIN_BASELINE}_results.jsonl to explore")
    ids = [f"lima-{i:03d}" for i in range(table.height)]
    return ids, dict(zip(ids, table["prompt"].to_list(), strict=True))


def _check_prompts(path: Path, found: pl.DataFrame, prompts: dict[str, str]) -> None:
    """Refuse a file whose prompts are not the release's, in the same order (answers would be misplaced)."""
    for qid, prompt in found.select("query_id", "prompt").unique("query_id", maintain_order=True).iter_rows():
        if prompts.get(qid, "").strip() != prompt.strip():
            line = int(qid.removeprefix("lima-")) + 1
            raise UserError(f"{path}:{line}: field 'prompt' is not the release's prompt {qid}")


def release_answers(
    release: Path, systems: Sequence[str], prompts: dict[str, str]
) -> dict[tuple[str, str], list[str]]:
    """Every system's sampled answers, by (system, query id)."""
    out: dict[tuple[str, str], list[str]] = {}
    for system in systems:
        path = release / f"{system}{OUTPUTS_SUFFIX}"
        table = load_release_outputs(path)
        _check_prompts(path, table, prompts)
        for qid, _, _, response in table.iter_rows():  # samples in order
            out.setdefault((system, qid), []).append(response)
    return out


def release_judgments(
    release: Path, systems: Sequence[str]
) -> dict[tuple[str, str, str], dict[int, Judgment]]:
    """GPT-4's replies of every judgment file of the folder's systems, by (system, baseline, query id)."""
    out: dict[tuple[str, str, str], dict[int, Judgment]] = {}
    for path in sorted(release.glob("*_vs_*_autoeval.jsonl")):
        system, baseline = release_names(path)
        if system not in systems:
            continue
        raw = load_release_judgments(path)
        scored = load_release_verdicts(path).join(raw, on=["query_id", "sample"])
        for row in scored.iter_rows(named=True):
            _, _, rest = row["raw"].strip().partition("\n")
            out.setdefault((system, baseline, row["query_id"]), {})[row["sample"]] = Judgment(
                row["score_system"], row["score_baseline"], row["verdict"], rest.strip()
            )
    return out


def release_baselines(release: Path, query_ids: Sequence[str]) -> tuple[dict[str, dict[str, str]], list[str]]:
    """The baselines' answers by query id (davinci-003, ChatGPT), and a line for each that is missing."""
    out, notes = {}, []
    for name in RELEASE_BASELINES:
        path = release / f"{name}_results.jsonl"
        if not path.is_file():
            notes.append(f"{release_label(name)}'s answers: no {path.name} in {release}")
            continue
        answers = load_baseline(path)["response"].to_list()
        out[name] = dict(zip(query_ids, answers, strict=False))
    return out, notes


@dataclass(frozen=True)
class Offline:
    """An offline judge's view of the release's answers vs davinci-003."""

    verdicts: dict[tuple[str, str], dict[int, str]]  # (system, query id) -> sample -> verdict
    reasons: dict[tuple[str, str], dict[int, list[tuple[str, float]]]]  # the same -> what moved it (fitted)
    agreement: pl.DataFrame  # its agreement with GPT-4 per system
    judge: str | None  # its label (None: not run)
    notes: list[str]  # what it left out, one line each


def offline_verdicts(release: Path, study: Study, prompts: int) -> Offline:
    """The study's judge on the release's answers vs davinci-003 (judged once, cached like any judgment):
    its verdicts, for the fitted judge what moved each (its three strongest features, said of the system's
    answer, in words), its agreement with GPT-4, its label, and lines on what it left out."""
    if prompts <= 0:
        return Offline({}, {}, pl.DataFrame(), None, ["the offline judge was not run (proxy_prompts = 0)"])
    if not any(release.glob(f"*_vs_{MAIN_BASELINE}_autoeval.jsonl")):
        line = f"no judgments vs {MAIN_BASELINE} in {release}: no offline judge"
        return Offline({}, {}, pl.DataFrame(), None, [line])
    spec = parse_judge_spec(study.judge)
    setup = ProxySetup(baseline=MAIN_BASELINE, judge=study.judge, prompts=prompts)
    verdicts, agreement = proxy_on_release(release, setup)
    models = fitted_models(spec.model) if spec.kind == "fitted" else None
    out: dict[tuple[str, str], dict[int, str]] = {}
    reasons: dict[tuple[str, str], dict[int, list[tuple[str, float]]]] = {}
    for system, qid, sample, verdict, raw in verdicts.select(
        "system", "query_id", "sample", "verdict", "raw"
    ).iter_rows():  # the system is Assistant 1, as GPT-4 saw it
        out.setdefault((system, qid), {})[sample] = verdict
        if models is not None:
            reasons.setdefault((system, qid), {})[sample] = moved_in_words(raw or "", models)
    return Offline(out, reasons, agreement, spec.label, [])


def paper_demos(prompts: dict[str, str], source: PaperDemoSource, data_dir: str | None) -> PaperDemos:
    """The paper's retriever over its pool, or one line saying which part could not be had."""
    from ..data.loaders import load_pool
    from ..models.loading import load_tokenizer
    from ..retrieval.encoders import Encoder
    from ..retrieval.settings import RetrievalSettings, build_retriever

    what = ""
    try:
        # cheapest refusal first: offline the pool fails at once; a gated tokenizer before a large encoder
        what = f"the paper's pool ({source.pool})"
        pool = load_pool(source.pool, data_dir)
        what = f"the tokenizer the paper's packing counts with ({source.tokenizer})"
        tokenizer = load_tokenizer(source.tokenizer)
        what = f"the paper's encoder ({source.encoder})"
        encoder = Encoder(source.encoder).load()
        what = "the paper's retrieval"
        settings = RetrievalSettings(pool=source.pool, preset="paper", encoder=source.encoder)
        retriever = build_retriever(settings, data_dir, tokenizer, encoder, pool)
    except (UserError, OSError, ValueError) as exc:
        return PaperDemos(
            None, prompts, f"The paper's demos are not shown: {what} could not be had ({first_line(exc)})."
        )
    return PaperDemos(retriever, prompts)


# ---------------------------------------------------------------- the overview


def overview_table(data: ReleaseExploration) -> pl.DataFrame:
    """One row per (prompt, system): GPT-4's verdicts vs davinci-003 over the samples (`marks`, one ASCII
    mark per sample: + win, = draw, - lose, ? unreadable, blank not judged), their counts, the answers'
    mean length and its difference from davinci-003's (characters), and how often the offline judge
    called a sample the other way from GPT-4 (`disagree`: one says win, the other lose)."""
    base = data.baselines.get(MAIN_BASELINE, {})
    rows = []
    for qid in data.query_ids:
        for system in data.systems:
            answers = data.answers.get((system, qid), [])
            judged = data.gpt4.get((system, MAIN_BASELINE, qid), {})
            offline = data.offline.get((system, qid), {})
            verdicts = [judged[s].verdict if s in judged else "" for s in range(len(answers))]
            length = sum(len(a) for a in answers) / len(answers) if answers else None
            rows.append(
                {
                    "query_id": qid,
                    "system": system,
                    "marks": "".join(MARKS.get(v, " ") for v in verdicts),
                    "wins": verdicts.count("win"),
                    "draws": verdicts.count("draw"),
                    "losses": verdicts.count("lose"),
                    "judged": sum(v in ("win", "draw", "lose") for v in verdicts),
                    "length": length,
                    "longer": None if length is None or qid not in base else length - len(base[qid]),
                    "offline_wins": sum(v == "win" for v in offline.values()),
                    "disagree": sum(
                        {offline.get(s), judged[s].verdict} == {"win", "lose"} for s in judged if s in offline
                    ),
                }
            )
    return pl.DataFrame(rows, schema=OVERVIEW_SCHEMA)


MARKS = {"win": "+", "draw": "=", "lose": "-", "invalid": "?"}
OVERVIEW_SCHEMA = {
    "query_id": pl.String,
    "system": pl.String,
    "marks": pl.String,
    "wins": pl.Int64,
    "draws": pl.Int64,
    "losses": pl.Int64,
    "judged": pl.Int64,
    "length": pl.Float64,
    "longer": pl.Float64,
    "offline_wins": pl.Int64,
    "disagree": pl.Int64,
}

# Rules and sorts name systems A and B as {a} and {b} (filled in with the systems' labels to show them).
RULES = {
    "all": "every prompt",
    "a_wins_b_loses": "{a} wins and {b} loses (on most samples, by GPT-4)",
    "a_beats_b": "{a} beats {b} (more GPT-4 wins)",
    "disagree": "the offline judge and GPT-4 disagree on {a}",
}
SORTS = {
    "prompt": "prompt order",
    "wins": "{a}'s GPT-4 wins, most first",
    "length": "{a}'s answer length, longest first",
    "longer": "{a}'s length minus davinci-003's, most first",
    "disagree": "disagreements on {a}, most first",
}


@dataclass(frozen=True)
class Selection:
    """Which prompts the overview lists, in what order: a rule about systems A and B, a sort, a search."""

    rule: str = "all"
    a: str | None = None
    b: str | None = None
    sort: str = "prompt"
    search: str = ""  # words every listed prompt contains (case ignored); a prompt id matches too


@dataclass(frozen=True)
class Question:
    """A question the overview answers: a name people read and the selection it makes."""

    name: str
    selection: Selection


def questions(systems: Sequence[str]) -> list[Question]:
    """The paper's questions for the systems at hand (those whose systems the folder lacks are left out),
    then every prompt."""
    found: list[Question] = []
    first = systems[0] if systems else None
    second = systems[1] if len(systems) > 1 else first
    icl = IN_CONTEXT if IN_CONTEXT in systems else first
    if IN_CONTEXT in systems and ZERO_SHOT in systems:
        found.append(
            Question(
                "in-context wins, zero-shot loses", Selection("a_wins_b_loses", IN_CONTEXT, ZERO_SHOT, "wins")
            )
        )
    if CHAT in systems and IN_CONTEXT in systems:
        found.append(Question("chat beats in-context", Selection("a_beats_b", CHAT, IN_CONTEXT, "wins")))
    found += [
        Question("the offline judge and GPT-4 disagree", Selection("disagree", icl, second, "disagree")),
        Question("by answer length", Selection("all", icl, second, "longer")),
        Question("every prompt", Selection("all", first, second, "prompt")),
    ]
    return found


def select_prompts(data: ReleaseExploration, selection: Selection) -> list[str]:
    """The prompt ids the selection lists, in its order."""
    table = data.overview
    a = table.filter(pl.col("system").eq_missing(selection.a)).drop("system")
    b = table.filter(pl.col("system").eq_missing(selection.b)).select(
        "query_id", pl.exclude("query_id").name.suffix("_b")
    )
    both = pl.DataFrame({"query_id": data.query_ids}).join(a, on="query_id", how="left")
    both = both.join(b.drop("system_b"), on="query_id", how="left")
    keep = {
        "all": pl.lit(True),
        "a_wins_b_loses": (2 * pl.col("wins") > pl.col("judged"))
        & (2 * pl.col("losses_b") > pl.col("judged_b")),
        "a_beats_b": pl.col("wins") > pl.col("wins_b"),
        "disagree": pl.col("disagree") > 0,
    }
    if selection.rule not in keep:
        raise UserError(f"unknown rule '{selection.rule}' ({', '.join(keep)})")
    chosen = both.filter(keep[selection.rule].fill_null(False))
    words = selection.search.lower().split()
    if words:
        ids = set(chosen["query_id"].to_list())
        ids = {q for q in ids if all(w in f"{q} {data.prompts[q]}".lower() for w in words)}
        chosen = chosen.filter(pl.col("query_id").is_in(sorted(ids)))
    if selection.sort != "prompt":
        if selection.sort not in SORTS:
            raise UserError(f"unknown sort '{selection.sort}' ({', '.join(SORTS)})")
        chosen = chosen.sort(selection.sort, descending=True, nulls_last=True, maintain_order=True)
    return chosen["query_id"].to_list()


# ---------------------------------------------------------------- all of it


def explore_release(
    study: Study,
    release_dir: str | Path | None = None,
    proxy_prompts: int = 300,
    demos: PaperDemoSource | None = PaperDemoSource(),
) -> ReleaseExploration | None:
    """Read the release folder (given, else the data directory's or the cache's), judge its answers with
    the study's judge (cached), and gather the explorer's tables; None when no release is on this machine."""
    release = locate_release(release_dir, study.data_dir)
    if release is None:
        return None
    systems, notes = release_systems(release)
    query_ids, prompts = release_prompts(release, systems)
    baselines, missing = release_baselines(release, query_ids)
    offline = offline_verdicts(release, study, min(proxy_prompts, len(query_ids)))
    source = (
        paper_demos(prompts, demos, study.data_dir)
        if demos is not None
        else PaperDemos(None, prompts, "The paper's demos are not shown (paper_demos = False).")
    )
    data = ReleaseExploration(
        release=release,
        query_ids=query_ids,
        prompts=prompts,
        baselines=baselines,
        systems=systems,
        labels={name: release_label(name) for name in [*systems, *RELEASE_BASELINES]},
        answers=release_answers(release, systems, prompts),
        gpt4=release_judgments(release, systems),
        offline=offline.verdicts,
        offline_reasons=offline.reasons,
        offline_judge=offline.judge,
        offline_prompts=min(proxy_prompts, len(query_ids)) if offline.judge is not None else 0,
        agreement=offline.agreement,
        overview=pl.DataFrame(schema=OVERVIEW_SCHEMA),
        demos=source,
        notes=[*notes, *missing, *offline.notes],
    )
    return replace(data, overview=overview_table(data))


def system_summary(data: ReleaseExploration) -> pl.DataFrame:
    """Per system (by id, with its label): GPT-4's win rate against each baseline recomputed over what the
    folder holds (`n_<baseline>`, `win_<baseline>`) beside the paper's (`reported_<baseline>`), and the
    offline judge's win rate vs davinci-003 and agreement with GPT-4 (`offline_n`, `offline_win`,
    `offline_agreement`); rates as fractions, None where there is nothing to count."""
    agree = (
        dict(zip(data.agreement["system"], data.agreement["agreement"], strict=True))
        if {"system", "agreement"} <= set(data.agreement.columns)
        else {}
    )
    rows = []
    for system in data.systems:
        row: dict[str, object] = {"system": system, "label": data.labels[system]}
        for baseline in RELEASE_BASELINES:
            verdicts = [
                j.verdict
                for (s, b, _), samples in data.gpt4.items()
                if s == system and b == baseline
                for j in samples.values()
            ]
            row[f"n_{baseline}"] = len(verdicts)
            row[f"win_{baseline}"] = _share(verdicts.count("win"), len(verdicts))
            known = RELEASE_SYSTEMS.get(system)
            row[f"reported_{baseline}"] = known.reported.get(baseline) if known is not None else None
        offline = [v for (s, _), samples in data.offline.items() if s == system for v in samples.values()]
        row["offline_n"] = len(offline)
        row["offline_win"] = _share(offline.count("win"), len(offline))
        row["offline_agreement"] = agree.get(system)
        rows.append(row)
    schema = {"system": pl.String, "label": pl.String}
    for baseline in RELEASE_BASELINES:
        schema |= {
            f"n_{baseline}": pl.Int64,
            f"win_{baseline}": pl.Float64,
            f"reported_{baseline}": pl.Float64,
        }
    schema |= {"offline_n": pl.Int64, "offline_win": pl.Float64, "offline_agreement": pl.Float64}
    return pl.DataFrame(rows, schema=schema)


def _share(k: int, n: int) -> float | None:
    return k / n if n else None
