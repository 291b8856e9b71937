import json
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from toolchain import analyze, artifact, cost, prune, surgery, train
from toolchain.errors import CompressError
from toolchain.prune import plans, search


@pytest.fixture(scope="module")
def analysis(trained_lenet, tmp_path_factory):
    out = tmp_path_factory.mktemp("an") / "analysis.json"
    analyze.run(str(trained_lenet), out, analyze.AnalyzeOptions(eval_samples=200, include_linear=True,
                                                                      plots=False))
    return out


def _opts(**kw):
    base = dict(finetune_epochs=0.3, final_epochs=0.5, val_samples=150)
    return prune.PruneOptions(**(base | kw))


def test_prune_to_a_size_goal_removes_filters_physically(trained_lenet, analysis, tmp_path):
    art = prune.run(str(trained_lenet), tmp_path / "p.pt", _opts(analysis=analysis, target_params=0.4))
    rep = art.meta["report"]
    assert rep["goal_met"] and rep["after"]["params"] <= 0.4 * rep["before"]["params"]
    assert rep["order"] == json.loads(analysis.read_text())["priority"]
    assert all({"layer", "channels", "kept", "params", "val_accuracy", "accepted"} <= set(s) for s in rep["steps"])
    model, _ = artifact.load_model(art.path)  # loads as an ordinary smaller model, no torch-pruning needed
    assert sum(p.numel() for p in model.parameters()) == rep["after"]["params"]
    assert model(torch.zeros(1, 1, 32, 32)).shape == (1, 10)
    assert any(v["after"] < v["before"] for v in rep["layers"].values())
    assert sum(v["params_after"] for v in rep["layers"].values()) == rep["after"]["params"]  # LeNet: conv+fc only
    assert all(v["macs_after"] <= v["macs_before"] for v in rep["layers"].values())
    assert sum(v["bytes_after"] for v in rep["layers"].values()) == 4 * rep["after"]["params"]  # fp32
    assert art.metrics["accuracy"] > 50
    assert [e["stage"] for e in art.meta["lineage"]] == ["train", "prune"]


def test_accuracy_budget_rolls_back_steps(trained_lenet, tmp_path):
    art = prune.run(str(trained_lenet), tmp_path / "p.pt", _opts(order=prune.Order.SEQUENTIAL, max_drop=0.0,
                                                                 finetune_epochs=0, include_linear=True))
    steps = art.meta["report"]["steps"]
    before = art.meta["report"]["layers"]
    for s in steps:
        assert s["accepted"] == (art.meta["metrics"]["val_accuracy_before"] - s["val_accuracy"] <= 0.0)
    assert any(not s["accepted"] for s in steps)
    assert set(before) >= {s["layer"] for s in steps}


def test_round_to_keeps_multiples(trained_lenet, tmp_path):
    art = prune.run(str(trained_lenet), tmp_path / "p.pt", _opts(order=prune.Order.REVERSE, target_params=0.5,
                                                                 round_to=4, include_linear=True,
                          finetune_epochs=0))
    for name, v in art.meta["report"]["layers"].items():
        if v["after"] != v["before"]:
            assert v["after"] % 4 == 0, name


def test_orders_differ(trained_lenet, analysis):
    from toolchain import surgery
    from toolchain.models import build

    net = build("zoo:lenet5", (1, 32, 32), 10).model
    layers = surgery.prunable_layers(net, (1, 32, 32), include_linear=True)
    an = json.loads(analysis.read_text())
    seq = prune.layer_order(_opts(order=prune.Order.SEQUENTIAL), layers, an)
    assert seq == ["features.0", "features.3", "classifier.1", "classifier.3"]
    assert prune.layer_order(_opts(order=prune.Order.REVERSE), layers, an) == seq[::-1]
    shuffled = [prune.layer_order(_opts(order=prune.Order.RANDOM, seed=s), layers, an) for s in range(4)]
    assert all(sorted(o) == sorted(seq) for o in shuffled) and len({tuple(o) for o in shuffled}) > 1
    assert prune.layer_order(_opts(order=prune.Order.SENSITIVITY, analysis=analysis), layers, an) == an["priority"]


