"""`compress quantize`: int8 for the fully-connected layers (the paper) or the whole network.

onnxruntime's quantizer works on ONNX graphs, so this stage records the recipe (scope,
calibration method, calibration set) with the model, and proves it: it exports the model,
quantizes it with onnxruntime.quantization (static QDQ, per-channel int8 weights) and measures
the int8 model's accuracy by running it in onnxruntime. `compress export` applies the same recipe
to write the final int8 ONNX. Static QDQ is used for both scopes because onnxruntime's dynamic
quantization has no Gemm kernel and runs convolutions ~5x slower than fp32 on x86 CPUs.

The default never makes a model slower: the int8 model is timed against the fp32 one here, and
if it is more than 5% slower the stage keeps fp32 and says so. `--allow-slower` keeps int8 and skips
that timing (600 inferences, minutes on a large model): the decision it would inform is made.
"""

from __future__ import annotations

import json
import logging
import platform
import tempfile
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path

import numpy as np
import torch

from . import artifact, data, measure
from .convert import export_onnx, onnx_accuracy, test_arrays
from .errors import CompressError
from .fileio import sha256_of
from .onnxio import external_data, param_bytes, quantizable_nodes, quantize_onnx
from .remote import Remote
from .target import arch, load_target
from .train import data_meta, prepare, reconstructs

logger = logging.getLogger(__name__)


class Scope(str, Enum):
    FC = "fc"
    ALL = "all"


class Calibrate(str, Enum):
    MINMAX = "minmax"
    PERCENTILE = "percentile"
    ENTROPY = "entropy"


SLOWER_TOLERANCE = 0.05  # int8 p50 more than 5% above fp32 (same run, interleaved): "slower"
GUARD_SECONDS = 1.0  # a sub-millisecond pair is timed at least this long: 300 runs of a 0.05 ms model (30 ms
#                      in all) read int8 1.07x slower on a busy CPU where 10,000 read it 1.2x faster


@dataclass(frozen=True)
class QuantizeOptions:
    data: str | None = None  # data spec; None: the one the model file's sidecar names
    scope: Scope = Scope.FC
    calibrate: Calibrate = Calibrate.MINMAX
    calibration: Path | None = None
    samples: int = 256
    eval_samples: int | None = None
    allow_slower: bool = False  # keep int8 whatever its speed here (the speed guard is then not timed)
    seed: int = 0
    target: str | None = None  # a bench target profile (rpi4, x86-cpu, ...): its [int8] table sets the int8 types
    host: str | None = None  # user@device: time the speed guard there over SSH (with the target's [ssh])
    per_layer: bool = False  # int8 only for the layers where it measures faster (each timed alone in int8)

    def int8(self) -> dict:
        """The int8 format and types: the target profile's [int8] table, else QDQ with signed int8
        activations and weights (s8s8, onnxruntime's default)."""
        if self.target is None:
            return {"format": "qdq", "activation_type": "int8", "weight_type": "int8", "per_channel": True}
        target = load_target(self.target)
        return asdict(target.int8) | {"target": target.name}

    def guard(self) -> str | None:
        """Where the int8-slower-than-fp32 guard is timed: "device" (over SSH), "here", or None when
        this host is not the target's kind and no device was given (an x86 or emulated timing says
        nothing about a Cortex-A72)."""
        if self.host:
            return "device"
        machine = load_target(self.target).arch if self.target else ""
        return None if machine and arch(machine) != arch(platform.machine()) else "here"

    def validate(self) -> None:
        if self.samples < 1:
            raise CompressError(f"--samples must be >= 1, not {self.samples}")
        if self.eval_samples is not None and self.eval_samples < 1:
            raise CompressError(f"--eval-samples must be >= 1 (omit it: the whole test split), not {self.eval_samples}")
        if self.seed < 0:
            raise CompressError(f"--seed must be >= 0, not {self.seed}")
        self.int8()  # an unknown or broken target profile is refused before any work
        if self.host:
            Remote(host=self.host).validate()


def load_calibration(path: Path, input_shape: tuple[int, ...]) -> np.ndarray:
    """A calibration set file (.npz with array `x`), checked against the model's input shape."""
    path = Path(path)
    if not path.exists():
        raise CompressError(f"calibration set {path} not found (make one with `compress calibrate`)")
    try:
        with np.load(path) as f:
            x = f["x"] if "x" in f else f[list(f.keys())[0]]
    except (OSError, ValueError, KeyError, IndexError, EOFError) as e:
        raise CompressError(f"{path}: not a readable calibration set (.npz with array x): {e}") from e
    if len(x) == 0:
        raise CompressError(f"calibration set {path} is empty")
    if tuple(x.shape[1:]) != tuple(input_shape):
        raise CompressError(f"calibration set {path} has samples of shape {tuple(x.shape[1:])}, "
                            f"the model takes {tuple(input_shape)}")
    return x.astype(np.float32)


