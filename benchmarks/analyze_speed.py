"""Issue 3 benchmark: sensitivity analysis of VGG16-BN trained on Fashion-MNIST (13 convs, one ratio).

Measures the wall time with 1 and 2 workers (each with an empty cache), 1 worker again with every
cut on a pruned copy (the analysis before masked cuts: the A/B, in one run), and how the ranking on the
class-stratified subset compares with the ranking on the whole validation split (the analysis never
reads the test split; the key `full_test_set` is an old name for that run) (Spearman, and whether the
top/bottom layers agree). Goal: under 60 s on 2 cores.

    python benchmarks/analyze_speed.py [--eval-samples 1000] [--train-limit 20000 --epochs 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import trained, write

from toolchain import analyze, train
from toolchain.measure import spearman


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--eval-samples", type=int, default=1000)
    ap.add_argument("--train-limit", type=int, default=20000)
    ap.add_argument("--epochs", type=float, default=2)
    args = ap.parse_args()
    model = trained("zoo:vgg16", "fashion-mnist", train.TrainOptions(epochs=args.epochs, lr=0.05,
                                                                     train_limit=args.train_limit))
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        for label, workers, samples in (("subset_1_worker", 1, args.eval_samples),
                                        ("subset_1_worker_copies", 1, args.eval_samples),
                                        ("subset_2_workers", 2, args.eval_samples),
                                        ("full_test_set", 2, None)):
            start = time.perf_counter()
            res = analyze.run(str(model), Path(tmp) / f"{label}.json",
                              analyze.AnalyzeOptions(ratio=0.5, eval_samples=samples, workers=workers,
                                                     # timed runs start empty; the full-test-set reference
                                                     # (not timed against the goal) may reuse the user cache
                                                     plots=False, masking=not label.endswith("copies"),
                                                     cache_dir=cache / label if samples else None)).meta
            runs[label] = {"wall_s": round(time.perf_counter() - start, 2), "workers": workers,
                           "eval_samples": res["data"]["eval_samples"], "priority": res["priority"],
                           "baseline_accuracy": res["baseline"]["accuracy"],
                           "layers": {l["name"]: l["accuracy"] for l in res["layers"]},
                           "stability_spearman_halves": res["stability"]["spearman_halves"],
                           "reused_results": res["reused_results"]}
            print(f"{label}: {runs[label]['wall_s']} s, {len(res['layers'])} layers, "
                  f"{res['data']['eval_samples']} samples", flush=True)
    names = list(runs["full_test_set"]["layers"])
    rho = spearman([runs["subset_2_workers"]["layers"][n] for n in names],
                    [runs["full_test_set"]["layers"][n] for n in names])
    sub, full = runs["subset_2_workers"]["priority"], runs["full_test_set"]["priority"]
    result = {"model": "zoo:vgg16 (VGG16-BN, 32x32)", "data": "fashion-mnist", "ratio": 0.5,
              "model_accuracy": runs["full_test_set"]["baseline_accuracy"], "runs": runs,
              "speedup_2_workers": round(runs["subset_1_worker"]["wall_s"] / runs["subset_2_workers"]["wall_s"], 2),
              "masked_vs_copies": round(runs["subset_1_worker"]["wall_s"]
                                        / runs["subset_1_worker_copies"]["wall_s"], 3),
              "masked_equal_copies": runs["subset_1_worker"]["layers"] == runs["subset_1_worker_copies"]["layers"],
              "subset_vs_full_spearman": rho, "top3_agree": sub[:3] == full[:3],
              "bottom3_agree": sub[-3:] == full[-3:], "goal_s": 60,
              "goal_met": min(runs["subset_1_worker"]["wall_s"], runs["subset_2_workers"]["wall_s"]) < 60}
    print(f"1 worker {runs['subset_1_worker']['wall_s']} s, 2 workers {runs['subset_2_workers']['wall_s']} s, "
          f"full test set {runs['full_test_set']['wall_s']} s; subset vs full Spearman {rho}")
    write("analyze_speed", result)


if __name__ == "__main__":
    main()
