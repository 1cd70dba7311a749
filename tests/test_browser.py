"""The workshop as a participant sees it: JupyterLab on 127.0.0.1, headless Chromium, Run All.

Notebooks 00 and 06 are copied to a temporary folder with small parameter values (a tiny model, two
queries), and 08 with the paper's release (its offline judge on five prompts), opened in Lab and run
with Run All. Checked: no error output; answers left-aligned and wrapped at whole words; the whole
candidate table; the explorer widgets rendered and updated after picking another query, searching,
switching a sample; an executed record (untrusted, so sanitised) keeps its alignment. Screenshots go
to each test's temporary folder. Needs Debian's `chromium` and the `playwright` package.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from conftest import reference_data

CHROMIUM = Path(os.environ.get("ICALIGN_CHROMIUM", "/usr/bin/chromium"))
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists() or importlib.util.find_spec("playwright") is None,
        reason=f"no browser: needs {CHROMIUM} (apt-get install chromium) and playwright (the test extra)",
    ),
]

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "icalign-browser-test"
# Small settings: the tiny random model answers at once; 48 tokens are enough to wrap lines (06 shows
# the long baseline answers beside them, and its prompts nearly fill tiny-random's 2048-token context).
SMALL = {"model": "tiny-random", "limit": 2, "samples": 1, "max_new_tokens": 48}
SMALL_06 = {**SMALL, "max_new_tokens": 8}
RELEASE = reference_data() / "paper_release" if reference_data() is not None else None
SMALL_08 = {"release_dir": str(RELEASE), "proxy_prompts": 5}
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-extensions",
]
VIEWPORT = {"width": 1100, "height": 1400}


def small_copy(src: Path, dst: Path, values: dict[str, object]) -> None:
    """Copy a notebook, setting parameters in its `parameters` cell (comments kept); a study setting the
    cell does not list is added to it, as `-p` adds it for papermill."""
    nb = nbformat.read(src, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    lines, missing = [], dict(values)
    for line in cell.source.splitlines():
        name, _, rest = line.partition(" = ")
        if name in values:
            line = f"{name} = {missing.pop(name)!r}  #{rest.partition('#')[2]}"
        lines.append(line)
    cell.source = "\n".join(lines + [f"{name} = {value!r}" for name, value in missing.items()])
    nbformat.write(nb, dst)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _private_env(root: Path) -> dict[str, str]:
    """Jupyter, IPython and matplotlib state under `root` (nothing written to $HOME); no news toast."""
    env = dict(os.environ)
    dirs = {
        "JUPYTER_CONFIG_DIR": root / "config",
        "JUPYTER_DATA_DIR": root / "data",
        "JUPYTER_RUNTIME_DIR": root / "runtime",
        "JUPYTERLAB_SETTINGS_DIR": root / "config" / "lab" / "user-settings",
        "JUPYTERLAB_WORKSPACES_DIR": root / "config" / "lab" / "workspaces",
        "IPYTHONDIR": root / "ipython",
        "MPLCONFIGDIR": root / "mpl",
    }
    for key, path in dirs.items():
        path.mkdir(parents=True, exist_ok=True)
        env[key] = str(path)
    env.update(JUPYTER_PLATFORM_DIRS="1", PYDEVD_DISABLE_FILE_VALIDATION="1")
    settings = dirs["JUPYTERLAB_SETTINGS_DIR"] / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    return env


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """JupyterLab on 127.0.0.1 over a copy of notebooks 00 and 06 with small settings."""
    root = tmp_path_factory.mktemp("lab")
    notebooks = root / "notebooks"
    notebooks.mkdir()
    copies = [("00_workshop_quickstart", SMALL), ("06_explorer", SMALL_06)]
    copies += [("08_release_explorer", SMALL_08)] if RELEASE is not None and RELEASE.is_dir() else []
    for name, values in copies:
        small_copy(ROOT / "notebooks" / f"{name}.ipynb", notebooks / f"{name}.ipynb", values)
    env = _private_env(root)
    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--allow-root",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={TOKEN}",
        f"--ServerApp.root_dir={notebooks}",
        "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: Run All through Lab's own command
        "--ServerApp.terminals_enabled=False",
        "--KernelManager.transport=ipc",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    log = (root / "lab.log").open("w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        if proc.poll() is not None:
            pytest.fail(f"jupyter lab exited ({proc.returncode}): {(root / 'lab.log').read_text()[-1500:]}")
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={TOKEN}", timeout=2) as reply:
                if reply.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("jupyter lab did not answer within 90 s")
        time.sleep(0.3)
    yield {"base": base, "root": root, "notebooks": notebooks, "env": env}
    proc.terminate()  # the server shuts its kernels down, then exits
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Headless Debian Chromium driven by Playwright; its profile and caches in a temporary home."""
    from playwright.sync_api import sync_playwright

    home = tmp_path_factory.mktemp("chromium-home")
    env = dict(
        os.environ,
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_CACHE_HOME=str(home / "cache"),
        XDG_RUNTIME_DIR=str(home / "runtime"),
    )
    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS, env=env
        )
        yield chromium
        chromium.close()


