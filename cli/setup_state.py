"""Prepare the state folder: Dagster home with the instance config, and the demo data."""

from __future__ import annotations

import sys

from pipelines.demo_data import write_breast_cancer
from pipelines.paths import REPO_ROOT, instance_config, postgres_url, state_dir


def main() -> int:
    state = state_dir()
    home = state / "dagster"
    home.mkdir(parents=True, exist_ok=True)
    import yaml

    base = yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text())
    config = instance_config(base, postgres_url())
    (home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    path = write_breast_cancer(state / "data" / "breast_cancer.parquet")
    print(f"state folder {state}; demo data {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
