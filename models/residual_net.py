"""A worked example of bringing your own network: a residual MLP.

Point a spec at it with::

    training:
      model: models/residual_net.py:build
      params: {width: 64, blocks: 2}

``build`` receives what Tideline fitted on the training rows (`ModelInputs`: the numeric
columns, each categorical column's number of indices) and the spec's ``training.params``
with ``hidden`` and ``dropout``, and returns a ``torch.nn.Module``. Its ``forward``
takes the standardised numeric matrix (missing values already imputed) and the category
indices (0 = missing or unseen; ``None`` when the table has no categorical column) and
returns one logit per row. Tideline does the rest: preprocessing inside the exported
ONNX graph, seeded training with checkpoints, the Optuna search (``tuning.search_space``
may name ``params.width`` etc. under ``params``), variants, card, gate and deployment.
Editing this file retrains the models that use it on their next run.

Keep ``forward`` to operations ONNX export knows (linear layers, activations,
embeddings, concatenation, arithmetic).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class ResidualBlock(nn.Module):
    def __init__(self, width: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.inner = nn.Sequential(nn.Linear(width, 2 * width), nn.ReLU(), nn.Dropout(dropout),
                                   nn.Linear(2 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.inner(self.norm(x))


class ResidualNet(nn.Module):
    def __init__(self, n_numeric: int, cardinalities: list[int], width: int, blocks: int,
                 dropout: float) -> None:
        super().__init__()
        self.embeddings = nn.ModuleList(nn.Embedding(c, 8) for c in cardinalities)
        self.stem = nn.Linear(n_numeric + 8 * len(cardinalities), width)
        self.blocks = nn.Sequential(*(ResidualBlock(width, dropout) for _ in range(blocks)))
        self.head = nn.Sequential(nn.LayerNorm(width), nn.ReLU(), nn.Linear(width, 1))

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor | None) -> torch.Tensor:
        parts = [numeric]
        if categorical is not None:
            parts += [emb(categorical[:, i]) for i, emb in enumerate(self.embeddings)]
        return self.head(self.blocks(self.stem(torch.cat(parts, dim=1))))


def build(inputs: Any, params: dict[str, Any]) -> nn.Module:
    """The network for a table with ``inputs``' columns, sized by ``training.params``."""
    return ResidualNet(len(inputs.numeric), list(inputs.categorical.values()),
                       width=int(params.get("width", 64)), blocks=int(params.get("blocks", 2)),
                       dropout=float(params["dropout"]))
