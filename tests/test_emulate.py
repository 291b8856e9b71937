"""The arm64 path without a device: a Debian arm64 userland under qemu-user (built once, cached)."""

import json

import numpy as np
import onnx
import pytest

from toolchain import bench, emulate, export, quantize
from toolchain.errors import CompressError

pytestmark = pytest.mark.skipif(bool(emulate.missing_tools()),
                                reason=f"needs {', '.join(emulate.missing_tools())} (apt-get install "
                                       f"qemu-user-static debootstrap); .ci/run installs them")


@pytest.fixture(scope="module")
def models(trained_lenet, tmp_path_factory):
    """fp32 and all-int8 ONNX of the same LeNet-5, and the arm64 root (built here on a fresh machine)."""
    emulate.ensure_root()
    d = tmp_path_factory.mktemp("arm")
    export.run(str(trained_lenet), d / "fp32.onnx", export.ExportOptions())
    q = quantize.run(str(trained_lenet), d / "q.pt", quantize.QuantizeOptions(
        scope=quantize.Scope.ALL, samples=32, allow_slower=True, target="rpi4"))
    export.run(str(q.path), d / "int8.onnx", export.ExportOptions())
    return d


def test_bench_on_the_emulated_pi_reports_load_ops_and_parity(models, tmp_path):
    from click.testing import CliRunner

    from toolchain.cli import main

    out = tmp_path / "r.json"
    res = CliRunner().invoke(main, ["bench", str(models / "fp32.onnx"), str(models / "int8.onnx"), "--target", "rpi4",
                                    "--emulate", "--runs", "10", "--warmup", "1", "--json", str(out)])
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    assert report["arch"] == "aarch64" and report["emulated"] is True and report["ops_unsupported"] == []
    assert report["parity_ok"] and report["parity_max_abs"] < 1e-2
    assert "not a device figure" in report["measured_on"]
    assert all(m["p50_ms"] > 0 for m in report["models"])
    assert report["emulation"]["qemu_cpu"] == "cortex-a72"


def test_a_model_the_device_cannot_load_fails_with_the_op(models, tmp_path):
    """An op no onnxruntime build has: the check says which, and export --check-target refuses."""
    model = onnx.load(str(models / "fp32.onnx"))
    node = model.graph.node[-1]
    custom = onnx.helper.make_node("NotAnOp", list(node.output), ["extra"], domain="com.example")
    model.graph.node.append(custom)
    model.graph.output[0].name = "extra"
    model.opset_import.append(onnx.helper.make_opsetid("com.example", 1))
    bad = tmp_path / "bad.onnx"
    onnx.save(model, str(bad))
    row = emulate.check([bad], [1, 1, 32, 32], "Cortex-A72")[0]
    assert not row["loads"] and row["ops_unsupported"] == ["com.example:NotAnOp"]


def test_export_check_target_runs_the_emulated_check(models, trained_lenet, tmp_path):
    art = export.run(str(models / "q.pt"), tmp_path / "m.onnx", export.ExportOptions(check_target="rpi4"))
    check = art.meta["report"]["target_check"]
    assert check["loads"] and check["parity_ok"] and check["target"] == "rpi4"
    with pytest.raises(CompressError, match="x86_64"):
        export.run(str(trained_lenet), tmp_path / "x.onnx", export.ExportOptions(check_target="x86-cpu"))
    assert not (tmp_path / "x.onnx").exists()


def test_quantize_takes_the_recipe_from_the_target_and_never_times_another_arch(trained_lenet, tmp_path):
    profile = tmp_path / "pi.toml"
    profile.write_text('name = "pi"\narch = "aarch64"\ncpu = "Cortex-A72"\n[int8]\nformat = "qoperator"\n'
                       'activation_type = "uint8"\nper_channel = false\nop_types = ["Gemm"]\n')
    q = quantize.run(str(trained_lenet), tmp_path / "q.pt", quantize.QuantizeOptions(
        scope=quantize.Scope.ALL, samples=32, target=str(profile)))
    recipe = q.meta["quantization"]
    assert recipe["format"] == "qoperator" and recipe["per_channel"] is False and list(recipe["op_types"]) == ["Gemm"]
    assert recipe["int8_vs_fp32_p50"] is None and "not timed" in recipe["speed_guard"]
    export.run(str(q.path), tmp_path / "q.onnx", export.ExportOptions())
    ops = {n.op_type for n in onnx.load(str(tmp_path / "q.onnx")).graph.node}
    assert "QGemm" in ops and "QLinearConv" not in ops and "Conv" in ops  # only Gemm went int8, as QOperator


def test_a_target_with_emulate_in_its_profile_is_emulated(models, tmp_path):
    profile = tmp_path / "emu.toml"
    profile.write_text('name = "emu"\narch = "aarch64"\ncpu = "Cortex-A76"\nemulate = "qemu-aarch64"\n')
    report = bench.run([models / "fp32.onnx"], None, bench.BenchOptions(runs=5, warmup=1, target=str(profile))).meta
    assert report["emulated"] and report["emulation"]["qemu_cpu"] == "cortex-a76"
    assert np.isfinite(report["models"][0]["p50_ms"])


def test_bench_host_runs_its_whole_path_against_an_sshd_inside_the_arm64_root(models, tmp_path):
    """scp, the device checks, the runner and its memory children, all on emulated aarch64 over SSH.
    Needs root and the kernel's binfmt_misc (a container may not allow it: then skipped, saying why)."""
    import socket
    import subprocess

    from toolchain.remote import Remote

    key = tmp_path / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    try:
        server = emulate.ssh_server(port, key.with_suffix(".pub"))
        known = server.__enter__()
    except CompressError as e:
        pytest.skip(str(e))
    try:
        remote = Remote(host="root@127.0.0.1", port=port, key=key, known_hosts=known)
        report = bench.run([models / "int8.onnx"], None, bench.BenchOptions(runs=5, warmup=1, target="rpi4",
                                                                            remote=remote)).meta
    finally:
        server.__exit__(None, None, None)
    assert report["where"] == "remote" and report["host"]["machine"] == "aarch64"
    assert report["models"][0]["p50_ms"] > 0 and report["models"][0]["peak_mem_bytes"] > 0
