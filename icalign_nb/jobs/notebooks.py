"""Find the project's notebooks and execute them with papermill into a run folder of executed records.

Each run writes `runs/notebooks/<timestamp>/`: one executed copy per notebook (a record, never edited
by hand) and `run.json` (what ran, with which parameters, how long, which figures it wrote). The
runner passes `figures_dir` and `work_dir` to every notebook that declares them, and `-p KEY VALUE`
overrides to the notebooks that declare KEY (values are converted to the type of the declared default).

While a notebook runs, the terminal hears from it: the kernel's progress bars (the package's tqdm bars,
which reach the runner as widget updates) become lines such as `generate: 3/8 [00:40<01:20, 2.1 tok/s]`,
the lines the package prints in those cells follow them, and a cell silent for a minute is reported as
still working. Kernels talk to the runner over local sockets (ipc), not TCP.
"""

from __future__ import annotations

import ast
import contextlib
import html
import json
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ..errors import UserError, first_line
from ..files import atomic_write_json
from ..views.poolmap import numba_cache_env

RUNNER_PARAMETERS = ("figures_dir", "work_dir")


@dataclass(frozen=True)
class NotebookRun:
    """What `icalign notebooks run` was asked to do."""

    names: tuple[str, ...] = ()  # notebook names, numbers or name parts; empty: the main job
    parameters: tuple[tuple[str, str], ...] = ()  # -p KEY VALUE pairs, as typed
    notebook_dir: Path | None = None  # default: the project's notebooks/ folder
    figures_dir: Path | None = None  # default: the project's figures/ folder
    runs_dir: Path | None = None  # default: the project's runs/notebooks/ folder
    work_dir: Path | None = None  # generations and judgments shared by notebooks (default runs/work)
    kernel_name: str = "python3"  # the Jupyter kernel (python3 = the running environment's ipykernel)
    progress: bool = True  # papermill's per-cell progress bar
    relay: bool = True  # the kernel's progress bars and reports relayed to the terminal as lines
    heartbeat: float = 60.0  # seconds of silence after which a running cell is reported as still working


@dataclass
class NotebookResult:
    """One executed notebook: where its record is, how long it took, what it wrote."""

    name: str
    record: Path
    seconds: float
    parameters: dict
    figures: list[str] = field(default_factory=list)
    error: str | None = None


def project_root(start: Path | None = None) -> Path:
    """The project folder: the current directory (or a parent) holding notebooks/, else the package's."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "notebooks").is_dir() and any((folder / "notebooks").glob("*.ipynb")):
            return folder
    return Path(__file__).resolve().parents[2]


def list_notebooks(notebook_dir: Path) -> list[Path]:
    """The numbered notebooks of a folder, in order."""
    found = sorted(p for p in notebook_dir.glob("*.ipynb") if p.stem[:2].isdigit())
    if not found:
        raise UserError(f"{notebook_dir}: no numbered notebooks (NN_name.ipynb) found")
    return found


def in_main_job(path: Path) -> bool:
    """Whether a notebook runs when none is named (an experiment beyond the paper says it does not,
    in its metadata `icalign.main_job`)."""
    metadata = json.loads(path.read_text(encoding="utf-8")).get("metadata", {})
    return bool(metadata.get("icalign", {}).get("main_job", True))


def find_notebooks(names: Sequence[str], notebook_dir: Path, everything: bool = False) -> list[Path]:
    """Notebooks by full name, number (`1` or `01`) or a unique part of the name; when none is given,
    the main job's (or, with `everything`, all)."""
    available = list_notebooks(notebook_dir)
    if not names:
        return available if everything else [p for p in available if in_main_job(p)]
    chosen: list[Path] = []
    for name in names:
        stem = Path(name).stem
        matches = [p for p in available if p.stem == stem]
        if not matches and stem.isdigit():
            matches = [p for p in available if int(p.stem.split("_")[0]) == int(stem)]
        if not matches:
            matches = [p for p in available if stem.lower() in p.stem.lower()]
        if len(matches) != 1:
            what = "no notebook" if not matches else f"{len(matches)} notebooks"
            raise UserError(f"'{name}' matches {what}; notebooks: {', '.join(p.stem for p in available)}")
        if matches[0] not in chosen:
            chosen.append(matches[0])
    return chosen


