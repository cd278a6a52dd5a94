"""Built-in architectures against the two card baselines, on the card's own split.

For UCI Adult and ProPublica COMPAS (full files from ``../shared/data``, or
``--data``), each built-in architecture is trained with the spec's training settings (the
architecture swapped) and compared with the baselines every card shows (logistic
regression, histogram gradient boosting) on the same training, validation and test rows:
test ROC AUC, accuracy, training seconds, ONNX bytes, and for each network its int8
variant's bytes, speed at batch 256 against fp32 (timed alternately in this process) and
ROC AUC change. Ends with the default architecture's lift over the boosting baseline.

    python -m bench.models [--data ../shared/data] [--models mlp,plr_mlp] [--threads 2]
                           [--device cpu|cuda|auto]

``rows/s`` is training throughput (samples through the network per second, all epochs).

Not part of ``make test``: it trains every architecture on the full tables (minutes).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import REPO

BENCH_SPECS = Path(__file__).resolve().parent / "specs"
SPEED_BATCH = 256


@dataclass
class Row:
    data: str
    model: str
    auc: float
    accuracy: float
    train_s: float
    onnx_bytes: int | None = None
    int8_bytes: int | None = None
    int8_speedup: float | None = None
    int8_delta_auc: float | None = None
    epochs: int | None = None
    samples_per_s: float | None = None


def _compas_csv(src: Path, out: Path) -> Path:
    """COMPAS with its repeated headers dropped (the product refuses duplicate names)."""
    import pandas as pd

    frame = pd.read_csv(src)
    frame = frame.loc[:, ~frame.columns.str.contains(r"\.\d+$")]
    path = out / "compas.csv"
    frame.to_csv(path, index=False)
    return path


def _features(spec_path: Path, csv: Path, state: Path):
    from pipelines.artifacts import save_result
    from pipelines.spec import load_spec
    from pipelines.stages.features import build_features
    from pipelines.stages.raw import snapshot_source
    from pipelines.store import ArtifactStore

    spec = load_spec(spec_path)
    spec = spec.model_copy(update={"source": spec.source.model_copy(update={"path": str(csv)})})
    store = ArtifactStore(state / "store")
    raw = save_result(store, snapshot_source(spec, store))
    feats = save_result(store, build_features(spec, store, raw))
    return spec, store, feats


def _speedup(fp32: bytes, int8: bytes, feeds: dict, threads: int) -> float:
    from bench.common import alternate
    from pipelines.quantize import predict, session

    n = len(next(iter(feeds.values())))
    batches = [{k: v[i:i + SPEED_BATCH] for k, v in feeds.items()}
               for i in range(0, n - SPEED_BATCH + 1, SPEED_BATCH)][:20]
    a, b = session(int8, threads), session(fp32, threads)

    def run(sess):
        return lambda: [predict(sess, batch) for batch in batches]

    int8_s, fp32_s = alternate(run(a), run(b), repeats=7)
    int8_s.sort()
    fp32_s.sort()
    return fp32_s[len(fp32_s) // 2] / int8_s[len(int8_s) // 2]


def _network(name: str, arch: str, spec, store, feats, threads: int, device: str) -> Row:
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from pipelines.artifacts import read_frame
    from pipelines.export import export_predictor
    from pipelines.features import LABEL_COLUMN, SPLIT_COLUMN, onnx_feeds
    from pipelines.quantize import predict, session
    from pipelines.stages.features import load_params
    from pipelines.stages.quantization import int8_variant
    from pipelines.training import build_model, model_settings, train

    frame = read_frame(store, feats, "features")
    params = load_params(store, feats)
    parts = {s: frame[frame[SPLIT_COLUMN] == s] for s in ("train", "val", "test")}
    cfg = spec.training.model_copy(update={"model": arch})
    start = time.perf_counter()
    result = train(parts["train"], parts["val"], params, cfg, threads=threads, device=device,
                   on_epoch=lambda r: print(f"  {name}/{arch} epoch {r['epoch'] + 1}: val AUC "
                                            f"{r['val_auc']:.4f}", end="\r", flush=True))
    seconds = time.perf_counter() - start
    model = build_model(params, cfg.model, model_settings(cfg))
    model.load_state_dict(result.state_dict)
    model.eval()
    fp32 = export_predictor(model, params)
    int8 = int8_variant(fp32, model, parts["train"], params, spec.quantization.calibration_rows)
    feeds = onnx_feeds(parts["test"], params)
    y = parts["test"][LABEL_COLUMN].to_numpy()
    p32 = predict(session(fp32), feeds)
    p8 = predict(session(int8), feeds)
    auc32 = float(roc_auc_score(y, p32))
    return Row(name, arch, auc32, float(np.mean((p32 >= 0.5) == y)), seconds, len(fp32),
               len(int8), _speedup(fp32, int8, feeds, threads),
               float(roc_auc_score(y, p8)) - auc32, len(result.history),
               result.samples_per_second)


def _baselines(name: str, spec, store, feats, threads: int) -> list[Row]:
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from pipelines.artifacts import read_frame
    from pipelines.baselines import fit_baselines
    from pipelines.features import LABEL_COLUMN, SPLIT_COLUMN

    frame = read_frame(store, feats, "features")
    parts = {s: frame[frame[SPLIT_COLUMN] == s] for s in ("train", "val", "test")}
    y = parts["test"][LABEL_COLUMN].to_numpy()
    fits = fit_baselines(parts["train"], parts["val"], parts["test"], spec.numeric_columns,
                         spec.categorical_columns, LABEL_COLUMN, threads=threads)
    return [Row(name, fit.name, float(roc_auc_score(y, fit.probabilities)),
                float(np.mean((fit.probabilities >= 0.5) == y)), fit.fit_seconds)
            for fit in fits]


def _fmt(value, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def main(argv: list[str] | None = None) -> None:
    from pipelines.architectures import BUILTIN, DEFAULT
    from pipelines.baselines import BOOSTING

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--models", default=",".join(BUILTIN))
    parser.add_argument("--datasets", default="adult,compas")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("TIDELINE_THREADS")
                                                           or 2))
    parser.add_argument("--device", default="cpu",
                        help="cpu, cuda or auto (CUDA when there is one) for the networks")
    args = parser.parse_args(argv or [])
    from pipelines.training import pick_device

    device = pick_device(args.device)
    archs = [a for a in args.models.split(",") if a]
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        sources = {"adult": (REPO / "datasets" / "adult.yaml", args.data / "adult.csv"),
                   "compas": (BENCH_SPECS / "compas.yaml",
                              args.data / "compas-scores-two-years.csv")}
        for name in args.datasets.split(","):
            spec_path, csv = sources[name]
            if not csv.is_file():
                print(f"{name}: {csv} not found; pass --data with the folder that holds it")
                continue
            if name == "compas":
                csv = _compas_csv(csv, Path(tmp))
            spec, store, feats = _features(spec_path, csv, Path(tmp) / name)
            print(f"{name}: {feats.info.get('rows', '')}", flush=True)
            rows += _baselines(name, spec, store, feats, args.threads)
            for arch in archs:
                rows.append(_network(name, arch, spec, store, feats, args.threads, device))
                r = rows[-1]
                print(f"  {name}/{arch}: test AUC {r.auc:.4f} in {r.train_s:.1f}s "
                      f"({r.epochs} epochs)" + " " * 20, flush=True)
    print(f"\ndevice {device}, threads {args.threads}; int8 speed = fp32 seconds ÷ int8 "
          f"seconds at batch {SPEED_BATCH}, alternated in this process")
    print(f"{'data':8} {'model':24} {'AUC':>7} {'acc':>7} {'train s':>8} {'epochs':>6} "
          f"{'ONNX B':>8} {'int8 B':>8} {'int8÷fp32':>9} {'int8 speed':>10} {'ΔAUC int8':>9} "
          f"{'rows/s':>8}")
    for r in rows:
        ratio = r.int8_bytes / r.onnx_bytes if r.int8_bytes and r.onnx_bytes else None
        print(f"{r.data:8} {r.model:24} {r.auc:7.4f} {r.accuracy:7.4f} {r.train_s:8.1f} "
              f"{_fmt(r.epochs, '6d')} {_fmt(r.onnx_bytes, '8d')} {_fmt(r.int8_bytes, '8d')} "
              f"{_fmt(ratio, '9.3f')} {_fmt(r.int8_speedup, '10.2f')} "
              f"{_fmt(r.int8_delta_auc, '+9.4f')} {_fmt(r.samples_per_s, '8.0f')}")
    for name in dict.fromkeys(r.data for r in rows):
        gbdt = next((r for r in rows if r.data == name and r.model == BOOSTING), None)
        default = next((r for r in rows if r.data == name and r.model == DEFAULT), None)
        if gbdt and default:
            print(f"{name}: default {DEFAULT} AUC {default.auc:.4f} − boosting "
                  f"{gbdt.auc:.4f} = lift {default.auc - gbdt.auc:+.4f} "
                  f"({'meets' if default.auc >= gbdt.auc else 'MISSES'} the target ≥ 0)")


if __name__ == "__main__":
    main(sys.argv[1:])
