"""The paper's claim on AlexNet and VGG16 (issue 35), measured cell by cell and resumable across sessions.

Every figure starts from the shared strong baselines (../shared/baselines, sha256 checked; trained
here only when they are absent, and said so). One kept fraction, 5% of the parameters (fully-connected
layers included, within 1%), and one fine-tune budget for everything compared:

- `sensitivity`: the project's method, the paper's. The analysis sweep (validation split) plans how
  many channels each layer keeps, the walk cuts the layers in the analysis' priority with a short
  fine-tune per cut, then the final fine-tune, distilled from the baseline (RECOVERY). Exported as
  `fc-int8` (the paper's scheme: int8 fully-connected layers, float convolutions) and `all-int8`.
- `peer_global`: what a user does by hand. Torch-Pruning global L1 pruning with the same per-layer
  floor (max_pruning_ratio 0.9), in one shot, plain fine-tuning with the same epochs, onnxruntime
  static QDQ of every layer.
- `uniform`: the same ratio in every layer, walked and recovered as ours.
- `control`: the baseline trained as many epochs more as the largest total any compared model got
  (in-walk fine-tuning included), same schedule, per seed: the equal-budget baseline.
- ingredients: the recovery's parts, one removed at a time (distillation, the iterative walk) and
  the peer route given our recovery; orders: the sensitivity plan walked in each order.

A cell is one model at one seed. Each finished cell goes into benchmarks/results/paper.json at once
with its recipe key, and with `--commit` into a git commit of its own; a rerun skips every cell whose
key is unchanged, so a new session on a new machine continues where the last one stopped. The
analysis is committed too (benchmarks/results/paper_analysis_<model>.json). Decisions read the
validation split; the test split reports finished models only. Timing: the baseline and every row's
seed-0 ONNX file, interleaved in one onnxruntime run at one thread, after the load has settled.

    nice python benchmarks/paper_cnn.py [--models alexnet,vgg16] [--parts rows,controls,time,...] [--commit]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import subprocess
import tempfile
import time
from pathlib import Path

import baselines
from common import RESULTS, ROOT, load, paired_verdict, provenance, settle, sha256, summary

from toolchain import analyze, artifact, bench, data, export, prune, quantize
from toolchain.convert import onnx_accuracy

OUT = RESULTS / "paper.json"
TARGET = 0.05  # of the parameters, every row (the plan lands within 1% below it)
RATIOS = (0.25, 0.5, 0.75, 0.9)  # the analysis sweep
RECOVERY = {"distill": 0.7}  # the project's recovery: the baseline's soft targets in every fine-tune
WALK = {"step": 0.5, "finetune_epochs": 0.02, "final_epochs": 1.0, "lr": baselines.FINETUNE_LR,
        "val_samples": 2000, "max_layer_ratio": 0.9}
PAPER = {"alexnet": 47.28, "vgg16": 35.21}  # the paper's fc-int8 compression (CIFAR-10)
GOALS = {"all_int8_x": 80.0, "max_drop_pts": 1.0, "speedup_p50": {"alexnet": 40.0, "vgg16": 25.0}}
BN_IMAGES = 5000  # training images the BatchNorm statistics are re-estimated on (ingredient bn_reestimate)
SCHEMES = {"fp32": None, "fc-int8": quantize.Scope.FC, "all-int8": quantize.Scope.ALL}

# name: (plan, order, recovery, schemes exported)
ROUTES = {
    "sensitivity": ("sensitivity", "sensitivity", RECOVERY, ("fp32", "fc-int8", "all-int8")),
    "peer_global": ("global", "oneshot", {"distill": 0.0}, ("fp32", "all-int8")),
    "uniform": ("uniform", "sensitivity", RECOVERY, ("fp32", "fc-int8", "all-int8")),
    # ingredients: one part of the recovery taken away, or given to the peer
    "no_distill": ("sensitivity", "sensitivity", {"distill": 0.0}, ("fp32", "all-int8")),
    "oneshot": ("sensitivity", "oneshot", RECOVERY, ("fp32", "all-int8")),
    "global_distill": ("global", "oneshot", RECOVERY, ("fp32", "all-int8")),
    # the sensitivity route's own model, its BatchNorm statistics re-estimated on training images afterwards
    "bn_reestimate": ("sensitivity", "sensitivity", RECOVERY | {"bn_reestimate": BN_IMAGES}, ("fp32", "all-int8")),
    # the goals' own points: the sensitivity route at the kept fraction where a scheme reaches a compression
    "point_paper": ("sensitivity", "sensitivity", RECOVERY, ("fp32", "fc-int8")),  # fc-int8 at the paper's x
    "point_80x": ("sensitivity", "sensitivity", RECOVERY, ("fp32", "all-int8")),  # all-int8 at 80x
    # orders: the sensitivity plan walked in another order
    "order_sequential": ("sensitivity", "sequential", RECOVERY, ("fp32", "all-int8")),
    "order_reverse": ("sensitivity", "reverse", RECOVERY, ("fp32", "all-int8")),
    "order_random": ("sensitivity", "random", RECOVERY, ("fp32", "all-int8")),
}
PARTS = {"rows": ("sensitivity", "peer_global", "uniform"), "controls": (), "time": (), "summary": (),
         "ingredients": ("no_distill", "oneshot", "global_distill", "bn_reestimate"),
         "orders": ("order_sequential", "order_reverse", "order_random"), "points": ("point_paper", "point_80x")}
INGREDIENT_OF = {  # what the sensitivity route (all-int8) gains over each: that part's share
    "no_distill": "distillation from the baseline (the same walk, plain fine-tuning)",
    "oneshot": "the iterative walk (the same plan cut in one shot, the same epochs)",
    "global_distill": "the sensitivity plan against the peer's global plan, both given our recovery",
    "bn_reestimate": "BatchNorm re-estimated on training images after the fine-tune (negative: it would help)",
}


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Store:
    """paper.json's entry for one model: finished cells by name, each with the key of its recipe."""

    def __init__(self, model: str, commit: bool):
        self.model, self.commit = model, commit

    def read(self) -> dict:
        whole = json.loads(OUT.read_text()) if OUT.exists() else {}
        return whole.get(self.model, {})

    def cell(self, name: str, key: str) -> dict | None:
        row = self.read().get("cells", {}).get(name)
        return row if row and row.get("key") == key else None

    def write(self, entry: dict, message: str) -> None:
        whole = json.loads(OUT.read_text()) if OUT.exists() else {}
        whole[self.model] = entry
        artifact.write_json(whole, OUT)
        if self.commit:
            _commit(message, OUT, analysis_path(self.model), RESULTS / "paper_cnn.png")

    def put(self, name: str, row: dict) -> None:
        entry = self.read()
        entry.setdefault("cells", {})[name] = row
        self.write(entry, f"paper.json: {self.model} {name} (top-1 {_brief(row)})")