def test_bad_inputs(trained_lenet, trained_a2e, analysis, tmp_path):
    with pytest.raises(CompressError, match="goal"):
        _opts(analysis=analysis).validate()
    with pytest.raises(CompressError, match="target-params"):
        _opts(analysis=analysis, target_params=1.5).validate()
    with pytest.raises(CompressError, match="need --analysis"):
        _opts(target_params=0.5).validate()
    with pytest.raises(CompressError, match="needs a size goal"):
        _opts(order=prune.Order.SEQUENTIAL, plan=prune.Plan.UNIFORM, max_drop=1.0).validate()
    for bad, match in (({"val_samples": 0}, "--val-samples"), ({"seed": -1}, "--seed"), ({"lr": -1}, "--lr")):
        with pytest.raises(CompressError, match=match):
            _opts(order=prune.Order.SEQUENTIAL, max_drop=1.0, **bad).validate()
    with pytest.raises(CompressError, match="not this model"):
        prune.run(str(trained_a2e), tmp_path / "x.pt", _opts(analysis=analysis, target_params=0.5))
    assert not (tmp_path / "x.pt").exists()
    with pytest.raises(CompressError, match="out of reach"):  # the floors leave more than 0.1%
        prune.run(str(trained_lenet), tmp_path / "z.pt", _opts(analysis=analysis, target_params=0.001))
    assert not (tmp_path / "z.pt").exists()
    (tmp_path / "junk.json").write_text("{}")
    with pytest.raises(CompressError, match="not an analysis"):
        prune.run(str(trained_lenet), tmp_path / "y.pt", _opts(analysis=tmp_path / "junk.json",
                                                                    target_params=0.5))


def test_different_plans_allocate_differently(trained_lenet, analysis, tmp_path):
    """The three allocations at one size goal: all on target, no two keeping the same channels."""
    kept = {}
    for plan in (prune.Plan.SENSITIVITY, prune.Plan.UNIFORM, prune.Plan.GLOBAL):
        art = prune.run(str(trained_lenet), tmp_path / f"{plan.value}.pt", _opts(order=prune.Order.ONESHOT, plan=plan,
                                                                                 analysis=analysis, target_params=0.3,
                              include_linear=True, finetune_epochs=0, final_epochs=0))
        rep = art.meta["report"]
        assert 0.3 * (1 - prune.PLAN_TOLERANCE) <= rep["params_kept"] <= 0.3
        kept[plan] = tuple(v["after"] for v in rep["layers"].values())
    assert len(set(kept.values())) == 3, kept


@pytest.mark.parametrize("plan", [prune.Plan.UNIFORM, prune.Plan.GLOBAL])
def test_one_shot_plans_land_on_the_target(trained_lenet, tmp_path, plan):
    art = prune.run(str(trained_lenet), tmp_path / "p.pt", _opts(order=prune.Order.ONESHOT, plan=plan,
                                                                 target_params=0.3, include_linear=True,
                          finetune_epochs=0.1))
    rep = art.meta["report"]
    assert rep["goal_met"] and 0.3 * (1 - prune.PLAN_TOLERANCE) <= rep["params_kept"] <= 0.3
    assert [s["action"] for s in rep["steps"]] == ["oneshot"] and rep["steps"][0]["cuts"] >= 4
    assert rep["plan_kind"] == plan.value and rep["decisions_split"] == "validation"
    if plan is prune.Plan.UNIFORM:  # the same ratio in every layer, give or take rounding
        kept = [v["after"] / v["before"] for n, v in rep["layers"].items() if n != "classifier.5"]
        assert max(kept) - min(kept) < 0.15


def test_rounds_respect_the_layer_floor(trained_lenet, tmp_path):
    art = prune.run(str(trained_lenet), tmp_path / "p.pt", _opts(order=prune.Order.SEQUENTIAL, target_params=0.27,
                                                                 include_linear=True, finetune_epochs=0,
                          max_layer_ratio=0.5))
    for name, v in art.meta["report"]["layers"].items():
        assert v["after"] >= round(v["before"] * 0.5), name
    steps = art.meta["report"]["steps"]
    assert steps[0]["layer"] == "features.0"
    first_round = [s["layer"] for s in steps if s["round"] == 1]
    assert len(first_round) == len(set(first_round)) > 1  # breadth first: one step per layer a round


