"""Helpers: alternate the measured and baseline runs so machine noise hits both alike."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def alternate(measured: Callable[[], object], baseline: Callable[[], object],
              repeats: int) -> tuple[list[float], list[float]]:
    """Time both callables ``repeats`` times, interleaved; returns (measured, baseline)."""
    a, b = [], []
    for _ in range(repeats):
        for fn, out in ((measured, a), (baseline, b)):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return a, b


def report(name: str, measured: list[float], baseline: list[float], target: float,
           labels: tuple[str, str]) -> float:
    ma, mb = statistics.median(measured), statistics.median(baseline)
    ratio = ma / mb
    verdict = "meets" if ratio <= target else "MISSES"
    print(f"{name}: {labels[0]} {ma:.4f}s ÷ {labels[1]} {mb:.4f}s = {ratio:.2f} "
          f"(target ≤ {target}; {verdict}; medians of {len(measured)})", flush=True)
    return ratio


def python_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TIDELINE_THREADS": "1",
           "MPLBACKEND": "Agg", "GIT_PYTHON_REFRESH": "quiet"}
    env.update(extra)
    return env


def run_python(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=REPO, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start