def _brief(row: dict) -> str:
    return ", ".join(f"{k} {v['top1']:.2f}" for k, v in row.get("schemes", {}).items()) or f"{row.get('top1')}"


def _commit(message: str, *paths: Path) -> None:
    """Commit these files alone, with docs/results.md rendered from them (a test holds the two equal, so
    a session cut off between cells leaves main green); retried while git is busy."""
    import sys

    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "make_results_md.py")], cwd=ROOT, capture_output=True)
    paths = (*paths, ROOT / "docs" / "results.md")
    rel = [str(p.relative_to(ROOT)) for p in paths if p.exists()]
    for attempt in range(10):
        subprocess.run(["git", "add", *rel], cwd=ROOT, capture_output=True)
        r = subprocess.run(["git", "commit", "-q", "-m", message, "--", *rel], cwd=ROOT, capture_output=True,
                           text=True)
        if r.returncode == 0 or "nothing" in r.stdout + r.stderr:
            return
        time.sleep(3 + attempt)
    print(f"could not commit {rel}: {r.stderr.strip()}", flush=True)


def analysis_path(model: str) -> Path:
    return RESULTS / f"paper_analysis_{model}.json"


def _analysis(model: str, src: Path) -> Path:
    """The sweep on the validation split, committed beside the results (prune refuses one made from
    another model file, so a stale one is redone)."""
    path = analysis_path(model)
    if path.exists() and json.loads(path.read_text()).get("model", {}).get("sha256") == sha256(src):
        return path
    analyze.run(str(src), path, analyze.AnalyzeOptions(ratio=0.5, ratios=RATIOS, eval_samples=2000,
                                                       include_linear=True, adapt_bn=1000, workers=2, plots=False),
                force=True)
    return path


