import json

import pytest

from toolchain import pipeline
from toolchain.errors import CompressError

DIGITS = """
[model]
spec = "zoo:lenet5"
[data]
spec = "digits"
[train]
epochs = 10
[analyze]
eval_samples = 200
[prune]
target_params = 0.4
max_drop = 50.0
finetune_epochs = 0.3
final_epochs = 1
val_samples = 150
[bench]
runs = 20
warmup = 2
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, monkeypatch_module):
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch_module.setattr("toolchain.data.CACHE_DIR", cache)
    cfg_path = tmp_path_factory.mktemp("cfg") / "p.toml"
    cfg_path.write_text(DIGITS)
    out = tmp_path_factory.mktemp("run") / "r"
    summary = pipeline.run(pipeline.load_config(cfg_path), out)
    return out, summary, cache


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


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
