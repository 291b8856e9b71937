import json

import pytest

from toolchain import pipeline
from toolchain.errors import CompressError


@pytest.fixture(scope="module")
def run_dir(real_run, tmp_path_factory):
    summary = json.loads((real_run / "summary.json").read_text())
    return real_run, summary, tmp_path_factory.getbasetemp() / "real-run-cache"


def test_run_writes_every_stage_and_a_summary(run_dir):
    out, summary, _ = run_dir
    for name in ("trained.pt", "analysis.json", "pruned.pt", "quantized.pt", "original.onnx", "pruned.fp32.onnx",
                 "model.onnx", "bench.json", "summary.json"):
        assert (out / name).exists(), name
    stages = {r["stage"]: r for r in summary["stages"]}
    assert list(stages) == ["trained", "pruned", "quantized"]
    assert stages["pruned"]["params"] <= 0.4 * stages["trained"]["params"]
    assert stages["quantized"]["param_bytes"] < stages["pruned"]["param_bytes"]
    assert stages["quantized"]["compression_x"] > stages["pruned"]["compression_x"] > 1
    assert all(r["p50_ms"] > 0 and r["accuracy"] > 50 for r in stages.values())
    lineage = json.loads((out / "model.onnx.json").read_text())["lineage"]
    assert [e["stage"] for e in lineage] == ["train", "prune", "quantize", "export"]


def test_trained_model_is_cached_between_runs(run_dir, tmp_path):
    _, first, cache = run_dir
    assert not first["trained_reused_from_cache"] and list((cache / "models").glob("*.pt"))


def test_existing_run_folder_is_not_overwritten(run_dir):
    out, _, _ = run_dir
    with pytest.raises(CompressError, match="--force"):
        pipeline.run(pipeline.load_config(None), out)


def test_config_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[nonsense]\nx = 1\n")
    with pytest.raises(CompressError, match="unknown section"):
        pipeline.load_config(bad)
    bad.write_text("[prune]\nbanana = 1\n")
    with pytest.raises(CompressError, match="banana"):
        pipeline._opts(pipeline.prune.PruneOptions, pipeline.load_config(bad)["prune"])
    bad.write_text("not = [toml")
    with pytest.raises(CompressError, match="TOML"):
        pipeline.load_config(bad)
    with pytest.raises(CompressError, match="no such config"):
        pipeline.load_config(tmp_path / "missing.toml")


def test_fresh_run_dirs_never_collide(tmp_path):
    a, b = pipeline.fresh_run_dir("x", tmp_path), pipeline.fresh_run_dir("x", tmp_path)
    assert a != b and a.is_dir() and b.is_dir()


def test_the_example_config_matches_the_embedded_default():
    from pathlib import Path
    example = Path(__file__).parents[1] / "examples" / "pipeline.toml"
    assert pipeline.load_config(example) == pipeline.load_config(None)
