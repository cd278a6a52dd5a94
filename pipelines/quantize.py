"""Variants of the exported predictor: int8 (static QDQ) for CPU serving, fp16 for GPUs.

Static QDQ quantization fixes activation scales from calibration rows, so a row's
prediction does not depend on what else is in its batch (dynamic int8 does). Each
variant is checked for parity with fp32 on held-out rows before it is published.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

# Rows per ONNX Runtime call when scoring a split. Fixed, not derived from the memory
# budget: streamed rows are re-cut into chunks of exactly this many rows, so every model
# sees the same calls (and gives the same bits) whatever size the batches were read in;
# a one-row call can differ in the last bits from the same row in a larger call. Small,
# because each live session's memory arena keeps room for the largest call it has run
# (a periodic-embedding network's intermediates are about 5 kB a row: 350 MB a session
# at 65,536 rows).
SCORE_ROWS = 4096


def session(model_bytes: bytes, threads: int = 1) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])


def predict(sess: Any, feeds: dict[str, np.ndarray]) -> np.ndarray:
    names = {i.name for i in sess.get_inputs()}
    return np.asarray(sess.run(None, {k: v for k, v in feeds.items() if k in names})[0],
                      dtype="float64").reshape(-1)


def predict_rows(sess: Any, rows: Any, params: dict[str, Any],
                 batch: int = SCORE_ROWS) -> np.ndarray:
    """Probabilities for a frame of raw rows, ``batch`` rows of ONNX inputs at a time.

    The inputs of millions of rows (one string object per category cell) are gigabytes.
    """
    from pipelines.features import onnx_feeds

    if len(rows) <= batch:
        return predict(sess, onnx_feeds(rows, params))
    return np.concatenate([predict(sess, onnx_feeds(rows.iloc[i:i + batch], params))
                           for i in range(0, len(rows), batch)])


class ChunkedScorer:
    """Probabilities of several ONNX sessions for rows that arrive in batches of any size.

    Each batch's ONNX inputs are buffered and the sessions are run on chunks of exactly
    ``chunk_rows`` rows (the last chunk shorter), cut at the same rows whatever the batch
    sizes, so the probabilities do not depend on how the rows were read. At most one
    chunk of inputs is held beyond the batch being added.

    Args:
        sessions: Name -> onnxruntime session, all fed the same ``params``' inputs.
        params: The preprocessing parameters (which columns feed the model).
        chunk_rows: Rows per session call.
        head_rows: How many of the first rows' inputs to keep (``head``) for timing.
        tolerate: Names of sessions whose failure to run is recorded in ``failures`` and
            stops their scoring, instead of being raised.
    """

    def __init__(self, sessions: dict[str, Any], params: dict[str, Any], *,
                 chunk_rows: int | None = None, head_rows: int = 0,
                 tolerate: Iterable[str] = ()):
        self._sessions = dict(sessions)
        self._params = params
        self._chunk_rows = SCORE_ROWS if chunk_rows is None else chunk_rows
        self._head_rows = head_rows
        self._tolerate = set(tolerate)
        self._pending: list[dict[str, np.ndarray]] = []
        self._pending_rows = 0
        self._head: list[dict[str, np.ndarray]] = []
        self._head_seen = 0
        self._scores: dict[str, list[np.ndarray]] = {name: [] for name in sessions}
        self.failures: dict[str, Exception] = {}

    def add(self, rows: pd.DataFrame) -> None:
        """Take a batch of raw rows (text columns as strings or categoricals)."""
        from pipelines.features import onnx_feeds

        n = len(rows)
        if not n:
            return
        feeds = onnx_feeds(rows, self._params)
        if self._head_seen < self._head_rows:
            keep = min(n, self._head_rows - self._head_seen)
            self._head.append({k: v[:keep] for k, v in feeds.items()})
            self._head_seen += keep
        self._pending.append(feeds)
        self._pending_rows += n
        while self._pending_rows >= self._chunk_rows:
            self._run(self._take(self._chunk_rows))

    def finish(self) -> dict[str, np.ndarray]:
        """Score what is buffered; the probabilities of every session that ran, in row order."""
        if self._pending_rows:
            self._run(self._take(self._pending_rows))
        return {name: np.concatenate(parts) if parts else np.zeros(0)
                for name, parts in self._scores.items() if name not in self.failures}

    @property
    def head(self) -> dict[str, np.ndarray]:
        """The ONNX inputs of the first ``head_rows`` rows added."""
        return _concat_feeds(self._head)

    def _take(self, n: int) -> dict[str, np.ndarray]:
        parts: list[dict[str, np.ndarray]] = []
        need = n
        while need:
            piece = self._pending[0]
            rows = len(next(iter(piece.values())))
            if rows <= need:
                parts.append(self._pending.pop(0))
                need -= rows
            else:
                parts.append({k: v[:need] for k, v in piece.items()})
                self._pending[0] = {k: v[need:] for k, v in piece.items()}
                need = 0
        self._pending_rows -= n
        return _concat_feeds(parts)

    def _run(self, feeds: dict[str, np.ndarray]) -> None:
        for name, sess in list(self._sessions.items()):
            try:
                self._scores[name].append(predict(sess, feeds))
            except Exception as exc:
                if name not in self._tolerate:
                    raise
                self.failures[name] = exc
                del self._sessions[name]


def _concat_feeds(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if len(parts) == 1:
        return parts[0]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


class _Calibration:
    def __init__(self, feeds: dict[str, np.ndarray], batch: int = 64):
        n = len(next(iter(feeds.values())))
        self._batches = iter(
            [{k: v[i : i + batch] for k, v in feeds.items()} for i in range(0, n, batch)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)

    def rewind(self) -> None:  # pragma: no cover - part of the reader protocol
        pass


def quantize_int8(fp32: bytes, calibration_feeds: dict[str, np.ndarray],
                  input_layer_fp32: bool = True) -> bytes:
    """Static QDQ int8 quantization of the layers' weights and activations.

    With ``input_layer_fp32`` (a network whose first layer reads the standardised numbers
    themselves) the input layer's activations stay fp32: standardised raw features have
    heavy tails (capital gains at 13 standard deviations on Adult) that saturate an 8-bit
    range and moved some predictions by 0.16 when they were quantized. Its weights are
    still stored as per-channel int8 and dequantized in the graph, so the variant is
    smaller than fp32 without touching those tails. A network whose every layer reads
    bounded values (periodic embeddings: cosines, then ReLUs) is quantized whole, which
    is what makes int8 faster than fp32.
    """
    import logging

    import onnx

    graph = onnx.load_from_string(fp32).graph
    gemms = [n.name for n in graph.node if n.op_type in ("Gemm", "MatMul")]
    inputs = {i.name for i in graph.input}
    calibration_feeds = {k: v for k, v in calibration_feeds.items() if k in inputs}
    root = logging.getLogger()
    level = root.level
    # The quantizer logs advice about pre-processing on the root logger at WARNING on
    # every call; it does not apply to these small graphs.
    root.setLevel(logging.ERROR)
    try:
        model = _quantize(fp32, calibration_feeds, gemms[:1] if input_layer_fp32 else [])
    finally:
        root.setLevel(level)
    if gemms and input_layer_fp32:
        _int8_weights(model, gemms[0])
    model.producer_name, model.producer_version = "tideline", ""
    return model.SerializeToString()


def _int8_weights(model: Any, node_name: str) -> None:
    """Store one Gemm/MatMul's constant weights as per-channel symmetric int8 (in place).

    The node keeps computing in fp32 on a ``DequantizeLinear`` of the int8 weights: weight
    quantization only, the activations are left as they are.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    node = next((n for n in graph.node if n.name == node_name), None)
    inits = {t.name: t for t in graph.initializer}
    if node is None or len(node.input) < 2 or node.input[1] not in inits:
        return
    weight = numpy_helper.to_array(inits[node.input[1]]).astype("float32")
    if weight.ndim != 2:
        return
    trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
    # Output channels: rows of B when the Gemm transposes it, columns otherwise.
    axis = 0 if node.op_type == "Gemm" and trans_b else 1
    peak = np.abs(weight).max(axis=1 - axis)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype("float32")
    shape = (-1, 1) if axis == 0 else (1, -1)
    quantized = np.clip(np.rint(weight / scale.reshape(shape)), -127, 127).astype("int8")
    name = node.input[1]
    graph.initializer.remove(inits[name])
    graph.initializer.extend([
        numpy_helper.from_array(quantized, f"{name}_int8"),
        numpy_helper.from_array(scale, f"{name}_scale"),
        numpy_helper.from_array(np.zeros_like(scale, dtype="int8"), f"{name}_zero_point")])
    graph.node.insert(0, helper.make_node(
        "DequantizeLinear", [f"{name}_int8", f"{name}_scale", f"{name}_zero_point"],
        [f"{name}_dequantized"], name=f"{name}_DequantizeLinear", axis=axis))
    node.input[1] = f"{name}_dequantized"


def _quantize(fp32: bytes, calibration_feeds: dict[str, np.ndarray],
              exclude: list[str]) -> Any:
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp, "fp32.onnx"), Path(tmp, "int8.onnx")
        src.write_bytes(fp32)
        quantize_static(
            str(src), str(dst), _Calibration(calibration_feeds),
            quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8, per_channel=True,
            op_types_to_quantize=["MatMul", "Gemm"], nodes_to_exclude=exclude,
        )
        return onnx.load(str(dst))


@dataclass(frozen=True)
class Parity:
    variant: str
    max_abs_diff: float
    mean_abs_diff: float
    tolerance: float
    rows: int

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.tolerance


def parity(variant: str, reference: np.ndarray, candidate: np.ndarray,
           tolerance: float) -> Parity:
    diff = np.abs(reference - candidate)
    return Parity(variant, float(diff.max()), float(diff.mean()), tolerance, len(diff))