def test_tradeoffs_read_the_sweep_up_to_the_cap():
    row = {"sweep": [{"ratio": 0.5, "accuracy": 88.0, "params_removed": 50}, {"ratio": 0.25, "accuracy": 91.0,
                      "params_removed": 25}, {"ratio": 0.75, "accuracy": 70.0, "params_removed": 75}]}
    # non-decreasing drop, anchored at 0; the cap read off the segment around it
    assert plans._tradeoffs(row, 90.0, 0.75) == [(0.0, 0.0, 0.0), (0.25, 0.0, 25.0), (0.5, 2.0, 50.0),
                                                 (0.75, 20.0, 75.0)]
    assert plans._tradeoffs(row, 90.0, 0.6)[-1] == pytest.approx((0.6, 9.2, 60.0))
    single = {"ratio": 0.5, "accuracy": 90.5, "params_removed": 40}  # the paper's one ratio; lost nothing alone
    assert plans._tradeoffs(single, 90.0, 0.9)[-1] == pytest.approx((0.9, 4.0, 72.0))  # not free up to 90%


def test_tradeoffs_read_the_confidence_with_proxy_confidence():
    row = {"sweep": [{"ratio": 0.25, "accuracy": 90.0, "confidence": 80.0, "params_removed": 25},
                     {"ratio": 0.5, "accuracy": 90.0, "confidence": 77.5, "params_removed": 50}]}
    # top-1 saw no change; the confidence did
    assert [d for _, d, _ in plans._tradeoffs(row, 90.0, 0.5)] == [0.0, 0.0, 0.0]
    assert [d for _, d, _ in plans._tradeoffs(row, 81.0, 0.5, "confidence")] == [0.0, 1.0, 3.5]


@pytest.mark.parametrize("proxy", ["confidence", "fidelity"])
def test_a_continuous_proxy_plans_from_its_field_and_refuses_an_analysis_without_one(trained_lenet, analysis,
                                                                                    tmp_path, proxy):
    an = json.loads(analysis.read_text())
    names = [r["name"] for r in an["layers"]]
    fragile, tolerant = names[0], names[1]
    for r in an["layers"]:  # top-1 says the first layer is fragile; the proxy says the opposite
        top1, other = (50.0, 0.0) if r["name"] == fragile else (0.0, 50.0)
        r["sweep"] = [{"ratio": x, "accuracy": an["baseline"]["accuracy"] - top1 * x,
                       proxy: an["baseline"][proxy] - other * x,
                       "params_removed": r["params_removed"] * x / r["ratio"]} for x in (0.25, 0.5, 0.75)]
    path = tmp_path / "an.json"
    path.write_text(json.dumps(an))
    kept = {}
    for p in ("top1", proxy):
        art = prune.run(str(trained_lenet), tmp_path / f"{p}.pt",
                        _opts(analysis=path, target_params=0.5, include_linear=True, finetune_epochs=0,
                              final_epochs=0, proxy=p))
        kept[p] = {n: art.meta["report"]["plan"][n] for n in (fragile, tolerant)}
    assert kept["top1"][fragile] > kept[proxy][fragile]
    assert kept["top1"][tolerant] < kept[proxy][tolerant]
    for r in an["layers"]:
        del r["sweep"][0][proxy]
    path.write_text(json.dumps(an))
    with pytest.raises(CompressError, match=f"no {proxy}"):
        prune.run(str(trained_lenet), tmp_path / "none.pt", _opts(analysis=path, target_params=0.5, proxy=proxy))
    with pytest.raises(CompressError, match="--proxy"):
        _opts(analysis=path, target_params=0.5, proxy="loss").validate()


