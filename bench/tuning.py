"""Optuna overhead and pruning savings, on UCI Adult (or the demo data without it).

1. An N-trial study with pruning off (NopPruner), every trial the same size (only the
   learning rate, dropout and weight decay vary) ÷ N × one training run of that size
   (target ≤ 1.1).
2. The same fixed search space with the median pruner on and off: the share of epochs
   saved (target ≥ 30%) and the best validation loss of each (pruned within 2% of
   unpruned is the stated tolerance).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ADULT = REPO.parent / "shared" / "data" / "adult.csv"


def data(rows: int):
    import os

    import yaml

    from pipelines.artifacts import save_result
    from pipelines.features import SPLIT_COLUMN
    from pipelines.spec import load_spec
    from pipelines.stages.features import build_features, load_params
    from pipelines.stages.raw import snapshot_source
    from pipelines.store import ArtifactStore

    tmp = Path(tempfile.mkdtemp())
    lines = ADULT.read_text().splitlines(keepends=True)[: rows + 1]
    (tmp / "adult.csv").write_text("".join(lines))
    os.environ["TIDELINE_ADULT_CSV"] = str(tmp / "adult.csv")
    raw = yaml.safe_load((REPO / "datasets" / "adult.yaml").read_text())
    raw["source"]["path"] = str(tmp / "adult.csv")
    (tmp / "spec.yaml").write_text(yaml.safe_dump(raw))
    spec = load_spec(tmp / "spec.yaml")
    store = ArtifactStore(tmp / "store")
    feats = save_result(store, build_features(spec, store, save_result(
        store, snapshot_source(spec, store))))
    from pipelines.artifacts import read_frame

    frame = read_frame(store, feats, "features")
    return (spec, frame[frame[SPLIT_COLUMN] == "train"], frame[frame[SPLIT_COLUMN] == "val"],
            load_params(store, feats), tmp)


def study(spec, train_rows, val_rows, params, tmp, n, pruner, epochs, name):
    from pipelines.tuning import open_study, run_study, summary

    space = spec.tuning.search_space.model_copy(update={
        "width": {"low": 64, "high": 64}, "depth": {"low": 2, "high": 2},
        "epochs": {"low": epochs, "high": epochs}})
    cfg = spec.tuning.model_copy(update={"n_trials": n, "pruner": pruner, "seed": 3,
                                         "search_space": type(space).model_validate(
                                             space.model_dump())})
    training = spec.training.model_copy(update={"patience": epochs})  # no early stop
    st, rdb = open_study(f"sqlite:///{tmp / 'optuna.db'}", name, cfg)
    start = time.perf_counter()
    run_study(st, rdb, train_rows, val_rows, params, training, cfg, threads=1)
    return time.perf_counter() - start, summary(st)


def main(n: int = 16, rows: int = 32561, epochs: int = 12) -> None:
    from pipelines.training import train
    from pipelines.tuning import trial_config

    spec, train_rows, val_rows, params, tmp = data(rows)
    one = trial_config({"learning_rate": 3e-3, "width": 64, "depth": 2, "dropout": 0.1,
                        "weight_decay": 1e-4, "epochs": epochs},
                       spec.training.model_copy(update={"patience": epochs}))
    train(train_rows, val_rows, params, one, threads=1)  # warm-up
    singles = []
    for _ in range(3):
        t = time.perf_counter()
        train(train_rows, val_rows, params, one, threads=1)
        singles.append(time.perf_counter() - t)
    single = sorted(singles)[1]
    wall, off = study(spec, train_rows, val_rows, params, tmp, n, "none", epochs, "off")
    ratio = wall / (n * single)
    print(f"study of {n} trials, pruning off: {wall:.2f}s ÷ {n} × one training "
          f"{single:.3f}s = {ratio:.3f} (target ≤ 1.1; {'meets' if ratio <= 1.1 else 'MISSES'})")
    _, on = study(spec, train_rows, val_rows, params, tmp, n, "median", epochs, "on")
    saved = 1 - on["epochs_run"] / off["epochs_run"]
    gap = (on["best_value"] - off["best_value"]) / off["best_value"]
    print(f"median pruner: {on['epochs_run']} of {off['epochs_run']} epochs "
          f"({saved:.1%} saved; target ≥ 30%; {'meets' if saved >= 0.3 else 'MISSES'}), "
          f"{on['pruned']} of {n} trials pruned; best val loss {on['best_value']:.4f} vs "
          f"{off['best_value']:.4f} unpruned ({gap:+.2%}; tolerance 2%: "
          f"{'within' if gap <= 0.02 else 'OUTSIDE'})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--rows", type=int, default=32561)
    args = parser.parse_args()
    main(args.trials, args.rows)
