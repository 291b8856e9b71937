"""`compress prune`: structured filter pruning in a chosen layer order, under a size or accuracy goal.

The paper's claim is that the order in which layers are pruned changes the final accuracy; the
`sensitivity` order follows the priority measured by `compress analyze` (least harmful first).
Rounds walk the layers in order; each layer loses a step of its channels, the model is briefly
fine-tuned, and the step is kept while the accuracy budget holds (otherwise rolled back and the
layer is frozen). Decisions are measured on a validation split held out of the training data,
never on the test set; the final figures are measured on the test set.
"""

from __future__ import annotations

import copy
import json
import logging
import random
import time
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

from . import artifact, data, surgery
from .errors import CompressError
from .progress import task
from .train import TrainOptions, data_meta, evaluate, fit, prepare

logger = logging.getLogger(__name__)


class Order(str, Enum):
    SENSITIVITY = "sensitivity"
    SEQUENTIAL = "sequential"
    REVERSE = "reverse"
    RANDOM = "random"


@dataclass(frozen=True)
class PruneOptions:
    order: Order = Order.SENSITIVITY
    analysis: Path | None = None
    target_params: float | None = None
    max_drop: float | None = None
    step: float = 0.25
    finetune_epochs: float = 0.25
    final_epochs: float = 1.0
    lr: float = 0.01
    round_to: int = 1
    include_linear: bool = False
    val_samples: int = 2000
    seed: int = 0

    def validate(self) -> None:
        if self.target_params is None and self.max_drop is None:
            raise CompressError("give a goal: --target-params F (fraction of parameters to keep) and/or "
                                "--max-drop PTS (accuracy budget)")
        if self.target_params is not None and not 0 < self.target_params < 1:
            raise CompressError(f"--target-params must be in (0, 1), not {self.target_params}")
        if self.max_drop is not None and self.max_drop < 0:
            raise CompressError(f"--max-drop must be >= 0, not {self.max_drop}")
        if not 0 < self.step < 1:
            raise CompressError(f"--step must be in (0, 1), not {self.step}")
        if self.finetune_epochs < 0 or self.final_epochs < 0:
            raise CompressError("fine-tuning epochs must be >= 0")
        if self.round_to < 1:
            raise CompressError(f"--round-to must be >= 1, not {self.round_to}")
        if self.order is Order.SENSITIVITY and self.analysis is None:
            raise CompressError("--order sensitivity needs --analysis analysis.json (from `compress analyze`)")


def _load_analysis(path: Path, spec: str, input_shape) -> dict:
    try:
        result = json.loads(Path(path).read_text())
    except FileNotFoundError as e:
        raise CompressError(f"{path}: no such analysis file") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CompressError(f"{path}: not a JSON analysis ({e})") from e
    if result.get("kind") != "compress-analysis" or "priority" not in result:
        raise CompressError(f"{path} is not an analysis from `compress analyze`")
    model = result.get("model", {})
    if model.get("spec") != spec or list(model.get("input_shape", [])) != list(input_shape):
        raise CompressError(f"{path} analyzes {model.get('spec')} {model.get('input_shape')}, "
                            f"not this model ({spec} {list(input_shape)})")
    return result


def layer_order(opts: PruneOptions, layers: list[surgery.Layer], analysis: dict | None) -> list[str]:
    """The layer names in the order they are pruned."""
    names = [l.name for l in layers if l.skip is None]
    if opts.order is Order.SENSITIVITY:
        known = set(names)
        missing = [n for n in analysis["priority"] if n not in known]
        if missing:
            raise CompressError(f"the analysis names layers this model does not have: {', '.join(missing[:5])}")
        return list(analysis["priority"])
    if opts.order is Order.REVERSE:
        return names[::-1]
    if opts.order is Order.RANDOM:
        rng = random.Random(opts.seed)
        return rng.sample(names, len(names))
    return names


