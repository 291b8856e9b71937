"""Strong baselines and their equal-budget controls (EVALUATION.md section 2).

The unpruned AlexNet-32 and VGG16-BN-32 are trained on the full Fashion-MNIST training data (the
validation split carved out of it, never trained on), with the recipe written beside the figure.
../shared/baselines holds both, trained with RECIPES below: `baseline()` takes them from there
(manifest and sha256 checked; see common.trained) and trains only where they are absent.
A compressed model that gets F epochs of fine-tuning is compared with the same baseline trained F
epochs more under the same schedule (`train.fit`, one-cycle at the fine-tune's peak rate), one
control per fine-tune seed (`control()`; paper_cnn.py runs them as its cells).

    python benchmarks/baselines.py [--only alexnet,vgg16] [--extra 2 --seeds 0,1,2] [--device cuda]
"""

from __future__ import annotations

import argparse
import time

from common import SHARED_BASELINES, sha256, trained, write

from toolchain import artifact, train

DATA = "fashion-mnist"
RECIPES = {  # plain training to the accuracy EVALUATION.md asks for (AlexNet >= 93.0%, VGG16-BN >= 93.5%)
    "alexnet": train.TrainOptions(epochs=6, lr=0.05, batch_size=128, seed=0),
    "vgg16": train.TrainOptions(epochs=4, lr=0.05, batch_size=128, seed=0),
}
FINETUNE_LR = 0.02  # the peak rate of the pruned models' final fine-tune, and so of the controls
GOALS = {"alexnet": 93.0, "vgg16": 93.5}


def baseline(name: str, device: str = "cpu"):
    return trained(f"zoo:{name}", DATA, RECIPES[name], device=device)


def control(name: str, extra: float, seed: int, device: str = "cpu"):
    """The baseline trained `extra` epochs more with the fine-tune's schedule and seed."""
    return trained(str(baseline(name, device)), DATA,
                   train.TrainOptions(epochs=extra, lr=FINETUNE_LR, seed=seed), device=device)


def _figures(path) -> dict:
    art = artifact.Artifact.open(path)
    m = art.metrics
    shared = path.parent == SHARED_BASELINES
    return {"val_top1": m.get("val_accuracy"), "test_top1": m["accuracy"], "test_samples": m["eval_samples"],
            "sha256": sha256(path), "file": path.name,
            "source": "../shared/baselines (read, not retrained)" if shared else "trained on this machine",
            "minutes": round(art.meta.get("report", {}).get("seconds", 0) / 60, 1),
            "validation": art.meta.get("data", {}).get("validation")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="alexnet,vgg16")
    ap.add_argument("--extra", type=float, default=2.0, help="fine-tune epochs the controls add")
    ap.add_argument("--seeds", default="", help="controls at these seeds (paper_cnn.py runs its own)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",") if s]
    import json

    from common import RESULTS
    old = RESULTS / "baselines.json"
    kept = json.loads(old.read_text()).get("models", {}) if old.exists() else {}
    out = {"data": DATA, "finetune_lr": FINETUNE_LR, "extra_epochs": args.extra, "models": kept,
           "provenance": {"seeds": seeds, "recipe": {n: vars(r) for n, r in RECIPES.items()}}}
    for name in args.only.split(","):
        start = time.perf_counter()
        base = _figures(baseline(name, args.device))
        row = {"recipe": vars(RECIPES[name]) | {"data": DATA, "split": "train minus validation"},
               "baseline": base, "goal_top1": GOALS[name], "meets_goal": base["test_top1"] >= GOALS[name],
               "controls": {}}
        out["models"][name] = row
        out["provenance"].setdefault("baselines", {})[base["file"]] = base["sha256"]
        write("baselines", out)  # the baseline alone is already a result
        for seed in seeds:
            row["controls"][str(seed)] = _figures(control(name, args.extra, seed, args.device))
            write("baselines", out)
        tops = [c["test_top1"] for c in row["controls"].values()]
        if tops:
            import statistics
            row["equal_budget_top1"] = {"mean": round(statistics.fmean(tops), 3),
                                        "std": round(statistics.stdev(tops), 3) if len(tops) > 1 else None,
                                        "seeds": seeds}
        row["wall_minutes"] = round((time.perf_counter() - start) / 60, 1)
        write("baselines", out)


if __name__ == "__main__":
    main()
