"""Typed loaders for pools, evaluation sets, baselines and the paper's release; pinned fetches.

Every loader returns a polars DataFrame with a fixed schema:

- pool: ``id, prompt, response, category, source``
- eval set: ``id, prompt, category, reference, baseline`` (the last two may be null)
- baseline answers: ``id, prompt, response``
- released outputs: ``query_id, sample, prompt, response``
- released judgments: ``query_id, sample, raw``

Alpaca rows with a non-empty ``input`` become ``instruction + "\\n\\n" + input`` (the two
parts separated by a blank line, as Alpaca's own prompt template separates them).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import polars as pl

from .errors import UserError, first_line, where
from .files import atomic_write_bytes, cache_dir, iter_jsonl, sha256_file

DATA_DIR_ENV = "ICALIGN_DATA_DIR"

_RELEASE = (
    "https://raw.githubusercontent.com/xhan77/in-context-alignment/61fc2bd104e17764acae6e3be1dfd4424b47b2ad/"
)
_ALPACA_EVAL = (
    "https://raw.githubusercontent.com/tatsu-lab/alpaca_eval/"
    "cd543a149df89434d8a54582c0151c0b945c3d20/results/{}/model_outputs.json"
)
_URIAL = "https://raw.githubusercontent.com/Re-Align/URIAL/127f94ed4a08955a79368355fcd878a2ee8c0e2e/"


@dataclass(frozen=True)
class RemoteFile:
    """A public file: where it sits in a data directory, its pinned URL and sha256."""

    relpath: str
    url: str
    sha256: str | None  # None: not pinned yet; the hash seen on first fetch is printed


def _release(name: str, sha: str) -> RemoteFile:
    return RemoteFile(f"paper_release/{name}", _RELEASE + "outputs/" + name, sha)


REMOTE_FILES: dict[str, RemoteFile] = {
    f.relpath: f
    for f in [
        _release(
            "davinci003_results.jsonl",
            "c51ad09bb6f0fd35910ac42fdc88616fb9e7bc41ac17d628c24d9e9bce15c98b",
        ),
        _release(
            "chatgpt_results.jsonl",
            "87b50837d2dbe955bc8070737125a36021159a6cb44202fe0ddf759d8492be52",
        ),
        _release(
            "llama2-13B_icl-oasstgpt_outputs_temp0.7.jsonl",
            "324ee734ba09bd2ce43e9eb8e4ca506cc80fc0623d617fa04f6fcf8075877254",
        ),
        _release(
            "llama2-13B_icl-oasstgpt_vs_chatgpt_autoeval.jsonl",
            "1ba9692482291e85782ec049231d56ad8b612afd49a203124d8df67b3b92a87d",
        ),
        _release(
            "llama2-13B_icl-oasstgpt_vs_davinci003_autoeval.jsonl",
            "1b50c544d58fbdd5d84d32c18987c6dcefeb90cc1b47f81b59a85312ae23aa8e",
        ),
        _release(
            "llama2-13B_icl-random-oasstgpt_outputs_temp0.7.jsonl",
            "b2824fc851e2e0fce3848c72636821ab504a92495273c9a87fdc68fbaf56828b",
        ),
        _release(
            "llama2-13B_icl-random-oasstgpt_vs_chatgpt_autoeval.jsonl",
            "d4df362ec16a69b49704c073188cbc4eb280ef82ac52d2e519ac657a3a4d46e2",
        ),
        _release(
            "llama2-13B_icl-random-oasstgpt_vs_davinci003_autoeval.jsonl",
            "2feab8e232c8fed7ed5f190838ad3c5124feac85a7eebd8da314e60791d2cc44",
        ),
        _release(
            "llama2base-13B_zeroshot_outputs_temp0.7.jsonl",
            "0d24662633b23efaf31baca7df5a0c46647b6c31586b9bce77a0886326c324eb",
        ),
        _release(
            "llama2base-13B_zeroshot_vs_davinci003_autoeval.jsonl",
            "8df45d5e9cff68c166bad8ee883b2d85c1b23d4cdfd5e829626d010994bac09f",
        ),
        _release(
            "llama2chat-13B_outputs_temp0.7.jsonl",
            "946a6672203ab7af516025a47552155c42e944bbb4fff8b844d42320113d44b8",
        ),
        _release(
            "llama2chat-13B_vs_chatgpt_autoeval.jsonl",
            "9ad3f79883e2671f3d9debe64383c21240890ce84210e60edda1bada2eda4e88",
        ),
        _release(
            "llama2chat-13B_vs_davinci003_autoeval.jsonl",
            "9791116056dfb807cccd9d9e644acc1a18fdfd347f848b5a53f97410472c2cb9",
        ),
        RemoteFile(
            "paper_resources/oasst_gpt_9k.jsonl",
            _RELEASE + "resources/oasst_gpt_9k.jsonl",
            None,
        ),
        RemoteFile(
            "alpaca_eval/gpt4_0613.json",
            _ALPACA_EVAL.format("gpt4_0613"),
            "a7f220e428d66d20fa187e895ea2352ad8142fcdc38815365a54e4687893fc8f",
        ),
        RemoteFile(
            "alpaca_eval/llama-2-13b-chat-hf.json",
            _ALPACA_EVAL.format("llama-2-13b-chat-hf"),
            "75ff67385486aef7c93ef5cf57ca29d2fc377b04ae3cb71fe107d7062948647f",
        ),
        RemoteFile(
            "alpaca_eval/llama-2-7b-chat-hf.json",
            _ALPACA_EVAL.format("llama-2-7b-chat-hf"),
            "5a66ed18b1ecef7a6a728eb32665651853092cbf11d518538d80d86c2df1b5ae",
        ),
        RemoteFile(
            "alpaca_eval/text_davinci_003.json",
            _ALPACA_EVAL.format("text_davinci_003"),
            "af0bc112f08c88bf589bbfe6fc1036806d0a0f6fec9c4d5a4db860f5afe73b4b",
        ),
        RemoteFile(
            "alpaca/alpaca_5000.json",
            "https://raw.githubusercontent.com/tatsu-lab/stanford_alpaca/"
            "5e69c50054c48cd3b919c46d13bb2d92a62f4498/data/alpaca_5000.json",
            "fc1add24c93c9fbbe585a64a6c9bf6165eb110225f4470efbff382a913558ec0",
        ),
        RemoteFile(
            "urial/inst_1k_v4.help.txt",
            _URIAL + "urial_prompts/inst_1k_v4.help.txt",
            "226e9719f2e3fe03a937c26ba6175bf8bc604295577dab28f0e0c78a4ffecfed",
        ),
        RemoteFile(
            "urial/inst_1k_v4.txt",
            _URIAL + "urial_prompts/inst_1k_v4.txt",
            "7373f07b27e708a6cfdb7ad27299e1e4ef7ac5acb476860b96254d74f87f54e0",
        ),
        RemoteFile(
            "urial/mt_bench_questions.jsonl",
            _URIAL + "run_scripts/mt-bench/question.jsonl",
            "119565adbab82227089cefdb44c8d7e2cf04dc0a0ec233634c82e7d4e2a944f7",
        ),
        RemoteFile(
            "judge/fastchat_prompt.jsonl",
            "https://raw.githubusercontent.com/lm-sys/FastChat/"
            "080a703c7e77215a9a7530d421acedb05fe7ed23/fastchat/eval/table/prompt.jsonl",
            "475f1ff9e2872fe0ffd43db38fd5c3277f46fe6b2d62fcd2f968a0c9e59391a3",
        ),
    ]
}

POOL_SCHEMA = {
    "id": pl.String,
    "prompt": pl.String,
    "response": pl.String,
    "category": pl.String,
    "source": pl.String,
}
EVAL_SCHEMA = {
    "id": pl.String,
    "prompt": pl.String,
    "category": pl.String,
    "reference": pl.String,
    "baseline": pl.String,
}
ANSWER_SCHEMA = {"id": pl.String, "prompt": pl.String, "response": pl.String}

# Built-in names: name -> (relative path in a data dir, or "package:<file>" for shipped data).
BUILTIN_POOLS = {
    "starter": "package:starter_pool",
    "oasst-gpt-9k": "paper_resources/oasst_gpt_9k.jsonl",
    "alpaca": "alpaca/alpaca_5000.json",
    "alpaca-eval-gpt4": "alpaca_eval/gpt4_0613.json",
    "lima-test-chatgpt": "paper_release/chatgpt_results.jsonl",
    "lima-test-davinci003": "paper_release/davinci003_results.jsonl",
}
BUILTIN_EVALS = {
    "starter": "package:starter_eval.jsonl",
    "lima-test": "paper_release/davinci003_results.jsonl",
    "alpaca-eval": "alpaca_eval/text_davinci_003.json",
    "mt-bench": "urial/mt_bench_questions.jsonl",
}
BUILTIN_BASELINES = {
    "starter": "package:starter_eval.jsonl",
    "davinci003": "paper_release/davinci003_results.jsonl",
    "chatgpt": "paper_release/chatgpt_results.jsonl",
    "alpaca-eval-davinci003": "alpaca_eval/text_davinci_003.json",
    "alpaca-eval-gpt4": "alpaca_eval/gpt4_0613.json",
    "alpaca-eval-llama-2-13b-chat": "alpaca_eval/llama-2-13b-chat-hf.json",
}


# ---------------------------------------------------------------- locating and fetching


def package_resource(name: str) -> Path:
    """Path of a data file shipped inside the package (`icalign_nb/resources/<name>`)."""
    return Path(str(resources.files("icalign_nb") / "resources" / name))


def data_root(data_dir: str | Path | None = None) -> Path | None:
    """The local data directory in force: the argument, else `ICALIGN_DATA_DIR`, else None."""
    chosen = data_dir or os.environ.get(DATA_DIR_ENV)
    return Path(chosen).expanduser() if chosen else None


def fetch(relpath: str, data_dir: str | Path | None = None) -> Path:
    """Return a local path for a public file: from the data directory, else the verified cache."""
    root = data_root(data_dir)
    if root is not None:
        path = root / relpath
        if not path.exists():
            raise UserError(
                f"{path}: not found in data directory {root} (set by --data-dir or {DATA_DIR_ENV})"
            )
        return path
    remote = REMOTE_FILES.get(relpath)
    if remote is None:
        raise UserError(f"{relpath}: not a known public file; known: {', '.join(sorted(REMOTE_FILES))}")
    path = cache_dir() / "data" / relpath
    if path.exists():
        return path
    return _download(remote, path)


def _download(remote: RemoteFile, path: Path) -> Path:
    """Download a pinned file, check its sha256, then move it into the cache atomically."""
    import hashlib

    import httpx

    try:
        response = httpx.get(remote.url, follow_redirects=True, timeout=120)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise UserError(
            f"{remote.url}: download failed ({first_line(exc)}); offline? point --data-dir or {DATA_DIR_ENV} "
            "at a directory with the same layout"
        ) from None
    digest = hashlib.sha256(response.content).hexdigest()
    if remote.sha256 is not None and digest != remote.sha256:
        raise UserError(f"{remote.url}: sha256 {digest} does not match the pinned {remote.sha256}")
    if remote.sha256 is None:
        print(f"note: {remote.relpath} fetched with sha256 {digest} (not pinned)")
    atomic_write_bytes(path, response.content)
    return path


def verify(path: Path, relpath: str) -> bool:
    """True when a local file matches the pinned sha256 of `relpath` (or nothing is pinned)."""
    remote = REMOTE_FILES.get(relpath)
    return remote is None or remote.sha256 is None or sha256_file(path) == remote.sha256


# ---------------------------------------------------------------- reading records


def read_records(path: Path) -> list[tuple[str, dict]]:
    """Read .jsonl, .json (a list of objects) or .parquet into (location, object) pairs."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: file not found")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return [(where(path, n), obj) for n, obj in iter_jsonl(path)]
    if suffix == ".json":
        try:
            items = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise UserError(f"{where(path, exc.lineno)}: malformed JSON ({exc.msg})") from None
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise UserError(f"{path}: expected a JSON list of objects")
        return [(f"{path}: item {i + 1}", obj) for i, obj in enumerate(items)]
    if suffix == ".parquet":
        return [(f"{path}: row {i + 1}", obj) for i, obj in enumerate(pl.read_parquet(path).to_dicts())]
    raise UserError(f"{path}: unsupported format '{suffix}' (use .jsonl, .json or .parquet)")


