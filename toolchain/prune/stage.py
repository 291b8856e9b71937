"""`compress prune` end to end: set up, search, write the pruned model with its report; and the
comparison of plans and orders at equal size (`--compare-orders`)."""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

from .. import artifact, data, surgery
from ..artifact import ANALYSIS_SCHEMA as SCHEMA
from ..cost import channel_counts
from ..errors import CompressError
from ..fileio import read_json
from ..onnxio import input_dims
from ..plots import plot_orders
from ..progress import task
from ..target import load_target
from ..train import (
    Prepared,
    data_meta,
    evaluate,
    fit,
    metric_name,
    model_digest,
    prepare,
    teacher_logits,
)
from .latency import measured_latency_plan
from .options import ORDERED, PLAN_TOLERANCE, Order, Plan, PruneOptions
from .plans import layer_order, make_plan
from .search import _apply, _floors, _Search
from .walk import _one_shot, _ordered

logger = logging.getLogger(__name__)


def _load_analysis(path: Path, prep: Prepared) -> dict:
    """The analysis file, refused unless it was made from this very model (by sha256, not only by
    spec: a retrained model of the same spec ranks its layers differently)."""
    spec, input_shape = prep.spec, prep.input_shape
    result = read_json(path, "analysis")
    if not isinstance(result, dict) or result.get("kind") != "compress-analysis" or "priority" not in result:
        raise CompressError(f"{path} is not an analysis from `compress analyze`")
    if result.get("schema") != SCHEMA:
        raise CompressError(f"{path} has analysis schema {result.get('schema')}, this version reads {SCHEMA}; "
                            f"rerun `compress analyze`")
    model = result.get("model", {})
    if model.get("spec") != spec or list(model.get("input_shape", [])) != list(input_shape):
        raise CompressError(f"{path} analyzes {model.get('spec')} {model.get('input_shape')}, "
                            f"not this model ({spec} {list(input_shape)})")
    if model.get("sha256") != model_digest(prep):
        raise CompressError(f"{path} was made from another model file (sha256 {str(model.get('sha256'))[:12]}, "
                            f"this one {model_digest(prep)[:12]}); rerun `compress analyze` on it")
    return result


@dataclass
class _Setup:
    prep: object
    order: list[str]
    fine: TensorDataset
    val: TensorDataset
    before: dict
    base_val: float
    analysis: dict | None = None
    layers: list = field(default_factory=list)  # the prunable layers (surgery.Layer)
    teacher: torch.Tensor | None = None  # the unpruned model's logits on `fine` (--distill)


def _setup(src: str, opts: PruneOptions, trust: bool) -> _Setup:
    prep = prepare(src, opts.data, trust=trust, train_limit=opts.train_limit, seed=opts.seed)
    analysis = _load_analysis(opts.analysis, prep) if opts.analysis else None
    include_linear = opts.include_linear or bool(analysis and analysis["options"].get("include_linear"))
    layers = surgery.prunable_layers(prep.model, prep.input_shape, include_linear)
    order = layer_order(opts, layers, analysis)
    val = _validation(prep.dataset, opts.val_samples)
    teacher = None
    if opts.distill:
        digest = prep.parent.meta.get("model", {}).get("sha256") if prep.parent else None
        teacher = teacher_logits(prep.model, prep.dataset.train.tensors[0],
                                 cache_key=f"{digest}:{prep.dataset.name}" if digest else None)
    return _Setup(prep, order, prep.dataset.train, val, artifact.count(prep.model, prep.input_shape),
                  evaluate(prep.model, val), analysis, layers, teacher)


def _validation(ds: data.Dataset, n: int) -> TensorDataset:
    """A class-stratified subset of the validation split (the same for every seed)."""
    x, y = ds.val.tensors
    if n < len(y):
        idx = data.stratified_indices(y, n, seed=0)
        x, y = x[idx], y[idx]
    return TensorDataset(x, y)


def _units(st: _Setup, opts: PruneOptions) -> dict[str, int]:
    """Each layer's channel step: --round-to and the groups of the grouped convolutions it feeds."""
    return {l.name: math.lcm(opts.round_to, l.multiple) for l in st.layers}


def _check_reference(st: _Setup, opts: PruneOptions) -> None:
    """A --latency-of model timed on another input says nothing of this model's speed: refused
    before the search."""
    if opts.latency_of is None:
        return

    dims, shape = input_dims(Path(opts.latency_of)), [None, *st.prep.input_shape]  # batch, then the sample
    if len(dims) != len(shape) or any(d not in (None, n) for d, n in zip(dims[1:], shape[1:], strict=True)):
        raise CompressError(f"--latency-of {opts.latency_of}: its input {dims} is not this model's {shape}")