def _files(model: str) -> Path:
    return data.CACHE_DIR / "paper" / model


def _pruned(model: str, src: Path, target: float, plan: str, order: str, folder: Path, walk: dict) -> dict:
    """One model of the plan walked in the order to `target` (prune's compare row; the model saved in `folder`)."""
    opts = prune.PruneOptions(analysis=analysis_path(model), target_params=target, include_linear=True, **walk)
    with tempfile.TemporaryDirectory() as tmp:
        res = prune.compare(str(src), Path(tmp) / "c.json", opts, targets=(target,), orders=(prune.Order(order),),
                            plans=(prune.Plan(plan),), cells_dir=folder)
    return res["rows"][0]


def _prune_cell(model: str, src: Path, route: str, seed: int, device: str, test, val, target: float = TARGET) -> dict:
    """One route at one seed: prune (plan, order, recovery), then each scheme as an ONNX file, its
    top-1 read in onnxruntime on the validation and the test split."""
    plan, order, recovery, schemes = ROUTES[route]
    folder = _files(model) / route
    start = time.perf_counter()
    if "bn_reestimate" in recovery:
        row, pruned = _bn_reestimated(model, seed, folder, recovery["bn_reestimate"])
    else:
        row = _pruned(model, src, target, plan, order, folder, WALK | recovery | {"seed": seed, "device": device})
        pruned = Path(row.pop("model"))
    out = {k: row[k] for k in ("params", "kept", "macs", "macs_kept", "on_target", "steps", "finetune_epochs_total",
                               "val_top1")} | {"seed": seed, "route": route, "plan": plan, "order": order,
                                               "target": target, "recovery": recovery, "schemes": {}}
    for scheme in schemes:
        onnx_path = folder / f"s{seed}-{scheme}.onnx"
        source = pruned
        if SCHEMES[scheme] is not None:
            source = folder / f"s{seed}-{scheme}.pt"
            quantize.run(str(pruned), source, quantize.QuantizeOptions(scope=SCHEMES[scheme], allow_slower=True,
                                                                       seed=seed), force=True)
        export.run(str(source), onnx_path, export.ExportOptions(), force=True)
        m = artifact.Artifact.open(onnx_path).metrics
        out["schemes"][scheme] = {"top1": round(onnx_accuracy(onnx_path, test), 3),
                                  "val_top1": round(onnx_accuracy(onnx_path, val), 3),
                                  "param_bytes": m["param_bytes"], "file_bytes": onnx_path.stat().st_size}
    return out | {"minutes": round((time.perf_counter() - start) / 60, 2)}


def _bn_reestimated(model: str, seed: int, folder: Path, images: int) -> tuple[dict, Path]:
    """The sensitivity cell's finished model with its BatchNorm statistics re-estimated on `images`
    training images (class-stratified, this seed): no training, the same budget. Needs that cell's
    model on this machine (its cell is run first in the ingredients part's order)."""
    import torch

    from toolchain import train

    cell = Store(model, False).read().get("cells", {}).get(f"sensitivity/s{seed}")
    pruned = _files(model) / "sensitivity" / f"sensitivity-sensitivity-{TARGET:g}-s{seed}.pt"
    if cell is None or not pruned.exists():
        raise SystemExit(f"{model} bn_reestimate/s{seed} needs the sensitivity cell's model {pruned}: rerun that "
                         "cell on this machine first")
    net, parent = artifact.load_model(pruned)
    ds = data.load(baselines.DATA, parent.input_shape)
    x, y = ds.train.tensors
    idx = data.stratified_indices(y, images, seed=seed)
    train.adapt_batchnorm(net, x[idx])
    folder.mkdir(parents=True, exist_ok=True)
    dst = folder / f"s{seed}.pt"
    meta = artifact.new_meta("prune", {"bn_reestimate": images, "from": pruned.name}, parent=parent,
                             spec=parent.spec, data=parent.meta.get("data"), input_shape=parent.input_shape,
                             num_classes=parent.meta["num_classes"], metrics=parent.metrics)
    artifact.save(net, dst, meta, force=True)
    with torch.inference_mode():
        val_top1 = train.evaluate(net, torch.utils.data.TensorDataset(*ds.val.tensors))
    keep = ("params", "kept", "macs", "macs_kept", "on_target", "steps", "finetune_epochs_total")
    return {k: cell[k] for k in keep} | {"val_top1": round(val_top1, 3)}, dst


