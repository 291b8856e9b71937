"""Breadth: every torchvision classification model through analyze → prune → quantize → export → bench.

This measures structure, not accuracy: random weights, `synthetic:` data and small inputs (64 px;
inception_v3 96, MaxViT 224, the size its attention windows need). Each model, in its own process
with a time limit (`--jobs` at a time; models over 400M parameters alone, after the rest, with the
threads of every job: two of them at once outgrow 24 GiB):

1. analyze at one ratio (0.5) on 32 validation images, fully-connected layers included (a vision
   transformer's prunable channels are its MLPs');
2. prune to half the parameters (the sensitivity plan, in one shot, no fine-tuning);
3. quantize all-int8 (static QDQ, 16 calibration images; `allow_slower`, so its speed guard is not
   timed: step 4 times the result), export with the fp32 ONNX checked against
   PyTorch (`parity_max_abs`), and export the unpruned fp32 model as the reference;
4. bench both, interleaved, one thread: p50 before and after.

A row is `ok` when every stage finished and the export's parity check passed, else `skipped`
with the stage and the reason. Rows are cached one by one under the compress cache, and the results
JSON is rewritten after every model, so a cut-short run resumes, on this machine from the cache and on
a fresh one from the committed benchmarks/results/zoo_breadth.json (each row keeps the date it was
measured); `--fresh` reruns them.

    python benchmarks/zoo_breadth.py [--only resnet18,vit_b_16] [--timeout 900] [--threads 1] [--jobs 1] [--fresh]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import RESULTS, write

from toolchain import data

SIZE, SIZES = 64, {"inception_v3": 96, "maxvit_t": 224, "vit_h_14": 56}  # ViT-H/14: a multiple of its patch
TARGET = 0.5
ALONE_PARAMS = 400_000_000  # models this large run alone, after the rest (memory, not time)
CELLS = data.CACHE_DIR / "zoo-breadth"


def spec(name: str) -> tuple[str, int]:
    size = SIZES.get(name, SIZE)
    extra = f"&image_size={size}" if name.startswith("vit_") else ""
    return f"torchvision:{name}?size={size}{extra}", size


def one(name: str, threads: int) -> dict:
    """Every stage for one model (run in a child process)."""
    import torch

    from toolchain import analyze, bench, export, prune, quantize
    from toolchain.errors import CompressError

    torch.set_num_threads(threads)
    model, size = spec(name)
    data_spec = f"synthetic:3x{size}x{size}:10"
    row: dict = {"model": name, "input": size, "status": "skipped"}
    stage, start, seconds = "build", time.perf_counter(), {}

    def lap(nxt: str) -> str:  # seconds per stage, for the table
        seconds[stage] = round(time.perf_counter() - start - sum(seconds.values()), 1)
        return nxt
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        try:
            stage = lap("analyze")
            analyze.run(model, tmp / "analysis.json", analyze.AnalyzeOptions(ratio=0.5, eval_samples=32,
                                                                             include_linear=True, plots=False,
                                               cache_dir=tmp / "cache", data=data_spec))
            stage = lap("prune")
            pruned = prune.run(model, tmp / "pruned.pt", prune.PruneOptions(
                analysis=tmp / "analysis.json", target_params=TARGET, plan=prune.Plan.SENSITIVITY,
                order=prune.Order.ONESHOT, finetune_epochs=0, final_epochs=0, include_linear=True, val_samples=32,
                data=data_spec))
            report = pruned.meta["report"]
            row |= {"params_before": report["before"]["params"], "params_after": report["after"]["params"],
                    "macs_before": report["before"]["macs"], "macs_after": report["after"]["macs"],
                    "layers_pruned": sum(1 for v in report["layers"].values() if v["after"] < v["before"])}
            stage = lap("quantize")
            quantize.run(str(tmp / "pruned.pt"), tmp / "int8.pt", quantize.QuantizeOptions(
                scope=quantize.Scope.ALL, samples=16, eval_samples=32, allow_slower=True))
            stage = lap("export")
            opts = export.ExportOptions(eval_samples=32)
            out = export.run(str(tmp / "int8.pt"), tmp / "int8.onnx", opts)
            parity = out.meta["report"]["parity"]
            row |= {"parity_max_abs": parity["max_abs_diff"], "parity_max_rel": parity["max_rel_diff"]}
            export.run(model, tmp / "fp32.onnx", export.ExportOptions(input_shape=(1, 3, size, size), eval_samples=32,
                                                                      data=data_spec))
            stage = lap("bench")
            rep = bench.run([tmp / "fp32.onnx", tmp / "int8.onnx"], None, bench.BenchOptions(runs=20, warmup=3,
                                                                                             threads=1)).meta
            before, after = rep["models"]
            row |= {"p50_before_ms": before["p50_ms"], "p50_after_ms": after["p50_ms"],
                    "bytes_before": before["bytes"], "bytes_after": after["bytes"], "status": "ok"}
        except CompressError as e:
            row["reason"] = f"{stage}: {e}"
        except Exception as e:  # noqa: BLE001 - a traceback is the finding this benchmark exists to count
            row["reason"] = f"{stage}: traceback: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            row["traceback"] = True
    lap("")
    row |= {"seconds": round(time.perf_counter() - start, 1), "stage_seconds": seconds}
    return row


def _size(name: str) -> int:
    """Parameters at ImageNet size, from torchvision's weight metadata (nothing is downloaded)."""
    from torchvision.models import get_model_weights

    return next(iter(get_model_weights(name))).meta["num_params"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", help="comma-separated model names to measure (default: every classification model); "
                                   "the results keep every other model's last row")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per model")
    ap.add_argument("--fresh", action="store_true", help="rerun models a previous run already measured")
    ap.add_argument("--since", help="rerun models last measured before this time (YYYY-MM-DD[THH:MM]), keep the rest")
    ap.add_argument("--max-minutes", type=float, help="start no model after this long; the rest are listed as not run")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads per model (1 leaves a core to anything else running: oversubscribed "
                         "OpenMP threads made every stage ~20x slower here)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="models at a time (much of the work is single-threaded Python: 2 jobs x 1 thread "
                         "on 2 cores; p50s are then measured under load, before and after alike)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.threads)))
        return
    import torchvision

    # smallest first: a cut-short run covers most
    names = sorted(torchvision.models.list_models(module=torchvision.models), key=_size)
    wanted = set(args.only.split(",") if args.only else names)
    if wanted - set(names):
        ap.error(f"not torchvision classification models: {', '.join(sorted(wanted - set(names)))}")
    CELLS.mkdir(parents=True, exist_ok=True)
    committed = RESULTS / "zoo_breadth.json"
    if committed.exists():  # rows measured in an earlier session, on a fresh machine
        earlier = json.loads(committed.read_text())
        for row in earlier.get("rows", []):
            row.setdefault("measured", earlier["created"][:10])
            if not (CELLS / f"{row['model']}.json").exists():
                (CELLS / f"{row['model']}.json").write_text(json.dumps(row))
    start, not_run, done_count, finished, lock = time.perf_counter(), [], [0], {}, threading.Lock()
    big = [n for n in names if _size(n) > ALONE_PARAMS]

    def measure(name: str, threads: int = args.threads) -> dict | None:
        cell = CELLS / f"{name}.json"
        late = args.max_minutes is not None and time.perf_counter() - start > 60 * args.max_minutes
        row = json.loads(cell.read_text()) if cell.exists() else None
        due = row is None or args.fresh or args.since is not None and row.get("measured", "") < args.since
        if name in wanted and due and not late:
            try:
                child = [sys.executable, __file__, "--one", name, "--threads", str(threads)]
                done = subprocess.run(child, capture_output=True, text=True, timeout=args.timeout)
                lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
                row = json.loads(lines[-1]) if lines else {
                    "model": name, "status": "skipped", "traceback": True,
                    "reason": f"crashed (exit {done.returncode}): {(done.stderr.strip().splitlines() or [''])[-1]}"
                    if done.returncode != -9 else "killed by the system (signal 9: out of memory)"}
            except subprocess.TimeoutExpired:
                row = {"model": name, "status": "skipped", "reason": f"over the {args.timeout} s limit per model"}
            row["measured"], row["threads"] = time.strftime("%Y-%m-%dT%H:%M"), threads
            cell.write_text(json.dumps(row))
        if row is None:  # not measured here (late, or not among --only) and never before
            not_run.append(name)
            return None
        with lock:
            finished[name] = row
            save([finished[n] for n in names if n in finished], [n for n in names if n not in finished])
        done_count[0] += 1
        print(f"[{done_count[0]}/{len(names)}] {name}: {row['status']} {row.get('reason', '')} "
              f"{row.get('params_before', '')}->{row.get('params_after', '')} {row.get('seconds', '')}s", flush=True)
        return row

    def save(rows: list[dict], not_run: list[str]) -> None:
        ok = [r for r in rows if r["status"] == "ok"]  # the fraction is of the models run; not_run lists the rest
        cpu_s = sum(r.get("seconds", args.timeout) for r in rows)
        alone_s = sum(r.get("seconds", args.timeout) for r in rows if r["model"] in big)
        write("zoo_breadth", {
            "what": "structure, not accuracy: random weights, synthetic data, small inputs",
            "input": {"default": SIZE, **SIZES}, "target_params": TARGET,
            "models": len(rows), "ok": len(ok), "ok_fraction": round(len(ok) / max(1, len(rows)), 3),
            "tracebacks": sum(1 for r in rows if r.get("traceback")), "goal_ok_fraction": 0.95,
            "rows": rows, "not_run": not_run, "jobs": args.jobs, "threads": args.threads,
            "model_seconds": round(cpu_s, 1), "alone": big,
            "measured_between": [min(r["measured"] for r in rows), max(r["measured"] for r in rows)] if rows else None,
            "estimated_wall_s": round((cpu_s - alone_s) / args.jobs + alone_s, 1),
            "note": "model_seconds sums each model's own wall time (all stages; a model over the time limit counts "
                    "the limit); estimated_wall_s is what one run of every row takes: the rest --jobs at a time, "
                    "the models in `alone` one by one; wall_s is this invocation's (cached rows cost nothing)",
            "wall_s": round(time.perf_counter() - start, 1)})

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(args.jobs) as pool:  # each model is its own process: threads only wait
        list(pool.map(measure, [n for n in names if n not in big]))
    for name in big:  # one at a time: two of them at once outgrow 24 GiB (ViT-H/14 was killed beside RegNetY-128GF)
        measure(name, args.threads * args.jobs)  # alone, a model has the cores the jobs had


if __name__ == "__main__":
    main()
