"""The paper's autoencoder experiments with `compress`, side by side with its figures, under EVALUATION.md.

The accordion autoencoder (A2E) on the credit-card fraud data and on MNIST classification:
out-of-order layer pruning (the analysis' priority; whole hidden layers go where that is the
cheapest step), complexity reduction in parameters and MACs, performance drop in points and in
relative %. Fraud reports ROC-AUC (its "performance") and PR-AUC with bootstrap 95% intervals.
The CNN half of the paper (AlexNet, VGG16) is benchmarks/paper_cnn.py's: both write
benchmarks/results/paper.json, each its own entries (do not run the two at once).

    python benchmarks/reproduce_paper.py [--quick] [--only a2e_fraud,a2e_fraud_anomaly,a2e_mnist] [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from common import RESULTS, host, summary, trained, write

from toolchain import analyze, artifact, data, export, prune, train
from toolchain.onnxio import onnx_logits

SWEEP = (0.25, 0.5, 0.75, 0.9)  # analysis ratios (the same sweep as prune_orders.py)
PAPER = {"alexnet": {"compression_x": 47.28}, "vgg16": {"compression_x": 35.21},  # the CNNs: paper_cnn.py
         "a2e_fraud": {"complexity_reduction_pct": 85.1, "performance_drop_pct": 4.9},
         "a2e_mnist": {"complexity_reduction_pct": 94.5, "performance_drop_pct": 13.6}}

EXPERIMENTS = ("a2e_fraud", "a2e_mnist", "a2e_fraud_anomaly")  # the last goes beyond the paper: an anomaly detector


@dataclass(frozen=True)
class Recipe:
    train_limit: int | None
    epochs: float
    keep: float
    max_drop: float | None
    finetune: float
    final: float
    step: float = 0.5
    lr: float = 0.01  # peak of the one-cycle fine-tuning schedule
    max_layer_ratio: float = 0.9  # how much of one layer may go


def _times(src: Path, start: float) -> dict:
    """Wall time of one experiment, training included even when the trained model came from the
    cache (its sidecar keeps the training seconds)."""
    train_s = artifact.Artifact.open(src).meta.get("report", {}).get("seconds", 0.0)
    pipeline_s = time.perf_counter() - start
    return {"train_s": round(train_s, 1), "pipeline_s": round(pipeline_s, 1), "wall_s": round(train_s + pipeline_s, 1)}


def plot(out: dict, dst: Path) -> str:
    """Ours beside the paper's: A2E complexity reduction and drop (%) (the CNNs: paper_cnn.py's plot)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, b = plt.subplots(figsize=(6, 4.2))
    ae = [n for n in ("a2e_fraud", "a2e_mnist") if n in out]
    for n, marker in zip(ae, ("o", "s"), strict=False):
        b.scatter(PAPER[n]["complexity_reduction_pct"], PAPER[n]["performance_drop_pct"], marker=marker, color="#999",
                  s=60, label=f"{n} paper")
        b.scatter(out[n]["complexity_reduction_pct"], out[n]["performance_drop_pct"], marker=marker,
                  color="#1f77b4", s=60, label=f"{n} compress")
    b.set_xlabel("complexity reduction (% fewer parameters)")
    b.set_ylabel("performance drop (relative %)")
    b.set_title("Accordion autoencoder: right and low is better")
    b.legend(fontsize=8, loc="center left")
    fig.tight_layout()
    fig.savefig(dst, dpi=110)
    plt.close(fig)
    return str(dst.relative_to(RESULTS.parents[1]))