POINTS = {"point_paper": ("fc-int8", lambda model: PAPER[model]),  # route: (scheme, its goal compression)
          "point_80x": ("all-int8", lambda _: GOALS["all_int8_x"])}


def _compression(model: str, src: Path, target: float, scheme: str, base_bytes: int) -> float:
    """The compression the sensitivity route reaches at `target` in `scheme`: its plan walked with no
    fine-tuning (sizes do not depend on training), quantized, exported, bytes counted. No accuracy is
    read: choosing a point by its size sees neither split."""
    with tempfile.TemporaryDirectory() as tmp:
        row = _pruned(model, src, target, "sensitivity", "sensitivity", Path(tmp),
                      WALK | {"finetune_epochs": 0.0, "final_epochs": 0.0})
        pruned, q, onnx_path = Path(row["model"]), Path(tmp) / "q.pt", Path(tmp) / "q.onnx"
        quantize.run(str(pruned), q, quantize.QuantizeOptions(scope=SCHEMES[scheme], allow_slower=True, samples=32))
        export.run(str(q), onnx_path, export.ExportOptions())
        return base_bytes / artifact.Artifact.open(onnx_path).metrics["param_bytes"]


def _point_target(model: str, src: Path, route: str, store: Store) -> float:
    """The kept fraction at which the route's scheme first reaches its goal compression (bisected on
    size alone; recorded in paper.json so that every session plans the same point)."""
    entry = store.read()
    known = entry.get("point_targets", {}).get(route)
    if known:
        return known["target"]
    scheme, goal = POINTS[route][0], POINTS[route][1](model)
    lo, hi, probes = 0.005, 0.1, []  # compression falls as the kept fraction rises
    for _ in range(7):
        mid = round((lo + hi) / 2, 5)
        x = _compression(model, src, mid, scheme, entry["baseline_param_bytes"])
        probes.append({"target": mid, "compression_x": round(x, 3)})
        lo, hi = (mid, hi) if x >= goal else (lo, mid)
        print(f"{model} {route}: kept {mid:.4f} gives {scheme} {x:.2f}x (goal {goal}x)", flush=True)
    entry.setdefault("point_targets", {})[route] = {"target": lo, "scheme": scheme, "goal_x": goal,
                                                    "probes": probes}
    store.write(entry, f"paper.json: {model} {route}'s kept fraction ({lo:.4f}, by size alone)")
    return lo


def _budget(entry: dict) -> float | None:
    """The control's extra epochs: the largest total fine-tune any headline cell got, rounded up to
    0.1 epoch (the control never gets less than a compressed model did)."""
    spent = [c["finetune_epochs_total"] for n, c in entry.get("cells", {}).items()
             if c.get("route") in PARTS["rows"]]
    return math.ceil(max(spent) * 10 - 1e-9) / 10 if spent else None


def _control_cell(model: str, epochs: float, seed: int, device: str) -> dict:
    start = time.perf_counter()
    path = baselines.control(model, epochs, seed, device)
    m = artifact.Artifact.open(path).metrics
    return {"route": "control", "seed": seed, "epochs": epochs, "top1": m["accuracy"],
            "val_top1": m.get("val_accuracy"), "test_samples": m["eval_samples"],
            "minutes": round((time.perf_counter() - start) / 60, 2)}


