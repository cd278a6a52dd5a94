"""Drift check on 1,000,000 rows × 20 columns: the fast path ÷ Evidently, same pinned tests.

The current batch has 1,000,000 rows and the reference 100,000 (a large training
reference), 20 numeric columns: 12 tested with the normed Wasserstein distance and 8 with
PSI, all at threshold 0.1. Some columns are shifted so that their statistic lands between
0.5× and 2× the threshold, where a small difference between the engines would flip a
verdict; the rest are not shifted. Each engine runs in its own process on the same Parquet
file (generated once, seeded), timed around the drift computation only, after a warm-up
call on 500 rows (so neither engine's import is counted); peak memory is the process's
maximum RSS. Target: fast path ≥ 10× faster (≥ 30× the aim), 0 disagreeing
verdicts on the borderline columns.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import REPO, python_env

ROWS, REFERENCE_ROWS, COLUMNS = 1_000_000, 100_000, 20
WASSERSTEIN_SHIFTS = [0.05, 0.07, 0.09, 0.1, 0.11, 0.13, 0.16, 0.2]  # in reference stds
PSI_SHIFTS = [0.22, 0.28, 0.32, 0.35, 0.4, 0.45]


def tests():
    from pipelines.drift import ColumnTest

    return [ColumnTest(f"x{i:02d}", "numeric", "wasserstein" if i < 12 else "psi", 0.1, 1.0)
            for i in range(COLUMNS)]


def make_data(folder: Path) -> tuple[Path, Path]:
    import pandas as pd

    rng = np.random.default_rng(0)
    ref = pd.DataFrame({f"x{i:02d}": rng.normal(0, 1, REFERENCE_ROWS) for i in range(COLUMNS)})
    cur = pd.DataFrame({f"x{i:02d}": rng.normal(0, 1, ROWS) for i in range(COLUMNS)})
    for i, shift in enumerate(WASSERSTEIN_SHIFTS):
        cur[f"x{i:02d}"] += shift
    for j, shift in enumerate(PSI_SHIFTS):
        cur[f"x{12 + j:02d}"] += shift
    paths = folder / "reference.parquet", folder / "current.parquet"
    ref.to_parquet(paths[0])
    cur.to_parquet(paths[1])
    return paths


def engine(name: str, ref_path: str, cur_path: str) -> None:
    """Child process: run one engine and print its seconds and per-column results."""
    import pandas as pd

    from pipelines.drift import evidently_report, fast_path

    ref, cur = pd.read_parquet(ref_path), pd.read_parquet(cur_path)

    def run(r, c):
        return fast_path(r, c, tests()) if name == "fast" else evidently_report(r, c, tests())[0]

    run(ref.head(500), cur.head(500))  # imports and first-call costs, outside the clock
    start = time.perf_counter()
    rows = run(ref, cur)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "rows": rows}))


def run_child(name: str, paths: tuple[Path, Path]) -> tuple[dict, float]:
    proc = subprocess.Popen([sys.executable, "-m", "bench.drift", "--engine", name,
                             str(paths[0]), str(paths[1])], cwd=REPO,
                            env=python_env(DO_NOT_TRACK="1"), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"{name} engine failed")
    return json.loads(out.strip().splitlines()[-1]), usage.ru_maxrss / 1024


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_data(Path(tmp))
        print(f"drift: {ROWS:,} current rows × {COLUMNS} columns against {REFERENCE_ROWS:,} "
              "reference rows (Evidently takes minutes)…", flush=True)
        fast, fast_mb = run_child("fast", paths)
        evid, evid_mb = run_child("evidently", paths)
    ratio = evid["seconds"] / fast["seconds"]
    borderline = [f for f in fast["rows"] if 0.5 <= f["value"] / f["threshold"] <= 2]
    disagree = [f["column"] for f, e in zip(fast["rows"], evid["rows"])
                if f["drifted"] != e["drifted"]]
    disagree_border = [c for c in disagree if c in {b["column"] for b in borderline}]
    max_diff = max(abs(f["value"] - e["value"]) for f, e in zip(fast["rows"], evid["rows"]))
    print(f"drift: Evidently {evid['seconds']:.1f} s ÷ fast path {fast['seconds']:.2f} s = "
          f"{ratio:.1f}× (target ≥ 10, aim ≥ 30: {'meets' if ratio >= 10 else 'MISSES'}); "
          f"peak memory Evidently {evid_mb:,.0f} MB, fast path {fast_mb:,.0f} MB")
    print(f"drift: {len(borderline)} columns with statistic in [0.5, 2]× threshold, "
          f"{len(disagree_border)} disagreeing verdicts among them (target 0), "
          f"{len(disagree)} over all {COLUMNS} columns; largest |Δ statistic| {max_diff:.2e}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--engine":
        engine(*sys.argv[2:5])
    else:
        main()
