"""The study a notebook builds: its settings read by name, its systems keyed by stable ids, and the
settings a study file or `-p` passes to every notebook, checked before any notebook runs."""

from __future__ import annotations

import ast
from dataclasses import fields
from pathlib import Path

import nbformat
import pytest

from icalign_nb.errors import UserError
from icalign_nb.jobs.notebooks import find_notebooks, plan_parameters, read_parameters_file
from icalign_nb.retrieval.presets import PRESETS
from icalign_nb.study.study import CHAT_LABEL, Study

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"


def test_a_notebooks_namespace_sets_the_study_by_name() -> None:
    study = Study.from_notebook(
        {
            "model": "tiny-random",
            "presets": "zero-shot, paper",
            "limit": 0,
            "chat_model": "",
            "data_dir": "",
            "x": 1,
        }
    )
    assert study.model == "tiny-random" and study.presets == ("zero-shot", "paper")
    assert study.limit is None and study.chat_model is None and study.data_dir is None
    assert [s.id for s in study.systems()] == ["zero-shot", "paper"]
    assert Study.from_notebook({}) == Study()  # nothing given: the main job's study


def test_systems_have_stable_ids_and_labels_from_their_definitions(tmp_path: Path) -> None:
    study = Study(work_dir=str(tmp_path))
    ids = [s.id for s in study.systems()]
    assert ids == ["zero-shot", "paper", "random", "urial", "chat-smollm2_135m"]
    by_id = {s.id: s for s in study.systems()}
    assert by_id["paper"].label == PRESETS["paper"].label and by_id["chat-smollm2_135m"].label == CHAT_LABEL
    assert all(s.run_dir.parent == study.folder() and s.run_dir.name == s.id for s in study.systems())
    # another setting, another folder: runs never collide; the same settings share it
    assert Study(work_dir=str(tmp_path), samples=5).folder() != study.folder()
    assert Study(work_dir=str(tmp_path)).folder() == study.folder()


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"presets": "zero-shot,bogus"}, "unknown preset 'bogus'"),
        ({"model": "gpt-17"}, "unknown model 'gpt-17'"),
        ({"temperature": float("nan")}, "temperature must be a finite number"),
        ({"samples": 0}, "samples must be >= 1"),
        ({"batch_size": -2}, "batch_size must be >= 1"),
        ({"backend": "nope"}, "unknown backend 'nope'"),
    ],
)
def test_a_bad_study_setting_is_one_line(given: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        Study.from_notebook(given)


def test_notebook_defaults_are_the_studys_defaults() -> None:
    """A notebook opened alone runs the main job's study: every study setting its cell declares has the
    study's default (0 or '' standing for none)."""
    defaults = {f.name: f.default for f in fields(Study)}
    for path in sorted(NOTEBOOK_DIR.glob("*.ipynb")):
        cell = next(
            c for c in nbformat.read(path, as_version=4).cells if "parameters" in c.metadata.get("tags", [])
        )
        for statement in ast.parse(cell.source).body:
            name, value = statement.targets[0].id, statement.value.value
            if name not in defaults or name in {"seed", "encoder", "max_new_tokens", "limit", "preset"}:
                continue
            expected = defaults[name]
            if name == "presets":
                expected = ",".join(expected)
            assert value == (expected if expected is not None else value), f"{path.name}: {name}"


def test_study_parameter_cells_share_only_the_model_and_data() -> None:
    cells = {}
    for name in ("03", "04", "06", "07"):
        (path,) = find_notebooks([name], NOTEBOOK_DIR)
        cell = next(
            c for c in nbformat.read(path, as_version=4).cells if "parameters" in c.metadata.get("tags", [])
        )
        cells[path.stem] = set(cell.source.splitlines())
    shared = set.intersection(*cells.values())
    assert {line.split(" =")[0] for line in shared} == {"model", "pool", "eval"}
    for a in cells:
        for b in cells:
            if a < b:
                assert {line.split(" =")[0] for line in cells[a] & cells[b]} <= {"model", "pool", "eval"}, (
                    a,
                    b,
                )


def test_a_study_setting_reaches_every_notebook_and_is_checked_first(tmp_path: Path) -> None:
    notebooks = find_notebooks(["03", "06"], NOTEBOOK_DIR)
    plan = plan_parameters(notebooks, [("samples", "3"), ("judge", "embedding")], {"work_dir": "/w"})
    for nb in notebooks:  # 06 declares neither: a study setting goes to it all the same
        assert plan[nb]["samples"] == 3 and plan[nb]["judge"] == "embedding" and plan[nb]["work_dir"] == "/w"
    with pytest.raises(UserError, match="unknown preset 'bogus'"):
        plan_parameters(notebooks, [("presets", "zero-shot,bogus")], {})
    with pytest.raises(UserError, match="-p samples many: expected a whole number"):
        plan_parameters(notebooks, [("samples", "many")], {})


def test_a_study_file_sets_parameters_and_bad_files_are_one_line(tmp_path: Path) -> None:
    good = tmp_path / "study.yaml"
    good.write_text("model: tiny-random\nsamples: 2\npresets: [zero-shot, paper]\nswap: false\n")
    given = read_parameters_file(good)
    notebooks = find_notebooks(["04"], NOTEBOOK_DIR)
    plan = plan_parameters(notebooks, [*given, ("samples", "4")], {})[notebooks[0]]
    assert plan["model"] == "tiny-random" and plan["samples"] == 4  # -p wins over the file
    assert plan["presets"] == "zero-shot,paper" and plan["swap"] is False
    assert Study.from_notebook(plan).presets == ("zero-shot", "paper")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(UserError, match=r"bad.yaml:\d+: not a YAML file"):
        read_parameters_file(bad)
    bad.write_text("- a list\n- not a mapping\n")
    with pytest.raises(UserError, match="expected KEY: VALUE pairs"):
        read_parameters_file(bad)


def test_the_commands_data_dir_reaches_every_notebook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from icalign_nb.cli import main
    from icalign_nb.jobs import notebooks

    asked: list[notebooks.NotebookRun] = []
    monkeypatch.setattr(notebooks, "run_notebooks", lambda run, say=print: asked.append(run) or [])
    assert main(["notebooks", "run", "06", "--data-dir", str(tmp_path)]) == 0
    runner = notebooks.runner_parameters(asked[0], Path("/f"), Path("/w"))
    assert runner == {"figures_dir": "/f", "work_dir": "/w", "data_dir": str(tmp_path.resolve())}
    plan = plan_parameters(find_notebooks(["06"], NOTEBOOK_DIR), [], runner)
    assert next(iter(plan.values()))["data_dir"] == str(tmp_path.resolve())
    assert "data_dir" not in notebooks.runner_parameters(notebooks.NotebookRun(), Path("/f"), Path("/w"))