def _time(model: str, src: Path, entry: dict, runs: int) -> dict:
    """The baseline and every row's seed-0 ONNX file, interleaved in one run after the load settled."""
    files = {"baseline-fp32": _files(model) / "baseline.onnx"}
    export.run(str(src), files["baseline-fp32"], export.ExportOptions(), force=True)
    for _, cell in sorted(entry.get("cells", {}).items()):
        if cell.get("seed") == 0 and "schemes" in cell:
            for scheme in cell["schemes"]:
                path = _files(model) / cell["route"] / f"s0-{scheme}.onnx"
                if path.exists():
                    files[f"{cell['route']}:{scheme}"] = path
                else:
                    print(f"not timed: {path} is not on this machine (rerun its cell)", flush=True)
    waited = settle()
    rep = bench.run(list(files.values()), None, bench.BenchOptions(runs=runs, warmup=20, threads=1)).meta
    times = {label: {"p50_ms": m["p50_ms"], "p90_ms": m["p90_ms"]}
             for label, m in zip(files, rep["models"], strict=True)}
    return {"models": times, "threads": rep["threads"], "runs": rep["runs"], "settle_s": waited,
            "load_before": rep["load_before"], "load_after": rep["load_after"], "loaded": rep["loaded"],
            "date": artifact.now()}


def _route_top1(entry: dict, route: str, scheme: str) -> dict:
    """A route's top-1 per seed in one scheme, at the seeds the run was planned with (a seed added later
    is never counted: EVALUATION.md section 3); a cell off the size target (more than 1% from it) is
    listed under `off_target` and not counted (section 4)."""
    planned = entry.get("seeds")
    found = sorted((c for c in entry.get("cells", {}).values() if c.get("route") == route and scheme in
                    c.get("schemes", {}) and (planned is None or c["seed"] in planned)), key=lambda c: c["seed"])
    cells = [c for c in found if c["on_target"]]
    return {"seeds": [c["seed"] for c in cells], "top1": [c["schemes"][scheme]["top1"] for c in cells],
            "val_top1": [c["schemes"][scheme]["val_top1"] for c in cells], "cells": cells,
            "off_target": [c["seed"] for c in found if not c["on_target"]]}