def _check_reachable(st: _Setup, opts: PruneOptions) -> None:
    """An ordered walk cannot take a layer below its floor (--max-layer-ratio): a size goal below
    what the floors leave is refused up front instead of after a long search."""
    if opts.target_params is None or opts.resolved_plan() is not Plan.FLOORS:
        return  # a fitted plan says itself when the goal is out of reach
    if opts.remove_layers and surgery.removable_layers(st.prep.model):
        return  # whole layers may go: the floors are not the limit
    channels = channel_counts(st.prep.model)
    floors = _floors({n: channels[n] for n in st.order}, opts.max_layer_ratio, _units(st, opts))
    least = artifact.param_count(_apply(st.prep.model, floors, st.prep.input_shape))
    if least > opts.target_params * st.before["params"]:
        raise CompressError(f"--target-params {opts.target_params} is out of reach: with every layer at its floor "
                            f"(--max-layer-ratio {opts.max_layer_ratio}) the model keeps {least:,} parameters "
                            f"({least / st.before['params']:.1%}); raise --max-layer-ratio or the target")


def _search(st: _Setup, opts: PruneOptions) -> _Search:
    """The plan, then the walk toward it (then on toward the floors if rolled-back steps left the
    size goal unmet)."""
    target = None if opts.target_params is None else opts.target_params * st.before["params"]
    s = _Search(copy.deepcopy(st.prep.model), st.prep.spec, st.prep.input_shape, st.fine, st.val, st.base_val,
                target, opts, p0=st.before["params"], teacher=st.teacher, units=_units(st, opts))
    plan = opts.resolved_plan()
    with task(f"prune ({plan.value} plan, {opts.order.value} order)", None) as advance:
        if plan is Plan.LATENCY:  # the plan sets the size goal: the parameters it keeps
            s.plan, s.latency_rounds = measured_latency_plan(s, st.analysis, read_json(opts.latency_table,
                                                                                      "latency table"),
                                                             opts.target_latency, opts.latency_of,
                                                             opts.latency_fraction)
            s.target = s.planned(s.plan)
        else:
            s.plan = make_plan(s, plan, st.order, st.analysis)
        if opts.order is Order.ONESHOT:
            _one_shot(s, advance)
        else:
            _ordered(s, st.order, advance, s.plan)
            if not s.goal_met(s.params()) and plan is not Plan.FLOORS:
                _ordered(s, st.order, advance, s.floor)
    return s


def _for_target(opts: PruneOptions) -> PruneOptions:
    """What `opts.target` implies: widths in multiples of the device's channel step."""
    if not opts.target:
        return opts
    return replace(opts, round_to=math.lcm(opts.round_to, load_target(opts.target).runtime.channel_multiple))


def _with_table(opts: PruneOptions) -> PruneOptions:
    if opts.latency_goal and opts.latency_table is None:
        raise CompressError("the latency objective needs a latency table: --latency-table FILE (from `compress "
                            "profile`), or --target so that `compress prune` profiles one first")
    return opts


def table_needed(dst: Path, opts: PruneOptions) -> Path | None:
    """Where the latency table goes when the latency objective has a target but no table: the
    caller (the CLI, `compress run`) profiles it there first with `compress profile` and passes it
    as `latency_table`; prune itself never runs another stage."""
    needed = opts.target and opts.latency_goal and opts.latency_table is None
    return Path(dst).with_suffix(".latency.json") if needed else None


