"""A cheap check that a model folder's safetensors weights are whole: each file's header says where its
last tensor ends, so a truncated file is found by its size without loading anything."""

from __future__ import annotations

import json
import struct
from pathlib import Path


def weights_problem(folder: Path) -> str | None:
    """What is wrong with the folder's `*.safetensors` files (one line naming the file), or None."""
    for file in sorted(Path(folder).glob("*.safetensors")):
        size = file.stat().st_size
        try:
            with open(file, "rb") as fh:
                (length,) = struct.unpack("<Q", fh.read(8))
                header = json.loads(fh.read(length)) if 8 + length <= size else None
            if not isinstance(header, dict):
                return f"{file}: {size} bytes, not a whole safetensors file (its header is cut)"
            ends = [
                int(t["data_offsets"][1])
                for k, t in header.items()
                if k != "__metadata__" and isinstance(t, dict)
            ]
        except (struct.error, ValueError, KeyError, IndexError, TypeError):
            return f"{file}: not a safetensors file (unreadable header)"
        needed = 8 + length + max(ends, default=0)
        if size < needed:
            return f"{file}: {size} bytes where its header needs {needed} (truncated)"
    return None
