"""PyTorch tabular model: seeded, deterministic, checkpointed every epoch.

Same inputs, config, library versions and thread count give byte-identical weights:
each epoch reseeds from (seed, epoch), so a run resumed from a checkpoint takes the same
path as one that never stopped.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines import telemetry
from pipelines.features import LABEL_COLUMN, encode, labels

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import torch

    from pipelines.spec import TrainingSpec

EpochCallback = Callable[[dict[str, Any]], None]
# Within an epoch, progress is reported at most this often (seconds).
PROGRESS_EVERY_S = 10.0
# Validation rows per forward pass. A fixed count, never one derived from the memory
# budget: per-row logits may depend on how many rows share a matrix product, and the
# validation loss steers early stopping, so the weights must not depend on the budget.
EVAL_ROWS = 65_536
# What one touched row of an on-disk array is taken to cost in mapped memory (a page).
_PAGE_BYTES = 4096


@dataclass(frozen=True)
class Progress:
    """Where a fit is inside an epoch, for a log line while a long epoch runs."""

    epoch: int  # 0-based
    epochs: int  # the most epochs the fit may run (early stopping may end it sooner)
    rows: int  # rows of this epoch done
    rows_per_epoch: int
    rows_per_second: float

    @property
    def eta_seconds(self) -> float:
        """Seconds left if every remaining epoch runs (an upper bound)."""
        left = (self.rows_per_epoch - self.rows) + (self.epochs - self.epoch - 1) * \
            self.rows_per_epoch
        return left / self.rows_per_second if self.rows_per_second > 0 else float("inf")

    def line(self) -> str:
        done = (f"epoch {self.epoch + 1}/{self.epochs}: {self.rows:,}/{self.rows_per_epoch:,} "
                f"rows, {self.rows_per_second:,.0f} rows/s")
        eta = self.eta_seconds
        return done if eta == float("inf") else f"{done}, at most {eta / 60:.1f} min left"


ProgressCallback = Callable[[Progress], None]


def model_settings(cfg: TrainingSpec) -> dict[str, Any]:
    """What the architecture's builder gets: ``training.params`` with ``hidden`` and ``dropout``."""
    return {"hidden": list(cfg.hidden), "dropout": cfg.dropout} | dict(cfg.params)


def build_model(params: dict[str, Any], model: str = "mlp",
                settings: dict[str, Any] | None = None) -> torch.nn.Module:
    """The network ``model`` names, with the preprocessing in front of it.

    Imputation with training medians and standardisation run inside the module, so the
    exported graph takes raw numbers (see `pipelines.architectures` for the networks).

    Args:
        params: The fitted preprocessing (`pipelines.features.fit_preprocessing`).
        model: ``training.model``: a built-in name or the user's ``file.py:function``.
        settings: The builder's parameters (`model_settings`); ``hidden`` and ``dropout``
            default to one layer of 32 without dropout.
    """
    import torch
    from torch import nn

    from pipelines.architectures import ModelInputs, build

    settings = {"hidden": [32], "dropout": 0.0} | dict(settings or {})
    body = build(model, ModelInputs.from_preprocessing(params), settings)

    class TabularModel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            num = params["numeric"]
            self.register_buffer(
                "median", torch.tensor([v["median"] for v in num.values()], dtype=torch.float32))
            self.register_buffer(
                "mean", torch.tensor([v["mean"] for v in num.values()], dtype=torch.float32))
            self.register_buffer(
                "scale", torch.tensor([v["scale"] for v in num.values()], dtype=torch.float32))
            self.body = body

        def forward(self, numeric: torch.Tensor, cat: torch.Tensor | None = None) -> torch.Tensor:
            x = torch.where(torch.isnan(numeric), self.median, numeric)
            x = (x - self.mean) / self.scale
            if not getattr(self.body, "takes_fp32", False):
                # A network at half precision (the fp16 variant) gets its input in half; a
                # built-in that says it takes fp32 keeps it (its periodic phases need it).
                x = x.to(next((p.dtype for p in self.body.parameters()
                               if p.is_floating_point()), x.dtype))
            return self.body(x, cat).reshape(-1).float()

    return TabularModel()


def pin_torch(threads: int) -> None:
    """Make torch deterministic: pinned threads, deterministic kernels."""
    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)


def pick_device(requested: str = "auto") -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


@dataclass
class TrainResult:
    state_dict: dict[str, Any]
    history: list[dict[str, Any]]
    best_epoch: int
    device: str
    samples_per_second: float


