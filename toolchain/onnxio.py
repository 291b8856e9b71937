"""ONNX files without torch: sessions, outputs, parameter bytes, saving past 2 GiB, and static int8
quantization from a recipe. Both `export` and `quantize` build on this leaf (neither imports the
other), and it loads where only numpy, onnx and onnxruntime are installed.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import numpy as np

from .bench_runner import RunnerError, make_session
from .errors import CompressError

logger = logging.getLogger(__name__)

PROTOBUF_LIMIT = 2**31 - 2**26  # one ONNX protobuf holds 2 GiB; past this (less room for the graph) weights go aside
OP_TYPES = {"fc": ["Gemm", "MatMul"], "all": None}  # what each quantize scope turns into int8


def save_onnx(proto, out: Path, dst: Path, weight_bytes: int) -> str | None:
    """Save `proto` at `out` (a temp name for `dst`). Past protobuf's 2 GiB the weights go to
    `<dst name>.data` beside it, as ONNX external data (onnxruntime finds it next to the model);
    returns that file's name, or None."""
    import onnx

    if weight_bytes < PROTOBUF_LIMIT:
        onnx.save(proto, str(out))
        return None
    name = f"{dst.name}.data"
    try:
        onnx.save(proto, str(out), save_as_external_data=True, all_tensors_to_one_file=True, location=name)
    except BaseException:
        (dst.parent / name).unlink(missing_ok=True)
        raise
    return name


def external_data(path: Path) -> bool:
    """Whether an ONNX file keeps its weights in other files (a model past 2 GiB)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)


def input_dims(path: Path) -> list[int | None]:
    """The first input's dimensions (None where symbolic, as a batch axis), or a one-line error for a
    file that is not an ONNX model."""
    import onnx

    try:
        graph = onnx.load(str(path), load_external_data=False).graph
        dims = graph.input[0].type.tensor_type.shape.dim
    except Exception as e:  # noqa: BLE001 - protobuf raises its own kinds for a corrupt file
        raise CompressError(f"{path}: not an ONNX model ({type(e).__name__})") from e
    return [d.dim_value if d.HasField("dim_value") else None for d in dims]


def session(path: Path, threads: int | None = None):
    """An onnxruntime CPU session, made as `compress bench` makes its sessions (one code path)."""
    try:
        return make_session(str(path), {"threads": threads}, ["CPUExecutionProvider"])[0]
    except RunnerError as e:
        raise CompressError(str(e)) from e


def onnx_logits(path_or_session, x: np.ndarray, batch: int = 256) -> np.ndarray:
    sess = path_or_session if hasattr(path_or_session, "run") else session(path_or_session)
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: np.ascontiguousarray(x[i:i + batch], dtype=np.float32)})[0]
                           for i in range(0, len(x), batch)])


def _consumer_ops(graph) -> dict[str, str]:
    """For each initializer, the op type that finally uses it (looking through DequantizeLinear)."""
    users: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    out = {}
    for init in graph.initializer:
        node = (users.get(init.name) or [None])[0]
        while node is not None and node.op_type in ("DequantizeLinear", "QuantizeLinear", "Cast", "Transpose"):
            node = (users.get(node.output[0]) or [None])[0]
        out[init.name] = node.op_type if node is not None else "unused"
    return out


def param_bytes(path: Path) -> dict:
    """Parameter bytes stored in an ONNX file: total, by data type and by the layer type that uses them."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    consumers = _consumer_ops(model.graph)
    total, by_dtype, by_op = 0, {}, {}
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        n = arr.nbytes
        total += n
        by_dtype[str(arr.dtype)] = by_dtype.get(str(arr.dtype), 0) + n
        op = consumers[init.name]
        by_op.setdefault(op, {}).setdefault(str(arr.dtype), 0)
        by_op[op][str(arr.dtype)] += n
    return {"total": total, "int8_bytes": by_dtype.get("int8", 0) + by_dtype.get("uint8", 0),
            "by_dtype": by_dtype, "by_op": by_op}


class CalibrationReader(Protocol):
    """What quantization reads calibration data through: batches of input arrays."""

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]: ...


