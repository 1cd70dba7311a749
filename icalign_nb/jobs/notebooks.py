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
import gc
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

from ..analysis.poolmap import numba_cache_env
from ..errors import UserError, first_line
from ..files import atomic_write_json, read_text
from .relay import ProgressRelay, relay_engine, relay_writer

KERNEL_LOG = "kernels.log"  # beside the records: what kernel processes wrote to stderr
RUNNER_PARAMETERS = ("figures_dir", "work_dir", "data_dir")  # study settings the runner decides
# Settings that may name a file or folder: given relative to where the command runs, made absolute.
PATH_SETTINGS = ("pool", "eval", "baseline", "reference", "data_dir", "model", "chat_model", "encoder")
PATH_SETTINGS += ("release_dir", "second_pool")


@dataclass(frozen=True)
class NotebookRun:
    """What `icalign notebooks run` was asked to do."""

    names: tuple[str, ...] = ()  # notebook names, numbers or name parts; empty: the main job
    parameters: tuple[tuple[str, str], ...] = ()  # -p KEY VALUE pairs, as typed
    parameters_file: Path | None = None  # a YAML or JSON file of KEY: VALUE (the -p pairs win over it)
    notebook_dir: Path | None = None  # default: the project's notebooks/ folder
    figures_dir: Path | None = None  # default: the project's figures/ folder
    runs_dir: Path | None = None  # default: the project's runs/notebooks/ folder
    work_dir: Path | None = None  # generations and judgments shared by notebooks (default runs/work)
    data_dir: Path | None = None  # the public data's folder for every notebook (default: as the study's)
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
    """Notebooks by full name, number (`1` or `01`), name without its number, or a unique part of the
    name; when none is given, the main job's (or, with `everything`, all)."""
    available = list_notebooks(notebook_dir)
    if not names:
        return available if everything else [p for p in available if in_main_job(p)]
    chosen: list[Path] = []
    for name in names:
        stem = Path(name).stem
        matches = [p for p in available if p.stem == stem]
        if not matches and stem.isdigit():
            matches = [p for p in available if int(p.stem.split("_")[0]) == int(stem)]
        if not matches:  # the name without its number: `explorer` is 06_explorer, not 08_release_explorer
            matches = [p for p in available if p.stem.partition("_")[2].lower() == stem.lower()]
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


def convert(value: object, type_name: str, key: str) -> object:
    """A parameter's value (typed on the command line, or read from a file) as the parameter's type
    (the declared default's, or the study setting's); a value of another type is one line."""
    if isinstance(value, (list, tuple)):  # a list in a file: the comma-separated text a notebook takes
        value = ",".join(str(v) for v in value)
    text = str(value).strip()
    kind = (type_name or "str").lower().split("|")[0].split("[")[0].strip()
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
    return text if isinstance(value, str) else value


def read_parameters_file(path: Path) -> list[tuple[str, object]]:
    """KEY: VALUE pairs of a YAML (or JSON) parameters file, in file order; anything else is one line."""
    import yaml

    text = read_text(path)
    try:
        found = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise UserError(f"{path}{line}: not a YAML file of KEY: VALUE ({first_line(exc)})") from None
    if found is None:
        return []
    if not isinstance(found, dict) or not all(isinstance(k, str) for k in found):
        raise UserError(f"{path}: expected KEY: VALUE pairs (a YAML mapping of parameter names)")
    return list(found.items())


def study_settings() -> dict[str, str]:
    """The settings every notebook's study takes (name -> type), whether or not a notebook declares them."""
    from ..study.study import Study

    return {f.name: str(f.type) for f in fields(Study)}


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
    notebooks: Sequence[Path], user: Sequence[tuple[str, object]], runner: dict[str, str]
) -> dict[Path, dict]:
    """Parameters per notebook: the runner's paths and the user's values (`-p` pairs, a parameters
    file's) typed as each notebook declares them; a setting of the study goes to every notebook (each
    builds its study from it), checked once here so that a bad value stops the run before it starts."""
    from ..study.parameters import check_notebook_parameters
    from ..study.study import Study

    declared = {nb: declared_parameters(nb) for nb in notebooks}
    study = study_settings()
    unknown = [k for k, _ in user if k not in study and not any(k in d for d in declared.values())]
    if unknown:
        names = sorted({k for d in declared.values() for k in d} | set(study))
        raise UserError(
            f"no selected notebook has a parameter '{unknown[0]}'; parameters: {', '.join(names)}"
        )
    plan = {}
    for nb, params in declared.items():
        chosen: dict[str, object] = dict(runner)
        for key, value in user:
            if key in params:
                chosen[key] = absolute(key, convert(value, params[key]["type"], key))
            elif key in study:
                chosen[key] = absolute(key, convert(value, study[key], key))
        # a bad model, preset, name or number is one line, before any notebook runs (each checked beside
        # the notebook's other values, its defaults included)
        check_notebook_parameters(chosen, {**defaults(params), **chosen}, Study.from_notebook(chosen))
        plan[nb] = chosen
    return plan