def declared_parameters(path: Path) -> dict[str, dict]:
    """The parameters a notebook declares in its `parameters` cell: name -> {type, default, help}; the type
    is the annotation's if there is one, else that of the default literal."""
    import papermill

    found = papermill.inspect_notebook(str(path))
    out = {}
    for name, info in found.items():
        kind = info["inferred_type_name"]
        if kind in (None, "None"):
            try:
                kind = type(ast.literal_eval(info["default"])).__name__
            except (ValueError, SyntaxError):
                kind = "str"
        out[name] = {"type": kind, "default": info["default"], "help": info["help"]}
    return out


TYPE_WORDS = {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "text"}


def convert(value: str, type_name: str, key: str) -> object:
    """A -p value as the declared parameter's type; a value that is not of that type is one line."""
    text = value.strip()
    kind = (type_name or "str").lower().split("|")[0].strip()
    try:
        if kind == "bool":
            if text.lower() in {"true", "1", "yes"}:
                return True
            if text.lower() in {"false", "0", "no"}:
                return False
            raise ValueError(text)
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
    except ValueError:
        raise UserError(f"-p {key} {value}: expected {TYPE_WORDS.get(kind, kind)}") from None
    return value


@contextlib.contextmanager
def kernel_environment() -> Iterator[None]:
    """Environment for notebook kernels (values the user already set win).

    - `NUMBA_CACHE_DIR` in the user cache: UMAP's compiled code is reused by later runs;
    - `OMP_WAIT_POLICY=PASSIVE`: idle OpenMP threads sleep instead of spinning; when other processes
      share the cores, spinning threads slowed token-by-token decoding ~6x here (5 s vs 35 s);
    - `HF_HUB_DISABLE_PROGRESS_BARS=1`: no "Loading weights" widgets saved into the records (they
      reopen as "Error displaying widget"); transformers reads it at import.
    """
    wanted = {**numba_cache_env(), "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    saved = {k: os.environ.get(k) for k in wanted}
    os.environ.update({k: v for k, v in wanted.items() if saved[k] is None})
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)


def plan_parameters(
    notebooks: Sequence[Path], user: Sequence[tuple[str, str]], runner: dict[str, str]
) -> dict[Path, dict]:
    """Parameters per notebook: runner paths and -p overrides, only where the notebook declares them."""
    declared = {nb: declared_parameters(nb) for nb in notebooks}
    unknown = [k for k, _ in user if not any(k in d for d in declared.values())]
    if unknown:
        names = sorted({k for d in declared.values() for k in d} - set(RUNNER_PARAMETERS))
        raise UserError(
            f"no selected notebook has a parameter '{unknown[0]}'; parameters: {', '.join(names)}"
        )
    plan = {}
    for nb, params in declared.items():
        chosen: dict[str, object] = {k: v for k, v in runner.items() if k in params}
        for key, value in user:
            if key in params:
                chosen[key] = convert(value, params[key]["type"], key)
        plan[nb] = chosen
    return plan


def _snapshot(folder: Path) -> dict[str, float]:
    """Modification times of a folder's files (to list what a notebook wrote)."""
    return {p.name: p.stat().st_mtime for p in folder.glob("*") if p.is_file()} if folder.is_dir() else {}


