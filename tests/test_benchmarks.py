"""The statistics the benchmark scripts decide "ahead / behind / tie" with (EVALUATION.md section 3), and
docs/results.md as the results JSON renders it."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from common import ROOT, paired_verdict, summary  # noqa: E402
from make_results_md import render  # noqa: E402


def test_summary_is_mean_and_sample_std():
    assert summary([90.0, 91.0, 92.0]) == {"mean": 91.0, "std": 1.0, "n": 3}
    assert summary([90.0])["std"] is None


def test_paired_verdict_needs_twice_the_standard_error():
    a = {"seeds": [0, 1, 2], "top1": [91.0, 92.0, 93.0]}
    clearly = {"seeds": [0, 1, 2], "top1": [90.0, 91.1, 91.9]}  # 1 point behind at every seed
    assert paired_verdict(a, clearly)["verdict"] == "ahead"
    assert paired_verdict(clearly, a)["verdict"] == "behind"
    noisy = {"seeds": [0, 1, 2], "top1": [89.0, 94.0, 92.0]}  # the same mean gap, but it swings
    v = paired_verdict(a, noisy)
    assert v["verdict"] == "tie" and v["pairs"] == 3 and v["diff_pts"] == round((2 - 2 + 1) / 3, 3)
    assert paired_verdict({"seeds": [0], "top1": [95.0]}, {"seeds": [0], "top1": [80.0]})["verdict"] == "tie"
    shuffled = {"seeds": [2, 0, 1], "top1": [91.9, 90.0, 91.1]}  # paired by seed, not by position
    assert paired_verdict(a, shuffled) == paired_verdict(a, clearly)


def test_results_page_is_what_the_committed_json_renders():
    """A figure in docs/results.md comes from benchmarks/results/: a hand edit, or a JSON rerun without
    `python benchmarks/make_results_md.py`, fails here."""
    assert (ROOT / "docs" / "results.md").read_text() == render()


def test_layers_apart_is_zero_for_one_network_and_grows_with_the_difference():
    from latency_aware import layers_apart

    a = {"conv1": 0.5, "conv2": 0.25}
    assert layers_apart(a, dict(a)) == 0.0
    assert layers_apart(a, {"conv1": 0.75, "conv2": 0.25}) == 0.125
    assert layers_apart(a, {"conv1": 0.5}) == 0.125  # a layer the other network lost whole keeps nothing


def test_settle_waits_for_the_load_to_fall_and_gives_up_at_its_limit(monkeypatch):
    """A timing right after a fine-tune would read the fine-tune's own load (EVALUATION.md section 5)."""
    import os
    import time

    import common

    loads = iter([3.0, 2.0, 0.4])
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (next(loads), 0.0, 0.0))
    slept = []
    monkeypatch.setattr(time, "sleep", slept.append)
    common.settle(poll=5.0)
    assert slept == [5.0, 5.0]  # polled until the load fell below 1.0 on 2 cores
    monkeypatch.setattr(os, "getloadavg", lambda: (3.0, 0.0, 0.0))
    assert common.settle(max_seconds=0.0) < 1  # still busy: timed anyway (and flagged by bench)


def _manifest(folder, recipe: dict, payload: bytes = b"weights", **over) -> dict:
    import hashlib
    import json

    (folder / "m.pt").write_bytes(payload)
    entry = {"file": "m.pt", "sha256": hashlib.sha256(b"weights").hexdigest(), "model_spec": "zoo:alexnet",
             "data": "fashion-mnist", "recipe": recipe,
             "validation_split": {"seed": 0, "fraction": 0.1, "max": 5000, "size": 5000}} | over
    (folder / "MANIFEST.json").write_text(json.dumps({"models": {"alexnet": entry}}))
    return entry


