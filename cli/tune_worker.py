"""An extra Optuna worker for a running `trained_weights` study.

Usage::

    python -m cli.tune_worker --model <model> --study trained_weights-<key> --features b3:<hash>

It joins the study in the configured Optuna storage (``TIDELINE_OPTUNA_URL``; a Postgres
URL lets workers on other machines join) and runs trials until the study holds the
planned number, so all workers together finish exactly ``tuning.n_trials``.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from pipelines.catalog import selected_spec
    from pipelines.paths import optuna_url, state_dir, store_root
    from pipelines.recipe import thread_count
    from pipelines.spec import load_spec
    from pipelines.stages.features import load_params
    from pipelines.store import ArtifactStore
    from pipelines.tuning import GRACE_S, HEARTBEAT_S, open_study, run_study

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", required=True, help="study name (in the Dagster log)")
    parser.add_argument("--features", required=True, help="validated_features content hash")
    parser.add_argument("--model", default=None, help="the model whose study this is (its "
                        "spec in the datasets folder; default TIDELINE_MODEL, else the only "
                        "model, else the demo)")
    parser.add_argument("--spec", default=None, help="a dataset spec file (instead of --model)")
    parser.add_argument("--store", default=None, help="artifact store root")
    parser.add_argument("--storage", default=None, help="Optuna storage URL")
    parser.add_argument("--heartbeat", type=int, default=HEARTBEAT_S)
    parser.add_argument("--grace", type=int, default=GRACE_S)
    args = parser.parse_args(argv)

    state = state_dir()
    spec = load_spec(args.spec) if args.spec else selected_spec(args.model)
    store = ArtifactStore(args.store or store_root(state))
    manifest = store.get_manifest(args.features)
    import os
    import shutil
    import tempfile
    from pathlib import Path

    from pipelines.resources import memory_budget
    from pipelines.stages.training import encode_splits

    params = load_params(store, manifest)
    study, rdb = open_study(args.storage or optuna_url(state), args.study, spec.tuning,
                            heartbeat_s=args.heartbeat, grace_s=args.grace,
                            worker=os.getpid())

    def progress(record) -> None:
        print(f"trial {record.number}: {record.state} val loss {record.value} "
              f"({record.epochs_run} epochs)", flush=True)

    # The splits a batch at a time, within the memory budget, as the stage reads them.
    scratch = Path(tempfile.mkdtemp(prefix="tune-worker-"))
    try:
        data = encode_splits(spec, store, manifest, params, budget=memory_budget(spec),
                             scratch=scratch)
        run_study(study, rdb, data.train, data.val, params, spec.training, spec.tuning,
                  threads=thread_count(), log_trial=progress)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