@dataclass
class EncodedRows:
    """One split as the model reads it, in stored row order.

    ``numeric`` holds the raw numbers (float32, NaN kept: the model imputes),
    ``categories`` the category indices of `pipelines.features.encode` (vocabulary
    position + 1, 0 for missing or unseen), ``labels`` the float32 labels. The arrays are
    in memory, or read-only views of files on disk (``maps`` holds their memory maps):
    training then reads one minibatch at a time from them and, after every
    ``mapped_limit`` bytes read, unmaps what it read so the process does not keep the
    files resident.
    """

    numeric: np.ndarray
    categories: np.ndarray
    labels: np.ndarray
    maps: tuple[Any, ...] = ()
    mapped_limit: int = 64 << 20

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def on_disk(self) -> bool:
        return bool(self.maps)

    def release(self) -> None:
        """Drop the pages read so far from this process's memory (on-disk arrays only).

        The file's pages stay in the kernel's page cache, so reading them again is cheap;
        without this every page an epoch touches would count as this process's memory.
        """
        import mmap

        if hasattr(mmap, "MADV_DONTNEED"):
            for m in self.maps:
                m.madvise(mmap.MADV_DONTNEED)


def encoded_row_bytes(params: dict[str, Any]) -> int:
    """Bytes one row of `EncodedRows` takes in memory.

    Category indices are int64 there, as the model takes them (on disk they are int32,
    widened a minibatch at a time).
    """
    return 4 * len(params["numeric"]) + 8 * len(params["categorical"]) + 4


def encode_rows(frame: pd.DataFrame, params: dict[str, Any]) -> EncodedRows:
    """A whole frame (with its label column) encoded in memory."""
    num, cat = encode(frame, params)
    return EncodedRows(num, cat, labels(frame))


def _category_indices(values: pd.Series, index: dict[str, int]) -> np.ndarray:
    """`encode`'s category indices of one column.

    A categorical column maps each of its categories once and takes the indices by code
    (code -1, missing, picks the trailing 0).
    """
    import numpy as np
    import pandas as pd

    if isinstance(values.dtype, pd.CategoricalDtype):
        lookup = np.array([index.get(v, 0) for v in values.cat.categories] + [0],
                          dtype=np.int64)
        return lookup[values.cat.codes.to_numpy()]
    return values.map(lambda v: index.get(v, 0)).to_numpy("int64")


def encode_batches(batches: Iterable[pd.DataFrame], params: dict[str, Any], rows: int, *,
                   folder: Path | None = None, mapped_limit: int = 64 << 20) -> EncodedRows:
    """A split arriving in batches, encoded as `encode` and `labels` encode the whole split.

    The arrays of ``rows`` rows are allocated (or their files opened) first and filled
    batch by batch.

    Args:
        batches: The split's batches in order, with the model's columns and the label;
            text columns may be plain strings or pandas categoricals.
        params: The fitted preprocessing.
        rows: How many rows the batches hold together (the arrays are allocated first).
        folder: Where to write the arrays as files, read back through memory maps; None
            keeps them in memory.
        mapped_limit: See `EncodedRows`.

    Raises:
        ValueError: the batches hold a different number of rows.
    """
    import numpy as np

    num_cols = list(params["numeric"])
    indices = [(col, {v: i + 1 for i, v in enumerate(vocab)})
               for col, vocab in params["categorical"].items()]
    shapes = {"numeric": ((rows, len(num_cols)), np.float32),
              "categories": ((rows, len(indices)), np.int32 if folder else np.int64),
              "labels": ((rows,), np.float32)}
    if folder is None:
        arrays = {name: np.empty(shape, dtype) for name, (shape, dtype) in shapes.items()}
        files = None
    else:
        # Written front to back with plain writes: writing through a memory map would make
        # every page written part of this process's resident memory.
        folder.mkdir(parents=True, exist_ok=True)
        files = {name: open(folder / f"{name}.bin", "wb") for name in shapes}
    start = 0
    try:
        for batch in batches:
            n = len(batch)
            if start + n > rows:
                raise ValueError(f"the split holds more than the {rows} rows counted for it")
            num = batch[num_cols].to_numpy(dtype="float32") if num_cols else None
            cat = np.empty((n, len(indices)), dtype=shapes["categories"][1])
            for j, (col, index) in enumerate(indices):
                cat[:, j] = _category_indices(batch[col], index)
            y = batch[LABEL_COLUMN].to_numpy(dtype="float32")
            if files is None:
                if num is not None:
                    arrays["numeric"][start : start + n] = num
                arrays["categories"][start : start + n] = cat
                arrays["labels"][start : start + n] = y
            else:
                if num is not None:
                    np.ascontiguousarray(num).tofile(files["numeric"])
                cat.tofile(files["categories"])
                np.ascontiguousarray(y).tofile(files["labels"])
            start += n
    finally:
        for f in (files or {}).values():
            f.close()
    if start != rows:
        raise ValueError(f"the split holds {start} rows, not the {rows} counted for it")
    if files is None:
        return EncodedRows(arrays["numeric"], arrays["categories"], arrays["labels"])
    assert folder is not None
    maps, views = [], {}
    for name, (shape, dtype) in shapes.items():
        view, mapped = _map_file(folder / f"{name}.bin", shape, dtype)
        views[name] = view
        maps += [mapped] if mapped is not None else []
    # (No rows at all leaves nothing mapped: such arrays are plain empty ones in memory.)
    return EncodedRows(views["numeric"], views["categories"], views["labels"],
                       maps=tuple(maps), mapped_limit=mapped_limit)