def test_shared_baseline_is_taken_when_model_data_recipe_and_split_match_and_its_sha256_holds(tmp_path, monkeypatch):
    """EVALUATION.md section 2: the shared baselines are read, never retrained; matched on what was trained."""
    import dataclasses

    import common

    from toolchain import train

    opts = train.TrainOptions(epochs=6, lr=0.05, seed=0)
    recipe = dataclasses.asdict(dataclasses.replace(opts, data="fashion-mnist"))
    monkeypatch.setattr(common, "SHARED_BASELINES", tmp_path)
    _manifest(tmp_path, recipe)
    assert common.shared_baseline("zoo:alexnet", "fashion-mnist", opts) == tmp_path / "m.pt"
    assert common.shared_baseline("zoo:vgg16", "fashion-mnist", opts) is None  # another model
    assert common.shared_baseline("zoo:alexnet", "mnist", opts) is None  # other data
    assert common.shared_baseline("zoo:alexnet", "fashion-mnist", dataclasses.replace(opts, epochs=5)) is None
    older = {k: v for k, v in recipe.items() if k not in ("distill", "temperature")}  # options added later
    _manifest(tmp_path, older)
    assert common.shared_baseline("zoo:alexnet", "fashion-mnist", opts) == tmp_path / "m.pt"
    _manifest(tmp_path, recipe, validation_split={"seed": 1, "fraction": 0.1, "max": 5000})
    assert common.shared_baseline("zoo:alexnet", "fashion-mnist", opts) is None  # another split
    _manifest(tmp_path, recipe, payload=b"something else")
    assert common.shared_baseline("zoo:alexnet", "fashion-mnist", opts) is None  # the sha256 does not hold


def _cell(route: str, seed: int, top1: float, scheme: str = "all-int8", epochs: float = 1.3) -> dict:
    return {"route": route, "seed": seed, "params": 1000, "kept": 0.0499, "macs": 10, "macs_kept": 0.1,
            "on_target": True, "finetune_epochs_total": epochs,
            "schemes": {scheme: {"top1": top1, "val_top1": top1, "param_bytes": 1000, "file_bytes": 1100}}}


def test_paper_rows_and_verdicts_are_computed_from_the_cells(tmp_path, monkeypatch):
    import paper_cnn

    cells = {f"sensitivity/s{s}": _cell("sensitivity", s, t) for s, t in enumerate((92.0, 92.1, 91.9))}
    cells |= {f"peer_global/s{s}": _cell("peer_global", s, t, epochs=1.36) for s, t in enumerate((90.0, 90.2, 90.1))}
    cells |= {f"control/s{s}": {"route": "control", "seed": s, "top1": t} for s, t in enumerate((93.0, 93.2, 93.1))}
    entry = {"cells": cells, "baseline_param_bytes": 80_000}
    out = paper_cnn.summarize("alexnet", entry, [0, 1, 2])
    row = out["rows"]["all-int8"]
    assert row["compression_x"] == 80.0 and row["top1_mean"] == 92.0 and row["complete"]
    assert row["drop_pts"] == round(93.1 - 92.0, 3) and out["equal_budget_top1"] == 93.1
    assert row["vs_peer_global"]["verdict"] == "ahead" and row["vs_peer_global"]["pairs"] == 3
    assert out["goals"] == {} or "fc_int8_x" not in out["goals"]  # no fc-int8 cell: no typed-in goal
    assert paper_cnn._budget(entry) == 1.4  # the control gets the most any compared model got, rounded up
    planned = paper_cnn.summarize("alexnet", entry | {"seeds": [0, 1]}, [0, 1])  # seed 2 was added later
    assert planned["rows"]["all-int8"]["seeds"] == [0, 1] and planned["equal_budget"]["seeds"] == [0, 1]


def test_paper_store_keeps_a_finished_cell_only_under_its_recipe_key(tmp_path, monkeypatch):
    """A rerun skips a finished cell with the same key, and redoes one whose recipe changed."""
    import paper_cnn

    monkeypatch.setattr(paper_cnn, "OUT", tmp_path / "paper.json")
    store = paper_cnn.Store("alexnet", commit=False)
    store.put("sensitivity/s0", {"key": "abc", "top1": 92.0})
    assert store.cell("sensitivity/s0", "abc") == {"key": "abc", "top1": 92.0}
    assert store.cell("sensitivity/s0", "other") is None and store.cell("uniform/s0", "abc") is None
    paper_cnn.Store("vgg16", commit=False).put("control/s0", {"key": "k", "top1": 93.0})
    assert store.cell("sensitivity/s0", "abc") is not None  # another model's cells leave this one's alone