def run_notebooks(run: NotebookRun, say: object = print) -> list[NotebookResult]:
    """Execute the chosen notebooks in order; stop at the first failure (its record shows the cell)."""
    import papermill

    root = project_root()
    notebook_dir = (run.notebook_dir or root / "notebooks").resolve()
    notebooks = find_notebooks(run.names, notebook_dir)
    figures_dir = (run.figures_dir or root / "figures").resolve()
    work_dir = (run.work_dir or root / "runs" / "work").resolve()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    run_dir = (run.runs_dir or root / "runs" / "notebooks").resolve() / stamp
    runner = {"figures_dir": str(figures_dir), "work_dir": str(work_dir)}
    plan = plan_parameters(notebooks, run.parameters, runner)
    run_dir.mkdir(parents=True, exist_ok=True)
    figures_dir.mkdir(parents=True, exist_ok=True)
    say(f"running {len(notebooks)} notebook(s); records in {run_dir}, figures in {figures_dir}")
    results: list[NotebookResult] = []
    start_all = time.perf_counter()
    with kernel_environment(), tempfile.TemporaryDirectory(prefix="icalign-kernels-") as sockets:
        for i, nb in enumerate(notebooks, start=1):
            record = run_dir / nb.name
            shown = {k: v for k, v in plan[nb].items() if k not in RUNNER_PARAMETERS}
            extra = f" with {shown}" if shown else ""
            say(f"[{i}/{len(notebooks)}] {nb.stem}{extra}")
            before = _snapshot(figures_dir)
            start = time.perf_counter()
            result = NotebookResult(nb.stem, record, 0.0, plan[nb])
            relay = ProgressRelay(_relay_writer(), run.heartbeat) if run.relay else None
            try:
                execute(nb, record, plan[nb], run.kernel_name, Path(sockets), relay, run.progress)
            except papermill.PapermillExecutionError as exc:
                result.error = f"{exc.ename}: {exc.evalue}".strip()
            finally:
                if relay is not None:
                    relay.close()
            result.seconds = time.perf_counter() - start
            after = _snapshot(figures_dir)
            result.figures = sorted(n for n, t in after.items() if before.get(n) != t)
            results.append(result)
            _write_summary(run_dir, results, time.perf_counter() - start_all)
            if result.error:
                raise UserError(
                    f"{nb.stem} failed ({first_line(result.error)}); "
                    f"the executed record with the failing cell is {record}"
                )
            pngs = [n for n in result.figures if n.endswith(".png")]
            say(f"    done in {result.seconds:.0f} s; {len(pngs)} figure(s): {', '.join(pngs) or '-'}")
    say(
        f"all {len(results)} notebook(s) done in {time.perf_counter() - start_all:.0f} s; "
        f"records in {run_dir}"
    )
    return results


def execute(
    nb: Path,
    record: Path,
    parameters: dict,
    kernel_name: str,
    socket_dir: Path,
    relay: ProgressRelay | None = None,
    progress: bool = True,
) -> None:
    """Run one notebook with papermill into `record`; the kernel listens on ipc sockets in `socket_dir`
    (no TCP ports, so no "running over TCP without encryption" warnings), and `relay` hears its progress."""
    import papermill
    from traitlets.config import Config

    config = Config({"KernelManager": {"transport": "ipc", "ip": str(socket_dir / "kernel")}})
    papermill.execute_notebook(
        str(nb),
        str(record),
        parameters=parameters,
        kernel_name=kernel_name,
        progress_bar=progress,
        cwd=str(nb.parent),
        report_mode=False,
        config=config,
        **({"engine_name": _relay_engine(), "relay": relay} if relay is not None else {}),
    )


PROGRESS_RIGHT = re.compile(r"^\s*(\d+)/(\d+|\?)\s*\[(.*)\]\s*$")  # tqdm's "3/8 [00:40<01:20, 2.1 tok/s]"
PROGRESS_LEFT = re.compile(r"^(.*?)[:\s]*\d+%\s*$")  # tqdm's "generate:  37%"


class ProgressRelay:
    """Turns a kernel's progress bars (tqdm widgets, seen as widget updates) into terminal lines, relays
    what cells with a progress bar print, and says a silent cell is still working every `heartbeat` s."""

    def __init__(self, write: Callable[[str], None], heartbeat: float = 60.0, indent: str = "    ") -> None:
        self.write, self.heartbeat, self.indent = write, heartbeat, indent
        self.lock = threading.Lock()
        self.label = ""  # the description of the bar updated last
        self.shown: dict[str, tuple[str, float]] = {}  # comm id -> (count shown, when)
        self.cell, self.cells, self.cell_start = 0, 0, time.monotonic()
        self.cell_has_bar = False
        self.last = time.monotonic()
        self.latest = ""  # the last progress line, repeated by the heartbeat
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True) if heartbeat > 0 else None
        if self.thread is not None:
            self.thread.start()

    def cell_started(self, index: int, total: int) -> None:
        """A code cell began executing."""
        with self.lock:
            self.cell, self.cells, self.cell_start = index, total, time.monotonic()
            self.cell_has_bar, self.latest = False, ""

    def widget(self, comm_id: str, state: dict) -> None:
        """A widget's state changed: if it is a tqdm bar's text, relay its count (at most every 2 s)."""
        value = state.get("value")
        if not isinstance(value, str):
            return
        text = html.unescape(value).replace("\u2007", " ").strip()
        if left := PROGRESS_LEFT.match(text):
            self.label = left.group(1).strip()
            return
        right = PROGRESS_RIGHT.match(text)
        if right is None:
            return
        done, total, inside = right.groups()
        now = time.monotonic()
        count, when = self.shown.get(comm_id, ("", 0.0))
        if f"{done}/{total}" == count or (now - when < 2 and done != total):
            return
        self.shown[comm_id] = (f"{done}/{total}", now)
        line = f"{self.label or 'progress'}: {done}/{total} [{' '.join(inside.split())}]"
        with self.lock:
            self.cell_has_bar, self.latest = True, line
        self._say(line)

    def stream(self, name: str, text: str) -> None:
        """A cell printed: relay its lines when the cell shows a progress bar (the package's reports)."""
        if name != "stdout" or not self.cell_has_bar:
            return
        for line in text.splitlines():
            if line.strip():
                self._say(line.rstrip()[:200])

    def close(self) -> None:
        """Stop the heartbeat."""
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=5)

    def _say(self, line: str) -> None:
        with self.lock:
            self.last = time.monotonic()
        self.write(self.indent + line)

    def _beat(self) -> None:
        while not self.stop.wait(min(5.0, self.heartbeat)):
            now = time.monotonic()
            if self.cell and now - self.last >= self.heartbeat:
                with self.lock:
                    running = now - self.cell_start
                    where = f"cell {self.cell}/{self.cells}" if self.cells else f"cell {self.cell}"
                    latest = f"; last: {self.latest}" if self.latest else ""
                self._say(f"still working on {where} ({running:.0f} s){latest}")


