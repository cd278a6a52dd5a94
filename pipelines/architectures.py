"""The networks Tideline trains: built-in architectures by name, or the user's own.

``training.model`` names one of `BUILTIN` (``mlp``, ``plr_mlp``, ``plr_ensemble``), a
function in a file of the user's project (``models/my_net.py:build``) or a function in an
importable module (``my_package.nets:build``). Every one is called the same way::

    build(inputs: ModelInputs, params: dict) -> torch.nn.Module

and returns a module whose ``forward(numeric, categorical)`` takes the standardised,
imputed numeric matrix (float, ``[batch, len(inputs.numeric)]``) and the category indices
(int64, ``[batch, len(inputs.categorical)]``, 0 = missing or unseen; ``None`` when the
table has no categorical column) and returns one logit per row (``[batch]`` or
``[batch, 1]``). Tideline wraps it with the preprocessing (`pipelines.training`), so the
exported ONNX graph still takes raw records.

``params`` is ``training.params`` from the spec (and the values Optuna picked for any of
them named in ``tuning.search_space.params``), plus ``hidden`` and ``dropout`` from the
training settings.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipelines.model_ref import DEFAULT, ModelCodeError, ModelRef, locate

if TYPE_CHECKING:
    import torch

__all__ = ["BUILTIN", "DEFAULT", "ModelCodeError", "ModelInputs", "build", "load_builder"]

@dataclass(frozen=True)
class ModelInputs:
    """What a model builder knows about its inputs, fitted on the training rows.

    Attributes:
        numeric: The numeric columns, in the order of the numeric matrix's columns.
        categorical: Each categorical column's number of indices (its vocabulary plus
            index 0 for missing and unseen values), in the order of the index matrix.
    """

    numeric: tuple[str, ...]
    categorical: dict[str, int]

    @classmethod
    def from_preprocessing(cls, params: dict[str, Any]) -> ModelInputs:
        return cls(numeric=tuple(params["numeric"]),
                   categorical={c: len(v) + 1 for c, v in params["categorical"].items()})


Builder = Callable[[ModelInputs, dict[str, Any]], "torch.nn.Module"]


def embedding_dim(cardinality: int) -> int:
    return int(min(16, max(2, round(1.6 * cardinality**0.56))))


def _categorical_embeddings(inputs: ModelInputs) -> tuple[Any, int]:
    from torch import nn

    dims = [embedding_dim(c) for c in inputs.categorical.values()]
    return (nn.ModuleList(nn.Embedding(c, d) for c, d in
                          zip(inputs.categorical.values(), dims, strict=True)), sum(dims))


def _mlp(width: int, hidden: list[int], dropout: float, out: int = 1) -> Any:
    from torch import nn

    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
        width = h
    layers.append(nn.Linear(width, out))
    return nn.Sequential(*layers)


def build_mlp(inputs: ModelInputs, params: dict[str, Any]) -> torch.nn.Module:
    """Standardised numbers and categorical embeddings, concatenated, into an MLP."""
    import torch
    from torch import nn

    class MLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embeddings, cat_width = _categorical_embeddings(inputs)
            self.mlp = _mlp(len(inputs.numeric) + cat_width, list(params["hidden"]),
                            float(params["dropout"]))

        def forward(self, numeric: torch.Tensor, cat: torch.Tensor | None) -> torch.Tensor:
            dtype = self.mlp[0].weight.dtype
            parts = [numeric.to(dtype)]
            if cat is not None:
                parts += [emb(cat[:, i]) for i, emb in enumerate(self.embeddings)]
            return self.mlp(torch.cat(parts, dim=1))

    return MLP()


class _Periodic:
    """Periodic numeric embeddings with a linear layer and ReLU ("PLR").

    Each numeric feature x becomes ReLU(W_j [cos(2π f_j x), sin(2π f_j x)] + b_j) with k
    trainable frequencies f_j per feature, initialised from N(0, sigma²) (Gorishniy et
    al. 2022, "On Embeddings for Numerical Features in Tabular Deep Learning"). The
    products and cosines stay in fp32 in every variant: at fp16 the phase of a standardised
    outlier loses too many digits.
    """

    @staticmethod
    def module(n_features: int, frequencies: int, sigma: float, dim: int) -> Any:
        import torch
        from torch import nn

        class Periodic(nn.Module):
            keep_fp32 = True  # the half-precision export leaves this module in fp32

            def __init__(self) -> None:
                super().__init__()
                self.frequencies = nn.Parameter(torch.randn(n_features, frequencies) * sigma)
                # One linear map per feature: [features, 2k, dim], applied as a batched
                # matmul so the graph stays a few nodes however many features there are.
                bound = 1 / math.sqrt(2 * frequencies)
                self.weight = nn.Parameter(
                    torch.empty(n_features, 2 * frequencies, dim).uniform_(-bound, bound))
                self.bias = nn.Parameter(torch.empty(n_features, dim).uniform_(-bound, bound))

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                phase = 2 * math.pi * x.float().unsqueeze(-1) * self.frequencies.float()
                code = torch.cat([torch.cos(phase), torch.sin(phase)], dim=-1)
                code = code.to(self.weight.dtype).transpose(0, 1)  # [features, batch, 2k]
                out = torch.matmul(code, self.weight).transpose(0, 1) + self.bias
                return torch.relu(out).flatten(1)  # [batch, features * dim]

        return Periodic()


def _plr_parts(inputs: ModelInputs, params: dict[str, Any]) -> tuple[Any, Any, int]:
    # Measured with bench.models: on UCI Adult wide initial frequencies (σ = 30 on
    # standardised inputs, datasets/adult.yaml) resolve narrow ranges such as round ages
    # best; on COMPAS the lower the better. The default sits between; search it per table
    # (tuning.search_space.params.frequency_scale).
    frequencies = int(params.get("frequencies", 48))
    sigma = float(params.get("frequency_scale", 10.0))
    dim = int(params.get("embedding_dim", 24))
    periodic = _Periodic.module(len(inputs.numeric), frequencies, sigma, dim) \
        if inputs.numeric else None
    embeddings, cat_width = _categorical_embeddings(inputs)
    return periodic, embeddings, len(inputs.numeric) * dim + cat_width


def _plr_base() -> type:
    """The base of the PLR networks.

    It embeds both kinds of input and carries the flags that the preprocessing wrapper
    and the quantizer read.
    """
    import torch
    from torch import nn

    class PLRBase(nn.Module):
        takes_fp32 = True  # the periodic phases are computed in fp32
        # Every matmul reads cosines or ReLU outputs, never raw standardised numbers with
        # their heavy tails: int8 may quantize the activations of every layer.
        bounded_layer_inputs = True
        periodic: Any
        embeddings: Any

        def embed(self, numeric: torch.Tensor, cat: torch.Tensor | None) -> torch.Tensor:
            parts = [self.periodic(numeric)] if self.periodic is not None else []
            if cat is not None:
                parts += [emb(cat[:, i]) for i, emb in enumerate(self.embeddings)]
            return torch.cat(parts, dim=1)

    return PLRBase


def build_plr_mlp(inputs: ModelInputs, params: dict[str, Any]) -> torch.nn.Module:
    """MLP over periodic (PLR) numeric embeddings and categorical embeddings."""

    class PLRMLP(_plr_base()):
        def __init__(self) -> None:
            super().__init__()
            self.periodic, self.embeddings, width = _plr_parts(inputs, params)
            self.mlp = _mlp(width, list(params["hidden"]), float(params["dropout"]))

        def forward(self, numeric: torch.Tensor, cat: torch.Tensor | None) -> torch.Tensor:
            return self.mlp(self.embed(numeric, cat).to(self.mlp[0].weight.dtype))

    return PLRMLP()


def build_plr_ensemble(inputs: ModelInputs, params: dict[str, Any]) -> torch.nn.Module:
    """K MLPs in one, in the style of TabM (Gorishniy et al. 2024), over PLR embeddings.

    The members share every hidden layer's weights; each has its own multiplicative
    adapters on the layer inputs (BatchEnsemble-style, initialised to ±1) and its own
    output. The prediction is the mean of the members' probabilities, as a logit. Each
    member sees the same rows; their differences come from the adapters' initialisation.
    """
    import torch
    from torch import nn

    k = int(params.get("members", 8))
    hidden, dropout = list(params["hidden"]), float(params["dropout"])

    class PLREnsemble(_plr_base()):
        def __init__(self) -> None:
            super().__init__()
            self.periodic, self.embeddings, width = _plr_parts(inputs, params)
            self.layers = nn.ModuleList()
            self.adapters = nn.ParameterList()
            for h in hidden:
                self.layers.append(nn.Linear(width, h))
                sign = torch.randint(0, 2, (k, width)).float() * 2 - 1
                self.adapters.append(nn.Parameter(sign))
                width = h
            self.drop = nn.Dropout(dropout)
            self.head = nn.Parameter(torch.randn(k, width, 1) / math.sqrt(width))
            self.head_bias = nn.Parameter(torch.zeros(k, 1, 1))

        def forward(self, numeric: torch.Tensor, cat: torch.Tensor | None) -> torch.Tensor:
            dtype = self.layers[0].weight.dtype
            x = self.embed(numeric, cat).to(dtype).unsqueeze(0)  # [1, batch, width]
            for layer, adapter in zip(self.layers, self.adapters, strict=True):
                x = self.drop(torch.relu(layer(x * adapter.unsqueeze(1))))  # [k, batch, h]
            logits = torch.matmul(x, self.head) + self.head_bias  # [k, batch, 1]
            p = torch.sigmoid(logits.float()).mean(dim=0).clamp(1e-7, 1 - 1e-7)
            return torch.log(p) - torch.log1p(-p)

    return PLREnsemble()


BUILTIN: dict[str, Builder] = {
    "mlp": build_mlp,
    "plr_mlp": build_plr_mlp,
    "plr_ensemble": build_plr_ensemble,
}


def load_builder(text: str) -> Builder:
    """The builder ``training.model`` names, imported."""
    import importlib
    import importlib.util
    import sys

    ref = ModelRef.parse(text)
    if ref.builtin:
        return BUILTIN[ref.builtin]
    path = locate(ref)
    try:
        if ref.file:
            name = f"tideline_user_model_{abs(hash(str(path))):x}"
            module_spec = importlib.util.spec_from_file_location(name, path)
            assert module_spec is not None and module_spec.loader is not None
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(ref.module or "")
    except Exception as exc:  # the user's code: any error is theirs to fix
        raise ModelCodeError(
            f"training.model {ref.text!r}: importing {path} failed "
            f"({type(exc).__name__}: {_first_line(exc)}); fix {ref.file or ref.module}"
        ) from exc
    function = getattr(module, ref.function or "", None)
    if not callable(function):
        raise ModelCodeError(
            f"training.model {ref.text!r}: {path} has no function {ref.function}; define "
            f"{ref.function}(inputs, params) there or fix training.model")
    return function


@contextmanager
def user_code(text: str, doing: str) -> Iterator[None]:
    """Turn an error a user's network raises while ``doing`` something into one line.

    The `ModelCodeError` names its file and function; built-in networks raise as is.
    """
    ref = ModelRef.parse(text)
    try:
        yield
    except ModelCodeError:
        raise
    except Exception as exc:
        if ref.builtin:
            raise
        raise ModelCodeError(
            f"training.model {ref.text!r}: {doing} the module from {ref.where} failed "
            f"({type(exc).__name__}: {_first_line(exc)}); fix the network (the traceback is "
            "in the run's log)") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def build(text: str, inputs: ModelInputs, params: dict[str, Any]) -> torch.nn.Module:
    """Build the network ``training.model`` names and check it on a two-row batch.

    Raises:
        ModelCodeError: the builder fails, returns something other than an
            ``nn.Module``, or the module's forward fails or returns the wrong shape.
    """
    import torch

    ref = ModelRef.parse(text)
    builder = load_builder(text)
    with user_code(text, "building"):
        net = builder(inputs, dict(params))
    if not isinstance(net, torch.nn.Module):
        raise ModelCodeError(
            f"training.model {ref.text!r}: {ref.where} returned {type(net).__name__}, not a "
            "torch.nn.Module; return the network (an nn.Module) from it")
    numeric = torch.zeros(2, len(inputs.numeric))
    cat = torch.zeros(2, len(inputs.categorical), dtype=torch.int64) \
        if inputs.categorical else None
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            out = net(numeric, cat)
    except Exception as exc:
        raise ModelCodeError(
            f"training.model {ref.text!r}: the module from {ref.where} fails on a two-row "
            f"batch ({type(exc).__name__}: {_first_line(exc)}); forward(numeric, categorical) "
            f"gets float [batch, {len(inputs.numeric)}] and int64 "
            f"[batch, {len(inputs.categorical)}] (or None)") from exc
    finally:
        net.train(was_training)
    if not isinstance(out, torch.Tensor) or tuple(out.reshape(-1).shape) != (2,) \
            or out.dim() > 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelCodeError(
            f"training.model {ref.text!r}: the module from {ref.where} returned {shape} for "
            "a two-row batch; return one logit per row ([batch] or [batch, 1])")
    return net
