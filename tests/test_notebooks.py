"""Notebooks: one literal `parameters` cell, no stored outputs; every notebook executes with papermill."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import SHARED_DATA, reference_data

from icalign_nb.errors import UserError
from icalign_nb.jobs.notebooks import (
    KERNEL_LOG,
    NotebookRun,
    ProgressRelay,
    convert,
    execute,
    find_notebooks,
    plan_parameters,
    run_notebooks,
)
from icalign_nb.views.playground import SAVED_COPY

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
DATA = reference_data()  # the public reference data (../shared/data, or the cache after `data fetch`)
RELEASE = (DATA or SHARED_DATA) / "paper_release"

# Small settings for CI: a tiny random model, a few queries, one sample, a few new tokens.
SMALL = (
    ("model", "tiny-random"),
    ("limit", "4"),
    ("samples", "1"),
    ("max_new_tokens", "8"),
    ("n_queries", "4"),
    ("bootstrap", "200"),
)
EXPECTED = {
    "00_workshop_quickstart": ["00_quickstart_retrieval"],
    "01_demo_pool_map": ["01_demo_pool_map"],
    "02_retrieval_choices": [
        "02_retrieval_choices_1",
        "02_retrieval_choices_2",
        "02_query_demos_on_map",
        "02_demos_kept",
    ],
    "03_generate": ["03_generation_summary"],
    "04_judge_and_winrate": [
        "04_winrate",
        "04_head_to_head",
        "04_breakdown_demos_kept",
        "04_breakdown_similarity",
        "04_breakdown_length",
    ],
    "05_paper_figures": ["05_paper_table", "05_judge_agreement", "05_judge_vs_gpt4"],
    "06_explorer": [],
    "07_ablations": ["07_k_sweep", "07_ablations"] + (["07_pool_effect"] if DATA else []),
    "08_release_explorer": [],
}


def test_every_notebook_is_expected() -> None:
    assert [p.stem for p in NOTEBOOKS] == sorted(EXPECTED)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_one_literal_parameters_cell_and_no_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    ids = [c.get("id") for c in json.loads(path.read_text())["cells"]]  # as committed (read() fills them)
    assert all(ids) and len(set(ids)) == len(ids), "every cell has an id of its own (nbformat 4.5)"
    code = [c for c in nb.cells if c.cell_type == "code"]
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0] is code[0], "exactly one parameters cell, the first code cell"
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, "committed without outputs"
    lines = [line for line in tagged[0].source.splitlines() if line.strip()]
    for line in lines:
        assert "  # " in line, f"parameter without a one-line comment: {line}"
        statement = ast.parse(line).body[0]
        assert isinstance(statement, ast.Assign) and isinstance(statement.value, ast.Constant), line
    assert nb.cells[0].cell_type == "markdown"
    assert nb.metadata["kernelspec"]["name"] == "python3"


def test_cells_fit_on_a_screen() -> None:
    for path in NOTEBOOKS:
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "code":
                assert len(cell.source.splitlines()) <= 30, f"{path.name}: a code cell longer than a screen"


def test_kernel_is_this_environment() -> None:
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec("python3")
    assert spec.argv[0] in {"python", "python3", sys.executable}  # "python" is replaced by sys.executable


def test_find_notebooks_and_parameters() -> None:
    assert [p.stem for p in find_notebooks(["1", "02", "explorer"], NOTEBOOK_DIR)] == [
        "01_demo_pool_map",
        "02_retrieval_choices",
        "06_explorer",
    ]
    with pytest.raises(UserError, match="matches no notebook"):
        find_notebooks(["nope"], NOTEBOOK_DIR)
    assert [p.stem for p in find_notebooks(["release"], NOTEBOOK_DIR)] == ["08_release_explorer"]
    with pytest.raises(UserError, match="'plore' matches 2 notebooks"):
        find_notebooks(["plore"], NOTEBOOK_DIR)
    # the main job is every notebook but the experiments beyond the paper, which run when named
    main_job = [p.stem for p in find_notebooks([], NOTEBOOK_DIR)]
    assert main_job == [p.stem for p in NOTEBOOKS if p.stem != "07_ablations"]
    assert [p.stem for p in find_notebooks(["07"], NOTEBOOK_DIR)] == ["07_ablations"]
    assert convert("5", "int", "limit") == 5 and convert("0.5", "float", "t") == 0.5
    assert convert("false", "bool", "swap") is False and convert("007", "str", "pool") == "007"
    with pytest.raises(UserError, match="expected a whole number"):
        convert("many", "int", "limit")
    nbs = find_notebooks(["03"], NOTEBOOK_DIR)
    plan = plan_parameters(nbs, [("limit", "2")], {"figures_dir": "/f", "work_dir": "/w"})
    assert plan[nbs[0]]["limit"] == 2 and plan[nbs[0]]["figures_dir"] == "/f"
    with pytest.raises(UserError, match="no selected notebook has a parameter 'limt'"):
        plan_parameters(nbs, [("limt", "2")], {})
    # the types come from the defaults, so a mistyped value is refused before any notebook runs
    everything = find_notebooks([], NOTEBOOK_DIR)
    with pytest.raises(UserError, match=r"-p limit abc: expected a whole number"):
        plan_parameters(everything, [("limit", "abc")], {})
    with pytest.raises(UserError, match=r"-p swap maybe: expected true or false"):
        plan_parameters(everything, [("swap", "maybe")], {})
    assert plan_parameters(nbs, [("temperature", "1")], {})[nbs[0]]["temperature"] == 1.0


def test_progress_relay_turns_the_kernels_progress_bars_into_lines() -> None:
    lines: list[str] = []
    relay = ProgressRelay(lines.append, heartbeat=0)
    relay.cell_started(3, 7)
    relay.stream("stdout", "printed before any progress bar\n")  # a plain cell's print stays in the notebook
    # what tqdm.notebook sends: the description and the counts as two HTML widgets (spaces as U+2007)
    relay.widget("left", {"value": "generate:\u2007\u200712%"})
    right = "1/8\u2007[00:30&lt;03:30,\u2007\u20072.10\u2007tok/s]"
    relay.widget("right", {"value": right})
    relay.widget("right", {"value": right, "layout": "x"})  # the same count is not repeated
    relay.widget("bar", {"value": 1, "max": 8})  # the bar itself carries no text
    relay.stream("stdout", "zero-shot (direct prompt): 8 answers\n")
    relay.stream("stderr", "a warning\n")
    relay.widget("right", {"value": "8/8\u2007[03:30&lt;00:00,\u2007\u20072.30\u2007tok/s]"})
    assert lines == [
        "    generate: 1/8 [00:30<03:30, 2.10 tok/s]",
        "    zero-shot (direct prompt): 8 answers",
        "    generate: 8/8 [03:30<00:00, 2.30 tok/s]",
    ]
    relay.close()


def test_a_silent_cell_is_reported_as_still_working() -> None:
    import time

    lines: list[str] = []
    relay = ProgressRelay(lines.append, heartbeat=0.2)
    relay.cell_started(2, 5)
    time.sleep(1.0)
    relay.close()
    assert lines and lines[0].startswith("    still working on cell 2/5")


@pytest.mark.slow
def test_kernels_talk_over_local_sockets_in_a_private_folder(
    tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    code = "from ipykernel.connect import get_connection_info\ninfo = get_connection_info(unpack=True)\n"
    code += "print(info['transport'], info['ip'])"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "probe.ipynb")
    sockets = tmp_path / "sockets"
    sockets.mkdir()
    execute(tmp_path / "probe.ipynb", tmp_path / "out.ipynb", {}, "python3", sockets, None, progress=False)
    printed = nbformat.read(tmp_path / "out.ipynb", as_version=4).cells[0].outputs[0].text.split()
    assert printed == ["ipc", str(sockets / "kernel")]
    assert "without encryption" not in capfd.readouterr().err
    # no socket files beside the notebook (the kernels' own log is kept there on purpose)
    assert [p.name for p in tmp_path.glob("kernel*")] in ([], [KERNEL_LOG])


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    """One papermill run of every notebook on small settings, shared by the checks below."""
    base = tmp_path_factory.mktemp("notebooks")
    params = SMALL + ((("release_dir", str(RELEASE)),) if RELEASE.is_dir() else ())
    # the second pool of notebook 07 is public data: read from the reference copy, or left out
    params += (("data_dir", str(DATA)),) if DATA else (("second_pool", ""),)
    run = NotebookRun(
        names=tuple(sorted(EXPECTED)),  # the main job and the experiments run by name
        parameters=params,
        notebook_dir=NOTEBOOK_DIR,
        figures_dir=base / "figures",
        runs_dir=base / "runs",
        work_dir=base / "work",
        progress=False,
    )
    return base, run_notebooks(run)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebook_runs_and_writes_its_figures(executed: tuple[Path, list], name: str) -> None:
    from PIL import Image

    base, results = executed
    result = next(r for r in results if r.name == name)
    assert result.error is None and result.record.exists()
    record = nbformat.read(result.record, as_version=4)
    assert any(c.get("outputs") for c in record.cells if c.cell_type == "code")  # a real executed copy
    for cell in record.cells:  # no stray return values, no library loading bars saved as widgets
        for out in cell.get("outputs", []):
            text = out.get("text", "") + out.get("data", {}).get("text/plain", "")
            assert "PosixPath(" not in text and "Loading weights" not in text, text[:200]
    if name == "00_workshop_quickstart":  # a saved record: the playground says how to use it, no widget repr
        plain = [o.get("data", {}).get("text/plain", "") for c in record.cells for o in c.get("outputs", [])]
        assert SAVED_COPY in plain and not any(p.startswith("VBox(") for p in plain)
    summary = json.loads((result.record.parent / "run.json").read_text())
    assert name in [n["name"] for n in summary["notebooks"]]
    for figure in EXPECTED[name]:
        png = base / "figures" / f"{figure}.png"
        assert png.exists() and (base / "figures" / f"{figure}.svg").exists(), figure
        with Image.open(png) as image:
            image.verify()
        with Image.open(png) as image:
            assert image.format == "PNG" and image.width > 600 and image.height > 300


@pytest.mark.slow
def test_the_release_explorers_record_shows_the_overview_and_three_prompts(
    executed: tuple[Path, list],
) -> None:
    if not RELEASE.is_dir():
        pytest.skip(f"the paper's release is not at {RELEASE}")
    _, results = executed
    record = nbformat.read(next(r for r in results if r.name == "08_release_explorer").record, as_version=4)
    shown = [
        out["data"]["text/html"]
        for cell in record.cells
        for out in cell.get("outputs", [])
        if "text/html" in out.get("data", {})
    ]
    assert sum("class='icalign-release-overview'" in h for h in shown) == 1  # the static overview
    prompts = [h for h in shown if "<h3" in h and "each system&#x27;s sample 1 of 5" in h]
    assert len(prompts) == 3 and all("GPT-4's explanation" in h for h in prompts)
    assert "offline judge vs text-davinci-003" in shown[0]  # the systems, with the offline judge's rates
