"""Validation at production size: the product's suite ÷ a plain vectorized pass (target ≤ 3).

A copy of UCI Adult (``TIDELINE_ADULT_CSV``, else /work/shared/data/adult.csv) parsed as the
product parses it, its rows resampled with a seed to ``--rows`` (default 3,000,000), with a
few invalid values written in: ages out of range, words and infinities in numeric columns,
unknown categories, over-long values, blanks around valid values, extra missing values over
``occupation``'s limit and rows without a target.

On the frame typed by the spec (``pipelines.validation.type_frame``), alternated in one
process (``bench.common.alternate``):

- product: ``pipelines.validation.run_suite`` - the Great Expectations suite built from the
  spec, and the failing rows of each row rule, as ``validate()`` runs them;
- baseline: the same rules written plainly with pandas/NumPy on the typed frame: missing
  values against each column's limit, numbers within min/max, categories in their lists.

Prints both medians and their ratio, every rule's verdict and failing-row count from both
(they must agree; the run exits non-zero if one does not), then the typing of the raw frame
on its own: ``type_frame`` against a row-by-row pandas typing of the same columns (strip
every string, parse every number), with a check that both typed the same values.

Usage: ``PYTHONPATH=. python -m bench.validation [--rows N] [--repeats K]
[--typing-repeats K]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ADULT_CSV = Path(os.environ.get("TIDELINE_ADULT_CSV") or "/work/shared/data/adult.csv")
SPEC = Path(__file__).resolve().parent.parent / "datasets" / "adult.yaml"

# (column, share of rows, value written there): what the scaled copy gets wrong on purpose.
INJECTED = [
    ("age", 0.001, "150"),  # over max
    ("age", 0.0005, "-3"),  # under min
    ("education-num", 0.0004, "1e3"),  # over max, written as a float
    ("hours-per-week", 0.0005, "about forty"),  # not a number
    ("hours-per-week", 0.0005, " NaN "),  # a written-out missing value: no row failure
    ("capital-gain", 0.0003, "inf"),  # infinite
    ("capital-loss", 0.0003, "-inf"),
    ("workclass", 0.001, "Unknown-gov"),  # not in the list
    ("race", 0.0005, "Martian"),
    ("sex", 0.0002, "  "),  # blank: empty after stripping, not in the list
    ("education", 0.002, " Bachelors "),  # valid once stripped
    ("native-country", 0.0002, "x" * 300),  # over max_length
    ("occupation", 0.08, None),  # with the file's own gaps: over its 10% limit
    ("income-per-year", 0.0003, None),  # no target
]


def make_frame(rows: int, seed: int = 0):
    """The scaled copy, as `pipelines.ingest.parse_raw` hands it to validation."""
    from pipelines.ingest import parse_raw

    base = parse_raw(ADULT_CSV.read_bytes(), fmt="csv", file=str(ADULT_CSV),
                     na_values=["", "?"])
    rng = np.random.default_rng(seed)
    frame = base.iloc[rng.integers(0, len(base), rows)].reset_index(drop=True)
    for col, share, value in INJECTED:
        at = rng.choice(rows, max(1, int(rows * share)), replace=False)
        frame.loc[at, col] = value
    return frame


def vectorized(frame, spec) -> dict[str, tuple[bool, int]]:
    """Verdict and failing-row count of every suite rule, written plainly."""
    n = len(frame)
    out = {}
    for col, cs in spec.columns.items():
        values = frame[col]
        missing = int(values.isna().sum())
        mostly = 1.0 - cs.max_null_fraction
        out[f"{col}__null_limit"] = (n == 0 or (n - missing) / n >= mostly, missing)
        if cs.type == "numeric" and (cs.min is not None or cs.max is not None):
            x = values.to_numpy()
            bad = np.zeros(n, dtype=bool)
            if cs.min is not None:
                bad |= x < cs.min
            if cs.max is not None:
                bad |= x > cs.max
            out[f"{col}__range"] = (not bad.any(), int(bad.sum()))
        if cs.type == "categorical" and cs.categories is not None:
            bad = values.notna() & ~values.isin(cs.categories)
            out[f"{col}__allowed_categories"] = (not bad.any(), int(bad.sum()))
    return {"".join(c if c.isalnum() or c == "_" else "_" for c in k): v for k, v in out.items()}


def rowwise_typing(raw, spec):
    """The typing, one string at a time: strip every text cell, parse every number cell."""
    import pandas as pd

    out = {}
    for col in [spec.target.column, *spec.columns]:
        cs = spec.columns.get(col)
        if cs is not None and cs.type == "numeric":
            x = pd.to_numeric(raw[col], errors="coerce").astype("float64")
            out[col] = x.where(~np.isinf(x), np.nan)
        else:
            out[col] = raw[col].astype("string").str.strip().astype(object).where(
                raw[col].notna(), None)
    return pd.DataFrame(out, index=raw.index)


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main(rows: int = 3_000_000, repeats: int = 5, typing_repeats: int = 3) -> float:
    import pandas as pd

    from bench.common import alternate, report
    from pipelines.spec import load_spec
    from pipelines.validation import run_suite, type_frame, validate

    spec = load_spec(SPEC)
    start = time.perf_counter()
    raw = make_frame(rows)
    print(f"frame: {len(raw):,} rows × {len(raw.columns)} columns from {ADULT_CSV} "
          f"({time.perf_counter() - start:.1f}s to build)", flush=True)
    typed = type_frame(raw, spec)
    frame = typed.frame
    run_suite(type_frame(raw.head(1000), spec), spec)  # imports and first calls off the clock

    state: dict = {}
    product = lambda: state.__setitem__("product", run_suite(typed, spec))  # noqa: E731
    plain = lambda: state.__setitem__("plain", vectorized(frame, spec))  # noqa: E731
    a, b = alternate(product, plain, repeats)
    ratio = report(f"suite at {rows:,} rows: Great Expectations (run_suite) ÷ vectorized pass",
                   a, b, 3.0, ("product", "vectorized"))

    ours = {r.name: (r.success, r.unexpected if r.rows is None else int(r.rows.sum()))
            for r in state["product"]}
    theirs = state["plain"]
    print(f"\n{'rule':36s} {'product':>16s} {'vectorized':>16s}")
    disagree = 0
    for name in dict.fromkeys([*ours, *theirs]):
        mine, other = ours.get(name), theirs.get(name)
        same = mine == other
        disagree += not same

        def show(v):
            return "—" if v is None else f"{'pass' if v[0] else 'FAIL'} {v[1]:>10,}"
        print(f"{name:36s} {show(mine):>16s} {show(other):>16s}{'' if same else '  DIFFERENT'}")
    print(f"{len(ours)} rules; {disagree} disagreeing verdicts or counts. (A missing-value "
          "limit here is the suite's verdict on the typed frame; validate() then leaves out "
          "values that were there but unusable: words, infinities.)", flush=True)

    t_typing, t_rowwise = alternate(lambda: type_frame(raw, spec),
                                    lambda: state.__setitem__("rowwise",
                                                              rowwise_typing(raw, spec)),
                                    typing_repeats)
    try:
        pd.testing.assert_frame_equal(frame, state["rowwise"], check_exact=True)
        typed_same = "same typed values"
    except AssertionError:
        typed_same = "DIFFERENT typed values"
        disagree += 1
    print(f"\ntyping {rows:,} rows: type_frame {statistics.median(t_typing):.2f}s, row by row "
          f"{statistics.median(t_rowwise):.2f}s ({typed_same}; medians of {len(t_typing)})")
    whole = timed(lambda: validate(raw, spec), 1)[0]
    print(f"validate() as a whole (typing, suite, quarantine; once): {whole:.2f}s", flush=True)
    if disagree:
        sys.exit(1)
    return ratio


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=3_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--typing-repeats", type=int, default=3)
    args = parser.parse_args()
    main(args.rows, args.repeats, args.typing_repeats)
