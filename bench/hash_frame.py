"""Canonical hash of a 1 GB frame ÷ reading that frame from Parquet with pyarrow (target ≤ 2)."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np


def make_table(gigabytes: float):
    import pyarrow as pa

    rows = int(gigabytes * 1e9 / (7 * 8 + 12))
    rng = np.random.default_rng(0)
    cols = {f"f{i}": rng.normal(size=rows) for i in range(6)}
    cols["n"] = rng.integers(0, 1_000_000, size=rows)
    cols["s"] = pa.array(rng.choice(["alpha", "beta", "gamma", "delta"], size=rows)).cast(
        pa.large_string())
    return pa.table(cols)


def main(gigabytes: float = 1.0, repeats: int = 3) -> float:
    import pyarrow.parquet as pq

    from bench.common import alternate, report
    from pipelines.hashing import hash_frame, hash_table

    table = make_table(gigabytes)
    print(f"frame: {table.num_rows:,} rows, {table.nbytes / 1e9:.2f} GB in memory", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "frame.parquet"
        pq.write_table(table, path)
        frame = table.to_pandas()
        state = {}
        read = lambda: state.__setitem__("t", pq.read_table(path))  # noqa: E731
        a, b = alternate(lambda: hash_table(table), read, repeats)
        report("hash_table(1 GB Arrow table) ÷ pq.read_table", a, b, 2.0, ("hash", "read"))
        a, b = alternate(lambda: hash_frame(frame), read, repeats)
        return report("hash_frame(1 GB pandas frame) ÷ pq.read_table", a, b, 2.0,
                      ("hash", "read"))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--gigabytes", type=float, default=1.0)
    main(parser.parse_args().gigabytes)