def _map_file(path: Path, shape: tuple[int, ...], dtype: Any) -> tuple[np.ndarray, Any]:
    """A read-only array over a file, and its memory map.

    An empty file cannot be mapped: it gives an empty array in memory and no map.
    """
    import mmap

    import numpy as np

    if path.stat().st_size == 0:
        return np.zeros(shape, dtype=dtype), None
    with open(path, "rb") as f:
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    return np.frombuffer(mapped, dtype=dtype).reshape(shape), mapped


class _Feed:
    """Minibatches and validation chunks of one split as the model's input tensors.

    In-memory rows go to the device once; on-disk rows are gathered a minibatch at a time
    (the same rows in the same order, so the same tensors reach the model).
    """

    def __init__(self, rows: EncodedRows, device: str):
        import torch

        self.rows, self.device = rows, device
        self.has_cat = rows.categories.shape[1] > 0
        self._touched = 0
        if not rows.on_disk:
            self._num = torch.from_numpy(rows.numeric).to(device)
            self._cat = torch.from_numpy(rows.categories).to(device, torch.int64)
            self._y = torch.from_numpy(rows.labels).to(device)

    def order(self, generator: torch.Generator) -> torch.Tensor:
        """The epoch's permutation (on the device when the rows are)."""
        import torch

        order = torch.randperm(len(self.rows), generator=generator)
        return order if self.rows.on_disk else order.to(self.device)

    def take(self, idx: torch.Tensor) -> tuple[Any, Any, Any]:
        """(numeric, categories or None, labels) of the rows ``idx``, in that order."""
        if not self.rows.on_disk:
            return self._num[idx], self._cat[idx] if self.has_cat else None, self._y[idx]
        picks = idx.numpy()
        arrays = self._tensors(self.rows.numeric[picks], self.rows.categories[picks],
                               self.rows.labels[picks])
        # A gathered row touches a page of each array.
        self._touch(len(picks) * 3 * _PAGE_BYTES)
        return arrays

    def chunk(self, start: int, stop: int) -> tuple[Any, Any, Any]:
        """The rows ``start:stop`` in order."""
        if not self.rows.on_disk:
            return (self._num[start:stop], self._cat[start:stop] if self.has_cat else None,
                    self._y[start:stop])
        r = self.rows
        arrays = self._tensors(r.numeric[start:stop], r.categories[start:stop],
                               r.labels[start:stop])
        self._touch((stop - start) * (r.numeric.itemsize * r.numeric.shape[1]
                                      + r.categories.itemsize * r.categories.shape[1] + 4))
        return arrays

    def labels(self) -> torch.Tensor:
        import numpy as np
        import torch

        if not self.rows.on_disk:
            return self._y
        return torch.from_numpy(np.array(self.rows.labels)).to(self.device)

    def _tensors(self, num: np.ndarray, cat: np.ndarray, y: np.ndarray) -> tuple[Any, Any, Any]:
        import numpy as np
        import torch

        # Copies: the arrays may be read-only views of a file, which torch cannot wrap.
        d = self.device
        return (torch.from_numpy(np.array(num, order="C")).to(d),
                torch.from_numpy(np.array(cat, order="C")).to(d, torch.int64)
                if self.has_cat else None,
                torch.from_numpy(np.array(y, order="C")).to(d))

    def _touch(self, nbytes: int) -> None:
        self._touched += nbytes
        if self._touched >= self.rows.mapped_limit:
            self.rows.release()
            self._touched = 0


