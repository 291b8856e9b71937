"""How fast the sensitivity analysis is (issues 3 and 40), every figure from one run on one machine.

1. VGG16-BN (the shared baseline, Fashion-MNIST), one ratio (0.5), 1,000 validation images, each run
   with an empty cache: the cuts run whole (today's path before issue 40: each masked cut runs the
   whole network) and streamed (`toolchain.streaming`: the unchanged prefix computed once, only each
   cut's changed part run), with 1 and 2 workers; and how far the two agree (the whole path sends
   the cuts that remove the most MACs to pruned copies: same top-1, continuous figures to rounding).
   Goal: streamed, 2 workers, at most 20 s on an idle 2-core machine.
2. MobileNetV3-small at 32 px (random weights: it times the tool), Fashion-MNIST, the 4 ratios of
   `compress run` on 500 validation images, whole and streamed. Goal: at most 60 s.

The load average is recorded before and after each run; a run on a busy machine says so.

    python benchmarks/analyze_speed.py [--eval-samples 1000] [--quiet-wait 300]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import baselines
from common import load, settle, sha256, write

from toolchain import analyze

RUN_RATIOS = (0.25, 0.75, 0.9)  # with ratio 0.5: the sweep `compress run` analyses (toolchain/defaults)
EXACT = ("accuracy", "accuracy_a", "accuracy_b", "kept", "params_removed", "macs_removed")
CONTINUOUS = ("confidence", "confidence_a", "confidence_b", "fidelity", "fidelity_a", "fidelity_b", "temperature")


def timed(model: str, label: str, tmp: Path, quiet_wait: float, **options) -> tuple[dict, dict]:
    waited = settle(quiet_wait)
    before, start = load(), time.perf_counter()
    res = analyze.run(model, tmp / f"{label}.json",
                      analyze.AnalyzeOptions(plots=False, cache_dir=tmp / label, **options)).meta
    run = {"wall_s": round(time.perf_counter() - start, 2), "load_before": before, "load_after": load(),
           "settle_s": waited, "workers": options.get("workers", 1), "cuts": res["cuts"],
           "eval_samples": res["data"]["eval_samples"], "layers": len(res["layers"]),
           "ratios": list(res["options"]["ratios"]), "baseline_accuracy": res["baseline"]["accuracy"]}
    print(f"{label}: {run['wall_s']} s ({res['cuts']}), load {before} -> {run['load_after']}", flush=True)
    return run, {r["name"]: r for r in res["layers"]}


def agreement(a: dict, b: dict) -> dict:
    """Two analyses' figures: identical top-1 and counts (every ratio), bit-identical continuous figures,
    and the largest difference of a continuous one (percentage points)."""
    rows = [(ra | {"_": 0}, b[name]) for name, ra in a.items()]
    pairs = [(x, y) for ra, rb in rows for x, y in [(ra, rb), *zip(ra["sweep"], rb["sweep"], strict=True)]]
    gaps = [abs(x[k] - y[k]) for x, y in pairs for k in CONTINUOUS if x.get(k) is not None and k in y]
    return {"top1_and_counts_identical": all(x[k] == y[k] for x, y in pairs for k in EXACT if k in x),
            "bit_identical": all(x.get(k) == y.get(k) for x, y in pairs for k in EXACT + CONTINUOUS),
            "max_continuous_diff": round(max(gaps, default=0.0), 6)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--eval-samples", type=int, default=1000)
    ap.add_argument("--quiet-wait", type=float, default=300, help="seconds to wait for a quiet machine per run")
    args = ap.parse_args()
    vgg = str(baselines.baseline("vgg16"))
    runs, figures = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for cuts in ("whole", "streamed"):
            for workers in (1, 2):
                label = f"vgg16_{cuts}_{workers}_worker{'s' if workers > 1 else ''}"
                runs[label], figures[label] = timed(vgg, label, tmp, args.quiet_wait, ratio=0.5,
                                                    eval_samples=args.eval_samples, workers=workers, cuts=cuts)
        for cuts in ("whole", "streamed"):
            label = f"mobilenet_v3_small_{cuts}"
            runs[label], figures[label] = timed("torchvision:mobilenet_v3_small?size=32", label, tmp,
                                                args.quiet_wait, ratio=0.5, ratios=RUN_RATIOS, eval_samples=500,
                                                data="fashion-mnist", workers=2, cuts=cuts)
    v = {k: runs[f"vgg16_{k}"]["wall_s"] for k in ("whole_1_worker", "whole_2_workers", "streamed_1_worker",
                                                    "streamed_2_workers")}
    m = {k: runs[f"mobilenet_v3_small_{k}"]["wall_s"] for k in ("whole", "streamed")}
    busy = [k for k, r in runs.items() if r["load_before"] > 1.0]
    write("analyze_speed", {
        "what": "sensitivity analysis wall time: the cuts run whole against streamed (issue 40), in one run",
        "vgg16": {"model": "zoo:vgg16 (VGG16-BN, 32x32), the shared baseline", "data": baselines.DATA,
                  "ratio": 0.5, "eval_samples": args.eval_samples, "wall_s": v,
                  "streamed_speedup_1_worker": round(v["whole_1_worker"] / v["streamed_1_worker"], 2),
                  "streamed_speedup_2_workers": round(v["whole_2_workers"] / v["streamed_2_workers"], 2),
                  "two_workers_speedup_streamed": round(v["streamed_1_worker"] / v["streamed_2_workers"], 2),
                  "streamed_vs_whole": agreement(figures["vgg16_streamed_1_worker"], figures["vgg16_whole_1_worker"]),
                  "streamed_1_vs_2_workers": agreement(figures["vgg16_streamed_2_workers"],
                                                       figures["vgg16_streamed_1_worker"]),
                  "goal_s": 20, "goal_met": v["streamed_2_workers"] <= 20, "goal_two_workers_x": 1.6,
                  "goal_two_workers_met": v["streamed_1_worker"] / v["streamed_2_workers"] >= 1.6},
        "mobilenet_v3_small": {"model": "torchvision:mobilenet_v3_small?size=32 (random weights)",
                               "data": "fashion-mnist", "ratios": [0.5, *RUN_RATIOS], "eval_samples": 500,
                               "workers": 2, "wall_s": m, "streamed_speedup": round(m["whole"] / m["streamed"], 2),
                               "streamed_vs_whole": agreement(figures["mobilenet_v3_small_streamed"],
                                                              figures["mobilenet_v3_small_whole"]),
                               "goal_s": 60, "goal_met": m["streamed"] <= 60},
        "runs": runs, "busy_runs": busy,
        "provenance": {"parts": {k: {"minutes": round(r["wall_s"] / 60, 2), "load_before": r["load_before"],
                                     "load_after": r["load_after"]} for k, r in runs.items()},
                       "baselines": {Path(vgg).name: sha256(vgg)}},
    })


if __name__ == "__main__":
    main()
