"""Plan x order on the strong baselines (issue 12): does the order matter with the allocation held
fixed, and does the sensitivity allocation beat uniform and global at the same size?

For each model (the cached strong baseline of benchmarks/baselines.py): the analysis sweep on the
validation split, then a grid of cells, each a plan (how many channels each layer keeps: sensitivity,
uniform, global) walked in an order (sensitivity priority, sequential, reverse, random), fitted to
one parameter target (within 1%), at each seed. Every cell gets the same in-walk fine-tuning per cut
and the same final fine-tuning (`--final-epochs`, the full training split); seeds vary the fine-tune
data order and the random order's permutation. Decisions read the validation split; the test split
reports each finished cell. Verdicts are paired by seed: "ahead" / "behind" only where the mean
difference exceeds twice its standard error, else "tie". Latency: every cell's seed-0 model and the
unpruned one as fp32 ONNX, timed interleaved in one onnxruntime run (threads fixed).

Each finished cell is cached under the compress cache, so a run cut short resumes where it stopped.

    python benchmarks/prune_orders.py --model alexnet [--grid order|plan|full] [--seeds 0,1,2] [--quick]

The headline order ablation (the sensitivity plan in each order, int8, beside the paper's rows) is
benchmarks/paper_cnn.py --parts orders; this script is the wider plan x order grid.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from pathlib import Path

import baselines
from common import paired_verdict, summary, trained, write

from toolchain import analyze, artifact, bench, data, export, prune, train
from toolchain.executor import Executor, run_units

RATIOS = (0.25, 0.5, 0.75, 0.9)
GRIDS = {  # (plan, order) cells; "order" and "plan" are the two questions, "full" crosses everything
    "order": [("sensitivity", o) for o in ("sensitivity", "sequential", "reverse", "random")]
    + [("uniform", "sensitivity"), ("global", "sensitivity")],
    "full": [(p, o) for p in ("sensitivity", "uniform", "global")
             for o in ("sensitivity", "sequential", "reverse", "random")],
}
GRIDS["plan"] = [(p, "sensitivity") for p in ("sensitivity", "uniform", "global")]


def _model(args) -> tuple[Path, str]:
    if args.quick:  # LeNet-5 on an MNIST subset: minutes, for smoke tests of this script
        return trained("zoo:lenet5", "mnist", train.TrainOptions(epochs=3, train_limit=6000)), "mnist"
    return baselines.baseline(args.model, args.device), baselines.DATA


def cell(model: Path, an: Path, plan: str, order: str, seed: int, args, cells: Path) -> dict:
    """One pruned, fine-tuned model of the grid (cached: reproduce_paper.py reuses the same cells)."""
    key = hashlib.sha256(json.dumps([str(model), plan, order, seed, args.target, args.final_epochs,
                                     args.finetune_epochs, args.step, args.lr, args.train_limit,
                                     args.val_samples]).encode()).hexdigest()
    done = cells / f"{plan}-{order}-s{seed}-{key[:10]}.json"
    if done.exists():
        return json.loads(done.read_text())
    opts = prune.PruneOptions(analysis=an, step=args.step, finetune_epochs=args.finetune_epochs,
                              final_epochs=args.final_epochs, lr=args.lr, include_linear=True,
                              val_samples=args.val_samples, seed=seed, device=args.device)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        res = prune.compare(str(model), Path(tmp) / "c.json", opts, targets=(args.target,),
                            orders=(prune.Order(order),), plans=(prune.Plan(plan),), cells_dir=cells,
                            train_limit=args.train_limit)
    row = res["rows"][0] | {"minutes": round((time.perf_counter() - start) / 60, 2)}
    artifact.write_json(row, done)
    return row


def _cell_unit(shared, unit) -> dict:
    """One grid cell as an executor unit (here or a Ray task)."""
    model, an, args, cells = shared
    plan, order, seed = unit
    return cell(model, an, plan, order, seed, args, cells)


def _latency(cells: list[dict], model: Path, args) -> dict:
    """fp32 ONNX of the unpruned model and of each cell (seed 0), timed interleaved in one run."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(tmp) / "unpruned.onnx"]
        export.run(str(model), paths[0], export.ExportOptions())
        for c in cells:
            paths.append(Path(tmp) / f"{c['plan']}-{c['order']}.onnx")
            export.run(c["model"], paths[-1], export.ExportOptions())
        rep = bench.run(paths, None, bench.BenchOptions(runs=args.runs, warmup=20, threads=args.threads)).meta
    t = {p.stem: {"p50_ms": m["p50_ms"], "p90_ms": m["p90_ms"]} for p, m in zip(paths, rep["models"], strict=True)}
    return {"threads": rep["threads"], "runs": rep["runs"], "load_before": rep["load_before"],
            "load_after": rep["load_after"], "loaded": rep["loaded"], "models": t}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="alexnet", choices=sorted(baselines.RECIPES))
    ap.add_argument("--grid", default="order", choices=sorted(GRIDS))
    ap.add_argument("--target", type=float, default=0.05, help="fraction of the parameters every cell keeps")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--final-epochs", type=float, default=2.0)
    ap.add_argument("--finetune-epochs", type=float, default=0.02, help="in-walk fine-tuning per cut")
    ap.add_argument("--step", type=float, default=0.5, help="fraction of a layer's channels one cut removes")
    ap.add_argument("--lr", type=float, default=baselines.FINETUNE_LR)
    ap.add_argument("--val-samples", type=int, default=2000)
    ap.add_argument("--train-limit", type=int, help="fine-tune on a subset (the figures are then for that budget)")
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="LeNet-5 on an MNIST subset, tiny budgets: a smoke test")
    ap.add_argument("--executor", default="local", choices=("local", "ray"),
                    help="run the analysis units and the grid cells here or on a Ray cluster (cells cached alike)")
    ap.add_argument("--address", help="the Ray cluster (default $RAY_ADDRESS, else a new local one)")
    args = ap.parse_args()
    executor = Executor(args.executor, args.address, workers=1)
    executor.validate()
    seeds = [int(s) for s in args.seeds.split(",") if s]
    if args.quick:
        args.final_epochs, args.finetune_epochs, args.train_limit, args.val_samples = 0.2, 0.02, 4000, 500
        args.runs, args.target = 100, 0.2
    start = time.perf_counter()
    model, data_spec = _model(args)
    name = "lenet5" if args.quick else args.model
    cells_dir = data.CACHE_DIR / "bench-cells" / name
    an = cells_dir / "analysis.json"
    t0 = time.perf_counter()
    if not an.exists():
        analyze.run(str(model), an, analyze.AnalyzeOptions(ratio=0.5, ratios=RATIOS, eval_samples=2000,
                                                                 include_linear=True, adapt_bn=1000, plots=False,
                                                                 workers=2 if args.executor == "local" else 1,
                                                                 executor=args.executor, address=args.address),
                    force=True)
    minutes = {"analysis": round((time.perf_counter() - t0) / 60, 1)}
    rows = []
    units = [(plan, order, seed) for seed in seeds for plan, order in GRIDS[args.grid]]
    for row in run_units(executor, _cell_unit, (model, an, args, cells_dir), units, threads=args.threads):
        rows.append(row)
        print(f"{row['plan']} plan, {row['order']} order, seed {row['seed']}: kept {row['kept']:.4f}, "
              f"test {row['top1']:.2f}%", flush=True)
    order_of = {u: i for i, u in enumerate(units)}  # the table's order, whatever order the cells finished in
    rows.sort(key=lambda r: order_of[(r["plan"], r["order"], r["seed"])])
    minutes["cells"] = round(sum(r.get("minutes", 0) for r in rows), 1)
    cells = []
    for plan, order in GRIDS[args.grid]:
        mine = [r for r in rows if (r["plan"], r["order"]) == (plan, order)]
        top1 = summary([r["top1"] for r in mine])
        cells.append({"plan": plan, "order": order, "target": args.target, "seeds": [r["seed"] for r in mine],
                      "kept": [r["kept"] for r in mine], "on_target": all(r["on_target"] for r in mine),
                      "macs": mine[0]["macs"], "macs_kept": mine[0]["macs_kept"], "model": mine[0]["model"],
                      "top1_mean": top1["mean"], "top1_std": top1["std"],
                      "val_top1_mean": summary([r["val_top1"] for r in mine])["mean"],
                      "top1": [r["top1"] for r in mine]})
    t0 = time.perf_counter()
    latency = _latency(cells, model, args)
    minutes["latency"] = round((time.perf_counter() - t0) / 60, 1)
    for c in cells:
        c |= latency["models"][f"{c['plan']}-{c['order']}"]
        c.pop("model")
    by = {(c["plan"], c["order"]): c for c in cells}
    verdicts = {"order (plan fixed), against the sensitivity order": {
        f"{p} plan: sensitivity vs {o}": paired_verdict(by[(p, "sensitivity")], by[(p, o)])
        for (p, o) in by if o != "sensitivity" and (p, "sensitivity") in by},
        "plan (order fixed), against the sensitivity plan": {
        f"{o} order: sensitivity vs {p}": paired_verdict(by[("sensitivity", o)], by[(p, o)])
        for (p, o) in by if p != "sensitivity" and ("sensitivity", o) in by}}
    base = artifact.Artifact.open(model)
    control = None
    if not args.quick:
        ctl = [artifact.Artifact.open(baselines.control(args.model, args.final_epochs, s, args.device)).metrics
               for s in seeds]
        control = summary([m["accuracy"] for m in ctl]) | {"seeds": seeds}
    # the headline order ablation on AlexNet and VGG16 is paper_cnn.py's (prune_orders_<model>.json); this grid
    # crosses plans and orders and keeps its own file
    write(f"prune_orders_quick_{name}" if args.quick else f"prune_orders_grid_{name}", {
        "model": name, "data": data_spec, "decisions_split": "validation", "grid": args.grid,
        "target": args.target, "seeds": seeds,
        "baseline_top1": base.metrics["accuracy"], "baseline_val_top1": base.metrics.get("val_accuracy"),
        "equal_budget_top1": control, "recipe": {k: v for k, v in vars(args).items() if k not in ("quick",)}
        | {"analysis_ratios": RATIOS, "analysis_adapt_bn": 1000, "analysis_eval_samples": 2000},
        "cells": cells, "verdicts": verdicts, "latency": {k: v for k, v in latency.items() if k != "models"},
        "minutes": minutes | {"wall": round((time.perf_counter() - start) / 60, 1)},
        "quick": args.quick, "synthetic": False})


if __name__ == "__main__":
    main()
