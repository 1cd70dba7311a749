"""`icalign judge` (a run's answers against a baseline, or head to head against another run) and
`icalign judge-fit` (refit the fitted judge to GPT-4's verdicts)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .common import add_option, add_stats_options, bootstrap, positive_int, settings_from

if TYPE_CHECKING:
    from ..judging.run import JudgeRun


def add_judge_options(p: argparse.ArgumentParser) -> None:
    """Which judge, and how it is asked (left out: the offline default, the fitted judge)."""
    add_option(
        p,
        "--judge",
        help="fitted[:FILE] (default) | embedding[:ENCODER] | paper | openai:MODEL | local:MODEL "
        "| recorded:FILE",
    )
    add_option(p, "--prompt", choices=["paper", "default"], help="judge prompt of LLM judges")
    add_option(p, "--base-url", help="OpenAI-compatible endpoint (else OPENAI_BASE_URL)")
    add_option(p, "--temperature", type=float, help="judge sampling temperature")
    add_option(p, "--max-tokens", type=positive_int, help="judge reply token cap")
    add_option(p, "--margin", type=float, help="draw margin on the score difference")
    add_option(p, "--device", help="local judge device: cpu | cuda")
    add_option(p, "--concurrency", type=positive_int, help="parallel requests to an endpoint (8)")
    add_option(p, "--max-retries", type=int, help="endpoint judges: retries per request (6)")
    add_option(p, "--timeout", type=float, help="endpoint judges: seconds per request (120)")
    add_option(
        p,
        "--reference",
        help="reference answers (fitted and embedding judges): a baseline name/file or eval:NAME "
        "(default: the run's eval set's)",
    )


def judge_run(args: argparse.Namespace, run_dir: Path, baseline: str) -> JudgeRun:
    """The judging the options describe, for one run directory (or the release, with Path('.'))."""
    from ..judging.run import JudgeRun
    from ..judging.spec import DEFAULT_JUDGE, parse_judge_spec

    spec = parse_judge_spec(
        args.judge or DEFAULT_JUDGE,
        prompt=args.prompt,
        base_url=args.base_url,
        temperature=args.temperature,
        max_tokens=args.max_tokens,
        margin=args.margin,
        device=args.device,
    )
    return settings_from(
        JudgeRun,
        args,
        run_dir=run_dir,
        baseline=baseline,
        judge=spec,
        swap=getattr(args, "swap", False),
        out=Path(args.out) if getattr(args, "out", None) else None,
        progress=not getattr(args, "no_progress", True),
    )


def add_commands(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    """Register `judge` and `judge-fit`."""
    p = sub.add_parser(
        "judge", parents=[parent], help="judge a run's answers against a baseline; writes DIR/judgments.jsonl"
    )
    p.add_argument("--run", required=True, help="run directory with generations.jsonl")
    p.add_argument(
        "--baseline",
        required=True,
        help="built-in baseline name (davinci003, chatgpt, ...), a file, or run:DIR (head to head: another "
        "run's answers to the same queries and samples, judged in both orders)",
    )
    add_judge_options(p)
    p.add_argument(
        "--swap",
        action="store_true",
        help="judge both orders; agreeing orders keep their verdict, disagreeing ones count as a draw",
    )
    p.add_argument("--out", default=None, help="judgments file (default DIR/judgments.jsonl)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_judge)

    p = sub.add_parser(
        "judge-fit",
        parents=[parent],
        help="fit the fitted judge to GPT-4's verdicts (release judgment files, AlpacaEval annotations)",
    )
    p.add_argument(
        "--release",
        default=None,
        help="folder of release-format verdicts (*_vs_*_autoeval.jsonl beside the answers); "
        "default, with no --annotations either: the paper's release (pinned)",
    )
    p.add_argument(
        "--annotations",
        nargs="+",
        default=None,
        help="AlpacaEval annotation files (instruction, output_1, output_2, preference); default, with no "
        "--release either: AlpacaEval 1's GPT-4 annotations of 10 models (pinned)",
    )
    p.add_argument(
        "--reference",
        default=None,
        help="reference answers for the annotations by instruction (a file or built-in name; default for the "
        "pinned annotations: alpaca-eval-gpt4)",
    )
    p.add_argument("--out", required=True, help="coefficients file to write (use with --judge fitted:FILE)")
    p.add_argument(
        "--no-validate",
        action="store_true",
        help="skip the nested out-of-fit validation (its numbers are then not recorded in the file)",
    )
    add_stats_options(p, fmt=False)
    p.set_defaults(func=cmd_judge_fit)


def cmd_judge(args: argparse.Namespace) -> int:
    """Judge a run, write its judgments, print the counts (and the position-swap agreement)."""
    from ..analysis.winrates import swap_agreement
    from ..judging.run import RUN_PREFIX, print_summary, run_judge

    args.swap = args.swap or args.baseline.startswith(RUN_PREFIX)  # head to head: both orders
    summary = run_judge(judge_run(args, Path(args.run), args.baseline))
    print_summary(summary)
    if args.swap:
        for row in swap_agreement(summary.frame(Path(args.run).name)).iter_rows(named=True):
            print(
                f"position swap: the two orders agree on {row['agree']}/{row['pairs']} "
                f"({row['agreement']:.1%}); disagreements count as draws"
            )
    return 0


def cmd_judge_fit(args: argparse.Namespace) -> int:
    """Fit, validate (nested, out of fit) and write a coefficients file; print what carries the weight."""
    from ..analysis.judge_validation import labelled_sources, validated_fit
    from ..data.loaders import source_path
    from ..generation.rundir import check_output
    from ..judging.fit import describe, write_coefficients

    reference = source_path(args.reference, "baseline", args.data_dir) if args.reference else None
    check_output(args.out, [args.release, *(args.annotations or []), reference])
    say = lambda line: print(line, file=sys.stderr)  # noqa: E731
    items, sources = labelled_sources(args.release, args.annotations, args.reference, args.data_dir)
    coefficients = validated_fit(items, sources, bootstrap(args), validate=not args.no_validate, say=say)
    write_coefficients(coefficients, args.out)
    for name, model in (
        ("with a reference", coefficients.models.with_reference),
        ("without a reference", coefficients.models.without_reference),
    ):
        weights = ", ".join(f"{f} {w:+.2f}" for f, _, w in describe(model)[:5])
        print(f"model {name}: {model.decisive} decisive verdicts; weight per SD: {weights}")
    print(f"draw margin |p - 0.5| <= {coefficients.models.margin:.4f}; wrote {args.out}")
    for judge, numbers in coefficients.validation.get("spearman", {}).items():
        print(f"{judge}: Spearman {numbers['spearman']:.3f} over {numbers['systems']} systems")
    return 0
