"""timm:NAME model specs (PyTorch Image Models, random weights): two tiny edge models end to end."""

import pytest

from toolchain import analyze, bench, export, models, prune, quantize, surgery
from toolchain.errors import CompressError

timm = pytest.importorskip("timm", reason="timm is an optional extra: pip install 'compress[timm]'")
DATA = "synthetic:3x32x32:10"  # smoke data, labelled as such


@pytest.mark.parametrize("spec", ["timm:mobilenetv3_small_050?size=32", "timm:vit_tiny_patch16_224?size=32"])
def test_a_timm_model_goes_through_every_stage(spec, tmp_path):
    analyze.run(spec, tmp_path / "a.json", analyze.AnalyzeOptions(ratio=0.5, eval_samples=64, include_linear=True,
                                                                   plots=False, data=DATA))
    pruned = prune.run(spec, tmp_path / "p.pt", prune.PruneOptions(
        analysis=tmp_path / "a.json", target_params=0.5, plan=prune.Plan.SENSITIVITY, order=prune.Order.ONESHOT,
        finetune_epochs=0, final_epochs=0, include_linear=True, val_samples=64, data=DATA))
    rep = pruned.meta["report"]
    assert rep["after"]["params"] <= 0.5 * rep["before"]["params"]
    quantize.run(str(tmp_path / "p.pt"), tmp_path / "q.pt",
                 quantize.QuantizeOptions(scope=quantize.Scope.ALL, samples=16, eval_samples=32, allow_slower=True))
    out = export.run(str(tmp_path / "q.pt"), tmp_path / "q.onnx", export.ExportOptions(eval_samples=32))
    assert out.meta["report"]["parity"]["top1_agreement"] == 1.0 and out.metrics["int8_param_bytes"] > 0
    timing = bench.run([tmp_path / "q.onnx"], None, bench.BenchOptions(runs=5, warmup=1, threads=1)).meta
    assert timing["models"][0]["p50_ms"] > 0


def test_attention_projections_split_into_heads_are_left_whole_with_the_reason():
    built = models.build("timm:vit_tiny_patch16_224?size=32", (3, 32, 32), 10)
    layers = {l.name: l for l in surgery.prunable_layers(built.model, built.input_shape, include_linear=True)}
    assert "heads" in layers["blocks.0.attn.qkv"].skip
    assert layers["blocks.0.mlp.fc1"].skip is None  # the MLP is cut


def test_an_unknown_timm_model_is_one_clear_error():
    with pytest.raises(CompressError, match="unknown timm model 'mobilenetv9_tiny'"):
        models.build("timm:mobilenetv9_tiny", (3, 32, 32), 10)
