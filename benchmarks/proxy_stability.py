"""How far each analysis measure (`prune --proxy`) can be trusted to rank layers, on the trained
models of latency_aware.py: the Spearman correlation of the single-layer drops at ratio 0.5 between
two disjoint, class-stratified halves of the analysis's 1,000 validation images, for top-1, confidence
and fidelity. A ranking that does not hold between two halves of the images is noise, and a plan
made from it allocates noise. No test image is read.

Each model is analysed as latency_aware.py analyses it (its ANALYSIS_RATIOS, adaptive BatchNorm on
1,000 training images); cuts that run measured already are reused from the analysis cache.

    python benchmarks/proxy_stability.py [--models vgg16,vgg16-64px,mobilenet_v2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import write
from latency_aware import ADAPT_BN, DATA, EVAL_SAMPLES, SETUPS, analysis_options, base_model

from toolchain import analyze


def stability(name: str) -> dict:
    """One model's analysis (latency_aware.py's settings) and how its three measures rank."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        made = analyze.run(str(base_model(name)), Path(tmp) / "analysis.json", analysis_options()).meta
    st = made["stability"]
    return {"model": name, "spec": SETUPS[name]["spec"], "layers": len(made["layers"]),
            "base_val_top1": made["baseline"]["accuracy"],
            "spearman_halves": {"top1": st["spearman_halves"], "confidence": st["spearman_halves_confidence"],
                                "fidelity": st["spearman_halves_fidelity"]},
            "half_samples": st["half_samples"], "minutes": round((time.perf_counter() - start) / 60, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="vgg16,vgg16-64px,mobilenet_v2", help="latency_aware.py setups")
    args = ap.parse_args()
    rows = []
    for name in args.models.split(","):
        rows.append(stability(name))
        print(f"{name}: " + ", ".join(f"{k} {v}" for k, v in rows[-1]["spearman_halves"].items()), flush=True)
    write("proxy_stability", {"what": "Spearman correlation of single-layer drops at ratio 0.5 between two halves "
                                      "of the analysis's validation images, per measure",
                              "data": DATA, "eval_samples": EVAL_SAMPLES, "adapt_bn": ADAPT_BN,
                              "ratio": 0.5, "rows": rows})


if __name__ == "__main__":
    main()
