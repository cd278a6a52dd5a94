"""No-op re-run with 1 GB of raw data ÷ no-op re-run with 1 MB (target ≤ 2).

Both sources hold the demo rows plus a padding column the spec does not list, sized so
the files are 1 GB and 1 MB. After one priming run each (the padding stops at
validation, so training is shared), re-runs should cost the same whatever the size: the
source hash comes from the file-stat cache and every asset is a cache hit.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import yaml


def write_source(path: Path, target_bytes: int) -> Path:
    import pandas as pd
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer(as_frame=True)
    frame = bunch.frame.copy()
    frame["diagnosis"] = [str(bunch.target_names[t]) for t in frame.pop("target")]
    base = len(frame.to_csv(index=False).encode())
    pad = max(0, (target_bytes - base) // len(frame) - 1)
    frame["padding"] = "x" * pad
    frame.to_csv(path, index=False)
    del pd
    return path


def spec_for(source: Path, dest: Path, repo: Path) -> Path:
    spec = yaml.safe_load((repo / "datasets" / "demo.yaml").read_text())
    spec["source"] = {"path": str(source), "format": "csv"}
    dest.write_text(yaml.safe_dump(spec, sort_keys=False))
    return dest


def main(big_bytes: int = 1_000_000_000, small_bytes: int = 1_000_000, repeats: int = 5):
    import dagster as dg

    from bench.common import REPO, alternate, report

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        state = tmp / "state"
        (state / "dagster").mkdir(parents=True)
        os.environ["TIDELINE_HOME"] = str(state)
        big = write_source(tmp / "big.csv", big_bytes)
        small = write_source(tmp / "small.csv", small_bytes)
        print(f"sources: {big.stat().st_size / 1e9:.2f} GB and {small.stat().st_size / 1e6:.2f} MB",
              flush=True)
        from definitions import build_definitions

        jobs = {}
        for name, source in (("big", big), ("small", small)):
            os.environ["TIDELINE_SPEC"] = str(spec_for(source, tmp / f"{name}.yaml", REPO))
            jobs[name] = build_definitions().resolve_job_def("breast_cancer_training_job")
        instance = dg.DagsterInstance.local_temp(
            tempdir=str(state / "dagster"), overrides={"telemetry": {"enabled": False}})
        for name in ("small", "big"):  # priming runs: compute once, then hit
            assert jobs[name].execute_in_process(instance=instance).success
        run = lambda name: jobs[name].execute_in_process(instance=instance)  # noqa: E731
        a, b = alternate(lambda: run("big"), lambda: run("small"), repeats)
    return report("no-op re-run, 1 GB source ÷ 1 MB source", a, b, 2.0, ("1 GB", "1 MB"))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--big-bytes", type=int, default=1_000_000_000)
    main(parser.parse_args().big_bytes)
