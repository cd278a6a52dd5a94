"""Many models in one instance: what 20 specs cost when definitions load and on a no-op run.

Prints two ratios, each against a baseline taken side by side in the same run:

- loading definitions (``import definitions`` and building them, as Dagster does) with 20
  specs in the datasets folder ÷ ``import dagster`` (target ≤ 1.5);
- the no-op re-run of one model's chain with 20 specs loaded ÷ with that spec alone
  (target ≤ 1.2).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import yaml

from bench.common import REPO, alternate, python_env, report, run_python

LOAD = "import definitions; definitions.defs()"


def specs_folder(folder: Path, count: int) -> Path:
    """``count`` specs: copies of the demo and of Adult under their own names."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        base = "demo" if i % 2 == 0 else "adult"
        spec = yaml.safe_load((REPO / "datasets" / f"{base}.yaml").read_text())
        spec["name"] = f"model_{i:02d}"
        (folder / f"model_{i:02d}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return folder


def load_ratio(tmp: Path, repeats: int) -> float:
    env = python_env(TIDELINE_HOME=str(tmp / "state"),
                     TIDELINE_DATASETS=str(specs_folder(tmp / "twenty", 20)))
    run_python(["-c", LOAD], env)  # warm the file cache and bytecode
    a, b = [], []
    for _ in range(repeats):
        a.append(run_python(["-c", LOAD], env))
        b.append(run_python(["-c", "import dagster"], env))
    return report("load definitions with 20 specs ÷ import dagster", a, b, 1.5,
                  ("20 specs", "dagster"))


def noop_ratio(tmp: Path, repeats: int) -> float:
    import dagster as dg

    from definitions import build_definitions
    from pipelines.catalog import load_catalog
    from pipelines.demo_data import write_breast_cancer

    state = tmp / "state"
    os.environ["TIDELINE_HOME"] = str(state)
    os.environ.pop("TIDELINE_SPEC", None)
    write_breast_cancer(state / "data" / "breast_cancer.parquet")
    (state / "dagster").mkdir(parents=True, exist_ok=True)
    twenty = load_catalog(sorted((tmp / "twenty").glob("*.yaml")))
    one = load_catalog([tmp / "twenty" / "model_00.yaml"])
    job20 = build_definitions(twenty).resolve_job_def("model_00_training_job")
    job1 = build_definitions(one).resolve_job_def("model_00_training_job")
    instance = dg.DagsterInstance.local_temp(
        tempdir=str(state / "dagster"), overrides={"telemetry": {"enabled": False}})
    assert job1.execute_in_process(instance=instance).success  # first run: all misses
    run = lambda j: j.execute_in_process(instance=instance)  # noqa: E731
    run(job20)
    a, b = alternate(lambda: run(job20), lambda: run(job1), repeats)
    return report("no-op re-run of one model, 20 specs loaded ÷ 1 spec loaded", a, b, 1.2,
                  ("20 specs", "1 spec"))


def main(repeats: int = 7) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        return load_ratio(Path(tmp), repeats), noop_ratio(Path(tmp), repeats)


if __name__ == "__main__":
    main()
