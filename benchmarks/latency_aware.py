"""Latency-aware compression, part 1: per-layer precision on networks with depthwise and grouped
convolutions (MobileNetV2 and RegNetX-400MF at 64 px, random weights, `synthetic:` data: this
measures latency, not accuracy).

For each network: every quantizable layer is timed alone in int8 against fp32 (`quantize
--per-layer`), int8 is kept where it ran faster; then fp32, all-int8 and the per-layer model are
timed interleaved in one run. The per-layer model must not be slower than fp32, and carries int8
wherever a layer paid.

Part 2 of the issue (the latency objective against the parameter objective at equal top-1 and at
matched latency, on trained VGG16 and MobileNetV2) needs the trained baselines and is not measured
by this script.

    python benchmarks/latency_aware.py [--runs 500] [--threads 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import write

from toolchain import bench, export, quantize

MODELS = {"mobilenet_v2": "depthwise", "regnet_x_400mf": "grouped"}
SIZE = 64


def one(name: str, args, tmp: Path) -> dict:
    spec, data = f"torchvision:{name}?size={SIZE}", f"synthetic:3x{SIZE}x{SIZE}:10"
    start = time.perf_counter()
    common = dict(scope=quantize.Scope.ALL, samples=32, eval_samples=64)
    q_all = quantize.run(spec, tmp / f"{name}-all.pt", quantize.QuantizeOptions(**common, allow_slower=True, data=data))
    q_pl = quantize.run(spec, tmp / f"{name}-pl.pt", quantize.QuantizeOptions(**common, per_layer=True, data=data))
    files = [tmp / f"{name}-fp32.onnx", tmp / f"{name}-all.onnx", tmp / f"{name}-pl.onnx"]
    export.run(spec, files[0], export.ExportOptions(input_shape=(1, 3, SIZE, SIZE), data=data))
    export.run(str(q_all.path), files[1], export.ExportOptions())
    export.run(str(q_pl.path), files[2], export.ExportOptions())
    rep = bench.run(files, None, bench.BenchOptions(runs=args.runs, warmup=50, threads=args.threads,
                                              runtime=bench.Runtime(memory=False))).meta
    fp32, all_int8, per_layer = (m["p50_ms"] for m in rep["models"])
    recipe = q_pl.meta["quantization"] or q_pl.meta["report"]["recipe"]
    ratios = recipe.get("per_layer_p50_ratio", {})
    return {"model": name, "convs": MODELS[name], "input": SIZE, "layers": len(ratios),
            "layers_int8": len(recipe.get("nodes") or []) if q_pl.meta["quantization"] else 0,
            "kept_fp32_entirely": q_pl.meta["quantization"] is None,
            "p50_fp32_ms": fp32, "p50_all_int8_ms": all_int8, "p50_per_layer_ms": per_layer,
            "per_layer_vs_fp32": round(per_layer / fp32, 4), "all_int8_vs_fp32": round(all_int8 / fp32, 4),
            "not_slower_than_fp32": per_layer <= fp32 * (1 + quantize.SLOWER_TOLERANCE),
            "layer_p50_ratios": ratios, "loaded": rep["loaded"],
            "minutes": round((time.perf_counter() - start) / 60, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=500)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in MODELS:
            rows.append(one(name, args, Path(tmp)))
            r = rows[-1]
            print(f"{name}: {r['layers_int8']}/{r['layers']} layers int8; p50 fp32 {r['p50_fp32_ms']:.3f}, "
                  f"all-int8 {r['p50_all_int8_ms']:.3f}, per-layer {r['p50_per_layer_ms']:.3f} ms", flush=True)
    write("latency_aware", {"part": "per-layer precision (part 1 of issue 17)", "threads": args.threads,
                            "what": "latency, not accuracy: random weights, synthetic data", "rows": rows})


if __name__ == "__main__":
    main()