def defaults(params: dict[str, dict]) -> dict[str, object]:
    """A notebook's declared defaults as values (a default that is not a literal stays its text)."""
    out: dict[str, object] = {}
    for name, info in params.items():
        try:
            out[name] = ast.literal_eval(info["default"])
        except (ValueError, SyntaxError):
            out[name] = info["default"]
    return out


def absolute(key: str, value: object) -> object:
    """A setting naming a file or folder relative to where the command runs, as an absolute path (notebooks
    run in their own folder); built-in names and other settings as they are."""
    if key not in PATH_SETTINGS or not isinstance(value, str) or not value or os.path.isabs(value):
        return value
    path = Path(value).expanduser()
    return str(path.resolve()) if path.exists() and value not in builtin_names() else value


def builtin_names() -> set[str]:
    """Every name of a built-in data set, model or encoder."""
    from ..data.loaders import BUILTINS
    from ..models.registry import REGISTRY
    from ..retrieval.encoders import ENCODER_ALIASES

    return {*(n for names in BUILTINS.values() for n in names), *REGISTRY, *ENCODER_ALIASES}


def runner_parameters(run: NotebookRun, figures_dir: Path, work_dir: Path) -> dict[str, str]:
    """The study settings the runner decides for every notebook: where figures and runs go, and the
    public data's folder when the command names one."""
    runner = {"figures_dir": str(figures_dir), "work_dir": str(work_dir)}
    if run.data_dir is not None:
        runner["data_dir"] = str(run.data_dir.expanduser().resolve())
    return runner


def _snapshot(folder: Path) -> dict[str, float]:
    """Modification times of a folder's files (to list what a notebook wrote)."""
    return {p.name: p.stat().st_mtime for p in folder.glob("*") if p.is_file()} if folder.is_dir() else {}


def run_notebooks(run: NotebookRun, say: Callable[[str], None] = print) -> list[NotebookResult]:
    """Execute the chosen notebooks in order; stop at the first failure (its record shows the cell)."""
    import papermill

    root = project_root()
    notebook_dir = (run.notebook_dir or root / "notebooks").resolve()
    notebooks = find_notebooks(run.names, notebook_dir)
    figures_dir = (run.figures_dir or root / "figures").resolve()
    work_dir = (run.work_dir or root / "runs" / "work").resolve()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    run_dir = (run.runs_dir or root / "runs" / "notebooks").resolve() / stamp
    runner = runner_parameters(run, figures_dir, work_dir)
    given = read_parameters_file(run.parameters_file) if run.parameters_file else []
    plan = plan_parameters(notebooks, [*given, *run.parameters], runner)
    check_kernel(run.kernel_name)
    run_dir.mkdir(parents=True, exist_ok=True)
    figures_dir.mkdir(parents=True, exist_ok=True)
    say(f"running {len(notebooks)} notebook(s); records in {run_dir}, figures in {figures_dir}")
    results: list[NotebookResult] = []
    start_all = time.perf_counter()
    with (
        kernel_environment(),
        _kernel_death_said_once(),
        tempfile.TemporaryDirectory(prefix="icalign-kernels-") as sockets,
    ):
        for i, nb in enumerate(notebooks, start=1):
            record = run_dir / nb.name
            shown = {k: v for k, v in plan[nb].items() if k not in RUNNER_PARAMETERS}
            extra = f" with {shown}" if shown else ""
            say(f"[{i}/{len(notebooks)}] {nb.stem}{extra}")
            before = _snapshot(figures_dir)
            start = time.perf_counter()
            result = NotebookResult(nb.stem, record, 0.0, plan[nb])
            relay = ProgressRelay(relay_writer(), run.heartbeat) if run.relay else None
            try:
                execute(nb, record, plan[nb], run.kernel_name, Path(sockets), relay, run.progress, run_dir)
            except papermill.PapermillExecutionError as exc:
                result.error = f"{exc.ename}: {exc.evalue}".strip()
            except BaseException as exc:  # Ctrl-C, a dead kernel: the run's summary still says what ran
                result.error = "interrupted" if isinstance(exc, KeyboardInterrupt) else first_line(exc)
                raise
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
    log_dir: Path | None = None,
) -> None:
    """Run one notebook with papermill into `record`; the kernel listens on ipc sockets in `socket_dir`
    (no TCP ports, so no "running over TCP without encryption" warnings), `relay` hears its progress, and
    what the kernel process itself writes to stderr goes to `log_dir/kernels.log` (default: beside the
    record), not to the terminal: a kernel stopped by Ctrl-C would print its shutdown there."""
    import papermill
    from traitlets.config import Config

    config = Config(
        {
            "KernelManager": {"transport": "ipc", "ip": str(socket_dir / "kernel")},
            "LoggedKernelManager": {"log_file": str((log_dir or record.parent) / KERNEL_LOG)},
        }
    )
    quiet = _StudySettingsKnown(set(study_settings()))
    logging.getLogger("papermill").addFilter(quiet)
    try:
        papermill.execute_notebook(
            str(nb),
            str(record),
            parameters=parameters,
            kernel_name=kernel_name,
            progress_bar=progress,
            cwd=str(nb.parent),
            report_mode=False,
            config=config,
            kernel_manager_class=logged_kernel_manager(),
            **({"engine_name": relay_engine(), "relay": relay} if relay is not None else {}),
        )
    finally:
        logging.getLogger("papermill").removeFilter(quiet)


