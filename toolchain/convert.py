"""PyTorch to ONNX, and an ONNX file read back: the conversion every stage that measures an ONNX
file shares (export writes it; quantize, prune's latency search and profile time it).

The fp32 graph is exported with a dynamic batch dimension and simplified with onnxsim where it
can (a failure is a warning: the unsimplified graph is kept). Adaptive pools that ONNX cannot
express at the model's input size are replaced by the same linear map.
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import data
from .errors import CompressError
from .onnxio import onnx_logits
from .train import performance

logger = logging.getLogger(__name__)

INPUT, OUTPUT = "input", "output"


class PoolAsMatmul(nn.Module):
    """AdaptiveAvgPool2d at one input size, as one matrix product: ONNX has no adaptive pooling
    whose output size does not divide the input size (AlexNet's and VGG's 6x6 / 7x7 pools on small
    inputs), and this is the same linear map."""

    def __init__(self, size: tuple[int, int], out: tuple[int, int]):
        super().__init__()
        (h, w), (oh, ow) = size, out
        weights = torch.zeros(h * w, oh * ow)
        for i in range(oh):
            rows = range(math.floor(i * h / oh), math.ceil((i + 1) * h / oh))
            for j in range(ow):
                cols = range(math.floor(j * w / ow), math.ceil((j + 1) * w / ow))
                cell = [a * w + b for a in rows for b in cols]
                weights[cell, i * ow + j] = 1.0 / len(cell)
        self.register_buffer("weights", weights)
        self.out = (oh, ow)

    def forward(self, x):
        return (x.flatten(2) @ self.weights).reshape(x.shape[0], x.shape[1], *self.out)


def _exportable(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[nn.Module, list[str]]:
    """The model, or a copy with the adaptive pools ONNX cannot express replaced (and their names)."""
    import copy

    sizes: dict[str, tuple[int, int]] = {}
    pools = {n: m for n, m in model.named_modules() if isinstance(m, nn.AdaptiveAvgPool2d)}
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: sizes.__setitem__(n, tuple(i[0].shape[-2:])))
             for n, m in pools.items()]
    try:
        with torch.inference_mode():
            model(torch.zeros(1, *input_shape))
    finally:
        for h in hooks:
            h.remove()
    swap = {}
    for name, size in sizes.items():
        out = pools[name].output_size
        out = (out, out) if isinstance(out, int) else tuple(o or s for o, s in zip(out, size, strict=True))
        if any(s % o for s, o in zip(size, out, strict=True)):
            swap[name] = PoolAsMatmul(size, out)
    if not swap:
        return model, []
    clone = copy.deepcopy(model)
    for name, module in swap.items():
        parent, _, leaf = name.rpartition(".")
        setattr(clone.get_submodule(parent) if parent else clone, leaf, module)
    return clone.eval(), sorted(swap)


def export_onnx(model: nn.Module, input_shape: tuple[int, ...], dst: Path, *, opset: int = 17,
                simplify: bool = True) -> dict:
    """Export fp32 ONNX with a dynamic batch axis, simplified when onnxsim can. Returns notes."""
    import onnx

    model, swapped = _exportable(model.eval(), input_shape)
    example = torch.zeros(1, *input_shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(model, (example,), str(dst), dynamo=False, opset_version=opset,
                              input_names=[INPUT], output_names=[OUTPUT],
                              dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}})
        except (RuntimeError, torch.onnx.errors.OnnxExporterError) as e:
            raise CompressError(f"export: torch could not export the model: {str(e).splitlines()[0]}") from e
    notes = {"simplified": False, "pools_as_matmul": swapped}
    if simplify:
        try:
            import onnxsim

            simplified, ok = onnxsim.simplify(onnx.load(str(dst)))
            if ok:
                onnx.save(simplified, str(dst))
                notes["simplified"] = True
            else:
                logger.warning("onnxsim could not validate the simplified graph; keeping the original")
        except Exception as e:  # noqa: BLE001 - onnxsim raises arbitrary errors; the raw graph is valid
            logger.warning("onnxsim failed (%s); keeping the unsimplified graph", str(e).splitlines()[0])
            notes["simplify_error"] = str(e).splitlines()[0]
    return notes


def onnx_accuracy(path: Path, test: tuple[np.ndarray, np.ndarray], reconstruct: bool = False) -> float:
    """Top-1 accuracy (%) of an ONNX model run in onnxruntime (a reconstruction head: ROC-AUC x100)."""
    x, y = test
    return performance(torch.from_numpy(onnx_logits(path, x)), torch.from_numpy(x), torch.from_numpy(y), reconstruct)


def parity(model: nn.Module, path: Path, x: np.ndarray) -> dict:
    """PyTorch against onnxruntime on the same inputs."""
    with torch.inference_mode():
        ref = model.eval()(torch.from_numpy(x)).numpy()
    got = onnx_logits(path, x)
    diff = float(np.abs(ref - got).max())
    scale = max(1.0, float(np.abs(ref).max()))  # random-weight Inception logits reach 1e8; fp32 error is relative
    return {"max_abs_diff": diff, "max_rel_diff": diff / scale, "output_scale": scale,
            "top1_agreement": round(float((ref.argmax(1) == got.argmax(1)).mean()), 5), "samples": len(x)}


def test_arrays(ds: data.Dataset, n: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The test split (or a class-stratified subset of n) as arrays for onnxruntime."""
    x, y = ds.test.tensors
    if n and n < len(y):
        idx = data.stratified_indices(y, n, seed=seed)
        x, y = x[idx], y[idx]
    return x.numpy(), y.numpy()