# Every code cell ran, or a cell failed (Run All stops there).
ALL_RAN = r"""() => {
  const w = window.jupyterapp.shell.currentWidget;
  const failed = [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) '
    + '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
    .some(e => /Traceback|Error/.test(e.innerText));
  const kernel = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  const cells = w && w.content && w.content.model ? [...w.content.model.cells] : [];
  const code = cells.filter(c => c.type === 'code');
  const idle = !!kernel && kernel.status === 'idle';
  return idle && (failed || (code.length > 0 && code.every(c => c.executionCount > 0)));
}"""

# For each element: its computed alignment and wrapping, how many lines its text takes, and every
# place where a new line starts between two word characters (a word broken in two).
LAYOUT = r"""(sel) => [...document.querySelectorAll(sel)].map(el => {
  const range = document.createRange();
  const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
  let prevTop = null, prev = '', seen = '', node;
  const splits = [], tops = new Set();
  while ((node = walker.nextNode())) {
    const t = node.textContent;
    for (let i = 0; i < t.length; i++) {
      range.setStart(node, i); range.setEnd(node, i + 1);
      const r = range.getClientRects();
      seen += t[i];
      if (!r.length) continue;
      const top = Math.round(r[0].top);
      tops.add(top);
      const wrapped = prevTop !== null && top > prevTop + 2;
      if (wrapped && /\w/.test(t[i]) && /\w/.test(prev)) splits.push(seen.slice(-12));
      prevTop = top; prev = t[i];
    }
  }
  const cs = getComputedStyle(el);
  const longest = Math.max(0, ...el.innerText.split(/\s+/).map(w => w.length));
  return {textAlign: cs.textAlign, verticalAlign: cs.verticalAlign, whiteSpace: cs.whiteSpace,
          wordBreak: cs.wordBreak, lines: tops.size, splits, width: el.getBoundingClientRect().width,
          text: el.innerText.slice(0, 80), longest};
})"""

ERRORS = r"""() => [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) '
  + '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
  .map(e => e.innerText).filter(t => /Traceback|Error/.test(t))"""


def open_notebook(page: object, lab: dict, name: str) -> None:
    """Open a notebook in a fresh workspace and wait for its kernel to be idle."""
    page.goto(f"{lab['base']}/lab/tree/{name}?reset&token={TOKEN}")  # ?reset: nothing else reopened
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell", timeout=90_000)
    page.evaluate("() => window.jupyterapp.restored")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
    page.wait_for_function(
        "() => { const w = window.jupyterapp.shell.currentWidget; const s = w && w.sessionContext;"
        " return !!(s && s.session && s.session.kernel && s.session.kernel.status === 'idle'); }",
        timeout=90_000,
    )


def run_all(page: object, shots: Path, name: str) -> str:
    """Run All through Lab's command, wait until every code cell ran; return the notebook's text."""
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    try:
        page.wait_for_function(ALL_RAN, timeout=600_000, polling=500)
    finally:
        page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    assert page.evaluate(ERRORS) == []
    return page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook").inner_text()


def assert_readable(
    boxes: list[dict], multiline: bool = True, longest_word: int | None = None, markdown: bool = False
) -> None:
    """Left-aligned, wrapped at whole words (and, for long texts, really wrapped); a text with a word
    longer than `longest_word` characters (a run of digits in a degenerate answer) may break inside it.
    Text as written keeps its spaces (pre-wrap); rendered markdown is HTML's own flow (its breaks kept)."""
    assert boxes
    for box in boxes:
        assert box["textAlign"] == "left" and box["whiteSpace"] == ("normal" if markdown else "pre-wrap"), box
        whole = longest_word is None or box["longest"] <= longest_word
        assert box["wordBreak"] == "normal" and (box["splits"] == [] or not whole), box
    if multiline:
        assert max(box["lines"] for box in boxes) > 1, boxes


