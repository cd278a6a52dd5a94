"""Whole chain through Dagster in process ÷ the same `pipelines` functions from a plain
script, both cold (fresh interpreter, empty store, new MLflow database) (target ≤ 1.15).

Measured twice: with a Dagster instance that already exists (a user's nightly run) and
with a brand-new one (its SQLite schemas created inside the timed run).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from bench.common import python_env, report, run_python


def main(repeats: int = 3) -> dict[str, float]:
    from pipelines.demo_data import write_breast_cancer

    a, b = [], []
    with tempfile.TemporaryDirectory() as tmp:
        data = write_breast_cancer(Path(tmp) / "demo.parquet")

        def fresh(name: str, instance: bool = False) -> dict[str, str]:
            state = Path(tmp) / name
            shutil.rmtree(state, ignore_errors=True)
            (state / "dagster").mkdir(parents=True)
            (state / "data").mkdir()
            shutil.copy(data, state / "data" / "breast_cancer.parquet")
            env = python_env(TIDELINE_HOME=str(state), DAGSTER_HOME=str(state / "dagster"),
                             TIDELINE_SPEC="demo")
            if instance:
                run_python(["-c", "import dagster; dagster.DagsterInstance.get().get_runs()"],
                           env)
            return env

        run_python(["-m", "bench.plain_chain"], fresh("warm"))  # warm the page cache
        c = []
        for _ in range(repeats):
            a.append(run_python(["-m", "cli.demo"], fresh("dagster", instance=True)))
            b.append(run_python(["-m", "bench.plain_chain"], fresh("plain")))
            c.append(run_python(["-m", "cli.demo"], fresh("dagster")))
    return {
        "existing instance": report("chain via Dagster ÷ plain script (cold, existing instance)",
                                    a, b, 1.15, ("dagster", "plain")),
        "new instance": report("chain via Dagster ÷ plain script (cold, new instance)",
                               c, b, 1.15, ("dagster", "plain")),
    }


if __name__ == "__main__":
    main()
