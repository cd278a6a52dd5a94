"""A deployment to benchmark the serving layer on: UCI Adult, two versions, v2 stable.

Trained once through the real chain (`cli.demo`) into ``.tideline/bench/serving`` and
reused; ``TIDELINE_BENCH_FRESH=1`` retrains. Adult has numeric and categorical columns,
so the models exercise the whole graph (label encoders, imputation, embeddings).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

from bench.common import REPO, python_env

ADULT = REPO.parent / "shared" / "data" / "adult.csv"
HOME = REPO / ".tideline" / "bench" / "serving"


def spec_for(home: Path, seed: int) -> Path:
    spec = yaml.safe_load((REPO / "datasets" / "adult.yaml").read_text())
    spec["source"]["path"] = str(ADULT)
    spec["training"] |= {"epochs": 3, "seed": seed}
    spec["gate"] = {"min_metrics": {"roc_auc": 0.6},
                    "tolerances": {"roc_auc": 0.5, "log_loss": 5.0}}
    spec["deployment"] = {"canary": {"share": 0.0}}
    spec["serving"] = {"rate_limit_per_minute": 10_000_000}
    path = home / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def env_for(home: Path, **extra: str) -> dict[str, str]:
    return python_env(TIDELINE_HOME=str(home), DAGSTER_HOME=str(home / "dagster"),
                      TIDELINE_SPEC=str(home / "spec.yaml"), TIDELINE_POLL_S="0.1", **extra)


def deployed_home() -> Path:
    """The benchmark deployment (trained on first use)."""
    marker = HOME / "ready.json"
    if marker.exists() and not os.environ.get("TIDELINE_BENCH_FRESH"):
        return HOME
    if not ADULT.exists():
        raise SystemExit(f"{ADULT} is missing: the serving benchmarks use UCI Adult")
    shutil.rmtree(HOME, ignore_errors=True)
    (HOME / "dagster").mkdir(parents=True)
    for seed in (0, 1):
        spec_for(HOME, seed)
        print(f"training benchmark model (seed {seed})…", flush=True)
        for module in ("cli.setup_state", "cli.demo"):
            subprocess.run([sys.executable, "-m", module], cwd=REPO, env=env_for(HOME),
                           check=True, stdout=subprocess.DEVNULL,
                           stderr=(HOME / "training.log").open("a"))
    marker.write_text(json.dumps({"time": time.time()}))
    return HOME


def stable_entry(home: Path) -> dict:
    from pipelines import deploy
    from pipelines.store import ArtifactStore

    return deploy.current(ArtifactStore(home / "store"), "adult").stable


def adult_records(n: int, seed: int = 0) -> list[dict]:
    """Real Adult rows as raw records (the spec's columns only)."""
    import pandas as pd

    from pipelines.spec import load_spec

    spec = load_spec(HOME / "spec.yaml")
    frame = pd.read_csv(ADULT, dtype=str, keep_default_na=False).sample(
        n=n, random_state=seed, replace=n > 30000)
    out = []
    for row in frame[list(spec.columns)].to_dict("records"):
        out.append({c: (float(v) if spec.columns[c].type == "numeric" and v not in ("", "?")
                        else (None if v in ("", "?") else v)) for c, v in row.items()})
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """The service in a subprocess, optionally pinned to CPU cores with ``taskset``."""

    def __init__(self, home: Path, cores: str | None = None, **env: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env_for(home, **env)
        self.cores = cores

    def __enter__(self) -> Server:
        import httpx

        cmd = [sys.executable, "-m", "cli.serve", "--port", str(self.port), "--log-level",
               "warning"]
        if self.cores and shutil.which("taskset"):
            cmd = ["taskset", "-c", self.cores, *cmd]
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=self.env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        for _ in range(600):
            try:
                if httpx.get(f"{self.url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        else:
            raise SystemExit("benchmark service did not start")
        out = subprocess.run([sys.executable, "-m", "cli.deployctl", "api-key",
                              f"bench-{self.port}"], cwd=REPO, env=self.env,
                             capture_output=True, text=True, check=True)
        self.key = out.stdout.strip().splitlines()[-1]
        return self

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        self.proc.wait(20)
