"""PyTorch tabular model: seeded, deterministic, checkpointed every epoch.

Same inputs, config, library versions and thread count give byte-identical weights:
each epoch reseeds from (seed, epoch), so a run resumed from a checkpoint takes the same
path as one that never stopped.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.features import encode, labels

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from pipelines.spec import TrainingSpec

EpochCallback = Callable[[dict[str, Any]], None]
# Within an epoch, progress is reported at most this often (seconds).
PROGRESS_EVERY_S = 10.0


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


def _tensors(frame: pd.DataFrame, params: dict[str, Any], device: str) -> tuple[Any, Any, Any]:
    import torch

    num, cat = encode(frame, params)
    y = labels(frame)
    return (torch.from_numpy(num).to(device), torch.from_numpy(cat).to(device),
            torch.from_numpy(y).to(device))


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
    train_frame: pd.DataFrame,
    val_frame: pd.DataFrame,
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

    A checkpoint left by an interrupted run with the same ``checkpoint_dir`` is resumed.
    ``on_epoch`` gets each epoch's losses; ``on_progress``, inside a long epoch, where it is
    (at most every `PROGRESS_EVERY_S` seconds).
    """
    import time

    import torch

    pin_torch(threads)
    torch.manual_seed(cfg.seed)
    model = build_model(params, cfg.model, model_settings(cfg)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate,
                            weight_decay=cfg.weight_decay)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    xn, xc, y = _tensors(train_frame, params, device)
    vn, vc, vy = _tensors(val_frame, params, device)
    has_cat = xc.shape[1] > 0

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
        gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        torch.manual_seed(cfg.seed * 100_003 + epoch)
        order = torch.randperm(len(y), generator=gen).to(device)
        model.train()
        total = 0.0
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            opt.zero_grad()
            logits = model(xn[idx], xc[idx] if has_cat else None)
            loss = loss_fn(logits, y[idx])
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
            v_logits = model(vn, vc if has_cat else None)
            val_loss = float(loss_fn(v_logits, vy))
        row = {"epoch": epoch, "train_loss": total / len(y), "val_loss": val_loss,
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
