import dataclasses
import json

import pytest

from toolchain import analyze, train
from toolchain.errors import CompressError


def test_analysis_ranks_every_conv_and_writes_plots(trained_lenet, tmp_path):
    out = tmp_path / "analysis.json"
    opts = analyze.AnalyzeOptions(ratios=(0.25, 0.75), eval_samples=200, include_linear=True)
    result = analyze.run(str(trained_lenet), out, opts).meta
    saved = json.loads(out.read_text())
    assert saved["schema"] == analyze.SCHEMA and saved["kind"] == "compress-analysis"
    names = {l["name"] for l in saved["layers"]}
    assert names == {"features.0", "features.3", "classifier.1", "classifier.3"}
    assert sorted(saved["priority"]) == sorted(names)
    accs = [next(l for l in saved["layers"] if l["name"] == n)["accuracy"] for n in saved["priority"]]
    assert accs == sorted(accs, reverse=True)
    for layer in saved["layers"]:
        assert [s["ratio"] for s in layer["sweep"]] == [0.25, 0.5, 0.75]
        assert 0 < layer["params_removed_frac"] < 1 and layer["kept"] < layer["channels"]
        assert layer["drop"] == pytest.approx(saved["baseline"]["accuracy"] - layer["accuracy"], abs=1e-3)
    assert saved["skipped"][0]["name"] == "classifier.5"
    assert -1 <= saved["stability"]["spearman_halves"] <= 1
    assert -1 <= saved["stability"]["spearman_halves_confidence"] <= 1
    assert -1 <= saved["stability"]["spearman_halves_fidelity"] <= 1
    assert saved["baseline"]["fidelity"] == pytest.approx(100.0)  # the unpruned network against itself
    assert all(0 < s["fidelity"] < 100 for layer in saved["layers"] for s in layer["sweep"])
    assert 0 < saved["baseline"]["confidence"] <= 100  # mean probability of the true class, in %
    assert all(0 < s["confidence"] <= 100 and s["temperature"] > 0 for layer in saved["layers"] for s in layer["sweep"])
    assert all(p.endswith(".png") for p in result["plots"]) and len(result["plots"]) == 2


@pytest.mark.parametrize("missing", ["temperature", "fidelity"])
def test_a_cached_cut_an_older_version_measured_is_measured_again(trained_lenet, tmp_path, missing):
    opts = analyze.AnalyzeOptions(eval_samples=150, cache_dir=tmp_path / "cache")
    analyze.run(str(trained_lenet), tmp_path / "a.json", opts)
    (cache,) = (tmp_path / "cache").glob("*.jsonl")
    rows = [json.loads(line) for line in cache.read_text().splitlines()]
    cache.write_text("".join(json.dumps({k: v for k, v in r.items() if not k.startswith(missing)}) + "\n"
                             for r in rows))  # what an older version cached
    again = analyze.run(str(trained_lenet), tmp_path / "b.json", opts).meta
    assert again["reused_results"] == 0
    assert all(l["confidence"] is not None and l["fidelity"] is not None for l in again["layers"])


def test_rerun_with_more_ratios_reuses_the_cache(trained_lenet, tmp_path):
    opts = analyze.AnalyzeOptions(eval_samples=150)
    first = analyze.run(str(trained_lenet), tmp_path / "a.json", opts).meta
    more = analyze.AnalyzeOptions(eval_samples=150, ratios=(0.3,))
    second = analyze.run(str(trained_lenet), tmp_path / "b.json", more).meta
    assert second["reused_results"] == len(first["layers"])  # only the 0.3 column was computed
    assert first["priority"] == second["priority"]


def test_equal_seeds_give_equal_results_across_worker_counts(trained_lenet, tmp_path, masked_always):
    """Each run has its own cache folder, so the two-worker run measures everything again."""
    runs = [analyze.run(str(trained_lenet), tmp_path / f"{w}.json", analyze.AnalyzeOptions(
        eval_samples=120, criterion="l2", seed=3, workers=w, ratios=(0.25,), include_linear=True, plots=False,
        cache_dir=tmp_path / f"cache{w}")).meta for w in (1, 2)]
    assert runs[1]["reused_results"] == 0 and runs[1]["workers"] == 2
    assert [r["accuracy"] for r in runs[0]["layers"]] == [r["accuracy"] for r in runs[1]["layers"]]
    assert [r["sweep"] for r in runs[0]["layers"]] == [r["sweep"] for r in runs[1]["layers"]]
    assert runs[0]["priority"] == runs[1]["priority"] and len(runs[0]["layers"]) == 4


@pytest.mark.parametrize("opts,match", [
    (analyze.AnalyzeOptions(ratio=1.0), "outside"),
    (analyze.AnalyzeOptions(ratio=0.0), "outside"),
    (analyze.AnalyzeOptions(criterion="magic"), "unknown criterion"),
    (analyze.AnalyzeOptions(workers=0), "workers"),
])
def test_bad_options(opts, match):
    with pytest.raises(CompressError, match=match):
        opts.validate()


def test_a_model_without_convs_needs_include_linear(trained_a2e, tmp_path):
    with pytest.raises(CompressError, match="include-linear"):
        analyze.run(str(trained_a2e), tmp_path / "a.json", analyze.AnalyzeOptions(eval_samples=100))
    result = analyze.run(str(trained_a2e), tmp_path / "b.json",
                         analyze.AnalyzeOptions(eval_samples=100, include_linear=True, plots=False)).meta
    assert len(result["priority"]) == 3