def _text(loc: str, obj: dict, field: str, *, required: bool = True, empty_ok: bool = False) -> str | None:
    """A string field; missing, non-string or (unless `empty_ok`) blank values are a UserError."""
    if field not in obj or obj[field] is None:
        if not required:
            return None
        found = ", ".join(sorted(obj)) or "none"
        raise UserError(f"{loc}: missing field '{field}' (fields found: {found})")
    value = obj[field]
    if not isinstance(value, str):
        raise UserError(f"{loc}: field '{field}' must be a string, got {type(value).__name__}")
    if required and not empty_ok and not value.strip():
        raise UserError(f"{loc}: field '{field}' is empty")
    return value


def _ids(records: list[tuple[str, dict]], prefix: str) -> list[str]:
    """Ids from an `id` field where present, else `<prefix>-<index>`; duplicates are an error."""
    ids = []
    seen: dict[str, str] = {}
    for i, (loc, obj) in enumerate(records):
        value = obj.get("id", obj.get("question_id"))
        rid = str(value) if value is not None else f"{prefix}-{i:05d}"
        if rid in seen:
            raise UserError(f"{loc}: field 'id': duplicate id '{rid}' (first at {seen[rid]})")
        seen[rid] = loc
        ids.append(rid)
    return ids


def _detect(obj: dict) -> str:
    """Name the record format from its fields."""
    if "final_return" in obj:
        return "paper-pool"
    if "instruction" in obj and "input" in obj:
        return "alpaca"
    if "instruction" in obj:
        return "alpaca-eval"
    if "turns" in obj:
        return "mt-bench"
    return "generic"