def _auc(y: Any, score: Any) -> float:
    import numpy as np
    from scipy.stats import rankdata

    y, score = np.asarray(y), np.asarray(score)
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if not n_pos or not n_neg:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def train(
    train_rows: pd.DataFrame | EncodedRows,
    val_rows: pd.DataFrame | EncodedRows,
    params: dict[str, Any],
    cfg: TrainingSpec,
    *,
    threads: int,
    device: str = "cpu",
    checkpoint_dir: Path | None = None,
    on_epoch: EpochCallback | None = None,
    on_progress: ProgressCallback | None = None,
) -> TrainResult:
    """Train with early stopping on validation loss, checkpointing after every epoch.

    The splits are frames (encoded here, in memory) or `EncodedRows`, in memory or on
    disk: every form gives the same weights. A checkpoint left by an interrupted run with
    the same ``checkpoint_dir`` is resumed. ``on_epoch`` gets each epoch's losses;
    ``on_progress``, inside a long epoch, where it is (at most every `PROGRESS_EVERY_S`
    seconds).
    """
    import time

    import torch

    pin_torch(threads)
    torch.manual_seed(cfg.seed)
    model = build_model(params, cfg.model, model_settings(cfg)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate,
                            weight_decay=cfg.weight_decay)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    data = _Feed(train_rows if isinstance(train_rows, EncodedRows)
                 else encode_rows(train_rows, params), device)
    val = _Feed(val_rows if isinstance(val_rows, EncodedRows)
                else encode_rows(val_rows, params), device)
    vy = val.labels()

    start_epoch, history, bad_epochs = 0, [], 0
    best_loss, best_state, best_epoch = float("inf"), None, -1
    ckpt = checkpoint_dir / "checkpoint.pt" if checkpoint_dir else None
    if ckpt and ckpt.exists():
        state = torch.load(ckpt, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start_epoch, bad_epochs = int(state["epoch"]) + 1, int(state["bad_epochs"])
        best_loss, best_epoch = float(state["best_loss"]), int(state["best_epoch"])
        best_state = state["best_model"]
        history = [dict(zip(state["history_keys"], row)) for row in state["history"].tolist()]
        for row in history:
            row["epoch"] = int(row["epoch"])

    seen, clock = 0, time.perf_counter()
    reported = clock
    for epoch in range(start_epoch, cfg.epochs):
        if bad_epochs >= cfg.patience:
            break
        # A child span of the stage (or trial) when tracing is on; ended before on_epoch,
        # whose pruning exception is no failure of the epoch.
        with telemetry.span("epoch", {"tideline.epoch": epoch}) as span:
            gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
            torch.manual_seed(cfg.seed * 100_003 + epoch)
            order = data.order(gen)
            model.train()
            total = 0.0
            for i in range(0, len(order), cfg.batch_size):
                idx = order[i : i + cfg.batch_size]
                xn, xc, y = data.take(idx)
                opt.zero_grad()
                logits = model(xn, xc)
                loss = loss_fn(logits, y)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
                seen += len(idx)
                if on_progress is not None and time.perf_counter() - reported >= PROGRESS_EVERY_S:
                    reported = time.perf_counter()
                    on_progress(Progress(epoch, cfg.epochs, i + len(idx), len(order),
                                         seen / (reported - clock)))
            model.eval()
            with torch.no_grad():
                v_logits = torch.cat([model(*val.chunk(s, s + EVAL_ROWS)[:2])
                                      for s in range(0, len(vy), EVAL_ROWS)])
                val_loss = float(loss_fn(v_logits, vy))
            row = {"epoch": epoch, "train_loss": total / len(order), "val_loss": val_loss,
                   "val_auc": _auc(vy.cpu().numpy(), v_logits.cpu().numpy())}
            history.append(row)
            if val_loss < best_loss - 1e-6:
                best_loss, best_epoch, bad_epochs = val_loss, epoch, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                bad_epochs += 1
            if ckpt:
                ckpt.parent.mkdir(parents=True, exist_ok=True)
                keys = list(history[0])
                tmp = ckpt.with_suffix(".tmp")
                torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                            "epoch": epoch, "bad_epochs": bad_epochs, "best_loss": best_loss,
                            "best_epoch": best_epoch, "best_model": best_state,
                            "history_keys": keys,
                            "history": torch.tensor([[r[k] for k in keys] for r in history],
                                                    dtype=torch.float64)}, tmp)
                os.replace(tmp, ckpt)
            span.set({"tideline.train_loss": row["train_loss"],
                      "tideline.val_loss": row["val_loss"], "tideline.val_auc": row["val_auc"],
                      "tideline.rows": len(order)})
        if on_epoch:
            on_epoch(row | {"best_epoch": best_epoch, "epochs": cfg.epochs})
    elapsed = time.perf_counter() - clock
    assert best_state is not None
    return TrainResult(
        state_dict={k: v.cpu().contiguous() for k, v in best_state.items()},
        history=history,
        best_epoch=best_epoch,
        device=device,
        samples_per_second=seen / elapsed if elapsed > 0 else 0.0,
    )


def weights_bytes(state_dict: dict[str, Any]) -> bytes:
    """Serialise weights as safetensors (no pickle), keys in sorted order."""
    from safetensors.torch import save

    return save({k: state_dict[k] for k in sorted(state_dict)})


def load_weights(data: bytes, params: dict[str, Any], model_name: str,
                 settings: dict[str, Any]) -> torch.nn.Module:
    from safetensors.torch import load

    model = build_model(params, model_name, settings)
    model.load_state_dict(load(data))
    model.eval()
    return model
