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
