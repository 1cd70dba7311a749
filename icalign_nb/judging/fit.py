"""Fitting the fitted judge: a logistic regression on feature differences, and its coefficients file.

The model: P(first answer wins) = sigmoid(w . (f(first) - f(second))), no intercept. Swapping the
answers negates the input, so it gives exactly 1 - p: no position bias, by construction (and a
pair fitted in one order teaches the same as in the other, so pairs are not added flipped). The
weights come from scikit-learn's `LogisticRegression` on the reference judge's *decisive* verdicts,
inputs scaled to unit spread. Two models are fitted: one with the reference-answer features (for
comparisons that have a reference) and one without (for those that do not).

**Draws**: p within `margin` of 0.5 is a draw, the margin chosen so the judge calls as many draws
on the fit data as GPT-4 did against text-davinci-003 (over all fit items when no baseline is
davinci-003).

The coefficients file is JSON text: the feature definitions' version, the encoder, both models
(features, weights per unit and per spread, margin), what they were fitted to (a hash of the fit
items, each input file's sha256, counts) and the validation numbers measured for them.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..files import atomic_write_text, read_json
from .degenerate import CONSTRUCTED
from .features import (
    ENCODER,
    ENCODER_MAX_TOKENS,
    FEATURE_NAMES,
    FEATURES_VERSION,
    REFERENCE_FREE,
    Embed,
    Pair,
)
from .labelled import Labelled

FORMAT = "icalign-fitted-judge"
DAVINCI = frozenset({"davinci003", "text_davinci_003", "text-davinci-003"})
REGULARISATION = 1.0  # scikit-learn's C on unit-spread inputs
FOLDS = 5


@dataclass(frozen=True)
class LinearJudge:
    """One fitted model: P(first wins) = sigmoid(sum coef * (first - second))."""

    features: tuple[str, ...]
    coef: tuple[float, ...]  # weight per unit of each feature's difference
    scale: tuple[float, ...]  # spread (SD) of each difference in the fit data: coef * scale = weight per SD
    decisive: int = 0  # decisive verdicts fitted

    def columns(self) -> list[int]:
        """The columns of a full feature matrix this model reads."""
        return [FEATURE_NAMES.index(n) for n in self.features]

    def contributions(self, diffs: np.ndarray) -> np.ndarray:
        """(n, len(features)) each feature's share of the log-odds: coef * difference."""
        return np.nan_to_num(np.atleast_2d(diffs)[:, self.columns()]) * np.array(self.coef)

    def prob(self, diffs: np.ndarray) -> np.ndarray:
        """P(first answer wins) of rows of full feature differences."""
        return 1.0 / (1.0 + np.exp(-self.contributions(diffs).sum(axis=1)))


@dataclass(frozen=True)
class Models:
    """The two models of a fitted judge and its draw margin: p within `margin` of 0.5 is a draw."""

    with_reference: LinearJudge
    without_reference: LinearJudge
    margin: float = 0.0

    def model(self, has_reference: bool) -> LinearJudge:
        """The model for a comparison with or without a reference answer."""
        return self.with_reference if has_reference else self.without_reference

    def prob(self, diffs: np.ndarray, has_ref: np.ndarray) -> np.ndarray:
        """P(first answer wins) of rows, each through the model its reference (or lack of one) calls for."""
        p = self.without_reference.prob(diffs)
        if has_ref.any():
            p[has_ref] = self.with_reference.prob(diffs[has_ref])
        return p

    def verdicts(self, p: np.ndarray) -> np.ndarray:
        """win | draw | lose for the first answer."""
        return np.where(np.abs(p - 0.5) <= self.margin, "draw", np.where(p > 0.5, "win", "lose"))


@dataclass(frozen=True)
class Coefficients:
    """A fitted judge: its models, what they were fitted to and how they validated."""

    models: Models
    fit_data: dict = field(default_factory=dict)
    validation: dict = field(default_factory=dict)
    features_version: int = FEATURES_VERSION
    encoder: str = f"{ENCODER}@{ENCODER_MAX_TOKENS}"

    def digest(self) -> str:
        """A hash of what makes the verdicts: both models' weights, the margin, feature version, encoder."""
        parts = [str(self.features_version), self.encoder, repr(self.models.margin)]
        for model in (self.models.with_reference, self.models.without_reference):
            parts += [*model.features, *(f"{c:.6g}" for c in model.coef)]
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()

    def to_text(self) -> str:
        """The coefficients file's text: JSON, one line per feature weight (per unit, spread, per spread)."""
        models = {"margin": self.models.margin}
        for key in ("with_reference", "without_reference"):
            model = getattr(self.models, key)
            weights = {
                n: {"per_unit": _sig(c), "sd": _sig(s), "per_sd": _sig(c * s)}
                for n, c, s in zip(model.features, model.coef, model.scale, strict=True)
            }
            models[key] = {"decisive": model.decisive, "weights": weights}
        body = {
            "format": FORMAT,
            "features_version": self.features_version,
            "encoder": self.encoder,
            "models": models,
            "fit_data": self.fit_data,
            "validation": self.validation,
        }
        return json_text(body) + "\n"


