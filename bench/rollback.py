"""Rollback: from `make rollback` to the first answer from the previous version.

The service runs on the benchmark deployment (v2 stable, v1 previous). Each round runs
`make rollback` (what a user types) while a client polls `POST /predict`, and times
from the command's start to the first answer from v1; then v2 is redeployed and the
service is given time to settle. Beside it, the command alone (`make rollback` wall
time) shows how much of the figure is the command and how much the service's switch.
Target: ≤ 2 s.
"""

from __future__ import annotations

import statistics
import subprocess
import threading
import time

from bench.common import REPO
from bench.serving_common import Server, adult_records, deployed_home, env_for

ROUNDS = 5


def _rollback(home, start: float, done: dict[str, float]) -> None:
    subprocess.run(["make", "--no-print-directory", "rollback", f"STATE={home}"], cwd=REPO,
                   env=env_for(home), check=True, stdout=subprocess.DEVNULL)
    done["command"] = time.perf_counter() - start


def _settle() -> None:
    """Let the background MLflow alias update of the last rollback finish: on 2 cores it
    would otherwise compete with the next round."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and subprocess.run(
            ["pgrep", "-f", "cli.deployctl sync-aliases"], capture_output=True).returncode == 0:
        time.sleep(0.2)
    time.sleep(0.5)


def main() -> None:
    import httpx

    from pipelines import deploy
    from pipelines.store import ArtifactStore

    home = deployed_home()
    store = ArtifactStore(home / "store")
    state = deploy.current(store, "adult")
    if state.stable.version != 2:  # leave the benchmark deployment as it expects
        deploy.deploy(store, "adult", deploy.entries(store, "adult")[1].model, canary_share=0)
    v2 = deploy.current(store, "adult").stable
    record = adult_records(1)
    to_first, command = [], []
    with Server(home) as server, httpx.Client(timeout=10) as client:
        def version() -> int:
            return client.post(f"{server.url}/predict", json={"records": record},
                               headers={"X-API-Key": server.key}).json()["model_version"]

        for _ in range(ROUNDS):
            _settle()
            assert version() == 2
            done: dict[str, float] = {}
            start = time.perf_counter()

            thread = threading.Thread(target=_rollback, args=(home, start, done))
            thread.start()
            while version() != 1:
                pass
            to_first.append(time.perf_counter() - start)
            thread.join()
            command.append(done["command"])
            deploy.deploy(store, "adult", v2, canary_share=0)
            while version() != 2:
                time.sleep(0.05)
            _settle()
    med = statistics.median(to_first)
    print(f"rollback: `make rollback` → first answer from the previous version: median "
          f"{med:.2f} s, max {max(to_first):.2f} s over {ROUNDS} rounds; the command alone "
          f"{statistics.median(command):.2f} s (target ≤ 2 s: "
          f"{'meets' if max(to_first) <= 2 else 'MISSES'})")


if __name__ == "__main__":
    main()