def _calibration_indices(ds: data.Dataset, n: int, seed: int) -> torch.Tensor:
    """A class-stratified sample of the training split (never the test split)."""
    y = ds.train.tensors[1]
    return data.stratified_indices(y, min(n, len(y)), seed=seed)


def calibration_set(ds: data.Dataset, n: int, seed: int) -> np.ndarray:
    """Calibration inputs drawn from the training split, class-stratified."""
    return ds.train.tensors[0][_calibration_indices(ds, n, seed)].numpy()


def make_calibration(data_spec: str, input_shape: tuple[int, ...] | None, samples: int, dst: Path, *,
                     seed: int = 0, force: bool = False, model: Path | None = None) -> dict:
    """`compress calibrate`: a class-stratified sample of a training split, in the model's input
    space (converted and normalized exactly as the stages see it), saved as .npz (x float16, y).

    The input shape (C,H,W): `input_shape`, else the `model` file's, else the data's own."""
    if samples < 1:
        raise CompressError(f"--samples must be >= 1, not {samples}")
    if input_shape:
        input_shape = tuple(input_shape)
    elif model is not None:
        input_shape = artifact.Artifact.open(model).input_shape
        if not input_shape:
            raise CompressError(f"{model} has no sidecar with an input shape; pass --input-shape")
    else:
        input_shape = data.native_shape(data_spec)
    dst = Path(dst)
    artifact.check_output(dst, force)
    ds = data.load(data_spec, tuple(input_shape))
    x, y = ds.train.tensors
    idx = _calibration_indices(ds, samples, seed)
    info = {"data": ds.name, "source": ds.source, "synthetic": ds.synthetic, "input_shape": list(ds.input_shape),
            "samples": len(idx), "seed": seed, "classes": int(len(torch.unique(y[idx]))), "created": artifact.now()}
    with artifact.atomic_path(dst) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, x=x[idx].numpy().astype(np.float16), y=y[idx].numpy(),
                                info=np.array(json.dumps(info)))
    return info | {"path": str(dst), "bytes": dst.stat().st_size}


