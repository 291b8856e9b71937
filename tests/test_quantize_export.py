import numpy as np
import onnx
import pytest
import torch

from toolchain import bench, convert, export, measure, onnxio, quantize
from toolchain.errors import CompressError
from toolchain.onnxio import quantize_onnx


@pytest.fixture(scope="module")
def quantized(trained_lenet, tmp_path_factory):
    out = tmp_path_factory.mktemp("q") / "q.pt"
    return quantize.run(str(trained_lenet), out, quantize.QuantizeOptions(samples=64, allow_slower=True))


def test_quantize_measures_int8_in_onnxruntime(quantized):
    m = quantized.metrics
    assert m["accuracy"] > 60 and abs(m["accuracy_fp32_onnx"] - m["accuracy"]) < 5
    sizes = quantized.meta["report"]["param_bytes"]
    assert sizes["int8"]["int8_bytes"] > 0 and sizes["int8"]["total"] < sizes["fp32"]["total"]
    assert quantized.meta["quantization"]["scope"] == "fc"


def test_export_after_quantize_stores_int8_fc_weights_and_float_convs(quantized, tmp_path):
    art = export.run(str(quantized.path), tmp_path / "q.onnx", export.ExportOptions())
    by_op = art.meta["report"]["param_bytes"]["by_op"]
    assert by_op["Gemm"].get("int8", 0) > 0
    assert "int8" not in by_op["Conv"] and by_op["Conv"]["float32"] > 0
    model = onnx.load(str(tmp_path / "q.onnx"))
    props = {p.key for p in model.metadata_props}
    assert {"compress.lineage", "compress.spec"} <= props
    assert art.metrics["bytes"] == (tmp_path / "q.onnx").stat().st_size
    assert art.metrics["accuracy"] == pytest.approx(quantized.metrics["accuracy"], abs=0.01)
    assert art.meta["report"]["parity"]["top1_agreement"] == 1.0
    assert art.metrics["compression_x"] == pytest.approx(4 * 61706 / art.metrics["param_bytes"], rel=1e-3)


def test_scope_all_quantizes_convolutions_too(trained_lenet, tmp_path):
    q = quantize.run(str(trained_lenet), tmp_path / "qa.pt", quantize.QuantizeOptions(scope=quantize.Scope.ALL,
                                                                                      samples=64, allow_slower=True,
                                              calibrate=quantize.Calibrate.PERCENTILE))
    art = export.run(str(q.path), tmp_path / "qa.onnx", export.ExportOptions())
    assert art.meta["report"]["param_bytes"]["by_op"]["Conv"].get("int8", 0) > 0


def test_export_a_spec_with_dynamic_batch(tmp_path):
    art = export.run("zoo:alexnet", tmp_path / "a.onnx", export.ExportOptions(input_shape=(1, 3, 32, 32)))
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    assert onnxio.onnx_logits(tmp_path / "a.onnx", x).shape == (3, 10)
    assert art.meta["report"]["parity"]["max_abs_diff"] < 1e-3


def test_calibration_file_of_the_wrong_shape(trained_lenet, tmp_path):
    np.savez(tmp_path / "c.npz", x=np.zeros((4, 3, 8, 8), np.float32))
    with pytest.raises(CompressError, match="shape"):
        quantize.run(str(trained_lenet), tmp_path / "q.pt", quantize.QuantizeOptions(calibration=tmp_path / "c.npz"))
    np.savez(tmp_path / "e.npz", x=np.zeros((0, 1, 32, 32), np.float32))
    with pytest.raises(CompressError, match="empty"):
        quantize.run(str(trained_lenet), tmp_path / "q.pt", quantize.QuantizeOptions(calibration=tmp_path / "e.npz"))
    assert not (tmp_path / "q.pt").exists()


def test_export_options_and_missing_shape(tmp_path):
    with pytest.raises(CompressError, match="opset"):
        export.ExportOptions(opset=3).validate()
    with pytest.raises(CompressError, match="input-shape"):
        export.run("zoo:lenet5", tmp_path / "x.onnx", export.ExportOptions())


def test_calibrate_makes_a_stratified_set_that_quantize_accepts(trained_lenet, tmp_path):
    import json as _json

    info = quantize.make_calibration("digits", (1, 32, 32), 50, tmp_path / "c.npz", seed=1)
    with np.load(tmp_path / "c.npz") as f:
        x, y, meta = f["x"], f["y"], _json.loads(str(f["info"]))
    assert x.shape == (50, 1, 32, 32) and x.dtype == np.float16
    assert set(np.unique(y)) == set(range(10)) and np.bincount(y).max() - np.bincount(y).min() <= 1
    assert meta["data"] == "digits" and info["samples"] == 50
    q = quantize.run(str(trained_lenet), tmp_path / "q.pt", quantize.QuantizeOptions(calibration=tmp_path / "c.npz",
                                                                                     allow_slower=True))
    assert q.meta["quantization"]["samples"] == 50
    with pytest.raises(CompressError, match="--force"):
        quantize.make_calibration("digits", (1, 32, 32), 50, tmp_path / "c.npz")