def test_quickstart_runs_in_lab_and_reads_well(lab: dict, browser: object, tmp_path: Path) -> None:
    page = browser.new_context(viewport=VIEWPORT).new_page()
    open_notebook(page, lab, "00_workshop_quickstart.ipynb")
    text = run_all(page, tmp_path, "00-ran")
    assert "Loading widget" not in text and "Error displaying widget" not in text
    assert "Loading weights" not in text and "PosixPath" not in text and "shape:" not in text
    # the whole candidate table: every rank, cells left- and top-aligned (numbers right)
    table = page.locator(".icalign-candidates")
    table.screenshot(path=str(tmp_path / "00-candidates.png"))
    ranks = table.locator("tbody tr td:first-child").all_inner_texts()
    assert ranks == [str(i) for i in range(1, len(ranks) + 1)] and len(ranks) == 20
    cells = page.evaluate(LAYOUT, ".icalign-candidates td")
    bad = [c for c in cells if c["verticalAlign"] != "top" or c["splits"]]
    assert not bad, [(c["text"], c["splits"], c["width"]) for c in bad]  # whole words and numbers
    assert {c["textAlign"] for c in cells} == {"left", "right"}  # text left, numbers right
    assert_readable(page.evaluate(LAYOUT, ".jp-OutputArea-output pre"))  # the prompt
    # the direct and the in-context answers side by side, each in its own column
    answers = page.evaluate(LAYOUT, ".icalign-answer")
    page.locator(".icalign-answer").first.scroll_into_view_if_needed()
    page.screenshot(path=str(tmp_path / "00-answers.png"))
    assert len(answers) == 2 and answers[0]["width"] > 300 and answers[1]["width"] > 300
    assert_readable(answers, markdown=True)
    if "cut at the length cap" in text:
        assert "[cut here: the answer reached the max_new_tokens cap]" in text
    try_the_playground(page, tmp_path)


# Counts the DOM changes of one element from now on (each streamed piece redraws its column once).
COUNT_CHANGES = r"""(sel) => { window.icalignChanges = window.icalignChanges || {};
  window.icalignChanges[sel] = 0;
  new MutationObserver(() => { window.icalignChanges[sel] += 1; })
    .observe(document.querySelector(sel), {childList: true, subtree: true, characterData: true}); }"""
STATUS_DONE = "() => document.querySelector('.icalign-status').innerText.startsWith('done in')"
COLUMNS = (".icalign-stream-direct", ".icalign-stream-in-context")


def try_the_playground(page: object, shots: Path) -> None:
    """Ask the playground a question: both columns fill in piece by piece and say how they ended; then a
    long answer stopped with Stop ends both as stopped."""
    page.locator(".icalign-question textarea").fill("What should I pack for a week of hiking?")
    for sel in COLUMNS:
        page.evaluate(COUNT_CHANGES, sel)
    page.locator("button.icalign-answer-button").click()
    page.wait_for_function(STATUS_DONE, timeout=120_000, polling=200)
    changes = page.evaluate("() => window.icalignChanges")
    page.locator(COLUMNS[0]).scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "00-playground.png"))
    assert all(changes[sel] >= 3 for sel in COLUMNS), changes  # streamed, not shown at the end only
    for sel in COLUMNS:
        head = page.locator(sel).inner_text().splitlines()[0]
        assert "tokens, " in head and any(w in head for w in ("ended", "cut at")), head
    assert_readable(page.evaluate(LAYOUT, ".icalign-stream-direct .icalign-answer"), False, markdown=True)
    tokens = page.locator(".icalign-new-tokens input")
    tokens.fill("1500")
    tokens.press("Tab")
    page.locator("button.icalign-answer-button").click()
    page.wait_for_function(
        "() => document.querySelector('.icalign-stream-direct').innerText.includes('writing')", timeout=60_000
    )
    page.locator("button.icalign-stop-button").click()
    page.wait_for_function(STATUS_DONE, timeout=60_000, polling=200)
    page.locator(".icalign-question").scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "00-playground-stopped.png"))
    for sel in COLUMNS:
        assert "stopped (Stop was pressed)" in page.locator(sel).inner_text()


