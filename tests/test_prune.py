import json

import pytest
import torch

from toolchain import analyze, artifact, prune
from toolchain.errors import CompressError


@pytest.fixture(scope="module")
def analysis(trained_lenet, tmp_path_factory):
    out = tmp_path_factory.mktemp("an") / "analysis.json"
    analyze.run(str(trained_lenet), None, out, analyze.AnalyzeOptions(eval_samples=200, include_linear=True,
                                                                      plots=False))
    return out


def _opts(**kw):
    base = dict(finetune_epochs=0.3, final_epochs=0.5, val_samples=150)
    return prune.PruneOptions(**(base | kw))


def test_prune_to_a_size_goal_removes_filters_physically(trained_lenet, analysis, tmp_path):
    art = prune.run(str(trained_lenet), None, tmp_path / "p.pt", _opts(analysis=analysis, target_params=0.4))
    rep = art.meta["report"]
    assert rep["goal_met"] and rep["after"]["params"] <= 0.4 * rep["before"]["params"]
    assert rep["order"] == json.loads(analysis.read_text())["priority"]
    assert all({"layer", "channels", "kept", "params", "val_accuracy", "accepted"} <= set(s) for s in rep["steps"])
    model, _ = artifact.load_model(art.path)  # loads as an ordinary smaller model, no torch-pruning needed
    assert sum(p.numel() for p in model.parameters()) == rep["after"]["params"]
    assert model(torch.zeros(1, 1, 32, 32)).shape == (1, 10)
    assert any(v["after"] < v["before"] for v in rep["layers"].values())
    assert art.metrics["accuracy"] > 50
    assert [e["stage"] for e in art.meta["lineage"]] == ["train", "prune"]


def test_accuracy_budget_rolls_back_steps(trained_lenet, tmp_path):
    art = prune.run(str(trained_lenet), None, tmp_path / "p.pt",
                    _opts(order=prune.Order.SEQUENTIAL, max_drop=0.0, finetune_epochs=0, include_linear=True))
    steps = art.meta["report"]["steps"]
    before = art.meta["report"]["layers"]
    for s in steps:
        assert s["accepted"] == (art.meta["metrics"]["val_accuracy_before"] - s["val_accuracy"] <= 0.0)
    assert any(not s["accepted"] for s in steps)
    assert set(before) >= {s["layer"] for s in steps}


def test_round_to_keeps_multiples(trained_lenet, tmp_path):
    art = prune.run(str(trained_lenet), None, tmp_path / "p.pt",
                    _opts(order=prune.Order.REVERSE, target_params=0.5, round_to=4, include_linear=True,
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
    assert sorted(prune.layer_order(_opts(order=prune.Order.RANDOM, seed=1), layers, an)) == sorted(seq)
    assert prune.layer_order(_opts(order=prune.Order.SENSITIVITY, analysis=analysis), layers, an) == an["priority"]


def test_bad_inputs(trained_lenet, trained_a2e, analysis, tmp_path):
    with pytest.raises(CompressError, match="goal"):
        _opts(analysis=analysis).validate()
    with pytest.raises(CompressError, match="target-params"):
        _opts(analysis=analysis, target_params=1.5).validate()
    with pytest.raises(CompressError, match="needs --analysis"):
        _opts(target_params=0.5).validate()
    with pytest.raises(CompressError, match="not this model"):
        prune.run(str(trained_a2e), None, tmp_path / "x.pt", _opts(analysis=analysis, target_params=0.5))
    assert not (tmp_path / "x.pt").exists()
    (tmp_path / "junk.json").write_text("{}")
    with pytest.raises(CompressError, match="not an analysis"):
        prune.run(str(trained_lenet), None, tmp_path / "y.pt", _opts(analysis=tmp_path / "junk.json",
                                                                    target_params=0.5))
