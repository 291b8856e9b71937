"""toolchain/bench.py and toolchain/bench_runner.py: real onnxruntime sessions on tiny ONNX models."""

import ast
import json
import platform
import subprocess
import sys
from pathlib import Path

import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from toolchain import bench, bench_runner, measure, target
from toolchain.cli import main
from toolchain.convert import export_onnx
from toolchain.errors import CompressError

REPO = Path(__file__).resolve().parents[1]
FAST = ["--runs", "20", "--warmup", "2", "--no-memory"]


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """A tiny conv net and a ~3 MiB MLP, exported with the toolchain's own exporter."""
    d = tmp_path_factory.mktemp("bench_models")
    torch.manual_seed(0)
    small = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))
    big = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 1024), nn.ReLU(), nn.Linear(1024, 10))
    paths = []
    for name, net in (("small", small), ("big", big)):
        path = d / f"{name}.onnx"
        export_onnx(net.eval(), (3, 16, 16), path, simplify=False)
        paths.append(path)
    return paths


def _cli(*args):
    return CliRunner().invoke(main, ["bench", *map(str, args)])


def _one_line_error(result, *needles):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_cli_json_schema_and_ratios_to_the_first(models, tmp_path):
    out = tmp_path / "bench.json"
    result = _cli(*models, *FAST, "--json", out)
    assert result.exit_code == 0, result.output
    assert "small.onnx" in result.stdout and "big.onnx" in result.stdout
    report = json.loads(out.read_text())
    assert report["kind"] == "compress-bench" and report["where"] == "local"
    assert report["measured_on"].startswith("measured on this host") and report["runs"] == 20
    for key in ("cpu", "machine", "cores", "onnxruntime", "providers"):
        assert report["host"][key]
    first, second = report["models"]
    for m, path in zip(report["models"], models, strict=True):
        assert m["path"] == str(path) and m["bytes"] == path.stat().st_size
        assert 0 < m["min_ms"] <= m["p50_ms"] <= m["p90_ms"] <= m["p99_ms"] <= m["max_ms"]
        assert m["runs"] == len(m["latencies_ms"]) == 20 and m["session_ms"] > 0 and m["first_ms"] > 0
        assert m["throughput_per_s"] > 0 and m["std_ms"] >= 0 and isinstance(m["noisy"], bool)
        assert m["providers"] == ["CPUExecutionProvider"] and m["peak_mem_bytes"] is None
    assert first["p50_ratio"] == 1.0 and first["bytes_ratio"] == 1.0
    assert second["p50_ratio"] == pytest.approx(second["p50_ms"] / first["p50_ms"], rel=1e-3)
    assert second["bytes_ratio"] == pytest.approx(second["bytes"] / first["bytes"], rel=1e-3)
    assert second["bytes_ratio"] > 100


def test_pipeline_contract_runs_warmup_and_fields(models):
    """pipeline.py calls run(paths, BenchOptions(runs=, warmup=)) and reads these fields."""
    report = bench.run(list(models), None, bench.BenchOptions(runs=5, warmup=1)).meta
    assert report["host"]["cpu"] and len(report["models"]) == 2
    for m in report["models"]:
        assert m["p50_ms"] > 0 and m["p90_ms"] >= m["p50_ms"] and m["bytes"] > 0 and m["runs"] == 5


def test_interleave_rotates_the_first_model_and_rewarms_after_a_switch():
    calls_log = []

    def fake(name):
        return (lambda _outputs, feed: calls_log.append(name)), {}

    times = bench_runner.interleave([fake("a"), fake("b")], runs=4, block=2)
    assert [len(t) for t in times] == [4, 4]
    # round 1: a first (1 untimed + 2 timed), then b; round 2: b first
    assert calls_log == ["a"] * 3 + ["b"] * 3 + ["b"] * 3 + ["a"] * 3
    calls_log.clear()
    bench_runner.interleave([fake("solo")], runs=5, block=2)
    assert calls_log == ["solo"] * 5  # one model: nothing to re-warm after, every run is timed


def test_interleave_stops_after_seconds_with_equal_counts():
    run = (lambda _o, _f: None, {})
    times = bench_runner.interleave([run, run, run], seconds=0.05, block=3)
    assert len({len(t) for t in times}) == 1 and len(times[0]) % 3 == 0 and len(times[0]) >= 3


def test_bench_result_derives_statistics_and_flags_noise():
    steady = measure.BenchResult("m.onnx", 10, 1.0, 2.0, tuple([1.0] * 50 + [1.02] * 50), batch=4)
    assert steady.p50 == pytest.approx(1.01) and not steady.noisy
    assert steady.throughput == pytest.approx(4000 / 1.01, rel=1e-3)
    spread = measure.BenchResult("m.onnx", 10, 1.0, 2.0, tuple([1.0] * 50 + [1.5] * 50))
    assert spread.iqr / spread.p50 > measure.NOISY_IQR and spread.noisy
    d = spread.to_dict()
    assert d["p99_ms"] == pytest.approx(1.5) and d["min_ms"] == 1.0 and d["runs"] == 100 and d["noisy"]