def _channels(model: nn.Module) -> dict[str, int]:
    return {n: (m.out_channels if isinstance(m, nn.Conv2d) else m.out_features)
            for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


def _split(train: TensorDataset, n: int, seed: int) -> tuple[TensorDataset, TensorDataset]:
    """Hold out a class-stratified validation split for accept/reject decisions."""
    x, y = train.tensors
    n = min(n, len(y) // 5)
    val = data.stratified_indices(y, n, seed=seed)
    mask = torch.ones(len(y), dtype=torch.bool)
    mask[val] = False
    return TensorDataset(x[mask], y[mask]), TensorDataset(x[val], y[val])


def run(model: str, data_spec: str | None, dst: Path, opts: PruneOptions, *, force: bool = False,
        trust: bool = False, train_limit: int | None = None) -> artifact.Artifact:
    """Prune a model toward the goal and write the smaller model with its step log."""
    opts.validate()
    dst = Path(dst)
    artifact.check_output(dst, force)
    prep = prepare(model, data_spec, trust=trust, train_limit=train_limit, seed=opts.seed)
    shape, net = prep.input_shape, copy.deepcopy(prep.model)
    analysis = _load_analysis(opts.analysis, prep.spec, shape) if opts.analysis else None
    include_linear = opts.include_linear or bool(analysis and analysis["options"].get("include_linear"))
    layers = surgery.prunable_layers(net, shape, include_linear)
    order = layer_order(opts, layers, analysis)
    fine, val = _split(prep.dataset.train, opts.val_samples, opts.seed)
    before = artifact.count(net, shape)
    channels_before = _channels(net)
    base_val = evaluate(net, val)
    target = None if opts.target_params is None else opts.target_params * before["params"]
    if opts.max_drop is not None and target is None:
        logger.info("accuracy budget only: pruning until no layer can lose a step within %.2f pts", opts.max_drop)
    tune = TrainOptions(epochs=opts.finetune_epochs, lr=opts.lr, seed=opts.seed) if opts.finetune_epochs else None
    steps, frozen, params, start = [], set(), before["params"], time.perf_counter()
    rounds = 0
    with task(f"prune ({opts.order.value} order)", None) as advance:
        while (target is None or params > target) and len(frozen) < len(order):
            rounds += 1
            progressed = False
            for name in order:
                if name in frozen or (target is not None and params <= target):
                    continue
                current = _channels(net)[name]
                keep = surgery.keep_count(current, opts.step, opts.round_to)
                if keep >= current:
                    frozen.add(name)
                    continue
                trial = copy.deepcopy(net)
                surgery.prune_layer(trial, name, keep, "l1", shape)
                if tune:
                    fit(trial, fine, tune, description=f"fine-tune {name}")
                acc = evaluate(trial, val)
                trial_params = artifact.count(trial, shape)["params"]
                ok = opts.max_drop is None or base_val - acc <= opts.max_drop
                steps.append({"round": rounds, "layer": name, "channels": current, "kept": keep,
                              "params": trial_params, "val_accuracy": acc, "accepted": ok})
                advance(info=f"{name} {current}->{keep} val {acc:.2f}% {'kept' if ok else 'rolled back'}")
                if ok:
                    net, params, progressed = trial, trial_params, True
                else:
                    frozen.add(name)
            if not progressed:
                break
    if target is not None and params > target:
        logger.warning("goal not met: %d parameters left, target %d", params, int(target))
    final_stats = fit(net, fine, TrainOptions(epochs=opts.final_epochs, lr=opts.lr, seed=opts.seed),
                      description="final fine-tune") if opts.final_epochs else {}
    after = artifact.count(net, shape)
    acc = evaluate(net, prep.dataset.test)
    parent_acc = prep.parent.metrics.get("accuracy") if prep.parent else None
    channels_after = _channels(net)
    metrics = after | {"accuracy": acc, "eval_samples": len(prep.dataset.test),
                       "val_accuracy": evaluate(net, val), "val_accuracy_before": base_val}
    report = {
        "order": order, "rounds": rounds, "steps": steps, "goal_met": target is None or params <= target,
        "before": before, "after": after, "accuracy_before": parent_acc,
        "params_kept": round(after["params"] / before["params"], 5),
        "layers": {n: {"before": channels_before[n], "after": channels_after.get(n)} for n in channels_before},
        "final_finetune": final_stats, "seconds": round(time.perf_counter() - start, 2),
    }
    options = asdict(opts) | {"order": opts.order.value, "analysis": str(opts.analysis) if opts.analysis else None}
    meta = artifact.new_meta("prune", options, parent=prep.parent, spec=prep.spec, data=data_meta(prep.dataset),
                             input_shape=shape, num_classes=prep.dataset.num_classes, metrics=metrics,
                             report=report)
    return artifact.save(net, dst, meta, force=force)
