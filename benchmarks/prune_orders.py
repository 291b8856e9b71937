"""Issue 4 benchmark: does the pruning order matter? VGG16-BN and AlexNet on Fashion-MNIST (32x32).

For each model: train (cached outside the repo), analyze (each layer alone at 25/50/75/90%: the
sensitivity plan reads how far each layer may go from that curve; BatchNorm statistics re-estimated on
1000 training images after each cut, `--adapt-bn`), then
`prune.compare` keeps 10%, 5% and 3% of the parameters with every order. Protocol, the same for
every order: no fine-tuning inside the walk, then the same final fine-tuning of every kept model
(`--final-epochs` on the training subset), accuracy on the full test set. Fine-tuning uses a
class-stratified training subset (`--train-limit`) to fit the machine: the figures are for that
budget, not for a full training run.

    python benchmarks/prune_orders.py [--models vgg16,alexnet] [--quick]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from common import RESULTS, host, trained, write

from toolchain import analyze, artifact, prune, train
from toolchain.report import plot_orders


def one(spec: str, args, tmp: Path) -> dict:
    model = trained(spec, args.data, train.TrainOptions(epochs=args.epochs, lr=0.05, train_limit=args.train_limit))
    start = time.perf_counter()
    an = tmp / f"{spec.split(':')[1]}.analysis.json"
    analyze.run(str(model), None, an, analyze.AnalyzeOptions(ratio=0.5, ratios=tuple(args.ratios), workers=2,
                                                             eval_samples=args.eval_samples, include_linear=True,
                                                             adapt_bn=args.adapt_bn, plots=False))
    analysis_s = time.perf_counter() - start
    opts = prune.PruneOptions(analysis=an, step=args.step, finetune_epochs=0, final_epochs=args.final_epochs,
                              lr=0.01, include_linear=True, val_samples=args.eval_samples)
    out = RESULTS / f"prune_orders{'_quick' if args.quick else ''}_{spec.split(':')[1]}.json"
    result = prune.compare(str(model), None, out, opts, targets=tuple(args.targets), force=True,
                           train_limit=args.train_limit)
    result["analysis_seconds"] = round(analysis_s, 1)
    return result


def verdict(result: dict) -> dict:
    """Sensitivity against each other order at each target: the accuracy difference in points."""
    by = {(r["order"], r["target"]): r for r in result["rows"] if r["reached"]}
    out = {}
    for t in result["targets"]:
        s = by.get(("sensitivity", t))
        if s is None:
            continue
        out[str(t)] = {o: round(s["accuracy"] - by[(o, t)]["accuracy"], 2)
                       for o in ("sequential", "reverse", "random", "uniform", "global") if (o, t) in by}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="vgg16,alexnet")
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--targets", type=lambda s: [float(t) for t in s.split(",")], default=[0.1, 0.05, 0.03])
    ap.add_argument("--ratios", type=lambda s: [float(t) for t in s.split(",")], default=[0.25, 0.5, 0.75, 0.9],
                    help="the analysis sweep: each layer alone at each ratio")
    ap.add_argument("--adapt-bn", type=int, default=1000, help="analyze --adapt-bn: BatchNorm re-estimated on N images")
    ap.add_argument("--train-limit", type=int, default=20000)
    ap.add_argument("--epochs", type=float, default=2)
    ap.add_argument("--final-epochs", type=float, default=0.5)
    ap.add_argument("--step", type=float, default=0.5)
    ap.add_argument("--eval-samples", type=int, default=500)
    ap.add_argument("--quick", action="store_true", help="minutes: 4000-sample subset, one target, tiny budgets")
    ap.add_argument("--fresh", action="store_true", help="forget models measured by an earlier run")
    ap.add_argument("--collect", action="store_true",
                    help="measure nothing: gather the per-model results (prune_orders_NAME.json) of a run cut short")
    args = ap.parse_args()
    if args.quick:
        args.train_limit, args.epochs, args.final_epochs, args.targets, args.eval_samples = 4000, 1, 0.2, [0.1], 200
    start = time.perf_counter()
    requested = args.models.split(",")
    name_out = "prune_orders" + ("_quick" if args.quick else "")
    previous = RESULTS / f"{name_out}.json"
    results = {}
    if previous.exists() and not args.fresh:  # a run cut short keeps the models it finished
        results = {k: v for k, v in json.loads(previous.read_text())["models"].items() if k not in requested}
    with tempfile.TemporaryDirectory() as tmp:
        for name in requested:
            done = RESULTS / f"{name_out}_{name}.json"
            if args.collect and not done.exists():
                continue
            if args.collect:  # the per-model comparison an earlier run of this script finished
                r = json.loads(done.read_text()) | {"analysis_seconds": None}
                plot_orders(r, Path(r["plot"]))
            else:
                r = one(f"zoo:{name}", args, Path(tmp))
            results[name] = {"baseline": r["baseline"], "rows": r["rows"], "verdict": verdict(r),
                             "seconds": r["seconds"], "analysis_seconds": r["analysis_seconds"], "plot": r["plot"],
                             "host": host(), "created": r.get("created") or artifact.now()}
            print(f"{name}: {verdict(r)}", flush=True)
            write(name_out, {
                "data": args.data, "targets": args.targets, "train_limit": args.train_limit,
                "train_epochs": args.epochs, "final_epochs": args.final_epochs, "step": args.step,
                "eval_samples": args.eval_samples, "analysis_ratios": args.ratios, "adapt_bn": args.adapt_bn,
                "requested": ["vgg16", "alexnet"],
                "protocol": "no fine-tuning inside the walk; every kept model gets the same final fine-tuning",
                "models": results, "wall_s": round(time.perf_counter() - start, 1)})


if __name__ == "__main__":
    main()