def _bootstrap(y: np.ndarray, before: np.ndarray, after: np.ndarray, n: int = 1000, seed: int = 0) -> dict:
    """95% intervals over the test split (resampled with replacement) of ROC-AUC and PR-AUC, before,
    after and their drop: fraud has about 98 positives there, so a point estimate alone misleads."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(seed)
    stats = {k: [] for k in ("roc_auc_before", "roc_auc_after", "pr_auc_before", "pr_auc_after")}
    for _ in range(n):
        idx = rng.integers(0, len(y), len(y))
        if y[idx].min() == y[idx].max():
            continue
        stats["roc_auc_before"].append(roc_auc_score(y[idx], before[idx]))
        stats["roc_auc_after"].append(roc_auc_score(y[idx], after[idx]))
        stats["pr_auc_before"].append(average_precision_score(y[idx], before[idx]))
        stats["pr_auc_after"].append(average_precision_score(y[idx], after[idx]))
    out = {k: [round(float(np.percentile(v, 2.5)), 4), round(float(np.percentile(v, 97.5)), 4)]
           for k, v in stats.items()}
    for m in ("roc_auc", "pr_auc"):
        d = np.array(stats[f"{m}_before"]) - np.array(stats[f"{m}_after"])
        out[f"{m}_drop"] = [round(float(np.percentile(d, 2.5)), 4), round(float(np.percentile(d, 97.5)), 4)]
    return out | {"resamples": n, "positives": int(y.sum())}


def _scores(path: Path, test, reconstruct: bool) -> dict:
    from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

    x, y = test
    if reconstruct:  # the anomaly detector: its reconstruction error is the score
        score = _fraud_score(path, x, True)
        return {"roc_auc": round(float(roc_auc_score(y, score)), 4),
                "pr_auc": round(float(average_precision_score(y, score)), 4)}
    logits = onnx_logits(path, x)
    pred = logits.argmax(1)
    out = {"accuracy": round(100 * float((pred == y).mean()), 3)}
    if logits.shape[1] == 2:
        score = _fraud_score(path, x, False)
        out |= {"roc_auc": round(float(roc_auc_score(y, score)), 4),
                "pr_auc": round(float(average_precision_score(y, score)), 4),
                "f1_fraud": round(float(f1_score(y, pred)), 4)}
    return out


def a2e(name: str, data_spec: str, widths: str, args, recipe: Recipe, tmp: Path, head: str = "classifier") -> dict:
    """Out-of-order layer pruning of the accordion autoencoder: the analysis (validation split) ranks
    the hidden layers, the walk follows that priority, and a hidden layer goes whole where that is
    the cheapest step. `head="reconstruction"`: the autoencoder trained on normal transactions only,
    its reconstruction error the fraud score (every decision then reads validation ROC-AUC)."""
    start = time.perf_counter()
    recon = head == "reconstruction"
    spec = f"zoo:a2e?widths={widths}" + ("&head=reconstruction" if recon else "")
    src = trained(spec, data_spec, train.TrainOptions(epochs=recipe.epochs, lr=0.05, train_limit=recipe.train_limit))
    an = tmp / f"{name}.analysis.json"
    analyze.run(str(src), an, analyze.AnalyzeOptions(ratios=SWEEP, eval_samples=None, include_linear=True,
                                                           plots=False))
    ds = data.load(data_spec, artifact.Artifact.open(src).input_shape)
    test = (ds.test.tensors[0].numpy(), ds.test.tensors[1].numpy())
    before = tmp / f"{name}.onnx"
    export.run(str(src), before, export.ExportOptions())
    sb = _scores(before, test, recon)
    runs = []  # (pruned model, its ONNX, its scores) per fine-tune seed
    for seed in args.seeds:
        pruned, after = tmp / f"{name}.pruned.s{seed}.pt", tmp / f"{name}.pruned.s{seed}.onnx"
        prune.run(str(src), pruned, prune.PruneOptions(
            analysis=an, order=prune.Order.SENSITIVITY, plan=prune.Plan.FLOORS, target_params=recipe.keep,
            max_drop=recipe.max_drop, step=recipe.step, finetune_epochs=recipe.finetune, final_epochs=recipe.final,
            include_linear=True, val_samples=100_000, max_layer_ratio=recipe.max_layer_ratio, seed=seed),
            train_limit=recipe.train_limit)
        export.run(str(pruned), after, export.ExportOptions())
        runs.append((pruned, after, _scores(after, test, recon)))
    perf = "roc_auc" if "roc_auc" in sb else "accuracy"
    scale = 100 if perf == "roc_auc" else 1  # points: accuracy in %, ROC-AUC x 100
    drops = [scale * (sb[perf] - sa[perf]) for _, _, sa in runs]
    pruned, after, sa = runs[0]
    mb, ma = artifact.Artifact.open(src).metrics, artifact.Artifact.open(pruned).metrics
    d = summary(drops)
    out = {"complexity_reduction_pct": round(100 * (1 - ma["params"] / mb["params"]), 2),
           "macs_reduction_pct": round(100 * (1 - ma["macs"] / mb["macs"]), 2),
           "performance_metric": perf, "seeds": args.seeds,
           "performance_drop_pts": d["mean"], "performance_drop_pts_std": d["std"],
           "performance_drop_pct": round(100 * d["mean"] / (scale * sb[perf]), 2),
           "order": json.loads(an.read_text())["priority"], "decisions_split": "validation",
           "steps": [s for s in artifact.Artifact.open(pruned).meta["report"]["steps"] if s["accepted"]],
           "before": sb | {"params": mb["params"], "macs": mb["macs"], "spec": spec},
           "after": {k: summary([r[2][k] for r in runs])["mean"] for k in sa} | {
               "params": ma["params"], "macs": ma["macs"], "spec": artifact.Artifact.open(pruned).spec},
           "after_per_seed": [r[2] for r in runs],
           "recipe": recipe.__dict__, "data": data_spec, **_times(src, start), "host": host(),
           "paper": PAPER["a2e_fraud" if recon else name], "head": head}
    if perf == "roc_auc":  # the interval of the first seed's model
        out["bootstrap_95"] = _bootstrap(test[1], _fraud_score(before, test[0], recon),
                                         _fraud_score(after, test[0], recon))
    return out


def _fraud_score(path: Path, x: np.ndarray, reconstruct: bool) -> np.ndarray:
    out = onnx_logits(path, x)
    if reconstruct:
        return train.anomaly_score(torch.from_numpy(out), torch.from_numpy(x)).numpy()
    p = np.exp(out - out.max(1, keepdims=True))
    return p[:, 1] / p.sum(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=",".join(EXPERIMENTS))
    ap.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1, 2])
    ap.add_argument("--device", default="cpu", help="where training and fine-tuning run (cuda where lent)")
    ap.add_argument("--quick", action="store_true", help="minutes: small subsets and budgets (a smoke test)")
    args = ap.parse_args()
    q = args.quick
    recipes = {
        "a2e_fraud": Recipe(20000 if q else None, 1 if q else 3, 0.15, None, 0.05, 0.5 if q else 1.0),
        # the paper's 94.5% fewer parameters: the one hidden layer left must go below 10% of its width
        "a2e_mnist": Recipe(6000 if q else None, 1 if q else 5, 0.055, None, 0.1, 0.5 if q else 2.0,
                            max_layer_ratio=0.95),
        "a2e_fraud_anomaly": Recipe(20000 if q else None, 1 if q else 3, 0.15, None, 0.05, 0.5 if q else 1.0),
    }
    start, out = time.perf_counter(), {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only.split(","):
            if name not in EXPERIMENTS:
                ap.error(f"--only: {name} is not one of {', '.join(EXPERIMENTS)} (AlexNet, VGG16: paper_cnn.py)")
            if name == "a2e_fraud":
                out[name] = a2e(name, "fraud", "256,32,256,32", args, recipes[name], Path(tmp))
            elif name == "a2e_fraud_anomaly":
                out[name] = a2e(name, "fraud", "256,32,256,32", args, recipes[name], Path(tmp), head="reconstruction")
            elif name == "a2e_mnist":
                out[name] = a2e(name, "mnist", "512,64,512,64", args, recipes[name], Path(tmp))
            print(name, {k: v for k, v in out[name].items() if k.endswith(("_x", "_pts", "_pct", "rows"))}, flush=True)
    previous = RESULTS / ("paper" + ("_quick" if q else "") + ".json")
    if previous.exists():  # keep what an earlier run (or paper_cnn.py) measured and this one did not
        kept = json.loads(previous.read_text())
        out = {k: v for k, v in kept.items() if k not in out and k not in ("plot", "total_wall_s")} | out
    name_out = "paper" + ("_quick" if q else "")
    out["plot"] = plot(out, RESULTS / f"{name_out}.png")
    out["total_wall_s"] = round(sum(v["wall_s"] for k, v in out.items() if k in EXPERIMENTS), 1)
    write(name_out, out | {"quick": q, "run_s": round(time.perf_counter() - start, 1)})


if __name__ == "__main__":
    main()