def _prompt_response(loc: str, obj: dict, fields: dict[str, str] | None) -> tuple[str, str]:
    """Pull (prompt, response) out of one record in any supported format."""
    if fields:
        prompt_field, response_field = fields.get("prompt", "prompt"), fields.get("response", "response")
        return _text(loc, obj, prompt_field), _text(loc, obj, response_field, empty_ok=True)
    kind = _detect(obj)
    if kind == "paper-pool":
        return _text(loc, obj, "prompt"), _text(loc, obj, "final_return", empty_ok=True)
    if kind == "alpaca":
        instruction = _text(loc, obj, "instruction")
        extra = _text(loc, obj, "input", required=False) or ""
        prompt = f"{instruction}\n\n{extra}" if extra.strip() else instruction
        return prompt, _text(loc, obj, "output", empty_ok=True)
    if kind == "alpaca-eval":
        return _text(loc, obj, "instruction"), _text(loc, obj, "output", empty_ok=True)
    return _text(loc, obj, "prompt"), _text(loc, obj, "response", empty_ok=True)


def _resolve(spec: str | Path, builtins: dict[str, str], kind: str, data_dir: str | Path | None) -> Path:
    """A built-in name or a path -> a local file path."""
    name = str(spec)
    if name in builtins:
        target = builtins[name]
        if target.startswith("package:"):
            return package_resource(target.removeprefix("package:"))
        return fetch(target, data_dir)
    path = Path(name).expanduser()
    if path.exists():
        return path
    raise UserError(f"{name}: no such file and not a built-in {kind} (built-ins: {', '.join(builtins)})")


