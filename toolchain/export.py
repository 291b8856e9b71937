"""`compress export`: a verified ONNX file, int8 where the quantize stage said so.

The fp32 graph is exported with a dynamic batch dimension, simplified with onnxsim (a failure is
a warning: the unsimplified graph is kept), checked against PyTorch (max abs difference and
top-1 agreement; beyond tolerance the export fails), then quantized with the recipe the
`quantize` stage stored, and its accuracy measured by running it in onnxruntime.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from . import artifact, data, models, train
from .convert import export_onnx, onnx_accuracy, parity, test_arrays
from .emulate import check_target
from .errors import CompressError
from .onnxio import param_bytes, quantize_onnx, save_onnx
from .target import load_target

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportOptions:
    data: str | None = None  # data spec; None: the sidecar's (accuracy is measured when there is one)
    opset: int = 17
    simplify: bool = True
    input_shape: tuple[int, ...] | None = None
    tolerance: float = 1e-3
    eval_samples: int | None = None
    seed: int = 0
    check_target: str | None = None  # a target profile: the final ONNX must load and match on it (emulated)

    def validate(self) -> None:
        if not 11 <= self.opset <= 21:
            raise CompressError(f"--opset must be between 11 and 21, not {self.opset}")
        if self.tolerance <= 0:
            raise CompressError(f"--tolerance must be > 0, not {self.tolerance}")
        if self.eval_samples is not None and self.eval_samples < 1:
            raise CompressError(f"--eval-samples must be >= 1 (omit it: the whole test split), not {self.eval_samples}")
        if self.seed < 0:
            raise CompressError(f"--seed must be >= 0, not {self.seed}")
        if self.check_target:
            load_target(self.check_target)


def _int8(parent: artifact.Artifact, recipe: dict, fp32: Path, final: Path) -> str:
    """The int8 file: the very one `quantize` measured when this fp32 graph is the one it quantized
    (quantized once: no second calibration, the figures are that file's), else quantized again from
    the stored recipe and calibration set (another opset, a model file from before)."""
    stored = artifact.load_extra(parent.path, "int8_onnx")
    if stored is not None and recipe.get("fp32_onnx_sha256") == artifact.sha256_of(fp32):
        final.write_bytes(stored.numpy().tobytes())
        return "the file quantize measured"
    calib = artifact.load_extra(parent.path, "calibration")
    if calib is None:
        raise CompressError(f"{parent.path} lost its calibration set; rerun `compress quantize`")
    quantize_onnx(fp32, final, recipe, calib.numpy())
    return "quantized again from the recipe and calibration set quantize stored"


def run(src: str, dst: Path, opts: ExportOptions, *, force: bool = False, trust: bool = False) -> artifact.Artifact:
    """Export a model file or spec to ONNX (int8 if it went through `quantize`) and verify it."""
    import onnx

    opts.validate()
    dst = Path(dst)
    artifact.check_output(dst, force)
    if Path(src).is_file():
        net, parent = artifact.load_model(src, trust=trust)
        shape = tuple(opts.input_shape[1:]) if opts.input_shape else parent.input_shape
        spec, num_classes = parent.spec, parent.meta.get("num_classes")
    else:
        if not opts.input_shape:
            raise CompressError("--input-shape is required to export a model spec (e.g. 1,3,32,32)")
        shape = tuple(opts.input_shape[1:])
        built = models.build(src, shape, int(data.num_classes(opts.data)) if opts.data else 10)
        net, parent, spec, num_classes = built.model.eval(), None, built.spec, None
    if not shape:
        raise CompressError(f"{src}: the input shape is unknown; pass --input-shape 1,C,H,W")
    try:
        with torch.inference_mode():
            net.eval()(torch.zeros(1, *shape))
    except RuntimeError as e:
        raise CompressError(f"{src} does not run on inputs of shape {tuple(shape)}: {str(e).splitlines()[0]}") from e
    recipe = parent.meta.get("quantization") if parent else None
    data_spec = opts.data or (parent.data_spec if parent else None)
    test = test_arrays(data.load(data_spec, shape), opts.eval_samples, opts.seed) if data_spec else None
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        notes = export_onnx(net, shape, fp32, opset=opts.opset, simplify=opts.simplify)
        try:
            onnx.checker.check_model(str(fp32))
        except onnx.checker.ValidationError as e:
            raise CompressError(f"export: the ONNX graph fails the checker: {str(e).splitlines()[0]}") from e
        probe = test[0][:64] if test is not None else np.random.default_rng(0).standard_normal(
            (8, *shape)).astype(np.float32)
        check = parity(net, fp32, probe)
        if check["max_rel_diff"] > opts.tolerance or check["top1_agreement"] < 1.0:
            raise CompressError(f"export: onnxruntime disagrees with PyTorch (max abs diff "
                                f"{check['max_abs_diff']:.2e} at an output scale of {check['output_scale']:.2g}, "
                                f"top-1 agreement {check['top1_agreement']:.3f}); tolerance {opts.tolerance}")
        final = fp32
        if recipe:
            final = Path(tmp) / "int8.onnx"
            notes["int8"] = _int8(parent, recipe, fp32, final)
        target_check = None
        if opts.check_target:  # before anything is written: a model that would fail on the device fails here
            target_check = check_target(final, opts.check_target, [1, *shape])
        metrics = {"param_bytes_fp32": param_bytes(fp32)["total"]}
        sizes = param_bytes(final)
        metrics |= {"param_bytes": sizes["total"], "int8_param_bytes": sizes["int8_bytes"]}
        if test is not None:
            recon = train.reconstructs(net)
            metrics |= {"accuracy": onnx_accuracy(final, test, recon), "eval_samples": len(test[1])}
            if recipe:
                metrics["accuracy_fp32_onnx"] = onnx_accuracy(fp32, test, recon)
        if parent is not None:
            metrics |= {k: parent.metrics[k] for k in ("params", "macs") if k in parent.metrics}
            first = (parent.meta.get("lineage") or [{}])[0].get("metrics", {})
            if first.get("params"):  # the paper's measure: original fp32 parameter bytes over final ones
                metrics["compression_x"] = artifact.compression_x(first["params"], sizes["total"])
        meta = artifact.new_meta("export", asdict(opts), parent=parent, spec=spec, data=None,
                                 input_shape=shape, num_classes=num_classes or 0, metrics=metrics,
                                 report={"parity": check, "param_bytes": sizes, "quantization": recipe,
                                         "target_check": target_check, **notes})
        proto = onnx.load(str(final))
        del proto.metadata_props[:]
        for key, value in {"compress.lineage": json.dumps(meta["lineage"]), "compress.spec": str(spec),
                           "compress.input_shape": json.dumps(list(shape))}.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        proto.producer_name = "compress"
        with artifact.atomic_path(dst) as out:
            meta["report"]["external_data"] = save_onnx(proto, out, dst, sizes["total"])
            meta["model"].update(file=dst.name, kind="onnx", sha256=artifact.sha256_of(out))
            meta["metrics"]["bytes"] = out.stat().st_size
            artifact.write_json(meta, artifact.sidecar_of(dst))
    return artifact.Artifact(dst, meta)