def test_shipped_calibration_sets_match_their_recipe():
    from pathlib import Path

    for name in ("mnist-1x32x32.npz", "fashion-mnist-1x32x32.npz"):
        path = Path(__file__).parents[1] / "calibration" / name
        x = quantize.load_calibration(path, (1, 32, 32))
        assert len(x) == 128 and x.dtype == np.float32


def test_the_default_never_makes_a_model_slower(trained_lenet, tmp_path, monkeypatch):
    monkeypatch.setattr(quantize, "_latency_ratio", lambda fp32, int8, opts=None: 1.4)
    q = quantize.run(str(trained_lenet), tmp_path / "q.pt", quantize.QuantizeOptions(samples=32))
    assert q.meta["quantization"] is None and q.meta["report"]["kept_fp32_because_int8_was_slower"]
    assert q.metrics["param_bytes"] == q.metrics["param_bytes_fp32"]
    art = export.run(str(q.path), tmp_path / "q.onnx", export.ExportOptions())
    assert art.metrics["int8_param_bytes"] == 0  # the exported file stays fp32
    monkeypatch.setattr(quantize, "_latency_ratio", lambda *a, **k: pytest.fail("--allow-slower times nothing"))
    kept = quantize.run(str(trained_lenet), tmp_path / "k.pt", quantize.QuantizeOptions(samples=32, allow_slower=True))
    recipe = kept.meta["quantization"]
    assert recipe["int8_vs_fp32_p50"] is None and "--allow-slower" in recipe["speed_guard"]
    assert kept.metrics["param_bytes"] < 4 * 61706


def test_latency_ratio_is_measured(tmp_path):
    from toolchain import models

    net = models.build("zoo:lenet5", (1, 32, 32), 10).model
    convert.export_onnx(net, (1, 32, 32), tmp_path / "a.onnx")
    assert 0.5 < quantize._latency_ratio(tmp_path / "a.onnx", tmp_path / "a.onnx") < 2.0


@pytest.mark.parametrize("size, out", [((2, 2), (7, 7)), ((5, 3), (2, 2)), ((1, 1), (6, 6))])
def test_adaptive_pools_onnx_cannot_express_export_as_the_same_linear_map(size, out, tmp_path):
    """AlexNet's 6x6 and VGG's 7x7 adaptive pools on small inputs: exported as one matrix product,
    equal to PyTorch's pooling."""
    from torch import nn

    from toolchain.convert import PoolAsMatmul, export_onnx
    from toolchain.onnxio import onnx_logits

    x = torch.randn(3, 4, *size)
    assert torch.allclose(PoolAsMatmul(size, out)(x), nn.AdaptiveAvgPool2d(out)(x), atol=1e-6)
    net = nn.Sequential(nn.Conv2d(4, 4, 1), nn.AdaptiveAvgPool2d(out), nn.Flatten(), nn.Linear(4 * out[0] * out[1], 3))
    notes = export_onnx(net, (4, *size), tmp_path / "m.onnx")
    assert notes["pools_as_matmul"] == ["1"]
    with torch.no_grad():
        assert np.allclose(onnx_logits(tmp_path / "m.onnx", x.numpy()), net.eval()(x).numpy(), atol=1e-5)


def test_parity_is_relative_to_the_output_scale(tmp_path):
    """fp32 rounding grows with the outputs (a random-weight Inception's logits reach 1e8): the
    export check divides by max(1, max |output|)."""
    from torch import nn

    from toolchain.convert import export_onnx, parity

    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 3)).eval()
    with torch.no_grad():
        net[1].weight.mul_(1e7)
    export_onnx(net, (3, 2, 2), tmp_path / "big.onnx")
    check = parity(net, tmp_path / "big.onnx", np.random.default_rng(0).random((4, 3, 2, 2)).astype(np.float32))
    assert check["output_scale"] > 1e5 and check["max_rel_diff"] == check["max_abs_diff"] / check["output_scale"]
    assert check["max_rel_diff"] < 1e-5