def run(src: str, dst: Path, opts: PruneOptions, *, force: bool = False, trust: bool = False) -> artifact.Artifact:
    """Prune a model toward the goal and write the smaller model with its step log."""
    opts.validate()
    dst = Path(dst)
    artifact.check_output(dst, force)
    opts = _for_target(_with_table(opts))
    start = time.perf_counter()
    with data.deciding("prune"):
        st = _setup(src, opts, trust)
        _check_reference(st, opts)
        _check_reachable(st, opts)
        s = _search(st, opts)
        final_stats = fit(s.net, st.fine, opts.finetune(opts.final_epochs), description="final fine-tune",
                          teacher=st.teacher) if opts.final_epochs else {}
    prep, shape, before = st.prep, st.prep.input_shape, st.before
    params, target = s.params(), s.target
    if target is not None and params > target:
        logger.warning("goal not met: %d parameters left, target %d", params, int(target))
    after = artifact.count(s.net, shape)
    acc = evaluate(s.net, prep.dataset.test)  # the finished model, reported once
    parent_acc = prep.parent.metrics.get("accuracy") if prep.parent else None
    channels_before, channels_after = channel_counts(prep.model), channel_counts(s.net)
    counts_before, counts_after = artifact.count_layers(prep.model, shape), artifact.count_layers(s.net, shape)
    metrics = after | {"accuracy": acc, "eval_samples": len(prep.dataset.test),
                       "val_accuracy": evaluate(s.net, st.val), "val_accuracy_before": st.base_val,
                       "val_samples": len(st.val), "metric": metric_name(s.net)}
    report = {
        "order": st.order, "walk": opts.order.value, "plan_kind": opts.resolved_plan().value,
        "plan": s.plan or None, "plan_cap": s.plan_cap, "plan_lambda": s.plan_lambda,
        "latency_rounds": s.latency_rounds or None, "latency_goal_ms": s.latency_goal_ms,
        "latency_cost_models": s.cost_models or None, "plan_candidates": s.candidates or None,
        "rounds": s.rounds, "steps": s.steps, "goal_met": target is None or params <= target,
        "decisions_split": "validation",
        "before": before, "after": after, "accuracy_before": parent_acc,
        "params_kept": round(after["params"] / before["params"], 5),
        "macs_kept": round(after["macs"] / max(1, before["macs"]), 5),
        "layers": {n: {"before": channels_before[n], "after": channels_after.get(n, 0),
                       "params_before": counts_before[n]["params"],
                       "params_after": counts_after.get(n, {}).get("params", 0),
                       "bytes_before": counts_before[n]["bytes"],
                       "bytes_after": counts_after.get(n, {}).get("bytes", 0),
                       "macs_before": counts_before[n]["macs"], "macs_after": counts_after.get(n, {}).get("macs", 0)}
                   for n in channels_before},
        "final_finetune": final_stats, "seconds": round(time.perf_counter() - start, 2),
        "finetune_epochs_total": round(s.spent + opts.final_epochs, 4),
    }
    options = asdict(opts) | {"order": opts.order.value, "plan": opts.resolved_plan().value,
                              "analysis": str(opts.analysis) if opts.analysis else None}
    meta = artifact.new_meta("prune", options, parent=prep.parent, spec=s.spec, data=data_meta(prep.dataset),
                             input_shape=shape, num_classes=prep.dataset.num_classes, metrics=metrics,
                             report=report)
    return artifact.save(s.net, dst, meta, force=force)


def compare(src: str, dst: Path, opts: PruneOptions, targets: tuple[float, ...],
            orders: tuple[Order, ...] = ORDERED, plans: tuple[Plan, ...] | None = None, *, force: bool = False,
            trust: bool = False, cells_dir: Path | None = None) -> dict:
    """The plan x order ablation at one seed: every cell is fitted to the same parameter goal, walked,
    then given the same final fine-tuning; the finished model is reported on the test split.

    Writes `dst` (JSON) and a PNG beside it; with `cells_dir`, each cell's model too (for latency)."""
    if not targets or any(not 0 < t < 1 for t in targets):
        raise CompressError("--targets must be fractions in (0, 1), e.g. 0.1,0.05,0.03")
    dst = Path(dst)
    artifact.check_output(dst, force, dst.with_suffix(".png"))
    opts = _for_target(_with_table(opts))
    targets = tuple(sorted(set(targets), reverse=True))
    plans = plans or (opts.plan or (Plan.SENSITIVITY if opts.analysis else Plan.UNIFORM),)
    plans = tuple(p for p in plans if (p is not Plan.SENSITIVITY or opts.analysis)
                  and (p is not Plan.LATENCY or opts.latency_goal))
    orders = tuple(o for o in orders if o is not Order.SENSITIVITY or opts.analysis)
    if not plans or not orders:
        raise CompressError("nothing to compare: the sensitivity plan and order need --analysis")
    first = replace(opts, order=Order.SEQUENTIAL, plan=None, target_params=min(targets))
    first.validate()
    start = time.perf_counter()
    with data.deciding("prune --compare-orders"):
        st = _setup(src, first, trust)
    shape, rows = st.prep.input_shape, []
    for plan in plans:
        for order in orders:
            for t in targets:
                o = replace(opts, order=order, plan=plan, target_params=t)
                with data.deciding("prune --compare-orders"):
                    st.order = layer_order(o, st.layers, st.analysis)
                    s = _search(st, o)
                    pre = evaluate(s.net, st.val)
                    if opts.final_epochs:
                        fit(s.net, st.fine, opts.finetune(opts.final_epochs), teacher=st.teacher,
                            description=f"fine-tune {plan.value} plan, {order.value} order @ {t:.0%}")
                counts = artifact.count(s.net, shape)
                kept = counts["params"] / st.before["params"]
                row = {"plan": plan.value, "order": order.value, "target": t, "seed": opts.seed,
                       "params": counts["params"], "kept": round(kept, 6), "macs": counts["macs"],
                       "macs_kept": round(counts["macs"] / max(1, st.before["macs"]), 5),
                       "on_target": abs(kept - t) <= PLAN_TOLERANCE * t, "steps": len(s.steps),
                       "finetune_epochs_total": round(s.spent + opts.final_epochs, 4),
                       "val_before_finetune": pre, "val_top1": evaluate(s.net, st.val),
                       "top1": evaluate(s.net, st.prep.dataset.test)}
                if cells_dir is not None:
                    row["model"] = str(_save_cell(s, st, o, Path(cells_dir), row, counts))
                rows.append(row)
                logger.info("%s plan, %s order @ %.3f: %.2f%%", plan.value, order.value, t, row["top1"])
    result = {"kind": "compress-order-comparison", "model": st.prep.spec, "data": data_meta(st.prep.dataset),
              "baseline": {"params": st.before["params"], "macs": st.before["macs"], "val_top1": st.base_val,
                           "top1": evaluate(st.prep.model, st.prep.dataset.test)},
              "targets": list(targets), "plans": [p.value for p in plans], "orders": [o.value for o in orders],
              "options": asdict(opts) | {"order": None, "plan": None, "analysis": str(opts.analysis)},
              "decisions_split": "validation",
              "finetune_protocol": "every cell: the same final fine-tuning (final_epochs at lr, seed); in-walk "
                                   "fine-tuning: finetune_epochs per cut (oneshot: the same total)", "rows": rows,
              "seconds": round(time.perf_counter() - start, 1)}
    result["plot"] = plot_orders(result, dst.with_suffix(".png"))
    artifact.write_json(result, dst)
    return result