def summarize(model: str, entry: dict, seeds: list[int]) -> dict:
    """The rows, computed from the cells (never typed): per row its size, MACs, bytes, compression,
    top-1 over seeds, drop against the equal-budget control, paired verdicts, and speed-up."""
    controls = sorted((c for c in entry.get("cells", {}).values() if c.get("route") == "control"
                       and c["seed"] in seeds), key=lambda c: c["seed"])
    control = {"seeds": [c["seed"] for c in controls], "top1": [c["top1"] for c in controls]}
    ctl = summary(control["top1"]) if controls else None
    timing = entry.get("timing", {}).get("models", {})
    base_bytes = entry.get("baseline_param_bytes")
    base_p50 = timing.get("baseline-fp32", {}).get("p50_ms")
    labels = {"fc-int8": ("sensitivity", "fc-int8"), "all-int8": ("sensitivity", "all-int8"),
              "pruned-fp32": ("sensitivity", "fp32"), "peer_global": ("peer_global", "all-int8"),
              "uniform": ("uniform", "all-int8"), "uniform-fc-int8": ("uniform", "fc-int8")}
    labels |= {r: (r, "all-int8") for r in (*PARTS["ingredients"], *PARTS["orders"])}
    labels |= {r: (r, scheme) for r, (scheme, _) in POINTS.items()}
    rows = {}
    for label, (route, scheme) in labels.items():
        got = _route_top1(entry, route, scheme)
        if not got["cells"]:
            continue
        cells = got["cells"]
        st = summary(got["top1"])
        first = cells[0]
        sch = first["schemes"][scheme]
        row = {"route": route, "scheme": scheme, "seeds": got["seeds"], "top1": got["top1"],
               "top1_mean": st["mean"], "top1_std": st["std"], "val_top1_mean": summary(got["val_top1"])["mean"],
               "kept": round(summary([c["kept"] for c in cells])["mean"], 5),
               "on_target": not got["off_target"], "off_target_seeds": got["off_target"],
               "params": first["params"], "macs": first["macs"],
               "macs_kept": first["macs_kept"], "param_bytes": sch["param_bytes"], "file_bytes": sch["file_bytes"],
               "compression_x": round(base_bytes / sch["param_bytes"], 2) if base_bytes else None,
               "finetune_epochs_total": max(c["finetune_epochs_total"] for c in cells),
               "complete": got["seeds"] == seeds}
        if ctl:
            row["drop_pts"] = round(ctl["mean"] - st["mean"], 3)
            row["vs_control"] = paired_verdict(got, control)
        t = timing.get(f"{route}:{scheme}")
        if t and base_p50:
            row |= {"p50_ms": t["p50_ms"], "p90_ms": t["p90_ms"], "speedup_p50": round(base_p50 / t["p50_ms"], 2)}
        rows[label] = row
    for row in rows.values():  # paired against the peer and uniform, in the same scheme (the peer: all-int8)
        for other in ("peer_global", "uniform"):
            scheme = row["scheme"] if _route_top1(entry, other, row["scheme"])["cells"] else "all-int8"
            peer = _route_top1(entry, other, scheme)
            if peer["cells"] and row["route"] != other:
                row[f"vs_{other}"] = paired_verdict(row, peer) | {"scheme": scheme}
    ingredients = {r: paired_verdict(rows["all-int8"], rows[r]) | {"what": INGREDIENT_OF[r]}
                   for r in PARTS["ingredients"] if r in rows and "all-int8" in rows}
    if "pruned-fp32" in rows and "all-int8" in rows:  # the most quantization-aware fine-tuning could win back
        ingredients["int8"] = paired_verdict(rows["all-int8"], rows["pruned-fp32"]) | {
            "what": "int8 itself (all-int8 against the same pruned model in fp32: what QAT could recover at most)"}
    orders = {r.removeprefix("order_"): paired_verdict(rows["all-int8"], rows[r])
              for r in PARTS["orders"] if r in rows and "all-int8" in rows}
    goals = {}
    if "fc-int8" in rows and "all-int8" in rows and ctl:
        fc, al = rows["fc-int8"], rows["all-int8"]
        goals = {"fc_int8_x": {"goal": PAPER[model], "got": fc["compression_x"],
                               "met": (fc["compression_x"] or 0) >= PAPER[model]},
                 "all_int8_x": {"goal": GOALS["all_int8_x"], "got": al["compression_x"],
                                "met": (al["compression_x"] or 0) >= GOALS["all_int8_x"]},
                 "fc_int8_drop_pts": {"goal": GOALS["max_drop_pts"], "got": fc["drop_pts"],
                                      "met": fc["drop_pts"] <= GOALS["max_drop_pts"]},
                 "all_int8_drop_pts": {"goal": GOALS["max_drop_pts"], "got": al["drop_pts"],
                                       "met": al["drop_pts"] <= GOALS["max_drop_pts"]},
                 "ahead_of_peer_global": {"goal": "ahead (2 SE)", "got": al.get("vs_peer_global", {}).get("verdict"),
                                          "met": al.get("vs_peer_global", {}).get("verdict") == "ahead"}}
        for route, (_, goal) in POINTS.items():  # the goals' own points: the drop where the size is met
            if route in rows and "drop_pts" in rows[route]:
                r = rows[route]
                goals[f"{route}_drop_pts"] = {"goal": GOALS["max_drop_pts"], "got": r["drop_pts"],
                                              "at_x": r["compression_x"], "goal_x": goal(model),
                                              "met": r["drop_pts"] <= GOALS["max_drop_pts"]}
        if "speedup_p50" in al:
            goal = GOALS["speedup_p50"][model]
            goals["speedup_p50"] = {"goal": goal, "got": al["speedup_p50"], "met": al["speedup_p50"] >= goal}
    return {"rows": rows, "equal_budget_top1": ctl and ctl["mean"], "equal_budget_std": ctl and ctl["std"],
            "equal_budget": control, "goals": goals, "ingredients": ingredients, "order_verdicts": orders}


