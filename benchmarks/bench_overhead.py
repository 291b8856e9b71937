"""Overhead of `compress bench`'s measurement loop against a bare onnxruntime loop.

Same model file, same session options (CPU provider, same threads), same input shape. The bare
loop is the plainest honest measurement there is:

    for _ in range(runs):
        t0 = time.perf_counter(); sess.run(None, feed); lat.append(time.perf_counter() - t0)

The two are alternated REPS times in one run (ABBA order, a fresh session each time), so that a
busy machine hurts both alike, and compared per pair: overhead = compress p50 / bare p50 - 1
(and the same for the mean). Goal: the median overhead within 5% on every model.

    .venv/bin/python benchmarks/bench_overhead.py            # writes benchmarks/results/bench_overhead.json
    .venv/bin/python benchmarks/bench_overhead.py --quick    # fewer runs, for a smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from toolchain import bench, models
from toolchain.convert import export_onnx
from toolchain.measure import host_facts

GOAL = 0.05  # compress's p50 within 5% of the bare loop's
RESULTS = Path(__file__).resolve().parent / "results" / "bench_overhead.json"
MODELS = {  # zoo spec, data shape, timed runs per measurement, warm-up runs
    "lenet5": ("zoo:lenet5", (1, 32, 32), 2000, 200),
    "vgg16": ("zoo:vgg16", (3, 32, 32), 150, 15),
}


def bare_loop(path: Path, runs: int, warmup: int, threads: int | None) -> dict:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    feed = {inp.name: np.random.RandomState(0).standard_normal([1, *inp.shape[1:]]).astype(np.float32)}
    for _ in range(warmup):
        sess.run(None, feed)
    lat = []
    start = time.perf_counter()
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, feed)
        lat.append(time.perf_counter() - t0)
    wall = time.perf_counter() - start
    return {"p50_ms": 1000 * float(np.median(lat)), "mean_ms": 1000 * float(np.mean(lat)),
            "wall_per_run_ms": 1000 * wall / runs}


def compress_loop(path: Path, runs: int, warmup: int, threads: int | None) -> dict:
    report = bench.run([path], None, bench.BenchOptions(runs=runs, warmup=warmup, threads=threads,
                                                  runtime=bench.Runtime(memory=False))).meta
    m = report["models"][0]
    return {"p50_ms": m["p50_ms"], "mean_ms": m["mean_ms"], "wall_per_run_ms": 1000 * report["loop_seconds"] / runs}


def measure(name: str, path: Path, runs: int, warmup: int, reps: int, threads: int | None) -> dict:
    pairs = []
    for rep in range(reps):
        order = ("bare", "compress") if rep % 4 in (0, 3) else ("compress", "bare")  # ABBA
        got = {}
        for which in order:
            loop = bare_loop if which == "bare" else compress_loop
            got[which] = loop(path, runs, warmup, threads)
        pairs.append({"order": list(order), **got,
                      "p50_overhead": got["compress"]["p50_ms"] / got["bare"]["p50_ms"] - 1,
                      "mean_overhead": got["compress"]["mean_ms"] / got["bare"]["mean_ms"] - 1,
                      "wall_overhead": got["compress"]["wall_per_run_ms"] / got["bare"]["wall_per_run_ms"] - 1})
        print(f"  {name} rep {rep + 1}/{reps}: bare p50 {got['bare']['p50_ms']:.4f} ms, "
              f"compress p50 {got['compress']['p50_ms']:.4f} ms ({pairs[-1]['p50_overhead']:+.2%})", flush=True)
    p50_over = statistics.median(p["p50_overhead"] for p in pairs)
    return {"model": name, "file_bytes": path.stat().st_size, "runs": runs, "warmup": warmup, "reps": reps,
            "bare_p50_ms": statistics.median(p["bare"]["p50_ms"] for p in pairs),
            "compress_p50_ms": statistics.median(p["compress"]["p50_ms"] for p in pairs),
            "p50_overhead": p50_over,
            "mean_overhead": statistics.median(p["mean_overhead"] for p in pairs),
            "wall_overhead": statistics.median(p["wall_overhead"] for p in pairs),
            "within_goal": abs(p50_over) <= GOAL, "pairs": pairs}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=8, help="alternations of the two loops per model")
    ap.add_argument("--threads", type=int, default=1,
                    help="intra-op threads for both (0: onnxruntime's default). 1 by default: the loop's overhead "
                         "does not depend on it, and a spinning thread pool on a busy small machine adds "
                         "tens of percent of scheduler noise that would hide it")
    ap.add_argument("--quick", action="store_true", help="a tenth of the runs, 4 reps")
    ap.add_argument("-o", "--output", type=Path, default=RESULTS)
    args = ap.parse_args()
    reps = 4 if args.quick else args.reps
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (spec, shape, runs, warmup) in MODELS.items():
            path = Path(tmp) / f"{name}.onnx"
            export_onnx(models.build(spec, shape, 10).model.eval(), shape, path)
            if args.quick:
                runs, warmup = max(20, runs // 10), max(2, warmup // 10)
            rows.append(measure(name, path, runs, warmup, reps, args.threads or None))
    result = {"kind": "bench-overhead", "goal": f"compress bench p50 within {GOAL:.0%} of a bare onnxruntime loop",
              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": host_facts(),
              "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
              "threads": args.threads, "quick": args.quick, "models": rows,
              "all_within_goal": all(r["within_goal"] for r in rows)}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\ncompress bench vs a bare onnxruntime loop on {result['host']['cpu']} "
          f"({result['host']['cores']} cores, load {result['load_average_1m']:.1f}), "
          f"threads {args.threads or 'default'}, median of {reps} ABBA pairs")
    print(f"{'model':<8} {'bytes':>12} {'runs':>6} {'bare p50 ms':>12} {'compress p50 ms':>16} "
          f"{'p50 overhead':>13} {'mean overhead':>14} {'wall/run overhead':>18}  goal")
    for r in rows:
        print(f"{r['model']:<8} {r['file_bytes']:>12,} {r['runs']:>6} {r['bare_p50_ms']:>12.4f} "
              f"{r['compress_p50_ms']:>16.4f} {r['p50_overhead']:>+13.2%} {r['mean_overhead']:>+14.2%} "
              f"{r['wall_overhead']:>+18.2%}  "
              f"{'ok' if r['within_goal'] else 'MISSED'} (±{GOAL:.0%})")
    print(f"wrote {args.output}")
    return 0 if result["all_within_goal"] else 1


if __name__ == "__main__":
    sys.exit(main())
