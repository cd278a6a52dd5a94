"""`import definitions` ÷ `import dagster`, each in a fresh interpreter (target ≤ 1.5)."""

from __future__ import annotations

import tempfile

from bench.common import python_env, report, run_python


def main(repeats: int = 7) -> float:
    with tempfile.TemporaryDirectory() as state:
        env = python_env(TIDELINE_HOME=state)
        run_python(["-c", "import definitions"], env)  # warm the file cache and bytecode
        a, b = [], []
        for _ in range(repeats):
            a.append(run_python(["-c", "import definitions"], env))
            b.append(run_python(["-c", "import dagster"], env))
    return report("import definitions ÷ import dagster", a, b, 1.5,
                  ("definitions", "dagster"))


if __name__ == "__main__":
    main()