def test_explorer_widget_renders_and_follows_the_query(lab: dict, browser: object, tmp_path: Path) -> None:
    page = browser.new_context(viewport=VIEWPORT).new_page()
    open_notebook(page, lab, "06_explorer.ipynb")
    text = run_all(page, tmp_path, "06-ran")
    assert "Loading widget" not in text and "Error displaying widget" not in text
    picker, view = page.locator(".icalign-query select"), page.locator(".icalign-view")
    picker.wait_for(state="visible", timeout=30_000)
    first = view.locator("h3").inner_text()
    assert first.startswith(picker.locator("option").first.inner_text().split(":")[0])
    answers = page.evaluate(LAYOUT, ".icalign-view .icalign-answer")
    assert len(answers) >= 3 and min(a["width"] for a in answers) >= 250  # the grid wraps, never squeezes
    assert_readable(answers)
    assert "judge:" in view.inner_text()
    view.screenshot(path=str(tmp_path / "06-first-query.png"))
    picker.select_option(index=1)
    page.wait_for_function(
        "(first) => document.querySelector('.icalign-view h3').innerText !== first", arg=first, timeout=15_000
    )
    second = view.locator("h3").inner_text()
    assert second.startswith(picker.locator("option").nth(1).inner_text().split(":")[0])
    view.screenshot(path=str(tmp_path / "06-second-query.png"))
    view.locator("summary").first.click()  # the folded candidate table opens, readable too
    cells = page.evaluate(LAYOUT, ".icalign-view .icalign-candidates td")
    assert len(cells) == 20 * 6 and all(c["verticalAlign"] == "top" and not c["splits"] for c in cells)
    view.screenshot(path=str(tmp_path / "06-second-query-demos.png"))


def test_an_executed_record_keeps_its_layout_when_opened(lab: dict, browser: object, tmp_path: Path) -> None:
    """A papermill record opened later is untrusted: Lab sanitises its HTML (inline styles survive)."""
    from icalign_nb.jobs.notebooks import execute

    record = lab["notebooks"] / "00_record.ipynb"
    sockets = tmp_path / "sockets"
    sockets.mkdir()
    execute(lab["notebooks"] / "00_workshop_quickstart.ipynb", record, {}, "python3", sockets, None, False)
    shutil.copy(record, tmp_path / record.name)
    page = browser.new_context(viewport=VIEWPORT).new_page()
    open_notebook(page, lab, record.name)
    page.wait_for_selector(".icalign-answer", timeout=30_000)
    trusted = page.evaluate("() => window.jupyterapp.shell.currentWidget.content.model.cells.get(1).trusted")
    assert trusted is False
    page.screenshot(path=str(tmp_path / "00-record.png"), full_page=True)
    assert_readable(page.evaluate(LAYOUT, ".icalign-answer"), markdown=True)  # rendered, as in a live session
    cells = page.evaluate(LAYOUT, ".icalign-candidates td")
    assert len(cells) == 20 * 6 and all(c["verticalAlign"] == "top" and not c["splits"] for c in cells)
    assert {c["textAlign"] for c in cells} == {"left", "right"}


needs_release = pytest.mark.skipif(
    RELEASE is None or not RELEASE.is_dir(), reason="the paper's release is not in the reference data"
)
VIEW_08 = ".icalign-release-view"
HEADING_08 = "() => document.querySelector('.icalign-release-view h3').innerText"


