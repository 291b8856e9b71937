"""The latency table (compress profile) and the latency objective of prune."""

import json

import pytest

from toolchain import analyze, cost, measure, profile, prune
from toolchain.errors import CompressError
from toolchain.prune import latency as prune_latency
from toolchain.surgery import keep_count


@pytest.fixture(scope="module")
def analysis(trained_lenet, tmp_path_factory):
    out = tmp_path_factory.mktemp("lat") / "analysis.json"
    analyze.run(str(trained_lenet), out, analyze.AnalyzeOptions(eval_samples=200, ratios=(0.25, 0.75),
                                                                      include_linear=True, plots=False))
    return out


def test_profile_times_each_layer_at_each_width_and_caches_the_table(trained_lenet, tmp_path):
    opts = profile.ProfileOptions(widths=(0.5,), runs=20, warmup=2, include_linear=True)
    first = profile.run(str(trained_lenet), tmp_path / "lat.json", opts).meta
    assert set(first["layers"]) == {"features.0", "features.3", "classifier.1", "classifier.3"}
    for row in first["layers"].values():
        assert set(row["ms"]) == {str(row["channels"]), str(row["channels"] // 2)}
        assert all(v > 0 for v in row["ms"].values())
    assert (tmp_path / "lat.png").exists() and first["base_ms"] > 0
    share = first["cost_model"]["share"]  # the fitted cost model's split of the unpruned model's time
    assert set(share) == {"fixed", "compute", "weights", "activations"} and min(share.values()) >= 0
    assert sum(share.values()) == pytest.approx(1, abs=0.01) and first["cost_model"]["rmse_ms"] >= 0
    again = profile.run(str(trained_lenet), tmp_path / "again.json", opts).meta
    assert again["layers"] == first["layers"] and again["cached"] == first["cached"]
    with pytest.raises(CompressError, match="exists"):
        profile.run(str(trained_lenet), tmp_path / "lat.json", opts)


def test_the_additive_latency_model_interpolates_between_widths():
    table = {"base_ms": 10.0, "layers": {"a": {"channels": 8, "ms": {"8": 10.0, "4": 8.0}},
                                         "b": {"channels": 4, "ms": {"4": 10.0, "2": 9.0}}}}
    assert cost.layer_ms(table, "a", 6) == pytest.approx(9.0)
    assert cost.predicted_ms(table, {"a": 4, "b": 2}) == pytest.approx(7.0)
    assert cost.predicted_ms(table, {}) == 10.0


def _onnx_model(path, dims: list) -> object:
    """An Identity ONNX model with input `dims` (a string: a symbolic axis)."""
    import onnx
    from onnx import TensorProto, helper

    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, dims) for n in ("x", "y")]
    onnx.save(helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", io[:1], io[1:])),
              str(path))
    return path