def load_pool(
    spec: str | Path = "starter", data_dir: str | Path | None = None, fields: dict[str, str] | None = None
) -> pl.DataFrame:
    """Load a demonstration pool (built-in name or file) as ``id, prompt, response, category, source``."""
    path = _resolve(spec, BUILTIN_POOLS, "pool", data_dir)
    records = _records_in(path)
    if not records:
        raise UserError(f"{path}: the pool is empty")
    ids = _ids(records, str(spec) if str(spec) in BUILTIN_POOLS else path.stem)
    rows, dropped = [], []
    for rid, (loc, obj) in zip(ids, records, strict=True):
        prompt, response = _prompt_response(loc, obj, fields)
        if not response.strip():
            dropped.append(loc)
            continue
        category = obj.get("category") or obj.get("dataset") or ""
        rows.append(
            {
                "id": rid,
                "prompt": prompt,
                "response": response,
                "category": str(category),
                "source": str(spec) if str(spec) in BUILTIN_POOLS else path.name,
            }
        )
    if dropped:
        print(
            f"note: {len(dropped)} demonstration(s) with an empty response left out of the pool "
            f"(first: {dropped[0]})",
            file=sys.stderr,
        )
    if not rows:
        raise UserError(f"{path}: the pool has no demonstration with a response")
    return pl.DataFrame(rows, schema=POOL_SCHEMA)


def _records_in(path: Path) -> list[tuple[str, dict]]:
    """Records of a file, or of every *.jsonl in a folder (sorted by name)."""
    if path.is_dir():
        return [rec for part in sorted(path.glob("*.jsonl")) for rec in read_records(part)]
    return read_records(path)