def test_a_section_without_provenance_says_so_on_the_page():
    """EVALUATION.md section 6: a figure whose results file records no commit is marked, not passed off."""
    from make_results_md import NO_PROVENANCE, provenance_line

    assert provenance_line({"rows": []}, "x")[0].startswith(NO_PROVENANCE)
    line = provenance_line({"provenance": {"commit": "abc123", "dirty": True, "date": "2026-12-07T21:00:00",
                                           "host": {"cpu": "AMD EPYC", "cores": 2}}}, "x")[0]
    assert "abc123" in line and "uncommitted" in line and NO_PROVENANCE not in line


def test_every_results_file_gets_a_provenance_object_from_write(tmp_path, monkeypatch):
    import common

    monkeypatch.setattr(common, "RESULTS", tmp_path)
    common.write("x", {"figure": 1, "provenance": {"seeds": [0, 1, 2]}})
    import json

    prov = json.loads((tmp_path / "x.json").read_text())["provenance"]
    assert prov["seeds"] == [0, 1, 2] and {"commit", "dirty", "date", "host"} <= set(prov)


def test_a_latency_verdict_counts_the_planned_seeds_and_only_the_pairs_that_matched():
    """EVALUATION.md sections 3 and 4: seeds added after a verdict, and a pair outside 3%, are not counted."""
    from latency_aware import _comparisons

    par = {"config": "params-25", "objective": "params", "seeds": [0, 1, 2, 3], "top1": [90.0, 90.0, 90.0, 90.0],
           "p50_ms": 10.0, "p50_ms_per_seed": [10.0, 10.0, 10.0, 10.0]}
    lat = {"config": "latency-at-params-25", "objective": "latency", "matched_to": "params-25", "seeds": [0, 1, 2, 3],
           "top1": [91.0, 95.0, 91.2, 91.1], "p50_ms": 10.2, "p50_ms_per_seed": [10.1, 10.5, 9.9, 10.0]}
    pair = _comparisons({"a": par, "b": lat}, planned=[0, 1, 2])["matched_latency"][0]
    assert pair["counted_seeds"] == [0, 2]  # seed 1 measured 1.05x: shown, not counted; seed 3 was added later
    assert pair["top1"]["pairs"] == 2 and pair["top1"]["diff_pts"] == 1.1
    assert pair["top1_all_seeds_not_counted"]["pairs"] == 4


def test_breadth_int8_parity_holds_for_a_faithful_file_and_fails_for_a_broken_one(tmp_path):
    """zoo_breadth's parity_int8 can fail: the same check that passes the model's own ONNX file fails
    one whose weights were changed, and one whose logits are all zero is called degenerate."""
    import torch
    from torch import nn
    from zoo_breadth import _base, parity_int8

    from toolchain import artifact, convert, models

    data_spec = "synthetic:3x32x32:4"
    torch.manual_seed(0)
    net = models.build("zoo:lenet5", (3, 32, 32), 4).model
    head = [m for m in net.modules() if isinstance(m, nn.Linear)][-1]
    meta = artifact.new_meta("build", {}, parent=None, spec="zoo:lenet5", data={"spec": data_spec},
                             input_shape=(3, 32, 32), num_classes=4, metrics={})
    artifact.save(net, tmp_path / "net.pt", meta)
    onnx_file = tmp_path / "net.onnx"
    convert.export_onnx(net.eval(), (3, 32, 32), onnx_file)
    assert parity_int8(tmp_path / "net.pt", onnx_file, data_spec, 32)["holds"]
    with torch.no_grad():
        head.weight.mul_(-1)  # a different model: its own file no longer matches it
    artifact.save(net, tmp_path / "flipped.pt", meta)
    broken = parity_int8(tmp_path / "flipped.pt", onnx_file, data_spec, 32)
    assert not broken["holds"] and "relative error" in broken["why"]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
    artifact.save(net, tmp_path / "zero.pt", meta)
    convert.export_onnx(net.eval(), (3, 32, 32), tmp_path / "zero.onnx")
    assert "degenerate" in parity_int8(tmp_path / "zero.pt", tmp_path / "zero.onnx", data_spec, 32)["why"]
    # the breadth run's starting point: zero-initialised layers drawn at random, BatchNorm statistics estimated
    base, _ = artifact.load_model(_base("torchvision:vit_b_16?size=32&image_size=32", 32, data_spec,
                                        tmp_path / "vit.pt"))
    assert base.heads.head.weight.any() and base.heads.head.weight.std() > 0