def test_adapt_bn_changes_what_is_measured(trained_a2e, tmp_path):
    base = dict(eval_samples=200, include_linear=True, plots=False, cache_dir=tmp_path / "cache")
    plain = analyze.run(str(trained_a2e), tmp_path / "a.json", analyze.AnalyzeOptions(**base)).meta
    adapted = analyze.run(str(trained_a2e), tmp_path / "b.json", analyze.AnalyzeOptions(**base, adapt_bn=256)).meta
    assert adapted["options"]["adapt_bn"] == 256
    assert [r["accuracy"] for r in plain["layers"]] != [r["accuracy"] for r in adapted["layers"]]
    with pytest.raises(CompressError, match="adapt-bn"):
        analyze.AnalyzeOptions(adapt_bn=-1).validate()


@pytest.mark.parametrize("adapt_bn", [0, 256])
def test_the_masked_analysis_equals_the_one_on_pruned_copies(trained_a2e, tmp_path, monkeypatch, adapt_bn):
    """Every figure of an analysis measured on the network itself equals the one measured on a
    physically pruned copy per cut (adaptive BatchNorm included: its statistics are put back)."""
    opts = dict(eval_samples=120, ratios=(0.25, 0.75), include_linear=True, plots=False, adapt_bn=adapt_bn)
    masked = analyze.run(str(trained_a2e), tmp_path / "m.json",
                         analyze.AnalyzeOptions(**opts, cache_dir=tmp_path / "c1")).meta

    copies = analyze.run(str(trained_a2e), tmp_path / "c.json",  # every cut on a copy
                         analyze.AnalyzeOptions(**opts, cache_dir=tmp_path / "c2", cuts="copies")).meta
    # wall time aside, and the continuous figures to float noise (the two paths sum in another order)
    continuous = ("confidence", "confidence_a", "confidence_b", "fidelity", "fidelity_a", "fidelity_b", "temperature")
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("seconds", "path") and k not in continuous}  # noqa: E731
                          | {"sweep": [{k: v for k, v in s.items() if k not in continuous} for s in r["sweep"]]}
                          for r in rows]
    assert strip(masked["layers"]) == strip(copies["layers"])
    for m, c in zip(masked["layers"], copies["layers"], strict=True):
        for a, b in zip([m, *m["sweep"]], [c, *c["sweep"]], strict=True):
            assert {k: a[k] for k in continuous if k in a} == pytest.approx({k: b[k] for k in continuous if k in b},
                                                                            abs=0.02)
    assert masked["priority"] == copies["priority"]


def test_fidelity_is_measured_against_the_unpruned_network_after_the_same_adaptive_batchnorm():
    """Re-estimating BatchNorm alone moves a network's outputs; a cut's fidelity must not pay for it."""
    import copy

    import torch
    from torch import nn

    from toolchain.train import adapt_batchnorm, fidelity, logits, temperature

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 4)).eval()
    x = torch.randn(256, 1, 8, 8)
    y = net(x).argmax(1)  # labels the network fits: a fitted temperature, not a flat softmax
    adapt = 3 * torch.randn(32, 1, 8, 8) + 1  # other statistics than the network's own
    before = {k: v.clone() for k, v in net.state_dict().items()}
    ref, t_ref = train.fidelity_reference(net, x, y, adapt)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())  # the network's own put back
    adapted = copy.deepcopy(net)
    adapt_batchnorm(adapted, adapt)
    out = logits(adapted, x)
    assert fidelity(out, ref, temperature(out, y), t_ref) == pytest.approx(100.0)
    plain = logits(net, x)
    assert fidelity(out, plain, temperature(out, y), temperature(plain, y)) < 99


@pytest.mark.parametrize("spec", ["lenet", "torchvision:resnet18?size=32", "torchvision:mobilenet_v2?size=32"])
def test_a_streamed_analysis_is_bit_for_bit_the_one_that_runs_each_cut_whole(spec, trained_lenet, tmp_path,
                                                                           masked_always):
    """Cuts measured from the unchanged prefix, computed once (toolchain.streaming), give the very
    figures of the whole masked network run per cut: residual adds and grouped (depthwise)
    convolutions included."""
    model, data_spec = (str(trained_lenet), None) if spec == "lenet" else (spec, "synthetic:3x32x32:10")
    opts = analyze.AnalyzeOptions(ratios=(0.25, 0.5), eval_samples=200, include_linear=True, plots=False,
                                  data=data_spec)
    streamed = analyze.run(model, tmp_path / "s.json", dataclasses.replace(opts, cache_dir=tmp_path / "s")).meta
    assert analyze._SUFFIXES and analyze._SUFFIXES[1] is not None  # it was streamed
    whole = analyze.run(model, tmp_path / "w.json",
                        dataclasses.replace(opts, cache_dir=tmp_path / "w", cuts="whole")).meta
    fields = ("accuracy", "confidence", "fidelity", "accuracy_a", "accuracy_b", "confidence_a", "fidelity_b",
              "temperature", "kept", "params_removed", "macs_removed", "sweep")
    assert [{k: r[k] for k in fields} for r in streamed["layers"]] == \
        [{k: r[k] for k in fields} for r in whole["layers"]]
    assert streamed["priority"] == whole["priority"] and streamed["baseline"] == whole["baseline"]