def check_kernel(name: str) -> None:
    """Refuse a Jupyter kernel that is not installed, before any notebook starts."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        known = ", ".join(sorted(KernelSpecManager().find_kernel_specs()))
        raise UserError(f"no Jupyter kernel named '{name}'; kernels: {known}") from None


def logged_kernel_manager() -> type:
    """jupyter_client's kernel manager, launching the kernel with its stderr appended to a log file."""
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import Unicode

    class LoggedKernelManager(AsyncKernelManager):
        """A kernel whose own stderr goes to `log_file` (the cells' output is captured as ever)."""

        log_file = Unicode("").tag(config=True)

        async def start_kernel(self, **kw: object) -> None:
            if not self.log_file or "stderr" in kw:
                return await super().start_kernel(**kw)
            with open(self.log_file, "ab") as log:  # the kernel keeps its own copy of the file
                return await super().start_kernel(**kw, stderr=log)

    return LoggedKernelManager


class _KernelDeathSaidOnce(logging.Filter):
    """A kernel that died (or was shut down by Ctrl-C) mid-cell is said once, in the run's own line:
    papermill's log line of it and asyncio's report of the cell's task left with that error are dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        exc = record.exc_info[1] if record.exc_info else None
        died = type(exc).__name__ == "DeadKernelError" or "DeadKernelError" in text
        return not (died or text.startswith("Kernel died while waiting for execute reply"))


class _StudySettingsKnown(logging.Filter):
    """papermill warns of parameters a notebook does not declare; a study's settings reach every notebook
    on purpose (its `Study.from_notebook` reads them), so those warnings are dropped."""

    def __init__(self, names: set[str]) -> None:
        super().__init__()
        self.names = names

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (
            message.startswith("Passed unknown parameter: ") and message.split(": ", 1)[1] in self.names
        )


@contextlib.contextmanager
def _kernel_death_said_once() -> Iterator[None]:
    """While notebooks run, a dead kernel is reported by the run alone (see `_KernelDeathSaidOnce`). After
    a Ctrl-C or a kernel's death the filter stays on asyncio's log: the cell's orphaned task is reported
    only when it is destroyed, as the process ends."""
    quiet = _KernelDeathSaidOnce()
    papermill_log, asyncio_log = logging.getLogger("papermill"), logging.getLogger("asyncio")
    papermill_log.addFilter(quiet)
    asyncio_log.addFilter(quiet)
    try:
        yield
    except BaseException:
        gc.collect()
        raise
    else:
        asyncio_log.removeFilter(quiet)
    finally:
        papermill_log.removeFilter(quiet)


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