@needs_release
def test_release_explorer_picks_a_prompt_switches_a_sample_and_shows_gpt4s_reason(
    lab: dict, browser: object, tmp_path: Path
) -> None:
    page = browser.new_context(viewport=VIEWPORT).new_page()
    open_notebook(page, lab, "08_release_explorer.ipynb")
    text = run_all(page, tmp_path, "08-ran")
    assert "Loading widget" not in text and "Error displaying widget" not in text
    assert "offline judge vs text-davinci-003" in text  # the systems' table
    picker, view = page.locator(".icalign-release-prompt select"), page.locator(VIEW_08)
    picker.wait_for(state="visible", timeout=30_000)
    overview = page.locator(".icalign-release-overview-view")
    rows = overview.locator("tbody tr").count()
    assert rows == picker.locator("option").count() > 0  # the picker lists what the overview lists
    cells = page.evaluate(LAYOUT, ".icalign-release-overview-view tbody td")
    assert {c["textAlign"] for c in cells} == {"left", "right"}  # text left, davinci-003's length right
    assert all(c["verticalAlign"] == "top" and not c["splits"] for c in cells)
    overview.screenshot(path=str(tmp_path / "08-overview.png"))
    first = page.evaluate(HEADING_08)
    assert first.startswith(picker.locator("option").first.inner_text().split(":")[0])
    # another prompt
    picker.select_option(index=1)
    page.wait_for_function(f"(first) => ({HEADING_08})() !== first", arg=first, timeout=15_000)
    second = page.evaluate(HEADING_08)
    assert second.startswith(picker.locator("option").nth(1).inner_text().split(":")[0])
    # another sample: every system's third sample, marked in its row of marks
    page.locator(".icalign-release-sample button", has_text="3").click()
    page.wait_for_function(
        "() => document.querySelector('.icalign-release-view').innerText.includes(\"sample 3 of 5\")",
        timeout=15_000,
    )
    assert page.evaluate(HEADING_08) == second
    panels = view.locator(".icalign-system")
    assert panels.count() >= 4 and "samples vs davinci-003:" in panels.first.inner_text()
    # GPT-4's written reason, under each judged answer
    reasons = view.locator(".icalign-explanation")
    assert reasons.count() >= 4 and reasons.first.is_visible()
    assert reasons.first.inner_text().startswith("GPT-4's explanation (Assistant 1: this answer")
    answers = page.evaluate(LAYOUT, f"{VIEW_08} .icalign-answer")
    assert len(answers) >= 6 and min(a["width"] for a in answers) >= 250  # two baselines + the systems
    assert_readable(answers, longest_word=40)
    assert_readable(page.evaluate(LAYOUT, f"{VIEW_08} .icalign-explanation"))
    for name, part in (("08-prompt", view.locator("h3")), ("08-prompt-sample-3", panels.first)):
        part.evaluate("e => e.scrollIntoView({block: 'start'})")  # Lab scrolls its panel, not the page
        page.screenshot(path=str(tmp_path / f"{name}.png"))
    # a text search narrows the prompts the overview and the picker list
    page.locator(".icalign-release-search input").fill("webcam")
    page.wait_for_function(
        "() => document.querySelectorAll('.icalign-release-prompt select option').length === 1",
        timeout=15_000,
    )
    page.wait_for_function(f"() => ({HEADING_08})().startsWith('lima-003')", timeout=15_000)
    assert overview.locator("tbody tr").count() == 1
    page.locator(".icalign-release-search").scroll_into_view_if_needed()
    page.screenshot(path=str(tmp_path / "08-search.png"))


@needs_release
def test_the_release_explorers_record_keeps_its_layout_when_opened(
    lab: dict, browser: object, tmp_path: Path
) -> None:
    from icalign_nb.jobs.notebooks import execute

    record = lab["notebooks"] / "08_record.ipynb"
    sockets = tmp_path / "sockets"
    sockets.mkdir()
    execute(lab["notebooks"] / "08_release_explorer.ipynb", record, {}, "python3", sockets, None, False)
    page = browser.new_context(viewport=VIEWPORT).new_page()
    open_notebook(page, lab, record.name)
    page.wait_for_selector(".icalign-explanation", timeout=30_000)
    page.screenshot(path=str(tmp_path / "08-record.png"), full_page=True)
    for name, part in (
        ("08-record-overview", page.locator("table.icalign-release-overview").last),
        ("08-record-prompt", page.locator(".icalign-system").last),
    ):
        part.evaluate("e => e.scrollIntoView({block: 'start'})")
        page.screenshot(path=str(tmp_path / f"{name}.png"))
    cells = page.evaluate(LAYOUT, "table.icalign-release-overview tbody td")
    assert len(cells) > 300 and {c["textAlign"] for c in cells} == {"left", "right"}
    assert all(c["verticalAlign"] == "top" and not c["splits"] for c in cells)
    box = page.locator("table.icalign-release-overview").last.locator("xpath=..")
    assert box.evaluate("e => getComputedStyle(e).overflowY") == "auto"  # the overview scrolls in its box
    assert page.locator("h3", has_text="lima-").count() >= 3  # three prompts, as static HTML
    assert_readable(page.evaluate(LAYOUT, ".icalign-explanation"))
    assert_readable(page.evaluate(LAYOUT, ".icalign-answer"), longest_word=40)