class ArrayReader:
    """Calibration batches from one array of inputs (a .npz set or a data split)."""

    def __init__(self, x: np.ndarray, input_name: str = "input", batch: int = 32):
        self.x, self.name, self.batch = np.ascontiguousarray(x, dtype=np.float32), input_name, batch

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        for i in range(0, len(self.x), self.batch):
            yield {self.name: self.x[i:i + self.batch]}


class _OrtReader:
    """onnxruntime's CalibrationDataReader shape (get_next/rewind) over a CalibrationReader."""

    def __init__(self, reader: CalibrationReader):
        self.reader = reader
        self._it = iter(reader)

    def get_next(self):
        return next(self._it, None)

    def rewind(self):
        self._it = iter(self.reader)


def quantize_onnx(fp32: Path, dst: Path, recipe: dict, calibration: np.ndarray) -> None:
    """Write the int8 version of an fp32 ONNX file following a `compress quantize` recipe."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    scope, method = recipe["scope"], recipe["calibrate"]
    input_name = onnx.load(str(fp32), load_external_data=False).graph.input[0].name
    large = external_data(fp32)  # past 2 GiB: the calibration copies must keep their weights outside too
    formats = {"qdq": QuantFormat.QDQ, "qoperator": QuantFormat.QOperator}
    types = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}  # recipes before targets were s8s8 QDQ
    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    ops = OP_TYPES[scope]
    if recipe.get("op_types"):  # a target profile's: only these ops, within what the scope allows
        ops = [o for o in recipe["op_types"] if ops is None or o in ops]
    nodes = recipe.get("nodes")  # per-layer precision: only these nodes go int8 (None: every one in scope)
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        try:
            quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True, save_as_external_data=large)
        except Exception as e:  # noqa: BLE001 - pre-processing is an optimization; fall back to the raw graph
            logger.warning("quantization pre-processing failed (%s); quantizing the graph as is", e)
            pre = fp32
        excluded = residual_stream(pre)
        try:
            quantize_static(str(pre), str(dst), _OrtReader(ArrayReader(calibration, input_name)),
                            quant_format=formats[recipe.get("format", "qdq")], op_types_to_quantize=ops,
                            per_channel=recipe.get("per_channel", True),
                            activation_type=types[recipe.get("activation_type", "int8")],
                            weight_type=types[recipe.get("weight_type", "int8")],
                            calibrate_method=methods[method], use_external_data_format=large,
                            nodes_to_quantize=list(nodes) if nodes is not None else None,
                            nodes_to_exclude=excluded,
                            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
        except (ValueError, RuntimeError) as e:
            raise CompressError(f"quantize: onnxruntime could not quantize the model: {e}") from e


def residual_stream(path: Path) -> list[str]:
    """The nodes static int8 leaves in fp32: every LayerNormalization and the Add nodes that feed one
    (a transformer's residual stream, whose outliers one int8 scale cannot hold: on ViT-Tiny they were
    a relative error of 0.27 on the logits, 0.04 without them). A network without LayerNorm (AlexNet,
    VGG, ResNet) loses nothing to int8 here."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    norms = [n for n in graph.node if n.op_type == "LayerNormalization"]
    feeding = {i for n in norms for i in n.input}
    return [n.name for n in norms] + [n.name for n in graph.node if n.op_type == "Add" and feeding & set(n.output)]


QUANTIZABLE = ("Conv", "Gemm", "MatMul")


def quantizable_nodes(fp32: Path, recipe: dict) -> list[str]:
    """Names of the nodes a recipe would turn int8, as quantize_onnx sees the graph (after the same
    pre-processing): the candidates of per-layer precision."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    ops = OP_TYPES[recipe["scope"]] or list(QUANTIZABLE)
    if recipe.get("op_types"):
        ops = [o for o in recipe["op_types"] if o in ops]
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        try:
            quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        except Exception:  # noqa: BLE001 - as in quantize_onnx: the raw graph then
            pre = fp32
        graph = onnx.load(str(pre)).graph
    return [n.name for n in graph.node if n.op_type in ops and n.name]