def _sig(x: float) -> float:
    return float(f"{x:.6g}")


def json_text(value: object, indent: str = "") -> str:
    """JSON with nested objects indented, and lists or objects of plain values kept on one line."""
    plain = (str, int, float, bool, type(None))
    if isinstance(value, dict) and value and not all(isinstance(v, plain) for v in value.values()):
        inner = indent + "  "
        items = [f"{inner}{json.dumps(k)}: {json_text(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    return json.dumps(value, ensure_ascii=False)


def read_coefficients(path: str | Path) -> Coefficients:
    """A coefficients file; another format, or features of another version, is one clear line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such coefficients file (write one with `icalign judge-fit --out FILE`)")
    body = read_json(path)
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise UserError(f"{path}: not a fitted-judge coefficients file (field 'format' is not '{FORMAT}')")
    if body.get("features_version") != FEATURES_VERSION:
        raise UserError(
            f"{path}: field 'features_version' is {body.get('features_version')!r}, this package computes "
            f"version {FEATURES_VERSION}; refit with `icalign judge-fit`"
        )
    part = body.get("models") or {}
    models = {}
    for key in ("with_reference", "without_reference"):
        try:
            weights = part[key]["weights"]
            model = LinearJudge(
                tuple(weights),
                tuple(float(w["per_unit"]) for w in weights.values()),
                tuple(float(w["sd"]) for w in weights.values()),
                int(part[key].get("decisive", 0)),
            )
        except (TypeError, KeyError, ValueError, AttributeError):
            raise UserError(
                f"{path}: field 'models.{key}.weights' needs per_unit and sd per feature"
            ) from None
        unknown = [n for n in model.features if n not in FEATURE_NAMES]
        if unknown or len(model.coef) != len(model.features):
            raise UserError(f"{path}: field 'models.{key}': unknown features {unknown} or a coef missing")
        models[key] = model
    try:
        margin = float(part["margin"])
    except (TypeError, KeyError, ValueError):
        raise UserError(f"{path}: field 'models.margin' must be a number") from None
    return Coefficients(
        Models(models["with_reference"], models["without_reference"], margin),
        body.get("fit_data") or {},
        body.get("validation") or {},
        FEATURES_VERSION,
        str(body.get("encoder", "")),
    )


def write_coefficients(coefficients: Coefficients, path: str | Path) -> None:
    """Write a coefficients file atomically."""
    atomic_write_text(Path(path), coefficients.to_text())


# ---------------------------------------------------------------- fitting


def pairs_of(items: Sequence[Labelled]) -> list[Pair]:
    """The system's answer first, the baseline's second."""
    return [Pair(x.question, x.answer, x.baseline_answer, x.reference) for x in items]


def fit_digest(items: Sequence[Labelled]) -> str:
    """A hash of what a fit saw: every comparison's texts and verdict, in order."""
    digest = hashlib.sha256()
    for x in items:
        for part in (x.system, x.baseline, x.query_id, str(x.sample), x.question, x.answer):
            digest.update(part.encode() + b"\0")
        for part in (x.baseline_answer, x.reference or "", x.verdict):
            digest.update(part.encode() + b"\0")
    return digest.hexdigest()


def draw_rows(verdicts: np.ndarray, baselines: np.ndarray) -> np.ndarray:
    """The rows whose draw rate the judge matches: valid verdicts vs davinci-003 (else all valid)."""
    valid = verdicts != "invalid"
    davinci = valid & np.isin(baselines, list(DAVINCI))
    return davinci if davinci.any() else valid


def fit_linear(
    diffs: np.ndarray, verdicts: np.ndarray, features: Sequence[str], c: float = REGULARISATION
) -> LinearJudge:
    """A logistic fit (no intercept) on the decisive rows."""
    from sklearn.linear_model import LogisticRegression

    cols = [FEATURE_NAMES.index(n) for n in features]
    decisive = np.isin(verdicts, ["win", "lose"])
    if decisive.sum() < 2 or len(set(verdicts[decisive])) < 2:
        raise UserError("the fit needs decisive verdicts of both kinds (wins and losses)")
    x = np.nan_to_num(diffs[decisive][:, cols])
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    clf = LogisticRegression(fit_intercept=False, C=c, max_iter=5000)
    clf.fit(x / scale, (verdicts[decisive] == "win").astype(int))
    coef = clf.coef_[0] / scale
    return LinearJudge(tuple(features), tuple(coef.tolist()), tuple(scale.tolist()), int(decisive.sum()))


@dataclass
class FitData:
    """Labelled comparisons with their feature differences (system minus baseline)."""

    items: list[Labelled]
    diffs: np.ndarray

    @property
    def verdicts(self) -> np.ndarray:
        """The reference judge's verdicts."""
        return np.array([x.verdict for x in self.items])

    @property
    def baselines(self) -> np.ndarray:
        """Each comparison's baseline."""
        return np.array([x.baseline for x in self.items])

    @property
    def constructed(self) -> np.ndarray:
        """Which comparisons were constructed (degenerate answers), not judged by the reference judge."""
        return np.array([x.judge == CONSTRUCTED for x in self.items])

    @property
    def has_reference(self) -> np.ndarray:
        """Which comparisons have a reference answer."""
        return np.array([x.reference is not None for x in self.items])


def fit_data(items: Sequence[Labelled], embed: Embed) -> FitData:
    """Feature differences of labelled comparisons (`embed`: texts -> embedding rows)."""
    from .features import pair_matrix

    return FitData(list(items), pair_matrix(pairs_of(items), embed))


def fit_models(data: FitData, rows: np.ndarray | None = None) -> Models:
    """Both models fitted on `rows` of the data (all by default), and the draw margin: p within it of
    0.5 is a draw as often, on those rows, as the reference judge calls one (vs davinci-003)."""
    rows = np.ones(len(data.items), bool) if rows is None else rows
    verdicts, baselines, has_ref = data.verdicts, data.baselines, data.has_reference
    without = fit_linear(data.diffs[rows], verdicts[rows], REFERENCE_FREE)
    ref_rows = rows & has_ref
    with_ref = without  # nothing with a reference to fit: comparisons with one use the reference-free model
    if ref_rows.any() and len(set(verdicts[ref_rows]) & {"win", "lose"}) == 2:
        with_ref = fit_linear(data.diffs[ref_rows], verdicts[ref_rows], FEATURE_NAMES)
    chosen = np.zeros(len(rows), bool)
    judged = rows & ~data.constructed
    chosen[judged] = draw_rows(verdicts[judged], baselines[judged])
    draws = float((verdicts[chosen] == "draw").mean()) if chosen.any() else 0.0
    p = Models(with_ref, without).prob(data.diffs[chosen], has_ref[chosen])
    margin = float(np.quantile(np.abs(p - 0.5), draws)) if draws > 0 else 0.0
    return Models(with_ref, without, margin)


def prompt_fold(question: str, folds: int = FOLDS) -> int:
    """The fold of a prompt (the same for every system that answered it)."""
    return int(hashlib.sha256(question.strip().encode()).hexdigest()[:8], 16) % folds


def out_of_fit(
    data: FitData, leave_system_out: bool = True, folds: int = FOLDS
) -> tuple[np.ndarray, np.ndarray]:
    """(P(system wins), verdict) of every judged comparison from models that saw neither its prompt nor
    (when `leave_system_out`) its system: for each system, for each of `folds` prompt folds, a fit on
    the other systems' comparisons of the other folds (constructed ones included: they are never
    predicted, `invalid`). Without it, prompts only are held out."""
    fold = np.array([prompt_fold(x.question, folds) for x in data.items])
    systems = np.array([x.system for x in data.items])
    has_ref, constructed = data.has_reference, data.constructed
    p = np.full(len(data.items), np.nan)
    verdicts = np.full(len(data.items), "invalid", dtype=object)
    for system in sorted(set(systems[~constructed])) if leave_system_out else [None]:
        target = systems == system if system is not None else ~constructed
        others = ~target if system is not None else np.ones(len(systems), bool)
        for k in range(folds):
            test = target & (fold == k)
            if not test.any():
                continue
            models = fit_models(data, others & (fold != k))
            p[test] = models.prob(data.diffs[test], has_ref[test])
            verdicts[test] = models.verdicts(p[test])
    return p, verdicts.astype(str)


def describe(model: LinearJudge) -> list[tuple[str, float, float]]:
    """(feature, weight per unit, weight per SD) sorted by |weight per SD|: what carries the weight."""
    rows = [(n, c, c * s) for n, c, s in zip(model.features, model.coef, model.scale, strict=True)]
    return sorted(rows, key=lambda r: -abs(r[2]) if math.isfinite(r[2]) else 0)