def test_a_model_past_protobufs_limit_keeps_its_weights_beside_it(quantized, tmp_path, monkeypatch):
    """Past 2 GiB (vit_h_14, regnet_y_128gf) the weights go to `<name>.data`; simulated with a low limit."""
    from toolchain import onnxio

    monkeypatch.setattr(onnxio, "PROTOBUF_LIMIT", 1)
    art = export.run(str(quantized.path), tmp_path / "big.onnx", export.ExportOptions())
    beside = tmp_path / "big.onnx.data"
    assert art.meta["report"]["external_data"] == "big.onnx.data" and beside.stat().st_size > 0
    assert onnxio.external_data(tmp_path / "big.onnx")
    assert (tmp_path / "big.onnx").stat().st_size < beside.stat().st_size
    rep = bench.run([tmp_path / "big.onnx"], None, bench.BenchOptions(runs=5, warmup=1, threads=1)).meta
    assert rep["models"][0]["bytes"] == (tmp_path / "big.onnx").stat().st_size + beside.stat().st_size
    recipe = quantized.meta["quantization"]
    fp32 = export.run("zoo:lenet5", tmp_path / "fp32.onnx", export.ExportOptions(input_shape=(1, 1, 32, 32)))
    assert fp32.meta["report"]["external_data"] == "fp32.onnx.data"
    calib = np.random.default_rng(0).standard_normal((8, 1, 32, 32)).astype(np.float32)
    quantize_onnx(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", recipe, calib)
    assert onnxio.param_bytes(tmp_path / "int8.onnx")["int8_bytes"] > 0


@pytest.mark.parametrize("target, activations", [(None, np.int8), ("x86-cpu", np.uint8), ("rpi4", np.int8)])
def test_a_target_profiles_int8_table_sets_the_activation_type(trained_lenet, tmp_path, target, activations):
    from onnx import numpy_helper

    q = quantize.run(str(trained_lenet), tmp_path / "q.pt", quantize.QuantizeOptions(
        scope=quantize.Scope.ALL, samples=32, allow_slower=True, target=target))
    assert q.meta["quantization"]["activation_type"] == np.dtype(activations).name
    export.run(str(q.path), tmp_path / "q.onnx", export.ExportOptions())
    graph = onnx.load(str(tmp_path / "q.onnx")).graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    zero_points = [inits[n.input[2]] for n in graph.node if n.op_type == "QuantizeLinear" and n.input[2] in inits]
    assert zero_points and all(z.dtype == activations for z in zero_points)


def test_an_unknown_target_is_refused_before_quantizing():
    with pytest.raises(CompressError, match="nope"):
        quantize.QuantizeOptions(target="nope").validate()


def test_per_layer_precision_keeps_int8_only_where_it_measured_faster(trained_lenet, tmp_path, monkeypatch):
    """Timings faked so that only the first quantizable layer is faster in int8: exactly that layer
    goes int8, every other stays fp32, and the per-layer ratios are recorded."""

    def timed(files, **_):  # fp32 first and last at 1.0 ms; layer 0 alone in int8 0.8 ms, the rest 1.2 ms
        p50 = [1.0] + [0.8] + [1.2] * (len(files) - 3) + [1.0]
        return {"models": [{"p50_ms": v} for v in p50]}

    monkeypatch.setattr(measure, "interleaved", timed)
    monkeypatch.setattr(quantize, "_latency_ratio", lambda fp32, int8, opts=None: 0.95)
    q = quantize.run(str(trained_lenet), tmp_path / "q.pt", quantize.QuantizeOptions(
        scope=quantize.Scope.ALL, samples=32, per_layer=True))
    recipe = q.meta["quantization"]
    ratios = recipe["per_layer_p50_ratio"]
    assert len(ratios) == 5 and recipe["nodes"] == [next(iter(ratios))]
    export.run(str(q.path), tmp_path / "q.onnx", export.ExportOptions())
    graph = onnx.load(str(tmp_path / "q.onnx")).graph
    int8_weights = [t.name for t in graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) > 1]
    assert len(int8_weights) == 1


def test_export_writes_the_very_int8_file_quantize_measured(trained_lenet, tmp_path, monkeypatch):
    """Quantized once: export calibrates nothing again when its fp32 graph is the one quantize
    quantized; the file's figures are the ones quantize reported. Another opset is quantized again."""
    q = quantize.run(str(trained_lenet), tmp_path / "q.pt",
                     quantize.QuantizeOptions(scope=quantize.Scope.ALL, allow_slower=True))
    real = export.quantize_onnx
    monkeypatch.setattr(export, "quantize_onnx", lambda *a, **k: pytest.fail("calibrated a second time"))
    art = export.run(str(tmp_path / "q.pt"), tmp_path / "q.onnx", export.ExportOptions())
    assert art.meta["report"]["int8"] == "the file quantize measured"
    assert art.metrics["accuracy"] == q.metrics["accuracy"] and art.metrics["param_bytes"] == q.metrics["param_bytes"]
    monkeypatch.setattr(export, "quantize_onnx", real)
    other = export.run(str(tmp_path / "q.pt"), tmp_path / "q13.onnx", export.ExportOptions(opset=13))
    assert other.meta["report"]["int8"].startswith("quantized again")


def test_the_residual_stream_of_a_transformer_stays_fp32_and_a_cnn_loses_nothing(tmp_path):
    """Static int8 leaves every LayerNorm and the Adds that feed one in fp32; a network without
    LayerNorm keeps every node quantizable."""
    from torch import nn

    from toolchain.onnxio import residual_stream

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.norm = nn.Linear(8, 8), nn.LayerNorm(8)

        def forward(self, x):
            return self.norm(x + self.fc(x))
    convert.export_onnx(Block(), (8,), tmp_path / "t.onnx", simplify=False)
    kept = residual_stream(tmp_path / "t.onnx")
    assert len(kept) == 2 and any("Add" in k for k in kept)
    convert.export_onnx(nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU()), (1, 8, 8), tmp_path / "c.onnx")
    assert residual_stream(tmp_path / "c.onnx") == []