def _table(analysis: dict, saves: dict[str, float]) -> dict:
    """A latency table in which each layer at half width saves `saves[name]` ms of a 10 ms model."""
    layers = {r["name"]: {"channels": r["channels"], "kind": r["type"],
                          "ms": {str(r["channels"]): 10.0, str(max(1, r["channels"] // 2)): 10.0 - saves[r["name"]]}}
              for r in analysis["layers"]}
    return {"kind": "compress-latency-table", "model": analysis["model"], "base_ms": 10.0, "layers": layers}


def test_the_latency_objective_spends_accuracy_only_where_milliseconds_are(trained_lenet, analysis, tmp_path):
    """The convolutions are where the (made-up) milliseconds are; the big fully-connected layers save
    none: a parameter objective would cut them first, the latency objective leaves them whole."""
    an = json.loads(analysis.read_text())
    saves = {"features.0": 3.0, "features.3": 3.0, "classifier.1": 0.0, "classifier.3": 0.0}
    table = tmp_path / "lat.json"
    table.write_text(json.dumps(_table(an, saves)))
    art = prune.run(str(trained_lenet), tmp_path / "p.pt", prune.PruneOptions(
        analysis=analysis, latency_table=table, target_latency=7.5, order=prune.Order.ONESHOT,
        include_linear=True, finetune_epochs=0, final_epochs=0, val_samples=150))
    rep = art.meta["report"]
    assert rep["plan_kind"] == "latency"
    layers = rep["layers"]
    assert layers["classifier.1"]["after"] == layers["classifier.1"]["before"]
    assert layers["features.0"]["after"] < layers["features.0"]["before"] or \
        layers["features.3"]["after"] < layers["features.3"]["before"]
    keep = {n: v["after"] for n, v in layers.items() if n in saves}
    assert cost.predicted_ms(_table(an, saves), keep) <= 7.5


def test_the_latency_plan_cuts_a_layer_past_half_only_where_the_analysis_prices_it_lower(trained_lenet, analysis,
                                                                                      tmp_path):
    """Half of either convolution saves 3 ms of 10: a 7.5 ms goal is met at the first cap, and deeper
    caps price no lower, so no layer is cut past 50%; 3 ms, which half of both cannot reach (4 ms),
    takes the next cap, 60%."""
    an = json.loads(analysis.read_text())
    saves = {"features.0": 3.0, "features.3": 3.0, "classifier.1": 0.0, "classifier.3": 0.0}
    table = tmp_path / "lat.json"
    table.write_text(json.dumps(_table(an, saves)))
    reports = {}
    for goal in (7.5, 3.0):
        reports[goal] = prune.run(str(trained_lenet), tmp_path / f"p{goal}.pt", prune.PruneOptions(
            analysis=analysis, latency_table=table, target_latency=goal, order=prune.Order.ONESHOT,
            include_linear=True, finetune_epochs=0, final_epochs=0, val_samples=150)).meta["report"]
    assert reports[7.5]["plan_cap"] == 0.5 and reports[3.0]["plan_cap"] == 0.6
    layers = {g: {n: v for n, v in r["layers"].items() if n in saves} for g, r in reports.items()}
    for goal, cap in ((7.5, 0.5), (3.0, 0.6)):  # no layer below its cap's width (rounded: 6 channels less 60% keep 2)
        assert all(v["after"] >= keep_count(v["before"], cap) for v in layers[goal].values()), layers[goal]
    assert any(v["after"] < keep_count(v["before"], 0.5) for v in layers[3.0].values()), layers[3.0]


def test_the_latency_plan_takes_the_deeper_cap_the_analysis_prices_lower(trained_lenet, analysis, tmp_path):
    """features.3 loses 20 points at any cut, features.0 half a point even at 75%: a 6.2 ms goal (3.8 ms
    saved) takes half of features.0 and some of features.3 at the mildest cap, features.0 alone
    past half at a deeper one; the deeper plan, cheaper by the analysis, is taken."""
    an = json.loads(analysis.read_text())
    base = an["baseline"]["accuracy"]
    for row in an["layers"]:
        for point in row["sweep"]:
            point["accuracy"] = {"features.0": base - 0.5 * point["ratio"], "features.3": base - 20}.get(
                row["name"], point["accuracy"])
    (tmp_path / "an.json").write_text(json.dumps(an))
    saves = {"features.0": 3.0, "features.3": 3.0, "classifier.1": 0.0, "classifier.3": 0.0}
    (tmp_path / "lat.json").write_text(json.dumps(_table(an, saves)))
    rep = prune.run(str(trained_lenet), tmp_path / "p.pt", prune.PruneOptions(
        analysis=tmp_path / "an.json", latency_table=tmp_path / "lat.json", target_latency=6.2,
        order=prune.Order.ONESHOT, include_linear=True, finetune_epochs=0, final_epochs=0,
        val_samples=150)).meta["report"]
    layers = rep["layers"]
    assert rep["plan_cap"] > 0.5 and layers["features.3"]["after"] == layers["features.3"]["before"], rep["plan_cap"]
    assert layers["features.0"]["after"] < keep_count(layers["features.0"]["before"], 0.5)


def test_latency_objective_options_are_checked(analysis, tmp_path):
    with pytest.raises(CompressError, match="one size goal"):
        prune.PruneOptions(analysis=analysis, latency_table=tmp_path / "t.json", target_latency=1.0,
                           target_params=0.5).validate()
    with pytest.raises(CompressError, match="latency table"):
        prune.PruneOptions(analysis=analysis, target_latency=1.0).validate()
    with pytest.raises(CompressError, match="> 0 ms"):
        prune.PruneOptions(analysis=analysis, latency_table=tmp_path / "t.json", target_latency=-1.0).validate()
    with pytest.raises(CompressError, match=r"--retimes must be in \[0, 4\]"):
        prune.PruneOptions(analysis=analysis, latency_table=tmp_path / "t.json", target_latency=1.0,
                           retimes=5).validate()


def test_an_unreachable_latency_goal_says_what_the_table_predicts(trained_lenet, analysis, tmp_path):
    an = json.loads(analysis.read_text())
    table = tmp_path / "lat.json"
    table.write_text(json.dumps(_table(an, {n: 0.5 for n in ("features.0", "features.3", "classifier.1",
                                                             "classifier.3")})))
    with pytest.raises(CompressError, match="out of reach"):
        prune.run(str(trained_lenet), tmp_path / "p.pt", prune.PruneOptions(
            analysis=analysis, latency_table=table, target_latency=1.0, order=prune.Order.ONESHOT,
            include_linear=True, finetune_epochs=0, final_epochs=0, val_samples=150))
    assert not (tmp_path / "p.pt").exists()


def test_a_target_rounds_pruned_channels_to_its_multiple(trained_lenet, analysis, tmp_path):
    from click.testing import CliRunner

    from toolchain.cli import main

    res = CliRunner().invoke(main, ["prune", str(trained_lenet), "--analysis", str(analysis), "--target-params", "0.5",
                                    "--include-linear", "--target", "rpi4", "--final-epochs", "0.1",
                                    "--finetune-epochs", "0.05", "--val-samples", "150", "-o", str(tmp_path / "p.pt")])
    assert res.exit_code == 0, res.output
    layers = json.loads((tmp_path / "p.pt.json").read_text())["report"]["layers"]
    cut = {n: v["after"] for n, v in layers.items() if v["after"] < v["before"]}
    assert cut and all(c % 4 == 0 for c in cut.values()), cut  # rpi4: channel_multiple = 4


def test_the_latency_plan_is_measured_and_replanned_until_it_meets_the_goal(trained_lenet, analysis, tmp_path,
                                                                             monkeypatch):
    """A measured table (one `compress profile` wrote) is additive and over-promises on deep plans:
    the plan is timed against the unpruned model and re-planned with the goal rescaled by the miss."""

    an = json.loads(analysis.read_text())
    saves = {"features.0": 3.0, "features.3": 3.0, "classifier.1": 0.0, "classifier.3": 0.0}
    table = _table(an, saves) | {"options": {"runs": 5, "warmup": 1, "target": None, "host": None},
                                 "measured_on": "this host"}
    (tmp_path / "lat.json").write_text(json.dumps(table))
    measured = iter([8.5, 7.4])  # the first plan measures 1 ms slower than its 7.5 ms goal, the second meets it
    timed = []

    def fake_interleaved(files, **kw):
        timed.append((files, kw))
        return {"models": [{"p50_ms": 10.0}, {"p50_ms": next(measured)}]}

    monkeypatch.setattr(measure, "interleaved", fake_interleaved)
    art = prune.run(str(trained_lenet), tmp_path / "p.pt", prune.PruneOptions(
        analysis=analysis, latency_table=tmp_path / "lat.json", target_latency=7.5, order=prune.Order.ONESHOT,
        include_linear=True, finetune_epochs=0, final_epochs=0, val_samples=150, retimes=0))
    rounds = art.meta["report"]["latency_rounds"]
    assert [r["measured_ms"] for r in rounds] == [8.5, 7.4] and len(timed) == 2
    assert rounds[1]["goal_ms"] == pytest.approx(7.5 * 7.5 / 8.5, abs=1e-3)
    assert rounds[1]["predicted_ms"] < rounds[0]["predicted_ms"] and rounds[1].get("chosen")
    assert art.meta["report"]["plan_cap"] == rounds[1]["cap"] is not None
    assert all(kw["warmup"] == 1 and kw["host"] is None for _, kw in timed)  # the table's own settings,
    assert all(kw["seconds"] == prune.LATENCY_ROUND_SECONDS for _, kw in timed)  # timed for seconds, not runs
    assert len(art.meta["report"]["latency_cost_models"]) == 1  # fitted to the table once; no re-timing, no refit


def test_the_cost_model_fits_non_negative_terms_exactly_where_they_explain_the_times():
    feats = [[1.0, m, p, a] for m, p, a in ((10, 2, 5), (8, 2, 7), (10, 1, 1), (6, 1, 3), (4, 0.5, 6))]
    ms = [0.5 + 0.1 * m + 2.0 * p for _, m, p, _ in feats]
    model = cost.CostModel(feats, ms)
    assert model.coef == pytest.approx([0.5, 0.1, 2.0, 0.0], abs=1e-9) and model.rmse < 1e-9
    negative = cost.CostModel(feats, [5.0 - 0.2 * m for _, m, _, _ in feats])  # more MACs, faster: not a cost
    assert negative.coef.min() >= 0 and negative.summary()["rmse_ms"] > 0


def test_a_cost_model_that_puts_all_the_time_in_its_constant_leaves_pricing_to_the_table():
    """Timings with no dependence on channels (a 0.04 ms LeNet: noise) fit a constant alone; priced by
    it, every cut saves nothing and any goal under the unpruned model reads as out of reach."""
    from types import SimpleNamespace

    feats = [[1.0, m, p, a] for m, p, a in ((10, 2, 5), (8, 2, 7), (10, 1, 1), (6, 1, 3))]
    s = SimpleNamespace(cost_models=[])
    assert prune_latency._fit(s, cost.CostModel(feats, [0.04, 0.04, 0.04, 0.04])) is None
    informative = cost.CostModel(feats, [0.5 + 0.1 * m for _, m, _, _ in feats])
    assert prune_latency._fit(s, informative) is informative
    assert len(s.cost_models) == 2 and s.cost_models[0]["ms"] == pytest.approx(0.04)  # both recorded


def test_a_plans_cost_terms_count_the_convolution_between_two_cut_layers_once(trained_lenet):
    """Cutting a layer and the one that reads it: the additive table claims the second convolution's
    saving for both; the size model's MACs shrink it once, by both factors."""
    from toolchain import artifact

    net, _ = artifact.load_model(trained_lenet)
    sizes = cost.SizeModel(net, ["features.0", "features.3"], {}, (1, 32, 32))
    c0, c3 = (cost.channel_counts(net)[n] for n in ("features.0", "features.3"))
    whole, a, b = sizes.features({}), sizes.features({"features.0": c0 // 2}), sizes.features({"features.3": c3 // 2})
    both = sizes.features({"features.0": c0 // 2, "features.3": c3 // 2})
    saved = [whole[i] - x[i] for x in (a, b, both) for i in (1, 2, 3)]
    assert all(s > 0 for s in saved)
    assert both[1] > whole[1] - saved[0] - saved[3]  # MACs: the joint cut saves less than the sum of the two
    assert both[2] == pytest.approx(sizes.params({"features.0": c0 // 2, "features.3": c3 // 2}) / 1e6)


def test_a_table_retimed_around_a_plan_is_centred_on_its_measured_latency(tmp_path, monkeypatch):
    """Every variant is timed beside the plan's model and scaled by the plan's measured ms: a layer
    moved up costs, moved down saves, relative to the plan, not to the unpruned model; a variant
    timed on the wrong side of the plan (noise) reads as the plan."""

    table = {"kind": "compress-latency-table", "base_ms": 10.0, "options": {"warmup": 3},
             "layers": {"a": {"channels": 8, "ms": {"8": 10.0, "4": 7.0}}, "b": {"channels": 4, "ms": {"4": 10.0}}}}
    calls = []

    def fake_interleaved(files, **kw):
        calls.append((files, kw))
        return {"models": [{"p50_ms": p} for p in (2.2, 2.6, 1.8, 2.3, 2.0)], "runs": 40}

    monkeypatch.setattr(measure, "interleaved", fake_interleaved)
    variants = {("a", 8): tmp_path / "up.onnx", ("a", 2): tmp_path / "down.onnx", ("b", 2): tmp_path / "b.onnx"}
    local = cost.around(table, {"a": 4}, tmp_path / "plan.onnx", variants, centre_ms=6.0, seconds=5.0)
    files, kw = calls[0]
    assert files == [tmp_path / "plan.onnx", *variants.values(), tmp_path / "plan.onnx"]
    assert kw["seconds"] == 5.0 and kw["warmup"] == 3
    assert local["base_ms"] == 6.0 and local["centre"] == {"a": 4}
    assert local["layers"]["a"]["ms"] == {"4": 6.0, "8": pytest.approx(7.8), "2": pytest.approx(5.4)}
    assert local["layers"]["b"]["ms"] == {"4": 6.0, "2": 6.0}  # measured 6.9 with fewer channels: noise
    assert cost.predicted_ms(local, {"a": 4, "b": 4}) == 6.0
    assert cost.predicted_ms(local, {"a": 8}) == pytest.approx(7.8)


def test_the_latency_plan_is_replanned_on_a_table_retimed_around_it(trained_lenet, analysis, tmp_path, monkeypatch):
    """The first plan is measured, the table re-timed around it (every layer moved alone to the next
    width the analysis offers, up and down), the cost model refitted with those points; of the measured
    plans that meet the goal, the one the analysis prices lowest is taken."""

    an = json.loads(analysis.read_text())
    saves = {"features.0": 3.0, "features.3": 3.0, "classifier.1": 0.0, "classifier.3": 0.0}
    table = _table(an, saves) | {"options": {"runs": 5, "warmup": 1, "target": None, "host": None},
                                 "measured_on": "this host"}
    (tmp_path / "lat.json").write_text(json.dumps(table))
    runs, retimed = [], []

    def fake_interleaved(files, **kw):
        runs.append(files)
        if len(files) == 2:  # a round: the unpruned model, then the plan (within 3% of the 7.5 ms goal)
            return {"models": [{"p50_ms": 10.0}, {"p50_ms": 7.6}]}
        moved = [{"p50_ms": 7.7 if i % 2 else 7.45} for i in range(len(files) - 2)]  # a re-timing: the plan twice
        return {"models": [{"p50_ms": 7.6}, *moved, {"p50_ms": 7.6}], "runs": 10}

    real_around = cost.around
    monkeypatch.setattr(measure, "interleaved", fake_interleaved)
    monkeypatch.setattr(cost, "around", lambda *a, **kw: retimed.append(real_around(*a, **kw)) or retimed[-1])
    art = prune.run(str(trained_lenet), tmp_path / "p.pt", prune.PruneOptions(
        analysis=analysis, latency_table=tmp_path / "lat.json", target_latency=7.5, order=prune.Order.ONESHOT,
        include_linear=True, finetune_epochs=0, final_epochs=0, val_samples=150, retimes=1))
    rep = art.meta["report"]
    rounds = rep["latency_rounds"]
    assert len(retimed) == 1 and retimed[0]["base_ms"] == pytest.approx(7.6)  # centred on the measured plan
    first = {n: retimed[0]["centre"].get(n, row["channels"]) for n, row in retimed[0]["layers"].items()}
    assert len(rep["latency_cost_models"]) == 2  # fitted to the table, refitted with the points timed around the plan
    offered = {0.0, 0.25, 0.5, 0.75}  # the analysis' ratios, and whole: each layer moved one of them up and down
    for name, row in retimed[0]["layers"].items():
        ladder = sorted({keep_count(row["channels"], r) for r in offered} | {first[name]})
        at = ladder.index(first[name])
        assert sorted(int(k) for k in row["ms"]) == ladder[max(0, at - 1):at + 2], name
    assert [r["retimed"] for r in rounds] == [0, 1][:len(rounds)] and len(rounds) <= 2
    chosen = [r for r in rounds if r.get("chosen")]
    assert len(chosen) == 1 and chosen[0]["analysed_drop"] == min(r["analysed_drop"] for r in rounds)


def test_a_real_table_plans_on_measurements(trained_lenet, analysis, tmp_path):
    lat = profile.run(str(trained_lenet), tmp_path / "lat.json",
                      profile.ProfileOptions(widths=(0.5,), runs=20, warmup=2, include_linear=True)).meta
    art = prune.run(str(trained_lenet), tmp_path / "p.pt", prune.PruneOptions(
        analysis=analysis, latency_table=tmp_path / "lat.json", target_latency=lat["base_ms"] * 1.5,
        order=prune.Order.ONESHOT, include_linear=True, finetune_epochs=0, final_epochs=0, val_samples=150))
    rounds = art.meta["report"]["latency_rounds"]  # met without a cut: timed once, and a higher goal changes nothing
    assert len(rounds) == 1 and rounds[0]["chosen"] and rounds[0]["measured_ms"] > 0
    fit = art.meta["report"]["latency_cost_models"][0]  # the unpruned model, priced by the fit to the table
    assert rounds[0]["predicted_ms"] == pytest.approx(lat["base_ms"], abs=3 * fit["rmse_ms"] + 1e-4)


def test_the_next_latency_goal_follows_the_secant_of_the_measured_rounds():
    one = [{"goal_ms": 3.38, "measured_ms": 4.38}]
    assert prune_latency._next_goal(one, 3.38) == pytest.approx(3.38 * 3.38 / 4.38)
    two = one + [{"goal_ms": 2.61, "measured_ms": 3.88}]  # measured falls 0.65 ms per ms of goal
    assert prune_latency._next_goal(two, 3.38) == pytest.approx(2.61 + (3.38 - 3.88) * (2.61 - 3.38) / (3.88 - 4.38))
    flat = one + [{"goal_ms": 2.61, "measured_ms": 4.40}]  # noise: no upward slope, scale instead
    assert prune_latency._next_goal(flat, 3.38) == pytest.approx(2.61 * 3.38 / 4.40)


def test_a_nearly_flat_secant_does_not_leap():
    """MobileNetV2, seed 2: two rounds 0.02 ms of goal apart measured 0.003 ms apart (timing noise),
    and the secant's slope of 0.14 asked for 0.31 ms; taken at the least slope it asks for far less."""
    rounds = [{"goal_ms": 0.496, "measured_ms": 0.5214}, {"goal_ms": 0.4718, "measured_ms": 0.5181}]
    goal = prune_latency._next_goal(rounds, 0.496)
    assert goal == pytest.approx(0.4718 + (0.496 - 0.5181) / prune.LATENCY_MIN_SLOPE)
    assert 0.42 < goal < 0.4718


def test_a_goal_given_as_a_model_is_met_by_timing_each_plan_against_that_model(trained_lenet, analysis, tmp_path,
                                                                                monkeypatch):
    """--latency-of: the goal starts as the reference's latency in the table's scale (timed once against
    the unpruned model), then every plan is timed against the reference itself, whatever the unpruned
    model measures in that round: 0.8 of a reference at 0.8 of the unpruned model is 6.4 ms of 10."""

    an = json.loads(analysis.read_text())
    saves = {"features.0": 3.0, "features.3": 3.0, "classifier.1": 0.0, "classifier.3": 0.0}
    table = _table(an, saves) | {"options": {"runs": 5, "warmup": 1, "target": None, "host": None},
                                 "measured_on": "this host"}
    (tmp_path / "lat.json").write_text(json.dumps(table))
    reference = _onnx_model(tmp_path / "deployed.onnx", ["batch", "c", "h", "w"])  # timed by the fake
    p50s = iter([(10.0, 8.0), (4.0, 3.6), (4.0, 3.2)])  # reference vs base; then plans vs reference: 0.9, 0.8
    timed = []

    def fake_interleaved(files, **kw):
        timed.append(files)
        return {"models": [{"p50_ms": p} for p in next(p50s)]}

    monkeypatch.setattr(measure, "interleaved", fake_interleaved)
    art = prune.run(str(trained_lenet), tmp_path / "p.pt", prune.PruneOptions(
        analysis=analysis, latency_table=tmp_path / "lat.json", latency_of=reference, latency_fraction=0.8,
        order=prune.Order.ONESHOT, include_linear=True, finetune_epochs=0, final_epochs=0, val_samples=150,
        retimes=0))
    rep = art.meta["report"]
    assert rep["plan_kind"] == "latency" and rep["latency_goal_ms"] == pytest.approx(6.4)
    assert timed[0][1] == reference and all(files[0] == reference for files in timed[1:]) and len(timed) == 3
    rounds = rep["latency_rounds"]
    assert [r["vs_reference"] for r in rounds] == [0.9, 0.8]
    assert [r["measured_ms"] for r in rounds] == [pytest.approx(6.4 * 0.9 / 0.8), pytest.approx(6.4)]
    assert rounds[1]["chosen"] and rounds[1]["goal_ms"] < rounds[0]["goal_ms"]
    assert json.loads((tmp_path / "p.pt.json").read_text())["lineage"][-1]["options"]["latency_of"] == str(reference)


def _floored_run(trained_lenet, analysis, tmp_path, monkeypatch, deepest_vs_reference: float):
    """--latency-of a reference the first timing puts at a tenth of the unpruned model: under what
    the table's plans reach. The deepest plan is then timed against the reference."""

    an = json.loads(analysis.read_text())
    saves = {"features.0": 3.0, "features.3": 3.0, "classifier.1": 0.0, "classifier.3": 0.0}
    table = _table(an, saves) | {"options": {"runs": 5, "warmup": 1, "target": None, "host": None},
                                 "measured_on": "this host"}
    (tmp_path / "lat.json").write_text(json.dumps(table))
    reference = _onnx_model(tmp_path / "deployed.onnx", ["batch", "c", "h", "w"])
    p50s = iter([(10.0, 1.0), (1.0, deepest_vs_reference), (1.0, deepest_vs_reference)])
    monkeypatch.setattr(measure, "interleaved", lambda files, **kw: {"models": [{"p50_ms": p} for p in next(p50s)]})
    return prune.run(str(trained_lenet), tmp_path / "p.pt", prune.PruneOptions(
        analysis=analysis, latency_table=tmp_path / "lat.json", latency_of=reference, order=prune.Order.ONESHOT,
        include_linear=True, finetune_epochs=0, final_epochs=0, val_samples=150, retimes=0))


def test_a_goal_the_pricing_cannot_reach_is_met_where_the_deepest_plan_measures_under_it(trained_lenet, analysis,
                                                                                         tmp_path, monkeypatch):
    """The goal is a timing and the pricing a fit: where they disagree, the measurement decides."""
    rep = _floored_run(trained_lenet, analysis, tmp_path, monkeypatch, 0.9).meta["report"]
    first = rep["latency_rounds"][0]
    assert first["deepest"] and first["vs_reference"] == 0.9 and first["predicted_ms"] > first["goal_ms"]
    assert any(r.get("chosen") for r in rep["latency_rounds"])
    assert all(v["after"] <= v["before"] for v in rep["layers"].values())
    assert any(v["after"] < v["before"] for v in rep["layers"].values())


def test_a_goal_the_deepest_plan_measures_over_is_refused_with_its_measurement(trained_lenet, analysis, tmp_path,
                                                                              monkeypatch):
    with pytest.raises(CompressError, match=r"out of reach: .* predicts .*; measured, that plan takes 1\.5 ms"):
        _floored_run(trained_lenet, analysis, tmp_path, monkeypatch, 1.5)
    assert not (tmp_path / "p.pt").exists()


def test_a_latency_goal_is_one_of_milliseconds_or_a_model(analysis, tmp_path):
    from click.testing import CliRunner

    from toolchain.cli import main

    ref = _onnx_model(tmp_path / "deployed.onnx", ["batch", 1, 32, 32])
    common = dict(analysis=analysis, latency_table=tmp_path / "t.json")
    with pytest.raises(CompressError, match="one latency goal"):
        prune.PruneOptions(**common, target_latency=1.0, latency_of=ref).validate()
    with pytest.raises(CompressError, match="no such file"):
        prune.PruneOptions(**common, latency_of=tmp_path / "gone.onnx").validate()
    with pytest.raises(CompressError, match="--latency-fraction"):
        prune.PruneOptions(**common, latency_of=ref, latency_fraction=0).validate()
    assert prune.PruneOptions(**common, latency_of=ref).resolved_plan() is prune.Plan.LATENCY
    res = CliRunner().invoke(main, ["prune", "model.pt", "--analysis", str(analysis), "--latency-of", str(ref)])
    assert res.exit_code == 2 and "--objective latency goes with a latency goal" in res.output
    assert "Traceback" not in res.output


def test_a_reference_that_is_not_an_onnx_model_of_this_input_is_refused(trained_lenet, analysis, tmp_path):
    an = json.loads(analysis.read_text())
    (tmp_path / "lat.json").write_text(json.dumps(_table(an, {n: 1.0 for n in ("features.0", "features.3",
                                                                                "classifier.1", "classifier.3")})))
    common = dict(analysis=analysis, latency_table=tmp_path / "lat.json", order=prune.Order.ONESHOT,
                  include_linear=True, finetune_epochs=0, final_epochs=0, val_samples=150)
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07not a protobuf at all")
    with pytest.raises(CompressError, match="not an ONNX model"):
        prune.PruneOptions(**common, latency_of=corrupt).validate()
    other = _onnx_model(tmp_path / "rgb64.onnx", ["batch", 3, 64, 64])  # another input: its speed says nothing
    with pytest.raises(CompressError, match=r"its input \[None, 3, 64, 64\] is not this model's"):
        prune.run(str(trained_lenet), tmp_path / "p.pt", prune.PruneOptions(**common, latency_of=other))
    assert not (tmp_path / "p.pt").exists()