def plot(whole: dict, dst: Path) -> str | None:
    """Top-1 against compression per row and model, beside the paper's point and the goals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = [m for m in PAPER if whole.get(m, {}).get("rows")]
    if not models:
        return None
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4.4), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        entry = whole[model]
        for label, row in entry["rows"].items():
            if row.get("compression_x") and label in ("fc-int8", "all-int8", "pruned-fp32", "peer_global", "uniform"):
                ax.errorbar(row["compression_x"], row["top1_mean"], yerr=row["top1_std"] or 0, fmt="o", capsize=3,
                            label=f"{label} ({len(row['seeds'])} seeds)")
        ctl = entry.get("equal_budget_top1")
        if ctl:
            ax.axhline(ctl, color="k", lw=1, label="equal-budget control")
            ax.axhline(ctl - GOALS["max_drop_pts"], color="k", lw=1, ls=":", label="goal: 1 point below it")
        ax.axvline(PAPER[model], color="#999", ls="--", label=f"paper, fc-int8: {PAPER[model]}x (CIFAR-10)")
        ax.axvline(GOALS["all_int8_x"], color="#2ca02c", ls=":", label=f"goal, all-int8: {GOALS['all_int8_x']:g}x")
        ax.set_xlabel("fp32 parameter bytes / final parameter bytes (x)")
        ax.set_ylabel("test top-1 (%), mean ± std over seeds")
        ax.set_title(f"{model}, 5% of the parameters kept")
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(dst, dpi=110)
    plt.close(fig)
    return str(dst.relative_to(ROOT))


def orders_file(model: str, entry: dict) -> dict | None:
    """prune_orders_<model>.json: the sensitivity plan walked in each order (all-int8, the same size,
    budget and seeds), a cell per order and a paired verdict of the sensitivity order against each."""
    rows = entry.get("rows", {})
    cells = [("sensitivity", rows.get("all-int8"))] + [(r.removeprefix("order_"), rows.get(r)) for r in PARTS["orders"]]
    cells = [(o, r) for o, r in cells if r]
    if len(cells) < 2:
        return None
    timing = entry.get("timing", {})
    return {"model": model, "data": entry["data"], "plan": "sensitivity", "scheme": "all-int8",
            "target": TARGET, "seeds": entry["seeds"], "decisions_split": "validation",
            "baseline_sha256": entry["baseline_sha256"], "equal_budget_top1": entry.get("equal_budget_top1"),
            "cells": [{"order": o, "kept": r["kept"], "on_target": r["on_target"], "macs": r["macs"],
                       "p50_ms": r.get("p50_ms"), "seeds": r["seeds"], "top1": r["top1"], "top1_mean": r["top1_mean"],
                       "top1_std": r["top1_std"], "complete": r["complete"]} for o, r in cells],
            "verdicts": {f"sensitivity vs {o}": v for o, v in entry.get("order_verdicts", {}).items()},
            "latency": {k: timing.get(k) for k in ("threads", "runs", "load_before", "load_after", "loaded", "date")},
            "provenance": entry.get("provenance"), "source": "benchmarks/paper_cnn.py --parts orders"}


def run_model(model: str, parts: list[str], seeds: list[int], args) -> None:
    store = Store(model, args.commit)
    src = baselines.baseline(model, args.device)
    digest = sha256(src)
    recipe = {"target": TARGET, "walk": WALK, "recovery": RECOVERY, "analysis_ratios": RATIOS,
              "routes": {k: list(v[:2]) + [v[2]] for k, v in ROUTES.items()}}
    entry = store.read()
    base = artifact.Artifact.open(src)
    with tempfile.TemporaryDirectory() as tmp:
        base_onnx = Path(tmp) / "b.onnx"
        export.run(str(src), base_onnx, export.ExportOptions())
        base_bytes = artifact.Artifact.open(base_onnx).metrics["param_bytes"]
    entry |= {"model": f"zoo:{model}", "data": baselines.DATA, "baseline_sha256": digest,
              "baseline_file": src.name, "baseline_top1": base.metrics["accuracy"],
              "baseline_val_top1": base.metrics.get("val_accuracy"), "baseline_param_bytes": base_bytes,
              "baseline_recipe": base.meta["lineage"][0]["options"], "seeds": entry.get("seeds", seeds),
              "decisions_split": "validation", "target": TARGET, "paper_compression_x": PAPER[model]}
    if set(seeds) - set(entry["seeds"]):
        print(f"{model}: seeds {sorted(set(seeds) - set(entry['seeds']))} are run and shown, not counted: the "
              f"verdicts stay at the seeds the run was planned with, {entry['seeds']}", flush=True)
    store.write(entry, f"paper.json: {model} baseline")
    parts_log = entry.setdefault("parts", {})
    t0, l0 = time.perf_counter(), load()
    an = _analysis(model, src)
    ds = data.load(baselines.DATA, base.input_shape)
    val = (ds.val.tensors[0].numpy(), ds.val.tensors[1].numpy())
    test = (ds.test.tensors[0].numpy(), ds.test.tensors[1].numpy())
    parts_log["analysis"] = {"minutes": round((time.perf_counter() - t0) / 60, 2), "load_before": l0,
                             "load_after": load(), "file": str(an.relative_to(ROOT))}
    for part in parts:
        t0, l0 = time.perf_counter(), load()
        if part == "controls":
            epochs = _budget(store.read())
            if epochs is None:
                print(f"{model}: no headline cell yet, so no budget for the controls", flush=True)
                continue
            for seed in seeds:
                name, key = f"control/s{seed}", _key("control", digest, epochs, baselines.FINETUNE_LR, seed)
                if store.cell(name, key) is None:
                    store.put(name, _control_cell(model, epochs, seed, args.device) | {"key": key})
                print(f"{model} {name}: done", flush=True)
        elif part == "time":
            entry = store.read()
            entry["timing"] = _time(model, src, entry, args.runs)
            store.write(entry, f"paper.json: {model} timing")
        else:
            for route in PARTS[part]:
                target = _point_target(model, src, route, store) if route in POINTS else TARGET
                for seed in seeds:
                    name = f"{route}/s{seed}"
                    key = _key(ROUTES[route], digest, target, WALK, RATIOS, seed)
                    if store.cell(name, key) is None:
                        store.put(name, _prune_cell(model, src, route, seed, args.device, test, val, target)
                                  | {"key": key})
                    print(f"{model} {name}: {_brief(store.read()['cells'][name])}", flush=True)
        entry = store.read()
        entry.setdefault("parts", {})[part] = {"minutes": round((time.perf_counter() - t0) / 60, 2),
                                               "load_before": l0, "load_after": load()}
        entry |= summarize(model, entry, entry["seeds"])
        entry["provenance"] = provenance(seeds, recipe, {Path(src).name: digest}, entry["parts"])
        entry["control_epochs"] = _budget(entry)
        store.write(entry, f"paper.json: {model} {part} summary")
        plot(json.loads(OUT.read_text()), RESULTS / "paper_cnn.png")
        orders = orders_file(model, entry)
        if orders:
            path = RESULTS / f"prune_orders_{model}.json"
            artifact.write_json(orders, path)
            if args.commit:
                _commit(f"prune_orders_{model}.json from paper.json's order cells", path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="alexnet,vgg16")
    ap.add_argument("--parts", default="rows,controls,time,ingredients,orders",
                    help=f"in this order, per model; of {', '.join(PARTS)}")
    ap.add_argument("--seeds", default="0,1,2", help="fixed before the run; the same for every cell")
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--commit", action="store_true", help="commit paper.json after every finished cell")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",") if s]
    parts = [p for p in args.parts.split(",") if p]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        ap.error(f"unknown parts {unknown}; known: {', '.join(PARTS)}")
    for model in args.models.split(","):
        run_model(model, parts, seeds, args)


if __name__ == "__main__":
    main()
