"""The fitted judge's parts: verdict files read as labels, features, the fit, its file, nested validation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from icalign_nb.errors import UserError
from icalign_nb.judging.features import FEATURE_NAMES, REFERENCE_FREE, Pair, TextFeatures, pair_matrix
from icalign_nb.judging.fit import (
    Coefficients,
    FitData,
    fit_linear,
    fit_models,
    out_of_fit,
    prompt_fold,
    read_coefficients,
    write_coefficients,
)
from icalign_nb.judging.labelled import Labelled, annotation_verdict, annotations_labelled


def fake_embed(texts: list[str]) -> np.ndarray:
    """Deterministic stand-in embeddings: bag of hashed words (similar texts, similar vectors)."""
    out = np.zeros((len(texts), 64))
    for i, t in enumerate(texts):
        for w in t.lower().split():
            out[i, hash(w) % 64] += 1.0
    return out + 1e-3


def annotation(instruction: str, out1: str, out2: str, preference: object, model: str = "m") -> dict:
    return {
        "instruction": instruction,
        "output_1": out1,
        "output_2": out2,
        "generator_1": "text_davinci_003",
        "generator_2": model,
        "preference": preference,
    }


def test_preferences_read_as_the_systems_verdicts() -> None:
    assert [annotation_verdict("x", v) for v in (2, 2.0, "2", 1, 1.5, 1.2, 1.8, 0, 0.0, None)] == [
        "win",
        "win",
        "win",
        "lose",
        "draw",
        "lose",
        "win",
        "invalid",
        "invalid",
        "invalid",
    ]
    for bad in (3, -1, "two", [2]):
        with pytest.raises(UserError, match="x: field 'preference'"):
            annotation_verdict("x", bad)


def test_annotation_files_keyed_by_generator_with_references(tmp_path: Path) -> None:
    a = tmp_path / "a.json"
    a.write_text(json.dumps([annotation("Q1?", "b1", "s1", 2), annotation("Q2?", "b2", "s2", 1)]))
    b = tmp_path / "b.json"  # the same model name in another file is told apart by the file name
    b.write_text(json.dumps([annotation("Q1?", "b1", "t1", None)]))
    ref = tmp_path / "ref.json"
    ref.write_text(json.dumps([{"instruction": "Q1?", "output": "r1"}]))
    items = annotations_labelled([a, b], ref)
    assert [(x.system, x.verdict, x.answer, x.baseline_answer, x.reference) for x in items] == [
        ("m", "win", "s1", "b1", "r1"),
        ("m", "lose", "s2", "b2", None),
        ("m (b)", "invalid", "t1", "b1", "r1"),
    ]
    assert items[0].query_id == items[2].query_id != items[1].query_id
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"instruction": "Q?", "output_1": "x", "output_2": "y"}]))
    with pytest.raises(UserError, match=r"bad.json: item 1: missing field 'preference'"):
        annotations_labelled([bad])


def test_text_features_see_loops_echoes_cuts_and_new_turns() -> None:
    tf = TextFeatures()
    q = "How do I boil an egg so the yolk stays soft?"
    good = tf.answer(q, "Put the egg in boiling water for six minutes, then cool it in cold water.", None)
    loop = tf.answer(q, "Boil the egg.\n" * 50, None)
    echo = tf.answer(q, q, None)
    cut = tf.answer(q, "Put the egg in boiling water for six minutes and then you should", None)
    turn = tf.answer(q, "Boil it for six minutes.\n\nQuestion: How do I fry an egg?", None)
    assert loop["repeated_lines"] > 0.9 and loop["repeated_trigrams"] > 0.9 and good["repeated_trigrams"] == 0
    assert echo["question_copy"] == 1.0 and good["question_copy"] < 0.2
    assert cut["unfinished"] == 1.0 and good["unfinished"] == 0.0
    assert turn["new_turn"] == 1.0 and good["new_turn"] == 0.0
    assert tf.answer(q, "", None)["log_words"] == 0.0
    assert np.isnan(good["reference_recall"])  # no reference, no reference features
    listed = tf.answer(q, "Steps:\n- boil water\n- add the egg\n- wait six minutes", None)
    assert listed["unfinished"] == 0.0  # a list item needs no full stop


def test_pair_features_are_differences_and_swap_to_their_negation() -> None:
    pairs = [Pair("Capital of France?", "Paris is the capital.", "It is Lyon, I think maybe.", "Paris.")]
    swapped = [Pair(p.question, p.second, p.first, p.reference) for p in pairs]
    d, s = pair_matrix(pairs, fake_embed), pair_matrix(swapped, fake_embed)
    assert np.allclose(d, -s)
    bare = pair_matrix([Pair("Capital of France?", "Paris.", "Lyon.")], fake_embed)
    ref_cols = [FEATURE_NAMES.index(n) for n in FEATURE_NAMES if n not in REFERENCE_FREE]
    assert np.isnan(bare[0, ref_cols]).all() and not np.isnan(np.delete(bare[0], ref_cols)).any()


def synthetic(n: int = 400, seed: int = 0) -> FitData:
    """Labelled comparisons whose verdicts follow log_words and repeated_trigrams (known signs)."""
    rng = np.random.default_rng(seed)
    diffs = np.zeros((n, len(FEATURE_NAMES)))
    diffs[:, FEATURE_NAMES.index("log_words")] = rng.normal(size=n)
    diffs[:, FEATURE_NAMES.index("repeated_trigrams")] = rng.normal(size=n) * 0.2
    diffs[:, [FEATURE_NAMES.index(f) for f in FEATURE_NAMES if f not in REFERENCE_FREE]] = np.nan
    logit = 1.5 * diffs[:, 0] - 8.0 * diffs[:, FEATURE_NAMES.index("repeated_trigrams")]
    p = 1 / (1 + np.exp(-logit))
    draw = rng.random(n) < 0.05
    verdicts = np.where(draw, "draw", np.where(rng.random(n) < p, "win", "lose"))
    items = [
        Labelled(
            f"sys{i % 4}", "davinci003", f"q{i % 50}", i // 50, f"question {i % 50}", "a", "b", None, v, "g"
        )
        for i, v in enumerate(verdicts)
    ]
    return FitData(items, diffs)


def test_fit_recovers_the_signs_is_symmetric_and_matches_the_draw_rate(tmp_path: Path) -> None:
    data = synthetic()
    model = fit_linear(data.diffs, data.verdicts, REFERENCE_FREE)
    weights = dict(zip(model.features, model.coef, strict=True))
    assert weights["log_words"] > 0.5 and weights["repeated_trigrams"] < -2
    p, q = model.prob(data.diffs), model.prob(-data.diffs)
    assert np.allclose(p + q, 1.0)  # swapping the answers gives exactly 1 - p
    models = fit_models(data)
    assert models.with_reference == models.without_reference  # nothing had a reference
    called = (models.verdicts(models.prob(data.diffs, data.has_reference)) == "draw").mean()
    assert abs(called - (data.verdicts == "draw").mean()) < 0.01

    path = tmp_path / "judge.json"
    write_coefficients(Coefficients(models, {"sha256": "x"}, {"n": 1}), path)
    back = read_coefficients(path)
    assert back.fit_data == {"sha256": "x"} and back.models.margin == pytest.approx(models.margin, rel=1e-5)
    has_ref = data.has_reference
    assert np.allclose(back.models.prob(data.diffs, has_ref), models.prob(data.diffs, has_ref), atol=1e-5)
    body = json.loads(path.read_text())
    body["features_version"] = 0
    path.write_text(json.dumps(body))
    with pytest.raises(UserError, match="features_version"):
        read_coefficients(path)
    path.write_text("{")
    with pytest.raises(UserError, match="malformed JSON"):
        read_coefficients(path)


def test_out_of_fit_never_fits_the_system_or_prompt_it_judges(monkeypatch: pytest.MonkeyPatch) -> None:
    import icalign_nb.judging.fit as fit

    data = synthetic()
    systems = np.array([x.system for x in data.items])
    folds = np.array([prompt_fold(x.question) for x in data.items])
    seen: list[np.ndarray] = []
    real = fit.fit_models
    monkeypatch.setattr(fit, "fit_models", lambda d, rows=None: seen.append(rows) or real(d, rows))
    p, verdicts = out_of_fit(data)
    assert len(seen) == 4 * 5 and not np.isnan(p).any() and set(verdicts) <= {"win", "draw", "lose"}
    for rows in seen:  # each fit left out one system and one prompt fold, and nothing else
        assert len(set(systems[~rows])) >= 1
        left_system = set(systems) - set(systems[rows])
        left_fold = set(folds) - set(folds[rows])
        assert len(left_system) == 1 and len(left_fold) == 1
    seen.clear()
    out_of_fit(data, leave_system_out=False)
    assert len(seen) == 5 and all(set(systems[rows]) == set(systems) for rows in seen)