def _relay_writer() -> Callable[[str], None]:
    """Write a line to stdout without tearing papermill's progress bar."""
    from tqdm import tqdm

    return lambda line: tqdm.write(line, file=sys.stdout)


def _relay_engine() -> str:
    """The name of a papermill engine whose notebook client feeds a `ProgressRelay` (registered once)."""
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine, papermill_engines
    from papermill.log import logger
    from papermill.utils import merge_kwargs, remove_args
    from traitlets import Any

    name = "icalign-relay"

    class RelayClient(PapermillNotebookClient):
        relay = Any(None)

        def handle_comm_msg(self, outs: list, msg: dict, cell_index: int) -> None:
            super().handle_comm_msg(outs, msg, cell_index)
            state = msg["content"].get("data", {}).get("state")
            if self.relay is not None and isinstance(state, dict):
                self.relay.widget(msg["content"].get("comm_id", ""), state)

        def output(self, outs: list, msg: dict, display_id: str | None, cell_index: int) -> object:
            if self.relay is not None and msg["msg_type"] == "stream":
                self.relay.stream(msg["content"].get("name", ""), msg["content"].get("text", ""))
            return super().output(outs, msg, display_id, cell_index)

    class RelayEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(  # papermill's own, with the client above
            cls,
            nb_man: object,
            kernel_name: str,
            log_output: bool = False,
            stdout_file: object = None,
            stderr_file: object = None,
            start_timeout: int = 60,
            execution_timeout: int | None = None,
            relay: ProgressRelay | None = None,
            **kwargs: object,
        ) -> object:
            code = [i for i, c in enumerate(nb_man.nb.cells) if c.cell_type == "code"]

            def started(cell: object, cell_index: int) -> None:
                if relay is not None and cell_index in code:
                    relay.cell_started(code.index(cell_index) + 1, len(code))

            kwargs = remove_args(["input_path"], **kwargs)
            final = merge_kwargs(
                remove_args(["timeout", "startup_timeout"], **kwargs),
                timeout=execution_timeout or kwargs.get("timeout"),
                startup_timeout=start_timeout,
                kernel_name=kernel_name,
                log=logger,
                log_output=log_output,
                stdout_file=stdout_file,
                stderr_file=stderr_file,
                relay=relay,
                on_cell_execute=started,
            )
            return RelayClient(nb_man, **final).execute()

    papermill_engines.register(name, RelayEngine)
    return name


def _write_summary(run_dir: Path, results: list[NotebookResult], seconds: float) -> None:
    """`run.json`: what ran, with which parameters, how long, which figures, which error."""
    atomic_write_json(
        run_dir / "run.json",
        {
            "python": sys.executable,
            "seconds": round(seconds, 1),
            "notebooks": [
                {
                    "name": r.name,
                    "record": r.record.name,
                    "seconds": round(r.seconds, 1),
                    "parameters": r.parameters,
                    "figures": r.figures,
                    "error": r.error,
                }
                for r in results
            ],
        },
    )
