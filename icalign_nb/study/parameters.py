"""The settings notebooks declare beside their study's, each checked by what the notebook builds from it,
so that `icalign notebooks run` refuses a bad value before the first notebook starts."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..analysis.poolmap import MapConfig
from ..analysis.winrates import Bootstrap
from ..checks import in_range
from ..data.loaders import check_source
from ..errors import UserError
from ..retrieval.presets import check_preset
from .ablations import ablation_study
from .study import Study


def _folder(name: str) -> Callable[[Any, Mapping[str, Any], Study], None]:
    def check(value: Any, values: Mapping[str, Any], study: Study) -> None:
        if value and not Path(str(value)).expanduser().is_dir():
            raise UserError(f"{name} {value}: not a folder")

    return check


def _count(name: str, least: int) -> Callable[[Any, Mapping[str, Any], Study], None]:
    return lambda value, values, study: in_range(name, value, at_least=least, whole=True)


# name -> check(value, all the notebook's values, its study); each builds what the notebook builds.
CHECKS: dict[str, Callable[[Any, Mapping[str, Any], Study], object]] = {
    "preset": lambda value, values, study: check_preset(str(value)),
    "query_index": _count("query_index", 0),
    "n_queries": _count("n_queries", 1),
    "n_examples": _count("n_examples", 0),
    "n_clusters": lambda value, values, study: MapConfig(n_clusters=value or None, seed=study.seed),
    "bootstrap": lambda value, values, study: Bootstrap(n=value, seed=study.seed),
    # notebook 05 runs its proxy judge on at least one prompt unless told not to; in 08, 0 means no judge
    "proxy_prompts": lambda value, values, study: in_range(
        "proxy_prompts", value, at_least=int(values.get("proxy_judge") is True), whole=True
    ),
    "ablations": lambda value, values, study: ablation_study(study, bool(values.get("k_sweep", True)), value),
    "second_pool": lambda value, values, study: check_source(value, "pool") if value else None,
    "release_dir": _folder("release_dir"),
    "record_prompts": lambda value, values, study: _release_ids("record_prompts", value),
}


def _release_ids(name: str, value: Any) -> None:
    """Comma-separated LIMA test prompt ids as the release numbers them (`lima-000` … `lima-299`)."""
    wrong = [p for p in str(value).split(",") if p.strip() and not re.fullmatch(r"lima-[0-2]\d\d", p.strip())]
    if wrong:
        raise UserError(f"{name}: unknown prompt '{wrong[0].strip()}' (ids lima-000 … lima-299)")


def check_notebook_parameters(given: Mapping[str, Any], values: Mapping[str, Any], study: Study) -> None:
    """Refuse a setting `given` to a notebook that the notebook would refuse later (one line naming it),
    each checked beside the notebook's other `values` (its defaults included) and its study."""
    for name, value in given.items():
        check = CHECKS.get(name)
        if check is not None:
            check(value, values, study)