def _save_cell(s: _Search, st: _Setup, o: PruneOptions, folder: Path, row: dict, counts: dict) -> Path:
    path = folder / f"{row['plan']}-{row['order']}-{row['target']:g}-s{row['seed']}.pt"
    options = asdict(o) | {"order": o.order.value, "plan": o.resolved_plan().value, "analysis": str(o.analysis)}
    meta = artifact.new_meta("prune", options, parent=st.prep.parent, spec=s.spec, data=data_meta(st.prep.dataset),
                             input_shape=st.prep.input_shape, num_classes=st.prep.dataset.num_classes,
                             metrics=counts | {"accuracy": row["top1"], "val_accuracy": row["val_top1"]},
                             report={"plan": s.plan, "steps": s.steps})
    return artifact.save(s.net, path, meta, force=True).path


def tables(rep: dict) -> list:
    """A pruning report as rich Tables (for the CLI): the steps, then each layer before and after."""
    from rich.table import Table

    steps = Table(title="pruning steps")
    for col in ("round", "layer", "action", "channels", "kept", "params", "val accuracy", "kept?"):
        steps.add_column(col, justify="left" if col in ("layer", "action") else "right")
    for st in rep["steps"]:
        steps.add_row(str(st["round"]), st["layer"], st["action"], str(st.get("channels", "-")),
                      str(st.get("kept", st.get("ratio", "-"))), f"{st['params']:,}", f"{st['val_accuracy']:.2f}%",
                      "yes" if st["accepted"] else "rolled back")
    per_layer = Table(title="per layer, before -> after")
    for col in ("layer", "channels", "params", "bytes", "MACs"):
        per_layer.add_column(col, justify="left" if col == "layer" else "right")
    for name, v in rep["layers"].items():
        per_layer.add_row(name, *(f"{v[f'{k}before']:,} -> {v[f'{k}after']:,}"
                                  for k in ("", "params_", "bytes_", "macs_")))
    return [steps, per_layer]


def compare_table(result: dict):
    """The plan x order comparison as a rich Table (for the CLI)."""
    from rich.table import Table

    t = Table(title=f"plan x order: {result['model']} (unpruned: val {result['baseline']['val_top1']:.2f}%, "
                    f"test {result['baseline']['top1']:.2f}%)")
    for col in ("plan", "order", "target", "params kept", "MACs kept", "val before fine-tune", "val", "test"):
        t.add_column(col, justify="left" if col in ("plan", "order") else "right")
    for r in result["rows"]:
        t.add_row(r["plan"], r["order"], f"{r['target']:.1%}",
                  f"{r['kept']:.2%}" + ("" if r["on_target"] else " (off target)"), f"{r['macs_kept']:.1%}",
                  f"{r['val_before_finetune']:.2f}%", f"{r['val_top1']:.2f}%", f"{r['top1']:.2f}%")
    return t
