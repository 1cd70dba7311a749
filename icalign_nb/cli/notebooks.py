"""`icalign notebooks run` and `icalign notebooks list`: the main job, by papermill."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_commands(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    """Register `notebooks run` and `notebooks list`."""
    group = sub.add_parser(
        "notebooks", help="the notebooks: run them (the main job) or list their parameters"
    )
    actions = group.add_subparsers(dest="action", required=True)
    listing = argparse.ArgumentParser(add_help=False)
    listing.add_argument(
        "names", nargs="*", help="notebooks by name, number or name part (run: the main job; list: all)"
    )
    listing.add_argument("--notebook-dir", default=None, help="folder of the notebooks (default: notebooks/)")

    p = actions.add_parser("list", parents=[listing], help="each notebook's parameters, defaults and meaning")
    p.set_defaults(func=cmd_list)

    p = actions.add_parser(
        "run",
        parents=[parent, listing],
        help="execute notebooks with papermill (records in runs/notebooks/, figures in figures/)",
    )
    p.add_argument(
        "-p",
        "--param",
        nargs=2,
        action="append",
        metavar=("KEY", "VALUE"),
        help="set a notebook parameter or a study setting (repeatable), e.g. -p model llama-2-13b",
    )
    p.add_argument(
        "-f",
        "--parameters-file",
        default=None,
        help="a YAML file of parameters (KEY: VALUE), e.g. a study.yaml; -p pairs win over it",
    )
    p.add_argument("--figures-dir", default=None, help="where figures are written (default: figures/)")
    p.add_argument("--runs-dir", default=None, help="where run folders go (default: runs/notebooks/)")
    p.add_argument("--work-dir", default=None, help="generations/judgments shared by notebooks (runs/work/)")
    p.add_argument("--kernel", default="python3", help="Jupyter kernel name (default: this environment's)")
    p.add_argument(
        "--no-progress", action="store_true", help="no per-cell progress bar (kernel progress lines stay)"
    )
    p.set_defaults(func=cmd_run)


def _notebook_dir(args: argparse.Namespace) -> Path:
    from ..jobs.notebooks import project_root

    return Path(args.notebook_dir) if args.notebook_dir else project_root() / "notebooks"


def cmd_list(args: argparse.Namespace) -> int:
    """Names and parameters of the notebooks."""
    from ..jobs.notebooks import declared_parameters, find_notebooks, in_main_job

    for nb in find_notebooks(args.names, _notebook_dir(args), everything=True):
        print(nb.stem if in_main_job(nb) else f"{nb.stem}  (beyond the main job: run it by name)")
        for name, info in declared_parameters(nb).items():
            print(f"    {name} = {info['default']}  # {info['help']}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Execute the notebooks."""
    from ..jobs.notebooks import NotebookRun, run_notebooks

    run = NotebookRun(
        names=tuple(args.names),
        parameters=tuple(tuple(p) for p in args.param or ()),
        parameters_file=Path(args.parameters_file) if args.parameters_file else None,
        notebook_dir=_notebook_dir(args),
        figures_dir=Path(args.figures_dir) if args.figures_dir else None,
        runs_dir=Path(args.runs_dir) if args.runs_dir else None,
        work_dir=Path(args.work_dir) if args.work_dir else None,
        data_dir=Path(args.data_dir) if args.data_dir else None,
        kernel_name=args.kernel,
        progress=not args.no_progress,
    )
    run_notebooks(run)
    return 0
