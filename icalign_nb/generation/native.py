"""Pieces of a decode step as C++ kernels (`step_kernels.cpp`), built for this machine once.

In torch a step's attention at a few rows is two small products and a softmax per layer, and each
product reads its layer's keys or values cold (a step's weights have passed through the caches since)
at a few GB/s: on gemma-3-270m after a 2,925-token prompt, 6 of a 22 ms step. The attention kernel
reads each key and value a row sees once, skips what it does not see, and keeps scores, softmax and
sums in float32; at many rows it replaces the per-block products too. Gemma 3's norms (five a layer)
are one call each instead of eight tensor operations. A product of a few rows with a layer's weights
(int8 or bfloat16) reads the weights at close to the memory's speed, where torch's kernels wait on
each block they read (int8, the LM head on one thread: 17 against 6.5 GB/s). A sampler's top-k (or
argmax) over Gemma's 262,144 logits reads them twice, skipping what cannot be among them, in the
model's dtype (torch's: 0.4-0.5 ms on a float32 copy). The kernels are
compiled at first use by torch's extension builder (~30 s, `-O3 -march=native -fopenmp`) into a fresh
folder of the cache (`kernels`), which is renamed into place when done, so a killed build leaves
nothing half-made. Where it cannot be built (no C++ compiler), the step stays in torch, said once.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from ..cache import cache_path
from ..errors import first_line

SOURCE = Path(__file__).with_name("step_kernels.cpp")
# -fopenmp: at::parallel_for runs on torch's threads (the same libgomp, loaded once); without it, serially
FLAGS = ("-O3", "-march=native", "-fopenmp")
DTYPES = (torch.bfloat16, torch.float32)  # how keys and values may be stored
FUNCTIONS = [  # what the module offers
    "decode_attention",
    "attend_projected",
    "rms_norm",
    "add_norms",
    "gated",
    "weights_product",
    "top_values",
]


class StepKernels:
    """The built kernels: a step's attention over what its rows see, Gemma 3's norms, and a few rows'
    products with a linear layer's weights."""

    # the most activation rows a weights product takes, by the weights' dtype: where it stops beating
    # torch's kernels on gemma-3-270m's and SmolLM2's layer shapes (bf16: up to 16 rows by the CPU's
    # bfloat16 dot products; int8 and float32: up to 4)
    rows = {torch.bfloat16: 16, torch.int8: 4, torch.float32: 4}

    def __init__(self, module: object) -> None:
        self.module = module

    @staticmethod
    def takes(x: torch.Tensor) -> bool:
        """Whether the kernels run on this tensor (on the CPU, in bfloat16 or float32)."""
        return x.device.type == "cpu" and x.dtype in DTYPES

    def attention(
        self,
        query: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        bias: torch.Tensor,
        scale: float,
        new: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        share: torch.Tensor,
        used: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """Store each row's new key and value, then attend: query [rows, heads, 1, dim], keys/values
        [kv_heads, blocks, block, dim] (a layer's pool, of which blocks `used` = (lo, hi) are read: all by
        default), bias [rows, (hi - lo) * block] (0 or -inf), new = (keys, values [rows, kv_heads, 1, dim],
        slot [rows]: where in the used blocks each row's go), share [rows]: rows with one id (one prompt's
        samples) read the keys together -> [rows, 1, heads, dim]; all in the keys' dtype."""
        lo, hi = used or (0, keys.shape[1])
        new_keys, new_values, slot = new
        return self.module.decode_attention(
            query, keys, values, lo, hi, bias, scale, new_keys, new_values, slot, share
        )

    def attend_projected(
        self,
        qkv: torch.Tensor,
        heads: int,
        norm: tuple[torch.Tensor, float],
        rotate: tuple[torch.Tensor, torch.Tensor],
        pools: tuple[torch.Tensor, torch.Tensor],
        step: dict,
        scale: float,
    ) -> torch.Tensor:
        """One layer's decode attention from its fused projection qkv [rows, (heads + 2 * kv_heads) * dim]:
        the query and key heads normed (Gemma 3's norms: `norm` = (scales [heads + kv_heads, dim], eps))
        and rotated (`rotate` as `rms_norm` takes it), then stored and attended to as `attention` does
        (`pools`: the layer's keys and values; `step`: the step's lo, hi, bias, slot and group) ->
        [rows, heads * dim]."""
        used = (step["lo"], step["hi"], step["bias"], scale, step["slot"], step["group"])
        return self.module.attend_projected(qkv, heads, *norm, *rotate, *pools, *used)

    def rms_norm(
        self,
        x: torch.Tensor,
        scale: torch.Tensor,
        eps: float,
        rotate: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """x * rsqrt(mean(x^2) + eps) * scale over the last dim, in float32, in x's dtype: x [rows, dim]
        with scale [dim], or x [rows, vectors, dim] with scale [vectors, dim] (one per vector); then, with
        `rotate` = (cos, sin) ([rows, 1, dim], sin's first half negated), each vector's rotary embedding
        y * cos + roll(y, dim / 2) * sin, rounded as those tensor operations round (cos and sin contiguous,
        in x's dtype, as the model's rotary embedding gives them)."""
        return self.module.rms_norm(x, scale, eps, *(rotate or (_NONE, _NONE)))

    def add_norms(
        self, hidden: torch.Tensor, out: torch.Tensor, scales: tuple[torch.Tensor, torch.Tensor], eps: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gemma 3's norm of a sublayer's output, the residual sum and the next norm in one call: hidden,
        out [rows, dim] (contiguous) -> (hidden + norm(out) * scales[0], norm(that) * scales[1]), each
        rounded as the three operations round."""
        return tuple(self.module.add_norms(hidden, out, *scales, eps))

    def gated(self, gate_up: torch.Tensor, kind: int) -> torch.Tensor:
        """An MLP's act(gate) * up from its fused gate and up projections [rows, 2 * inner] (contiguous):
        act GELU's tanh form (kind 0) or SiLU (1), rounded as the two tensor operations round."""
        return self.module.gated(gate_up, kind)

    def product(
        self, x: torch.Tensor, weight: torch.Tensor, scales: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x [rows, in] @ weight.T (at most 64 rows), summed in float32 -> [rows, out] in x's dtype: weight
        int8 [out, in] times `scales` (one per output row, in x's dtype), or in x's dtype."""
        return self.module.weights_product(x.contiguous(), weight, _NONE if scales is None else scales)

    def top(self, logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Each row's k largest logits (float32, largest first) and their indices, equal values by lowest
        index first (k = 1: argmax): logits [rows, vocab] in bfloat16 or float32."""
        return tuple(self.module.top_values(logits, k))

    def takes_weights(self, x: torch.Tensor, weight: torch.Tensor) -> bool:
        """Whether `product` takes these activations (as many rows as pays for the weights' dtype) and
        weights (int8, or x's dtype)."""
        return (
            x.shape[0] <= self.rows.get(weight.dtype, 0)
            and self.takes(x)
            and weight.device.type == "cpu"
            and weight.dtype in (torch.int8, x.dtype)
        )


_NONE = torch.empty(0)  # an argument not given (no scales, no rotation)


@functools.cache
def step_kernels() -> StepKernels | None:
    """The kernels, built once per machine, source and torch version (None, said once, if they cannot be)."""
    source = SOURCE.read_text()
    final, name = home(source)
    built = final / f"{name}.so"
    if built.exists():
        try:
            return StepKernels(_load(name, built))
        except ImportError as exc:
            print(
                f"note: damaged cache entry {final} ({first_line(exc)}); it is built again", file=sys.stderr
            )
            shutil.rmtree(final, ignore_errors=True)
    try:
        return StepKernels(_build(source, name, final))
    except (RuntimeError, OSError, ImportError, subprocess.CalledProcessError) as exc:
        print(
            f"note: the decode-step kernels could not be built ({first_line(exc)}); decode steps run in "
            "torch alone (slower at a few rows)",
            file=sys.stderr,
        )
        return None


def home(source: str) -> tuple[Path, str]:
    """Where the kernels of `source` are built for this machine, and their module's name."""
    final = cache_path(
        "kernels", source, torch.__version__, sys.version, platform.machine(), *FLAGS, _cpu_name()
    )
    return final, f"icalign_step_kernels_{final.name[:16]}"


def _build(source: str, name: str, final: Path) -> object:
    """Compile into a fresh folder beside `final`, then rename it into place (a racing build's result wins
    equally)."""
    from torch.utils.cpp_extension import load_inline

    venv_bin = Path(sys.executable).parent
    if shutil.which("ninja") is None and (venv_bin / "ninja").exists():  # pip's ninja, venv not activated
        os.environ["PATH"] = f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"
    final.parent.mkdir(parents=True, exist_ok=True)
    print("note: building the decode-step kernels for this machine (once, ~30 s)", file=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix=f"{final.name}.", dir=final.parent))
    try:
        module = load_inline(
            name,
            cpp_sources=[source],
            functions=FUNCTIONS,
            extra_cflags=list(FLAGS),
            extra_ldflags=["-fopenmp"],
            build_directory=str(work),
        )
        try:
            work.rename(final)
        except OSError:  # another process put its build there first: the same kernel
            shutil.rmtree(work, ignore_errors=True)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return module


def _load(name: str, path: Path) -> object:
    """Import a built kernel module."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[name] = module
    return module


def _cpu_name() -> str:
    """The CPU's model name and flags (code built for one CPU may not run on another)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    first = {}
    for line in lines:
        key = line.split(":")[0].strip()
        if key in ("model name", "flags"):
            first.setdefault(key, line)
    return "\n".join(first.values()) or platform.processor()