def run(src: str, dst: Path, opts: QuantizeOptions, *, force: bool = False,
        trust: bool = False) -> artifact.Artifact:
    """Record the int8 recipe with the model and measure the int8 model in onnxruntime."""
    opts.validate()
    dst = Path(dst)
    artifact.check_output(dst, force)
    prep = prepare(src, opts.data, trust=trust, seed=opts.seed)
    calib = (load_calibration(opts.calibration, prep.input_shape) if opts.calibration
             else calibration_set(prep.dataset, opts.samples, opts.seed))
    recipe = {"scope": opts.scope.value, "calibrate": opts.calibrate.value, "samples": len(calib),
              "calibration": str(opts.calibration) if opts.calibration else f"{prep.dataset.name} train split",
              **opts.int8()}
    with tempfile.TemporaryDirectory() as tmp:
        fp32, int8 = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        export_onnx(prep.model, prep.input_shape, fp32)
        quantize_onnx(fp32, int8, recipe, calib)
        test = test_arrays(prep.dataset, opts.eval_samples, opts.seed)
        recon = reconstructs(prep.model)
        fp32_acc, int8_acc = onnx_accuracy(fp32, test, recon), onnx_accuracy(int8, test, recon)
        sizes = {"fp32": param_bytes(fp32), "int8": param_bytes(int8)}
        guard = opts.guard()
        if opts.per_layer:
            if guard is None:
                raise CompressError(f"--per-layer times each layer on the target: this host is not a {opts.target}; "
                                    f"pass --host user@device")
            recipe["nodes"], recipe["per_layer_p50_ratio"] = _per_layer(fp32, recipe, calib, opts, Path(tmp))
            if recipe["nodes"]:
                quantize_onnx(fp32, int8, recipe, calib)
                int8_acc, sizes["int8"] = onnx_accuracy(int8, test, recon), param_bytes(int8)
        timed = None if opts.allow_slower else guard  # the guard decides; --allow-slower has decided
        slowdown = _latency_ratio(fp32, int8, opts) if timed else None
        measured = {"fp32_onnx_sha256": sha256_of(fp32)} if not external_data(int8) else {}
        int8_file = torch.frombuffer(bytearray(int8.read_bytes()), dtype=torch.uint8) if measured else None
    recipe["int8_vs_fp32_p50"], recipe["speed_guard"] = slowdown, (
        {"device": f"timed on {opts.host}", "here": "timed on this host"}.get(timed)
        or ("not timed: --allow-slower keeps int8 whatever it measures (time it with `compress bench`)"
            if opts.allow_slower else
            f"not timed: this host is not a {opts.target}; pass --host user@device to time it there"))
    no_layer_pays = opts.per_layer and not recipe["nodes"]
    kept_fp32 = no_layer_pays or (slowdown is not None and slowdown > 1 + SLOWER_TOLERANCE and not opts.allow_slower)
    if no_layer_pays:
        logger.warning("per layer: no layer ran faster in int8 (%s); keeping fp32", opts.scope.value)
        int8_acc, sizes["int8"] = fp32_acc, sizes["fp32"]
    elif kept_fp32:  # the default never makes a model slower (measured here; --allow-slower overrides)
        logger.warning("int8 (%s) ran %.2fx the fp32 latency on this machine; keeping fp32. Pass --allow-slower "
                       "to keep int8 (e.g. for a device where `compress bench --target` shows it faster)",
                       opts.scope.value, slowdown)
        int8_acc, sizes["int8"] = fp32_acc, sizes["fp32"]
    elif sizes["int8"]["int8_bytes"] == 0:
        logger.warning("no layer was quantized: the model has no %s layer for scope %r",
                       "fully-connected" if opts.scope is Scope.FC else "quantizable", opts.scope.value)
    metrics = artifact.count(prep.model, prep.input_shape) | {
        "accuracy": int8_acc, "accuracy_fp32_onnx": fp32_acc, "eval_samples": len(test[1]),
        "param_bytes": sizes["int8"]["total"], "param_bytes_fp32": sizes["fp32"]["total"]}
    options = asdict(opts) | {"scope": opts.scope.value, "calibrate": opts.calibrate.value,
                              "calibration": recipe["calibration"]}
    meta = artifact.new_meta("quantize", options, parent=prep.parent, spec=prep.spec,
                             data=data_meta(prep.dataset), input_shape=prep.input_shape,
                             num_classes=prep.dataset.num_classes, metrics=metrics,
                             report={"recipe": recipe, "param_bytes": sizes,
                                     "drop_vs_fp32": round(fp32_acc - int8_acc, 3)})
    meta["quantization"] = None if kept_fp32 else recipe | measured
    meta["report"]["kept_fp32_because_int8_was_slower"] = kept_fp32
    extra = {"calibration": torch.from_numpy(calib)}
    if int8_file is not None and not kept_fp32:  # the very file measured here: export writes it (`export.run`)
        extra["int8_onnx"] = int8_file
    return artifact.save(prep.model, dst, meta, force=force, extra=extra)


def _per_layer(fp32: Path, recipe: dict, calib: np.ndarray, opts: QuantizeOptions, tmp: Path) -> tuple[list, dict]:
    """Each quantizable layer alone in int8, every variant timed against fp32 interleaved in one run
    (fp32 first and last): the layers whose int8 variant runs faster, and each variant's p50 ratio."""
    names = quantizable_nodes(fp32, recipe)
    files = [fp32]
    for i, name in enumerate(names):
        files.append(tmp / f"layer{i}.onnx")
        quantize_onnx(fp32, files[-1], recipe | {"nodes": [name]}, calib)
    files.append(fp32)
    report = measure.interleaved(files, host=opts.host, target=opts.target if opts.host else None)
    p50 = [m["p50_ms"] for m in report["models"]]
    base = min(p50[0], p50[-1])
    ratios = {name: round(p / base, 4) for name, p in zip(names, p50[1:-1], strict=True)}
    return [n for n, r in ratios.items() if r < 1.0], ratios


def _latency_ratio(fp32: Path, int8: Path, opts: QuantizeOptions | None = None) -> float:
    """p50 of the int8 model over p50 of the fp32 one, timed interleaved in one run (on the
    device over SSH with `opts.host`)."""
    host = opts.host if opts is not None else None
    target = opts.target if host else None
    report = measure.interleaved([fp32, int8], host=host, target=target)
    if 300 * sum(m["p50_ms"] for m in report["models"]) / 1000 < GUARD_SECONDS:  # too short to tell 10% apart
        report = measure.interleaved([fp32, int8], host=host, target=target, seconds=GUARD_SECONDS)
    return round(report["models"][1]["p50_ms"] / report["models"][0]["p50_ms"], 4)
