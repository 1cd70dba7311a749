"""Benchmarks: the package's paths side by side with reference-style baselines, in one process."""

from __future__ import annotations

import argparse