def load_eval(
    spec: str | Path = "starter", data_dir: str | Path | None = None, fields: dict[str, str] | None = None
) -> pl.DataFrame:
    """Load an evaluation set as ``id, prompt, category, reference, baseline``."""
    name = str(spec)
    path = _resolve(spec, BUILTIN_EVALS, "eval set", data_dir)
    records = read_records(path)
    if not records:
        raise UserError(f"{path}: the evaluation set is empty")
    prefix = {"lima-test": "lima", "alpaca-eval": "ae", "mt-bench": "mtb"}.get(name, path.stem)
    if name == "lima-test":
        ids = [f"lima-{i:03d}" for i in range(len(records))]
    elif name == "alpaca-eval":
        ids = [f"ae-{i:03d}" for i in range(len(records))]
    else:
        ids = _ids(records, prefix)
        if name == "mt-bench":
            ids = [f"mtb-{i}" for i in ids]
    rows = []
    for rid, (loc, obj) in zip(ids, records, strict=True):
        if fields:
            prompt = _text(loc, obj, fields.get("prompt", "prompt"))
        elif "turns" in obj:
            turns = obj["turns"]
            if (
                not isinstance(turns, list)
                or not turns
                or not isinstance(turns[0], str)
                or not turns[0].strip()
            ):
                raise UserError(f"{loc}: field 'turns' must be a non-empty list of strings")
            prompt = turns[0]
        elif "instruction" in obj:
            prompt = _text(loc, obj, "instruction")
        else:
            prompt = _text(loc, obj, "prompt")
        category = obj.get("category") or obj.get("dataset") or ""
        rows.append(
            {
                "id": rid,
                "prompt": prompt,
                "category": str(category),
                "reference": _first_turn_reference(loc, obj),
                "baseline": _text(loc, obj, "baseline", required=False),
            }
        )
    return pl.DataFrame(rows, schema=EVAL_SCHEMA)


def _first_turn_reference(loc: str, obj: dict) -> str | None:
    """The reference answer; MT-Bench keeps one per turn in a list, of which the first counts."""
    value = obj.get("reference")
    if isinstance(value, list):
        value = value[0] if value and isinstance(value[0], str) else None
        return value
    return _text(loc, obj, "reference", required=False)


def load_baseline(spec: str | Path, data_dir: str | Path | None = None) -> pl.DataFrame:
    """Load baseline answers as ``id, prompt, response`` (matched to queries by prompt text)."""
    name = str(spec)
    path = _resolve(spec, BUILTIN_BASELINES, "baseline", data_dir)
    records = read_records(path)
    if not records:
        raise UserError(f"{path}: no baseline answers")
    rows = []
    for i, (loc, obj) in enumerate(records):
        if "baseline" in obj:  # an eval set that carries its own baseline answers
            prompt, response = _text(loc, obj, "prompt"), _text(loc, obj, "baseline")
        else:
            prompt, response = _prompt_response(loc, obj, None)
        rid = obj.get("id")
        if rid is None:
            rid = {"davinci003": "lima", "chatgpt": "lima"}.get(
                name, "ae" if "alpaca_eval" in str(path) else path.stem
            )
            rid = f"{rid}-{i:03d}"
        rows.append({"id": str(rid), "prompt": prompt, "response": response})
    return pl.DataFrame(rows, schema=ANSWER_SCHEMA)


def load_release_outputs(path: str | Path) -> pl.DataFrame:
    """Released system outputs (`prompt`, `response_list`) as one row per (query, sample)."""
    rows = []
    for i, (loc, obj) in enumerate(read_records(Path(path))):
        prompt = _text(loc, obj, "prompt")
        answers = obj.get("response_list")
        if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
            raise UserError(
                f"{loc}: field 'response_list' must be a list of strings "
                f"(fields found: {', '.join(sorted(obj))})"
            )
        rows += [
            {"query_id": f"lima-{i:03d}", "sample": s, "prompt": prompt, "response": a}
            for s, a in enumerate(answers)
        ]
    return pl.DataFrame(
        rows, schema={"query_id": pl.String, "sample": pl.Int64, "prompt": pl.String, "response": pl.String}
    )


def load_release_judgments(path: str | Path) -> pl.DataFrame:
    """Released judge replies (`autoeval_text_list`) as one row per (query, sample)."""
    rows = []
    for i, (loc, obj) in enumerate(read_records(Path(path))):
        replies = obj.get("autoeval_text_list")
        if not isinstance(replies, list) or not all(isinstance(r, str) for r in replies):
            raise UserError(
                f"{loc}: field 'autoeval_text_list' must be a list of strings "
                f"(fields found: {', '.join(sorted(obj))})"
            )
        rows += [{"query_id": f"lima-{i:03d}", "sample": s, "raw": r} for s, r in enumerate(replies)]
    return pl.DataFrame(rows, schema={"query_id": pl.String, "sample": pl.Int64, "raw": pl.String})


def parse_field_map(text: str | None) -> dict[str, str] | None:
    """Parse `prompt=question,response=answer` into a field mapping."""
    if not text:
        return None
    mapping = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or key.strip() not in {"prompt", "response"} or not value.strip():
            raise UserError(f"--fields: expected prompt=NAME,response=NAME, got '{text}'")
        mapping[key.strip()] = value.strip()
    return mapping