def test_peak_memory_is_measured_per_model_in_a_child(models):
    report = bench.run(list(models), None, bench.BenchOptions(runs=3, warmup=1)).meta
    small, big = report["models"]
    assert report["memory_method"]
    assert small["peak_mem_bytes"] > 0 and small["peak_rss_bytes"] > small["peak_mem_bytes"]
    # the MLP's 3 MiB of weights show up in its own process's peak, not in the conv net's
    assert big["peak_mem_bytes"] - small["peak_mem_bytes"] > 0.5 * big["bytes"]
    assert big["mem_ratio"] > 1


def test_seconds_replaces_runs(models):
    report = bench.run(models[:1], None, bench.BenchOptions(seconds=0.2, warmup=0,
                                                      runtime=bench.Runtime(memory=False))).meta
    assert report["seconds"] == 0.2 and report["loop_seconds"] >= 0.2
    assert report["models"][0]["runs"] == report["runs"] >= bench_runner.INTERLEAVE_BLOCK


def test_batch_and_threads_are_applied(models):
    report = bench.run(models[:1], None, bench.BenchOptions(runs=3, warmup=0, batch=4, threads=1,
                                                      runtime=bench.Runtime(memory=False))).meta
    assert report["threads"] == 1 and report["batch"] == 4 and report["models"][0]["batch"] == 4


def test_input_shape_fills_dynamic_dimensions(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, "H", "W"])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    path = tmp_path / "dyn.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    _one_line_error(_cli(path, *FAST), "dynamic dimension", "--input-shape")
    out = tmp_path / "r.json"
    assert _cli(path, *FAST, "--input-shape", "1,3,8,8", "--batch", "2", "--json", out).exit_code == 0
    assert json.loads(out.read_text())["models"][0]["batch"] == 2


def test_plot_writes_a_png(models, tmp_path):
    png = tmp_path / "lat.png"
    result = _cli(*models, *FAST, "--plot", png)
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- errors: one line, exit 2

def test_missing_file(models, tmp_path):
    _one_line_error(_cli(models[0], tmp_path / "nope.onnx", *FAST), "nope.onnx", "no such file")


def test_not_an_onnx_file(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    _one_line_error(_cli(bad, *FAST), "bad.onnx", "cannot load")


def test_runs_and_seconds_together(models):
    _one_line_error(_cli(models[0], "--runs", "5", "--seconds", "1"), "--runs or --seconds")


def test_ssh_options_need_a_host(models):
    _one_line_error(_cli(models[0], *FAST, "--port", "2222"), "--port", "--host")


def test_unknown_target_lists_the_known_ones(models):
    line = _one_line_error(_cli(models[0], *FAST, "--target", "rpi9"), "unknown target 'rpi9'")
    for name in ("x86-cpu", "rpi4", "rpi5", "jetson-orin-nano", "jetson-nano"):
        assert name in line


def test_unknown_provider_name(models):
    _one_line_error(_cli(models[0], *FAST, "--provider", "warp-drive"), "unknown execution provider")


# ---------------------------------------------------------------- targets

def test_every_packaged_target_loads():
    names = target.targets()
    assert {"x86-cpu", "rpi4", "rpi5", "jetson-orin-nano", "jetson-nano"} <= set(names)
    for name in names:
        t = target.load_target(name)
        assert t.name == name and t.arch in ("x86_64", "aarch64") and t.description and t.cpu
        assert t.runtime.providers[-1] == "CPUExecutionProvider" and t.ssh.python and t.ssh.port == 22
        assert t.int8.format in ("qdq", "qoperator")
    orin = target.load_target("jetson-orin-nano")
    assert orin.runtime.providers[:2] == ("TensorrtExecutionProvider", "CUDAExecutionProvider")
    assert orin.runtime.precision is target.Precision.FP16
    assert target.load_target("rpi4").cpu == "Cortex-A72" and target.load_target("rpi5").cpu == "Cortex-A76"


def test_documented_targets_folder_is_the_one_the_package_ships():
    """targets/*.toml (where the docs point) are the very files the package reads: one folder,
    toolchain/targets a link to it, so no copy can drift."""
    assert (REPO / "toolchain" / "targets").resolve() == (REPO / "targets").resolve()
    assert sorted(target.targets()) == sorted(p.stem for p in (REPO / "targets").glob("*.toml"))


def test_target_profile_is_applied_and_the_report_names_this_host(models, tmp_path):
    out = tmp_path / "r.json"
    result = _cli(*models, *FAST, "--target", "rpi4", "--json", out)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["threads"] == 4 and report["graph_optimization"] == "all"
    assert report["target"]["name"] == "rpi4" and report["target"]["int8"]["format"] == "qdq"
    if platform.machine().lower() not in ("aarch64", "arm64"):
        assert report["target_mismatch"]
        assert report["measured_on"].startswith(f"measured on THIS host ({platform.machine()}")
        assert report["measured_on"].endswith("not on rpi4")
        assert "not on rpi4" in result.stdout  # the table title says so too
        assert any("not on rpi4" in w for w in report["warnings"])


def test_target_from_a_file_and_its_errors(models, tmp_path):
    board = tmp_path / "board.toml"
    board.write_text('name = "board"\narch = "%s"\n[runtime]\nproviders = ["cpu"]\nthreads = 1\n'
                     'graph_optimization = "basic"\n[ssh]\nuser = "me"\n' % platform.machine())
    report = bench.run(models[:1], None, bench.BenchOptions(runs=3, warmup=0, target=str(board),
                                                      runtime=bench.Runtime(memory=False))).meta
    assert report["threads"] == 1 and report["graph_optimization"] == "basic" and not report["target_mismatch"]
    assert target.load_target(str(board)).ssh.user == "me"
    board.write_text('[runtime]\nthread = 1\n')
    with pytest.raises(CompressError, match="unknown key.*thread"):
        target.load_target(str(board))
    board.write_text('[runtime\n')
    with pytest.raises(CompressError, match="not valid TOML"):
        target.load_target(str(board))
    with pytest.raises(CompressError, match="no such file"):
        target.load_target(str(tmp_path / "gone.toml"))


def test_cli_choices_are_the_enum_values():
    opt = next(p for p in main.commands["bench"].params if p.name == "graph_opt")
    assert list(opt.type.choices) == [g.value for g in target.GraphOpt]


# ---------------------------------------------------------------- providers

needs_no_cuda = pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(),
                                   reason="this onnxruntime has CUDA: nothing to fall back from")