def test_proxy_fidelity_scores_the_unpruned_network_100_and_a_cut_below(trained_lenet, analysis):
    """--select adaptive-bn's measure with --proxy fidelity: the overlap with the unpruned network's own
    outputs on the validation images, so the unpruned network is the 100 every candidate drops from."""
    prep = train.prepare(str(trained_lenet), None)
    opts = _opts(analysis=analysis, target_params=0.5, proxy="fidelity")
    x, y = prep.dataset.val.tensors
    s = search._Search(net=prep.model, spec=prep.spec, shape=prep.input_shape, fine=prep.dataset.train,
                      val=TensorDataset(x[:300], y[:300]), base_val=0.0, target=0.5, opts=opts)
    assert plans._proxy_score(s, s.net) == pytest.approx(100.0)
    layer = surgery.prunable_layers(s.net, s.shape)[0]
    cut = surgery.pruned_copy(s.net, layer.name, layer.channels // 4, "l1", s.shape)
    assert 0 < plans._proxy_score(s, cut) < 100.0


def test_sensitivity_plan_spares_the_fragile_layer_and_meets_the_goal(trained_lenet, analysis, tmp_path):
    an = json.loads(analysis.read_text())
    names = [r["name"] for r in an["layers"]]
    base = an["baseline"]["accuracy"]
    fragile, tolerant = names[0], names[1]
    for r in an["layers"]:  # a made-up sensitivity: the first layer breaks at once, the others never
        drop = 50.0 if r["name"] == fragile else 0.0
        r["sweep"] = [{"ratio": x, "accuracy": base - drop * x, "params_removed": r["params_removed"] * x / r["ratio"]}
                      for x in (0.25, 0.5, 0.75)]
    path = tmp_path / "an.json"
    path.write_text(json.dumps(an))
    art = prune.run(str(trained_lenet), tmp_path / "p.pt", _opts(analysis=path, target_params=0.5, include_linear=True,
                                                                 finetune_epochs=0, final_epochs=0))
    rep = art.meta["report"]
    assert rep["goal_met"] and rep["plan_cap"] is not None and rep["plan_lambda"] > 0
    kept = {n: v["after"] / v["before"] for n, v in rep["layers"].items()}
    assert kept[fragile] > kept[tolerant]
    planned = {n: rep["plan"][n] / rep["layers"][n]["before"] for n in (fragile, tolerant)}
    assert planned[fragile] > planned[tolerant]


def test_accordion_autoencoder_loses_whole_layers(tmp_path):
    from toolchain import train

    src = tmp_path / "a2e.pt"
    train.run("zoo:a2e?widths=256,32,256,32", src, train.TrainOptions(epochs=6, data="digits"))
    art = prune.run(str(src), tmp_path / "p.pt", _opts(order=prune.Order.SEQUENTIAL, target_params=0.2,
                                                       include_linear=True))
    actions = {(s["layer"], s["action"]) for s in art.meta["report"]["steps"] if s["accepted"]}
    assert ("hidden.0.0", "remove") in actions
    model, loaded = artifact.load_model(art.path)
    assert 0 in model.widths and loaded.spec.startswith("zoo:a2e?widths=")
    assert model(torch.zeros(2, 64)).shape == (2, 10)
    assert art.meta["report"]["params_kept"] <= 0.2


def test_compare_crosses_plans_and_orders_on_one_target(trained_lenet, analysis, tmp_path):
    out = tmp_path / "orders.json"
    result = prune.compare(str(trained_lenet), out, _opts(analysis=analysis, include_linear=True,
                                                                 finetune_epochs=0.05, final_epochs=0.2, step=0.5),
                           targets=(0.3,), orders=(prune.Order.SENSITIVITY, prune.Order.REVERSE),
                           plans=(prune.Plan.SENSITIVITY, prune.Plan.UNIFORM, prune.Plan.GLOBAL),
                           cells_dir=tmp_path / "cells")
    cells = {(r["plan"], r["order"]) for r in result["rows"]}
    assert cells == {(p, o) for p in ("sensitivity", "uniform", "global") for o in ("sensitivity", "reverse")}
    for r in result["rows"]:  # every cell at the same size: the plan is fitted to the goal, the walk follows it
        assert r["on_target"] and 0.3 * (1 - prune.PLAN_TOLERANCE) <= r["kept"] <= 0.3, r
        assert {"macs", "val_top1", "top1", "seed"} <= set(r) and Path(r["model"]).exists()
    by_plan = {}
    for r in result["rows"]:  # one plan, two walks: the same widths at the end
        by_plan.setdefault(r["plan"], set()).add(r["params"])
    assert all(len(v) == 1 for v in by_plan.values())
    assert result["decisions_split"] == "validation"
    assert out.exists() and out.with_suffix(".png").exists()
    with pytest.raises(CompressError, match="targets"):
        prune.compare(str(trained_lenet), tmp_path / "x.json", _opts(), targets=(1.5,))


def test_no_deciding_stage_reads_the_test_split(trained_lenet, tmp_path, monkeypatch):
    """analyze never reads the test split; prune reads it once, after every decision, to report."""
    from toolchain import data

    reads = []
    original = data.Dataset.test

    def spy(self):
        reads.append(list(data._DECIDING))
        return original.fget(self)

    monkeypatch.setattr(data.Dataset, "test", property(spy))
    an = tmp_path / "a.json"
    analyze.run(str(trained_lenet), an, analyze.AnalyzeOptions(eval_samples=100, include_linear=True,
                                                                     plots=False, adapt_bn=64))
    assert reads == []
    prune.run(str(trained_lenet), tmp_path / "p.pt", _opts(analysis=an, target_params=0.5, max_drop=2.0))
    assert reads and all(r == [] for r in reads)  # only to report the finished model


def test_the_last_hidden_layer_of_an_accordion_is_never_removed(tmp_path):
    from toolchain import train

    src = tmp_path / "a2e.pt"
    train.run("zoo:a2e?widths=16,8", src, train.TrainOptions(epochs=2, data="digits"))
    art = prune.run(str(src), tmp_path / "p.pt", _opts(order=prune.Order.REVERSE, target_params=0.05,
                                                              include_linear=True, finetune_epochs=0,
                                                              final_epochs=0, max_layer_ratio=0.95))
    model, _ = artifact.load_model(art.path)
    assert sum(w > 0 for w in model.widths) == 1  # one layer went whole, the other stayed


def test_distilled_fine_tuning_runs_through_the_walk(trained_lenet, analysis, tmp_path, monkeypatch):
    monkeypatch.setattr("toolchain.data.CACHE_DIR", tmp_path / "cache")
    art = prune.run(str(trained_lenet), tmp_path / "p.pt", _opts(analysis=analysis, target_params=0.4,
                                                                      distill=0.7, finetune_epochs=0.1))
    assert art.meta["lineage"][-1]["options"]["distill"] == 0.7 and art.meta["report"]["goal_met"]
    assert len(list((tmp_path / "cache" / "teacher").glob("*.pt"))) == 1  # the teacher ran once
    assert art.metrics["accuracy"] > 50


@pytest.mark.parametrize("name", ["zoo:lenet5", "zoo:a2e?widths=64,16,64", "mixed", "resnext_tiny", "vit_tiny"])
def test_size_model_counts_what_pruning_leaves(name):
    """Plans are fitted on counted, not pruned, copies: the count must be exact for any widths
    (flattening, concatenations, grouped convolutions, residual groups, attention MLPs)."""
    import random

    from test_surgery import _tiny

    from toolchain import models, surgery

    if name.startswith("zoo:"):
        shape = (64,) if "a2e" in name else (1, 32, 32)
        net = models.build(name, shape, 10).model.eval()
    else:
        shape, net = (3, 32, 32), _tiny(name).eval()
    layers = [l for l in surgery.prunable_layers(net, shape, include_linear=True) if l.skip is None]
    units = {l.name: l.multiple for l in layers}
    sizes = cost.SizeModel(net, list(units), units, shape)
    rng = random.Random(0)
    for _ in range(3):
        plan = {l.name: rng.randint(1, l.channels // l.multiple) * l.multiple for l in layers}
        pruned = search._apply(net, plan, shape)
        assert sizes.params(plan) == sum(p.numel() for p in pruned.parameters()), plan


MIXED_NET = '''
import torch
from torch import nn

def block(cin, cout, k=3, groups=1):
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups), nn.BatchNorm2d(cout), nn.ReLU())

class Mixed(nn.Module):
    def __init__(self, in_channels=3, num_classes=10):
        super().__init__()
        self.stem, self.res = block(in_channels, 32), block(32, 32)
        self.grouped, self.dw, self.pw = block(32, 64, groups=4), block(64, 64, groups=64), block(64, 48, 1)
        self.side, self.g2 = block(32, 16, 1), block(64, 64, groups=4)
        self.fc = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, num_classes))

    def forward(self, x):
        x = self.stem(x)
        x = x + self.res(x)
        z = self.g2(torch.cat([self.pw(self.dw(self.grouped(x))), self.side(x)], 1))
        return self.fc(z.mean((2, 3)))

def mixed(in_channels=3, num_classes=10):
    return Mixed(in_channels, num_classes)
'''


def test_every_plan_and_order_prunes_a_network_with_grouped_convs(tmp_path):
    """Issue 14's user network (residual add, concatenation, depthwise and groups=4 convs, a
    two-layer head): every plan and order ends at channel counts the groups allow, on target."""
    (tmp_path / "net.py").write_text(MIXED_NET)
    spec, data_spec = f"{tmp_path / 'net.py'}:mixed", "synthetic:3x16x16:10"
    an = tmp_path / "analysis.json"
    analyze.run(spec, an, analyze.AnalyzeOptions(eval_samples=64, plots=False, cache_dir=tmp_path / "c",
                                                 data=data_spec))
    for plan, order in [("sensitivity", "sensitivity"), ("sensitivity", "reverse"), ("uniform", "sequential"),
                        ("uniform", "oneshot"), ("global", "random"), ("global", "oneshot")]:
        art = prune.run(spec, tmp_path / f"{plan}-{order}.pt", _opts(
            analysis=an, plan=prune.Plan(plan), order=prune.Order(order), target_params=0.4, finetune_epochs=0,
            final_epochs=0, val_samples=64, data=data_spec))
        rep = art.meta["report"]
        assert 0.99 * 0.4 <= rep["params_kept"] <= 0.4, (plan, order, rep["params_kept"])
        model, _ = artifact.load_model(art.path)
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                assert m.in_channels % m.groups == 0 and m.out_channels % m.groups == 0, (plan, order)
        assert model(torch.zeros(2, 3, 16, 16)).shape == (2, 10)


def test_select_adaptive_bn_measures_each_caps_plan_whole_and_takes_the_best(trained_lenet, analysis, tmp_path,
                                                                            monkeypatch):
    """--select adaptive-bn: a plan at every cap up to SELECT_MAX_CAP, each cut whole on a copy and
    measured on validation; the least measured drop is taken, whatever the analysis' sum says."""
    measured = []
    real = plans._proxy_score

    def spy(s, net):
        measured.append(artifact.param_count(net))
        return real(s, net)

    monkeypatch.setattr(plans, "_proxy_score", spy)
    opts = _opts(analysis=analysis, target_params=0.4, include_linear=True, order=prune.Order.ONESHOT,
                 plan=prune.Plan.SENSITIVITY, final_epochs=0, select="adaptive-bn")
    rep = prune.run(str(trained_lenet), tmp_path / "p.pt", opts).meta["report"]
    cands = rep["plan_candidates"]
    assert len(cands) >= 2 and all(c["cap"] <= prune.SELECT_MAX_CAP for c in cands)
    assert all(c["params"] <= 0.4 * rep["before"]["params"] for c in cands)
    assert opts.proxy == "top1"  # the baseline is the search's validation top-1, not measured again
    assert sorted(measured) == sorted(c["params"] for c in cands)  # each candidate cut whole, once
    chosen = [c for c in cands if c.get("chosen")]
    assert len(chosen) == 1 and chosen[0]["adapted_drop"] == min(c["adapted_drop"] for c in cands)
    assert rep["plan_cap"] == chosen[0]["cap"] and rep["after"]["params"] == chosen[0]["params"]


def test_select_adaptive_bn_reestimates_batchnorm_on_training_images_only(trained_lenet, analysis, tmp_path,
                                                                         monkeypatch):
    from toolchain import data

    adapted = []
    monkeypatch.setattr(plans, "adapt_batchnorm", lambda net, x: adapted.append(len(x)))
    reads = []
    original = data.Dataset.test
    monkeypatch.setattr(data.Dataset, "test", property(lambda self: reads.append(list(data._DECIDING))
                                                       or original.fget(self)))
    prune.run(str(trained_lenet), tmp_path / "p.pt", _opts(analysis=analysis, target_params=0.5, include_linear=True,
                                                           final_epochs=0, finetune_epochs=0, select="adaptive-bn"))
    assert adapted and set(adapted) == {prune.SELECT_ADAPT_IMAGES}
    assert all(r == [] for r in reads)  # the test split only reports the finished model


def test_select_is_validated(analysis):
    with pytest.raises(CompressError, match="--select must be one of"):
        _opts(analysis=analysis, target_params=0.5, select="best").validate()
    with pytest.raises(CompressError, match="uniform plan has none"):
        _opts(analysis=analysis, target_params=0.5, plan=prune.Plan.UNIFORM, select="adaptive-bn").validate()
