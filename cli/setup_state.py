"""Prepare the state folder: Dagster home with the instance config, and the demo data."""

from __future__ import annotations

import shutil
import sys

from pipelines.demo_data import write_breast_cancer
from resources.settings import REPO_ROOT, state_dir


def main() -> int:
    state = state_dir()
    home = state / "dagster"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    path = write_breast_cancer(state / "data" / "breast_cancer.parquet")
    print(f"state folder {state}; demo data {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