@needs_no_cuda
def test_missing_provider_falls_back_with_a_warning(models, tmp_path, caplog):
    out = tmp_path / "r.json"
    result = _cli(models[0], *FAST, "--provider", "cuda", "--provider", "cpu", "--json", out)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["providers"] == ["CPUExecutionProvider"]
    assert report["models"][0]["providers"] == ["CPUExecutionProvider"]
    assert any("CUDAExecutionProvider is not available" in w and "falling back" in w for w in report["warnings"])
    assert any("CUDAExecutionProvider" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")


@needs_no_cuda
def test_missing_provider_under_strict_is_an_error(models):
    _one_line_error(_cli(models[0], *FAST, "--provider", "cuda", "--strict"),
                    "CUDAExecutionProvider is not available", "--strict")


@needs_no_cuda
def test_jetson_profile_on_a_cpu_box_falls_back_to_cpu(models):
    report = bench.run(models[:1], None, bench.BenchOptions(runs=3, warmup=0, target="jetson-orin-nano",
                                                      runtime=bench.Runtime(memory=False))).meta
    assert report["models"][0]["providers"] == ["CPUExecutionProvider"]
    assert report["provider_options"]["TensorrtExecutionProvider"]["trt_fp16_enable"] is True
    assert any("TensorrtExecutionProvider, CUDAExecutionProvider are not available" in w
               for w in report["warnings"])


# ---------------------------------------------------------------- the standalone runner

def test_runner_imports_only_the_standard_library_numpy_and_onnxruntime():
    tree = ast.parse(Path(bench_runner.__file__).read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no relative imports in the runner"
            names.add(node.module.split(".")[0])
    assert names - set(sys.stdlib_module_names) == {"numpy", "onnxruntime"}


def test_runner_parses_as_python_3_6():
    """A Jetson Nano on JetPack 4.6 has Python 3.6: no walrus, no f-string `=`, no positional-only args."""
    ast.parse(Path(bench_runner.__file__).read_text(), feature_version=(3, 6))


def test_runner_runs_as_a_script(models, tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"models": [{"path": str(models[0])}], "runs": 7, "warmup": 1, "memory": False}))
    proc = subprocess.run([sys.executable, bench_runner.__file__, str(cfg)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().removeprefix(bench_runner.MARK))
    assert len(result["models"][0]["latencies_ms"]) == 7 and result["device"]["onnxruntime"]
    cfg.write_text(json.dumps({"models": [{"path": str(tmp_path / "gone.onnx")}]}))
    proc = subprocess.run([sys.executable, bench_runner.__file__, str(cfg)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1 and "no such file" in proc.stdout
