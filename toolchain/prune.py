"""`compress prune`: structured filter pruning under a size or accuracy goal, as a plan and a walk.

Two questions, two pieces, crossed freely (as Torch-Pruning separates importance from pruner):
- the plan (`Plan`): how many channels each layer keeps. `sensitivity` reads it from the sweep of
  `compress analyze` (the paper), `uniform` cuts every layer by one ratio, `global` ranks all
  filters by L1 norm at once (Torch-Pruning's global pruning). Each plan is fitted to the size goal
  within PLAN_TOLERANCE, so plans compare at one parameter count.
- the walk (`Order`): in which order the layers are cut toward the plan. Rounds walk the layers in
  order; each layer loses a step of its channels, the model is briefly fine-tuned, and the step is
  kept while the accuracy budget holds (otherwise rolled back and the layer frozen). `oneshot`
  applies the whole plan at once and fine-tunes with the budget the walk would have spent.
The paper's question "does the order matter?" is a walk question with the plan held fixed.

Every decision reads the validation split carved out of the training data (`ds.val`); the search
runs inside `data.deciding`, so it cannot read the test split, which reports the finished model.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

from . import artifact, data, surgery
from .analyze import SCHEMA, fidelity_reference, model_digest
from .errors import CompressError
from .fileio import read_json
from .progress import task
from .train import (
    Prepared,
    TrainOptions,
    adapt_batchnorm,
    confidence,
    data_meta,
    evaluate,
    fidelity,
    fit,
    logits,
    metric_name,
    prepare,
    teacher_logits,
    temperature,
)

logger = logging.getLogger(__name__)


PROXIES = {"top1": "accuracy", "confidence": "confidence",  # --proxy: the analysis field a plan's costs are read from
           "fidelity": "fidelity"}
SELECTORS = ("analysis", "adaptive-bn")  # --select: what compares the plans made at each cap
SELECT_ADAPT_IMAGES = 1000  # training images `--select adaptive-bn` re-estimates a candidate's BatchNorm with


class Order(str, Enum):
    """The walk: the order in which layers are cut."""
    SENSITIVITY = "sensitivity"  # the analysis' priority, least harmful first (the paper)
    SEQUENTIAL = "sequential"
    REVERSE = "reverse"
    RANDOM = "random"  # a permutation drawn from the seed
    ONESHOT = "oneshot"  # the whole plan at once, then fine-tuning


class Plan(str, Enum):
    """The allocation: how many channels each layer keeps."""
    SENSITIVITY = "sensitivity"  # from the analysis sweep: the cheapest accuracy per parameter (the paper)
    UNIFORM = "uniform"  # the same L1 ratio in every layer (Li et al. 2017)
    GLOBAL = "global"  # one L1 ranking across all layers (Torch-Pruning's global pruning)
    FLOORS = "floors"  # no plan: walk toward the floors until the goal or the budget stops the walk
    LATENCY = "latency"  # from the analysis and a latency table: the least accuracy per millisecond (HALP, NetAdapt)


ORDERED = (Order.SENSITIVITY, Order.SEQUENTIAL, Order.REVERSE, Order.RANDOM)
PLAN_TOLERANCE = 0.01  # a fitted plan lands within 1% below its parameter goal
MAX_RETIMES = 4  # --retimes: each re-timing of the latency table is about a minute on VGG16


@dataclass(frozen=True)
class PruneOptions:
    data: str | None = None  # data spec; None: the one the model file's sidecar names
    train_limit: int | None = None  # fine-tune on this many training images (the pipeline's --quick)
    order: Order = Order.SENSITIVITY
    plan: Plan | None = None  # None: sensitivity with an analysis and a size goal, else floors
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
    remove_layers: bool = True
    max_layer_ratio: float = 0.9  # a layer keeps at least 10% of its channels
    seed: int = 0
    device: str = "cpu"  # where fine-tuning runs ("cuda" where a GPU is lent); decisions are the same
    distill: float = 0.0  # weight of the unpruned model's soft targets in every fine-tune (0: plain)
    target_latency: float | None = None  # ms: the latency objective (needs analysis and latency_table)
    latency_table: Path | None = None  # from `compress profile` (per layer, ms at each width, on the target)
    target: str | None = None  # a bench target profile: widths round to its channel_multiple; with the latency
    #                            objective and no latency_table, the table is profiled with its settings
    proxy: str = "top1"  # what a plan reads a cut's cost in from the analysis: top1 (the paper's), confidence or
    #                      fidelity (to the unpruned network's outputs)
    latency_of: Path | None = None  # the latency objective's goal as an ONNX model: as fast as it (the deployed
    #                                 model), timed beside every plan; instead of target_latency
    latency_fraction: float = 1.0  # with latency_of: the goal is this fraction of its latency
    retimes: int = 2  # latency objective: times the table is re-timed around the latest measured plan
    select: str = "analysis"  # what compares the plans made at each cap: their analysed drops summed, or each
    #                           plan cut whole, its BatchNorm re-estimated, measured on validation (adaptive-bn)

    @property
    def latency_goal(self) -> bool:
        return self.target_latency is not None or self.latency_of is not None

    def validate(self) -> None:
        if self.target_latency is not None and self.latency_of is not None:
            raise CompressError("give one latency goal: --target-latency MS or --latency-of MODEL.onnx")
        if not 0 < self.latency_fraction <= 2:
            raise CompressError(f"--latency-fraction must be in (0, 2], not {self.latency_fraction}")
        if not 0 <= self.retimes <= MAX_RETIMES:
            raise CompressError(f"--retimes must be in [0, {MAX_RETIMES}], not {self.retimes}")
        if self.latency_of is not None and not Path(self.latency_of).is_file():
            raise CompressError(f"--latency-of {self.latency_of}: no such file (an ONNX model to be as fast as)")
        if self.latency_of is not None:
            from .onnxio import input_dims
            input_dims(Path(self.latency_of))  # a corrupt file is refused before any work
        if self.latency_goal:
            if self.target_latency is not None and self.target_latency <= 0:
                raise CompressError(f"--target-latency must be > 0 ms, not {self.target_latency}")
            if self.target_params is not None:
                raise CompressError("give one size goal: a latency goal (--target-latency, --latency-of) or "
                                    "--target-params (fraction)")
            if self.analysis is None or (self.latency_table is None and self.target is None):
                raise CompressError("--objective latency needs --analysis (accuracy per layer) and a latency "
                                    "table (--latency-table from `compress profile`, or --target to make one)")
            if self.plan not in (None, Plan.LATENCY):
                raise CompressError(f"--objective latency makes its own plan; drop --plan {self.plan.value}")
        if self.target_params is None and self.max_drop is None and not self.latency_goal:
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
        if not 0 <= self.distill <= 1:
            raise CompressError(f"--distill must be in [0, 1], not {self.distill}")
        if not 0 < self.max_layer_ratio < 1:
            raise CompressError(f"--max-layer-ratio must be in (0, 1), not {self.max_layer_ratio}")
        if self.round_to < 1:
            raise CompressError(f"--round-to must be >= 1, not {self.round_to}")
        if self.val_samples < 1:
            raise CompressError(f"--val-samples must be >= 1, not {self.val_samples}")
        if self.seed < 0:
            raise CompressError(f"--seed must be >= 0, not {self.seed}")
        if self.proxy not in PROXIES:
            raise CompressError(f"--proxy must be one of {', '.join(PROXIES)}, not {self.proxy}")
        if self.select not in SELECTORS:
            raise CompressError(f"--select must be one of {', '.join(SELECTORS)}, not {self.select}")
        if self.select != "analysis" and self.resolved_plan() not in (Plan.SENSITIVITY, Plan.LATENCY):
            raise CompressError(f"--select {self.select} compares the sensitivity and latency plans' candidates; "
                                f"the {self.resolved_plan().value} plan has none")
        if self.train_limit is not None and self.train_limit < 1:
            raise CompressError(f"train_limit must be >= 1, not {self.train_limit}")
        self.finetune(1.0).validate()  # --lr, --distill and --device, as the fine-tunes will check them
        if self.target:
            from .bench import load_target
            load_target(self.target)
        if Order.SENSITIVITY in (self.order, self.plan) and self.analysis is None:
            raise CompressError("--order sensitivity and --plan sensitivity need --analysis analysis.json "
                                "(from `compress analyze`)")
        if self.plan not in (None, Plan.FLOORS, Plan.LATENCY) and self.target_params is None:
            raise CompressError(f"--plan {self.plan.value} needs a size goal (--target-params)")
        if self.order is Order.ONESHOT and self.resolved_plan() is Plan.FLOORS:
            raise CompressError("--order oneshot needs a plan to apply at once (--plan and --target-params)")

    def finetune(self, epochs: float) -> TrainOptions:
        """The fine-tuning recipe of every cut and of the final pass (and of the equal-budget control)."""
        return TrainOptions(epochs=epochs, lr=self.lr, seed=self.seed, device=self.device, distill=self.distill)

    def resolved_plan(self) -> Plan:
        if self.latency_goal:
            return Plan.LATENCY
        if self.plan is not None:
            return self.plan
        return Plan.SENSITIVITY if self.analysis is not None and self.target_params is not None else Plan.FLOORS


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


def _global_shrink(net: nn.Module, ratio: float, coupled: set[str], shape, round_to: int,
                   max_layer_ratio: float = 0.95) -> nn.Module:
    """A copy with `ratio` of all channels of the `coupled` layers removed by one global L1 ranking
    (Torch-Pruning's MetaPruner, which keeps grouped convolutions' blocks equal itself)."""
    import torch_pruning as tp

    clone = copy.deepcopy(net)
    ignored = [m for n, m in clone.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and n not in coupled]
    pruner = tp.pruner.MetaPruner(clone, torch.zeros(1, *shape), importance=surgery.get_criterion("l1"),
                                  global_pruning=True, pruning_ratio=ratio, max_pruning_ratio=max_layer_ratio,
                                  ignored_layers=ignored, round_to=round_to if round_to > 1 else None)
    pruner.step()
    return clone


def _global_ratio(net, goal, units, shape, round_to, max_layer_ratio=0.95) -> tuple[nn.Module, nn.Module]:
    """Bisect the global ratio whose pruned copy has at most `goal` parameters: that copy, and the
    copy at the ratio just below it (which misses the goal), for `_fill` to land between."""
    coupled = surgery.coupled(net, list(units), shape)  # the named layers and those their cuts carry along
    lo, hi, best, near = 0.0, max_layer_ratio, None, net
    for _ in range(16):
        mid = (lo + hi) / 2
        trial = _global_shrink(net, mid, coupled, shape, round_to, max_layer_ratio)
        if artifact.param_count(trial) <= goal:
            hi, best = mid, trial
        else:
            lo, near = mid, trial
    if best is None:
        best = _global_shrink(net, hi, coupled, shape, round_to, max_layer_ratio)
    return best, near


def _channels(model: nn.Module) -> dict[str, int]:
    return {n: surgery.out_channels(m)
            for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


def _floors(channels: dict[str, int], max_layer_ratio: float, units: dict[str, int] | None = None) -> dict[str, int]:
    """Channels each layer keeps at least (--max-layer-ratio), up to a whole number of its units."""
    units = units or {}
    return {n: min(c, _snap(max(1, int(round(c * (1 - max_layer_ratio)))), units.get(n, 1), up=True))
            for n, c in channels.items()}


def _snap(channels: int, unit: int, up: bool = False) -> int:
    """A channel count moved to a multiple of `unit` (never below one unit)."""
    return max(unit, (-(-channels // unit) if up else channels // unit) * unit)


class _SizeModel:
    """The parameter count (and MACs and activations: `features`) of a network at any channel
    widths, without pruning a copy per question.

    Fitting a plan asks "how many parameters at these widths?" hundreds of times; pruning a deep
    copy each time took minutes on a ResNet. Every parameter tensor's dimensions shrink linearly in
    the channels a layer loses (flattening multiplies by a stride, a concatenation adds, a grouped
    convolution divides by its groups), so one cut of one unit per layer, measured on one copy,
    gives each dimension's slope; a plan's count is then the sum of products of the shrunk sizes (a
    weight's MACs: its size times the output pixels of its layer, which pruning channels keeps)."""

    def __init__(self, net: nn.Module, names: list[str], units: dict[str, int], shape) -> None:
        clone = copy.deepcopy(net)
        dg = surgery.graph(clone, shape)
        self.channels = _channels(net)
        self.shapes = {n: tuple(p.shape) for n, p in net.named_parameters()}
        before, self.slopes = self.shapes, {}
        for name in names:
            unit, current = units.get(name, 1), self.channels[name]
            if current - unit < 1:
                continue
            surgery.prune_layer(clone, name, current - unit, "l1", shape, dg=dg)
            after = {n: tuple(p.shape) for n, p in clone.named_parameters()}
            self.slopes[name] = [(p, d, (before[p][d] - after[p][d]) / unit)
                                 for p in before for d in range(len(before[p])) if before[p][d] != after[p][d]]
            before = after

        self.pixels = {}  # output pixels of each weighted module, for MACs and activations
        hooks = [m.register_forward_hook(lambda mod, i, out, n=n: self.pixels.__setitem__(
            n, math.prod(out.shape[2:]) if out.dim() > 2 else 1)) for n, m in net.named_modules()
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]
        try:
            with torch.no_grad():
                was = net.training
                net.eval()
                net(torch.zeros(1, *shape))
                net.train(was)
        finally:
            for h in hooks:
                h.remove()

    def _sizes(self, plan: dict[str, int]) -> dict[str, list[float]]:
        sizes = {p: list(map(float, shape)) for p, shape in self.shapes.items()}
        for name, keep in plan.items():
            for p, d, per_channel in self.slopes.get(name, ()):
                sizes[p][d] -= per_channel * (self.channels[name] - keep)
        return sizes

    def params(self, plan: dict[str, int]) -> int:
        return int(round(sum(math.prod(dims) for dims in self._sizes(plan).values())))

    def features(self, plan: dict[str, int]) -> list[float]:
        """The plan's terms of profile.CostModel: 1, MACs (millions), parameters (millions) and the
        weighted layers' output activations (thousands)."""
        macs = acts = 0.0
        sizes = self._sizes(plan)
        for p, dims in sizes.items():
            module = p.rpartition(".")[0]
            if p.endswith("weight") and len(dims) > 1 and module in self.pixels:
                macs += math.prod(dims) * self.pixels[module]
                acts += dims[0] * self.pixels[module]
        return [1.0, macs / 1e6, sum(math.prod(d) for d in sizes.values()) / 1e6, acts / 1e3]


@dataclass
class _Search:
    """What one pruning search needs and produces (shared by the ordered and one-shot loops)."""

    net: nn.Module
    spec: str
    shape: tuple[int, ...]
    fine: TensorDataset
    val: TensorDataset
    base_val: float
    target: float | None
    opts: PruneOptions
    steps: list = field(default_factory=list)
    rounds: int = 0
    p0: int = 0
    floor: dict = field(default_factory=dict)  # channels a layer keeps at least (--max-layer-ratio)
    plan_cap: float | None = None  # the deepest cut per layer the sensitivity or latency plan allowed
    plan_lambda: float | None = None  # accuracy points per parameter (per ms: latency plan) the plan traded at
    latency_rounds: list = field(default_factory=list)  # the latency plan's goal, prediction and measurement
    latency_goal_ms: float | None = None  # the latency objective's goal in the table's scale
    cost_models: list = field(default_factory=list)  # the latency cost model's coefficients, fit after fit
    plan: dict = field(default_factory=dict)  # channels per layer the walk aims at
    frozen: set = field(default_factory=set)  # layers whose step was rolled back: never tried again
    teacher: torch.Tensor | None = None  # the unpruned model's logits on `fine` (--distill)
    units: dict = field(default_factory=dict)  # a layer's channels move in multiples of this (--round-to, groups)
    sizes: _SizeModel | None = None  # parameter counts of plans, measured once on the unpruned model
    candidates: list = field(default_factory=list)  # the plans made at each cap and what each was priced at
    adapted: dict = field(default_factory=dict)  # --select adaptive-bn: each plan's measured drop
    adapt_reference: tuple | None = None  # --select adaptive-bn: (training images for BatchNorm, unpruned score)
    val_reference: tuple | None = None  # --proxy fidelity: the unpruned network's logits on `val`, its temperature
    spent: float = 0.0  # fine-tune epochs the walk has given its candidates (an equal-budget control gets them too)

    def __post_init__(self) -> None:
        self.floor = _floors(_channels(self.net), self.opts.max_layer_ratio, self.units)

    def unit(self, name: str) -> int:
        return self.units.get(name, self.opts.round_to)

    def params(self, net: nn.Module | None = None) -> int:
        """Parameter count (the same figure as artifact.count, without its copy and forward pass)."""
        return artifact.param_count(net if net is not None else self.net)

    def planned(self, plan: dict[str, int]) -> int:
        """Parameters of the model with each named layer cut to its channel count in `plan`
        (the search's unpruned model; counted by `_SizeModel`, not by pruning a copy)."""
        if self.sizes is None:
            self.sizes = _SizeModel(self.net, list(plan), self.units, self.shape)
        return self.sizes.params(plan)

    def goal_met(self, params: int) -> bool:
        return self.target is not None and params <= self.target

    def trial(self, net: nn.Module, epochs: float, label: str) -> tuple[float, bool]:
        """Fine-tune a candidate briefly and judge it against the accuracy budget."""
        if epochs:
            fit(net, self.fine, self.opts.finetune(epochs), description=f"fine-tune {label}", teacher=self.teacher)
            self.spent += epochs
        acc = evaluate(net, self.val)
        return acc, self.opts.max_drop is None or self.base_val - acc <= self.opts.max_drop


SELECT_MAX_CAP = 0.75  # a chosen plan's deepest cut per layer (latency plan, --select adaptive-bn): a quarter kept
UNMEASURED_SLOPE = 10.0  # points per unit ratio at least, past the last analysed ratio (1 point per 10%)
PLAN_CAPS = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)  # deepest cut per layer the plan tries, mildest first


def _caps(s: _Search) -> list[float]:
    """The deepest cut per layer a plan may try, mildest first, ending at --max-layer-ratio."""
    return [c for c in PLAN_CAPS if c < s.opts.max_layer_ratio] + [s.opts.max_layer_ratio]


def _cost_field(s: _Search, analysis: dict) -> str:
    """The analysis field the plan reads each cut's cost from (--proxy): top-1 (the paper's), the
    confidence at a fitted temperature, top-1's continuous twin (on VGG16 at 1,000 validation images
    most single-layer top-1 drops are within a point and their ranking correlates 0.54 between two
    halves of the images), or the fidelity to the unpruned network's outputs, which no label's noise
    reaches (train.fidelity)."""
    field = PROXIES[s.opts.proxy]
    rows = [analysis["baseline"]] + [p for r in analysis["layers"] for p in r.get("sweep") or [r]]
    if any(r.get(field) is None for r in rows):
        raise CompressError(f"the analysis has no {field} for every cut (--proxy {s.opts.proxy}): "
                            f"rerun `compress analyze` with this version")
    return field


def _tradeoffs(row: dict, base: float, cap: float, field: str = "accuracy") -> list[tuple[float, float, float]]:
    """(ratio, drop, parameters removed) of one layer pruned alone, from the analysis sweep (the drop
    in `field`, top-1, confidence or fidelity, from `base`): anchored at (0, 0, 0), the drop made
    non-decreasing, the measured ratios up to `cap` and `cap` itself, read off the segment around it.
    Past the last measured ratio the drop grows no flatter than UNMEASURED_SLOPE: a layer that lost
    nothing at 50% is not assumed to lose nothing at 90%."""
    pts, worst = [(0.0, 0.0, 0.0)], 0.0
    for s in sorted(row.get("sweep") or [row], key=lambda s: s["ratio"]):
        worst = max(worst, base - s[field])
        pts.append((s["ratio"], worst, float(s["params_removed"])))
    out = [p for p in pts if p[0] < cap]
    (r0, d0, s0), (r1, d1, s1) = next(((a, b) for a, b in zip(pts, pts[1:], strict=False) if b[0] >= cap), pts[-2:])
    f, slope = (cap - r0) / (r1 - r0), (d1 - d0) / (r1 - r0)
    drop = d0 + f * (d1 - d0) if cap <= r1 else d1 + max(UNMEASURED_SLOPE, slope) * (cap - r1)
    return out + [(cap, drop, s0 + f * (s1 - s0))]


def _apply(net: nn.Module, keep: dict[str, int], shape) -> nn.Module:
    """A copy with each named layer cut to its channel count (L1, through one dependency graph)."""
    clone = copy.deepcopy(net)
    dg = surgery.graph(clone, shape)
    modules = dict(clone.named_modules())
    for name, k in keep.items():
        m = modules.get(name)
        if m is None:
            continue
        current = surgery.out_channels(m)
        if k < current:
            surgery.prune_layer(clone, name, k, "l1", shape, dg=dg)
    return clone


def sensitivity_plan(s: _Search, analysis: dict) -> dict[str, int]:
    """Channels each layer goes down to under the `sensitivity` order, from the analysis sweep.

    Each layer takes the analysed ratio that maximises `lam * parameters removed - accuracy drop`
    (both measured with the layer pruned alone), so the cut lands where it costs the least accuracy
    per parameter, and `lam` is bisected until the plan meets the size goal. No layer is cut deeper
    than the mildest cap in PLAN_CAPS that can still meet the goal: on VGG16 at 10% of the
    parameters, letting single layers go to 10% of their channels (where the analysis says they
    lose little alone) left bottlenecks that fine-tuning could not repair. With `--select adaptive-bn`
    a plan is made at every cap up to SELECT_MAX_CAP instead, and the one that measures best cut
    whole is taken (`_cheapest`, `plan_drop`). Without a size goal every layer may go down to its
    floor (the accuracy budget decides)."""
    channels = _channels(s.net)
    field = _cost_field(s, analysis)
    base = analysis["baseline"][field]
    rows = {r["name"]: r for r in analysis["layers"] if r["name"] in channels}
    floors = {n: s.floor[n] for n in rows}
    if s.target is None:
        return floors

    def fits(plan: dict[str, int]) -> bool:
        return s.planned(plan) <= s.target

    def options(cap: float) -> dict[str, list[tuple[float, float, float]]]:
        return {n: _tradeoffs(r, base, cap, field) for n, r in rows.items()}

    if s.opts.select == "analysis":
        small, big = _lagrangian(s, options, fits)
        return floors if small is None else _fill(s, small, big)  # None: floors miss the goal, the walk says so

    def at(cap: float) -> dict[str, int] | None:
        small, big = _lagrangian(s, options, fits, [cap])
        return None if small is None else _fill(s, small, big)

    return _cheapest(s, analysis, at) or floors


def _keep(s: _Search, channels: dict[str, int], name: str, ratio: float) -> int:
    """Channels `name` keeps cut by `ratio`, in whole units, never below its floor."""
    return max(s.floor[name], surgery.keep_count(channels[name], ratio, s.unit(name)))


def _lagrangian(s: _Search, options_at, fits, caps: list[float] | None = None) -> tuple[dict | None, dict]:
    """The allocator of the sensitivity and latency plans. At the mildest cap of `caps` (`_caps(s)`) whose
    deepest options `fits`, each layer takes the option (ratio, accuracy drop, gain) of
    `options_at(cap)` that maximises `lam * gain - drop`, and `lam` is bisected (log scale) until the
    plan just fits. Returns the plans at the two ends of the bisection, the fitting one first (and
    sets the search's plan_cap and plan_lambda), or None and the deepest plan tried if none fits."""
    channels = _channels(s.net)

    def plan_at(options: dict, lam: float) -> dict[str, int]:
        return {n: _keep(s, channels, n, max(o, key=lambda p: lam * p[2] - p[1])[0]) for n, o in options.items()}

    for cap in caps or _caps(s):
        options = options_at(cap)
        if fits(plan_at(options, 1e12)):
            break
    else:
        return None, plan_at(options, 1e12)
    lo, hi = -12.0, 12.0  # log10 of lam
    for _ in range(24):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if fits(plan_at(options, 10 ** mid)) else (mid, hi)
    s.plan_cap, s.plan_lambda = cap, float(f"{10 ** hi:.4g}")
    return plan_at(options, 10 ** hi), plan_at(options, 10 ** lo)


def _between(s: _Search, small: dict[str, int], big: dict[str, int], fits) -> dict[str, int]:
    """The plan between `small` (fits) and `big` (does not) that keeps the most and still fits: the
    layers where they differ move together by one fraction t, bisected."""
    def at(t: float) -> dict[str, int]:
        return {n: small[n] + int(t * (big[n] - small[n])) // s.unit(n) * s.unit(n) for n in small}

    lo, hi = 0.0, 1.0
    for _ in range(16):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if fits(at(mid)) else (lo, mid)
    return at(lo)


def _fill(s: _Search, small: dict[str, int], big: dict[str, int]) -> dict[str, int]:
    """The plan between `small` (meets the goal) and `big` (misses it) with the most parameters that
    still meet it (`_between`; the trade-off bisection alone jumps a whole analysed ratio at a time, a
    step of several percent), then coarse layers filled up one by one."""
    def fits(plan: dict[str, int]) -> bool:
        return s.planned(plan) <= s.target

    plan = _between(s, small, big, fits)
    if s.planned(plan) >= (1 - PLAN_TOLERANCE / 2) * s.target:
        return plan
    channels = _channels(s.net)  # coarse layers (LeNet's 16 filters): top layers up alone, widest (finest) first
    for name in sorted(plan, key=lambda n: -channels[n]):
        u = s.unit(name)  # bisect over whole units
        low, high = plan[name] // u, channels[name] // u
        while high - low > 1:
            mid = (low + high) // 2
            low, high = (mid, high) if fits(plan | {name: mid * u}) else (low, mid)
        plan[name] = max(plan[name], (high if fits(plan | {name: high * u}) else low) * u)
    return plan


def _uniform_plan(s: _Search, names: list[str]) -> dict[str, int]:
    """Every layer cut by one ratio, bisected to the goal, then filled up to it."""
    channels = _channels(s.net)

    def at(ratio: float) -> dict[str, int]:
        return {n: _keep(s, channels, n, ratio) for n in names}

    lo, hi = 0.0, s.opts.max_layer_ratio
    for _ in range(20):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if s.planned(at(mid)) <= s.target else (mid, hi)
    small = at(hi)
    return _fill(s, small, at(lo)) if s.planned(small) <= s.target else small


def make_plan(s: _Search, plan: Plan, names: list[str], analysis: dict | None) -> dict[str, int]:
    """Channels each layer keeps under `plan`, fitted to the size goal (within PLAN_TOLERANCE)."""
    if plan is Plan.FLOORS or s.target is None:
        return {n: s.floor[n] for n in names}
    if plan is Plan.SENSITIVITY:
        keep = sensitivity_plan(s, analysis)
    elif plan is Plan.UNIFORM:
        keep = _uniform_plan(s, names)
    else:
        units = {n: s.unit(n) for n in names}
        shrunk, near = _global_ratio(s.net, s.target, units, s.shape, s.opts.round_to, s.opts.max_layer_ratio)
        small, big = _channels(shrunk), _channels(near)
        keep = {n: small[n] for n in names}
        if s.params(shrunk) <= s.target:
            keep = _fill(s, keep, {n: big[n] for n in names})
    params = s.planned(keep)
    if params > s.target:
        raise CompressError(f"--target-params {s.opts.target_params} is out of reach for the {plan.value} plan: "
                            f"with every layer at its floor (--max-layer-ratio {s.opts.max_layer_ratio}) the model "
                            f"keeps {params / s.p0:.2%} of its parameters; raise --max-layer-ratio or the target")
    if params < (1 - PLAN_TOLERANCE) * s.target:
        logger.warning("the %s plan keeps %.3f%% of the parameters, more than %.0f%% under the goal %.3f%%",
                       plan.value, 100 * params / s.p0, 100 * PLAN_TOLERANCE, 100 * s.target / s.p0)
    return keep


class OutOfReach(CompressError):
    """A latency goal under what the plan's pricing reaches; `deepest` is the deepest plan it tried,
    which a measured table times before the goal is refused (`measured_latency_plan`)."""

    def __init__(self, message: str, deepest: dict[str, int]) -> None:
        super().__init__(message)
        self.deepest = deepest


def latency_plan(s: _Search, analysis: dict, table: dict, target_ms: float, cost=None) -> dict[str, int]:
    """Channels per layer for a latency goal: the sensitivity plan's allocator with milliseconds as
    its currency, a knapsack relaxed by a Lagrange multiplier as in HALP (Shen et al., 2022). Each
    layer takes the analysed ratio that maximises `lam * ms saved - accuracy drop` (the ms saved with
    the layer cut alone; the drop from the analysis, also alone), `lam` is bisected until the plan is
    predicted at `target_ms`, and the layers between the two bisection ends move together to just
    meet it. The milliseconds come from `cost` (a profile.CostModel fitted to the table's
    measurements: a plan priced with all its cuts together) or, without one, from the table's
    additive model (a hand-written table: its per-layer savings are taken as they are). Layers the
    table shows saving nothing stay whole, whatever their parameters. The plan is made at each cap of
    PLAN_CAPS up to SELECT_MAX_CAP (deeper only where none reaches the goal), and the one `plan_drop`
    prices lowest is taken (`_cheapest`): the sensitivity plan's rule, the mildest cap that reaches the
    goal, held VGG16's latency plans at 50% a layer, so they bought milliseconds in the early layers
    the analysis prices highest (analysed top-1 drop 2.7-4.2 at the latency of the parameter plan at
    15%, which cuts its wide late layers by 70%; up to 75%: 1.2-1.3 in benchmarks/latency_aware.py).
    (A greedy walk of 1/16 steps, NetAdapt's order without its fine-tuning, went first: it took the
    steps the analysis prices at zero first and summed to three times the analysed drop of this
    allocator on MobileNetV2 at 35% of its parameters.)"""
    made_of = table.get("model", {}).get("sha256")
    if table.get("kind") != "compress-latency-table" or made_of != analysis["model"]["sha256"]:
        raise CompressError("the latency table is not one `compress profile` made of this model")
    field = _cost_field(s, analysis)
    base_acc = analysis["baseline"][field]
    rows = {r["name"]: r for r in analysis["layers"]}
    channels = _channels(s.net)
    names = [n for n in rows if n in table["layers"] and n in s.floor]
    whole = {n: channels[n] for n in s.floor}
    price = _pricer(s, table, cost)
    base_ms = price(whole)

    def options(cap: float) -> dict[str, list[tuple[float, float, float]]]:
        """(ratio, drop, ms saved) per layer, the ms saved at the channels that ratio keeps."""
        return {n: [(r, d, base_ms - price({n: _keep(s, channels, n, r)})) for r, d, _ in
                    _tradeoffs(rows[n], base_acc, cap, field)] for n in names}

    def fits(plan: dict[str, int]) -> bool:
        return price(plan) <= target_ms

    if fits(whole):  # met already: no cut, even a free one
        return whole
    deepest = whole  # the deepest plan tried

    def at(cap: float) -> dict[str, int] | None:
        nonlocal deepest
        small, big = _lagrangian(s, options, fits, [cap])
        deepest = big
        if small is None:
            return None
        if fits(big):  # cuts the analysis prices at zero meet it at any lam: fill up towards the whole model
            big = {n: channels[n] for n in small}
        return whole | _between(s, small, big, fits)

    plan = _cheapest(s, analysis, at)
    if plan is None:  # every cap tried: the deepest cap's plan has every layer at its floor
        raise OutOfReach(f"the latency goal {target_ms:.4g} ms is out of reach: with every layer the table can "
                         f"speed up at its floor it predicts {price(deepest):.3f} ms (unpruned {base_ms:.3f} ms)",
                         whole | deepest)
    return plan


def _cheapest(s: _Search, analysis: dict, at) -> dict[str, int] | None:
    """Of the plans `at(cap)` makes at each cap of PLAN_CAPS up to SELECT_MAX_CAP (deeper caps only
    while none is made), the one `plan_drop` prices lowest, with its cap and lambda set on the
    search; None where no cap makes one. Each candidate is recorded (`s.candidates`)."""
    best, made = None, []  # (drop, plan, cap, lambda, its record); this call's candidates
    for cap in _caps(s):
        if best is not None and cap > SELECT_MAX_CAP:
            break
        plan = at(cap)
        if plan is None:
            continue
        analysed = analysed_drop(s, analysis, plan)
        drop = analysed if s.opts.select == "analysis" else plan_drop(s, analysis, plan)
        made.append({"cap": s.plan_cap, "lambda": s.plan_lambda, "params": s.planned(plan),
                     "analysed_drop": round(analysed, 4)}
                    | ({"adapted_drop": round(drop, 4)} if s.opts.select == "adaptive-bn" else {}))
        if best is None or drop < best[0] - 1e-9:
            best = (drop, plan, s.plan_cap, s.plan_lambda, made[-1])
    if best is None:
        return None
    _, plan, s.plan_cap, s.plan_lambda, chosen = best
    chosen["chosen"] = True
    s.candidates.extend(made)
    return plan


def _pricer(s: _Search, table: dict, cost=None):
    """plan -> predicted ms (layers not named: unpruned): by `cost` where given, else the table's additive model."""
    from .profile import predicted_ms

    if cost is None:
        return lambda plan: predicted_ms(table, plan)
    channels = _channels(s.net)
    return lambda plan: cost.ms(_size_model(s).features(channels | plan))


def _size_model(s: _Search) -> _SizeModel:
    if s.sizes is None:
        s.planned({n: c for n, c in _channels(s.net).items() if n in s.floor})
    return s.sizes


def _fit(s: _Search, cost):
    """`cost`, recorded; None (the table's additive model prices instead) where it tells the models it
    was fitted to apart by no more than its own error (and a nanosecond): timings with no dependence
    on channels (LeNet at 0.04 ms, noise) fit the constant alone, which prices every cut at nothing
    and any goal below the unpruned model out of reach, where the table's own measured widths, with
    the rounds' rescaled goals, still lead somewhere."""
    s.cost_models.append(cost.summary())
    return cost if cost.spread > max(cost.rmse, 1e-9) else None


def _table_points(s: _Search, table: dict) -> tuple[list, list]:
    from .profile import table_points

    return table_points(table, _size_model(s).features)


LATENCY_ROUNDS = 8  # measured plans of the latency objective, at most
LATENCY_TOLERANCE = 0.03  # a measured plan within 3% over its goal is taken
LATENCY_ROUND_SECONDS = 4.0  # each round's interleaved timing: ~2,500 runs a model at 0.8 ms, ~250 at 8 ms
LATENCY_MIN_SLOPE = 0.5  # measured ms per planned ms, at least, when the next goal is extrapolated
RETIME_SECONDS = 30.0  # each re-timing's interleaved run (VGG16: ~26 models at ~4 ms, ~290 runs each)
CONTEXT_WEIGHT = 4.0  # a model timed around a plan counts this many unpruned-table points in the cost fit


def _next_goal(rounds: list[dict], target_ms: float) -> float:
    """The goal to plan at next: the secant through the last two (goal, measured) rounds, where it
    slopes upward; after one round, the goal scaled by the miss. (Measured time falls slower than
    the table's prediction: scaling alone took four rounds to come within 4% on VGG16.) The slope is
    taken as at least LATENCY_MIN_SLOPE: two nearby rounds differ by little more than their timing
    noise, and a flat secant through noise leaps (MobileNetV2: slope 0.14, a goal of 0.31 ms where
    0.45 would do; VGG16's measured slopes were 0.42-2.0)."""
    g1, m1 = rounds[-1]["goal_ms"], rounds[-1]["measured_ms"]
    if len(rounds) > 1:
        g0, m0 = rounds[-2]["goal_ms"], rounds[-2]["measured_ms"]
        if g1 != g0 and (m1 - m0) / (g1 - g0) > 0:
            return max(1e-6, g1 + (target_ms - m1) / max(LATENCY_MIN_SLOPE, (m1 - m0) / (g1 - g0)))
    return g1 * target_ms / m1


def analysed_drop(s: _Search, analysis: dict, plan: dict[str, int]) -> float:
    """What the plan costs by the analysis: its layers' single-layer drops (in the --proxy measure),
    read off each sweep at the plan's ratio and summed; the allocator's objective, by which measured
    plans that meet the goal are compared."""
    field = _cost_field(s, analysis)
    channels = _channels(s.net)
    rows = {r["name"]: r for r in analysis["layers"]}
    return sum(_tradeoffs(rows[n], analysis["baseline"][field], 1 - k / channels[n], field)[-1][1]
               for n, k in plan.items() if n in rows and k < channels[n])


def plan_drop(s: _Search, analysis: dict, plan: dict[str, int]) -> float:
    """What a candidate plan costs, by which the plans made at each cap and the measured latency plans
    are compared (--select). `analysis`: `analysed_drop`, the single-layer drops summed. `adaptive-bn`:
    the plan cut whole on a copy, its BatchNorm statistics re-estimated on SELECT_ADAPT_IMAGES
    training images, its drop measured on the validation images in the --proxy measure (EagleEye, Li
    et al. 2020, ranks candidate structures this way: after adaptive BN their accuracy correlates
    with the accuracy after fine-tuning). The sum cannot see cuts that interact, nor a bottleneck
    that two cheap cuts make together. Measured once per plan."""
    if s.opts.select == "analysis":
        return analysed_drop(s, analysis, plan)
    key = tuple(sorted(plan.items()))
    if key not in s.adapted:
        if s.adapt_reference is None:
            x, y = s.fine.tensors
            images = x[data.stratified_indices(y, min(SELECT_ADAPT_IMAGES, len(y)), seed=s.opts.seed)]
            if s.opts.proxy == "fidelity":  # against the unpruned network after the same re-estimation
                s.val_reference = fidelity_reference(s.net, *s.val.tensors, images)
            baseline = {"top1": s.base_val, "fidelity": 100.0}
            s.adapt_reference = images, baseline[s.opts.proxy] if s.opts.proxy in baseline else _proxy_score(s, s.net)
        images, baseline = s.adapt_reference
        net = _apply(s.net, plan, s.shape)
        adapt_batchnorm(net, images)
        s.adapted[key] = baseline - _proxy_score(s, net)
    return s.adapted[key]


def _proxy_score(s: _Search, net: nn.Module) -> float:
    """The network on the validation images in the --proxy measure: top-1 %, confidence %, or fidelity
    % to the unpruned network (100 for the unpruned network itself)."""
    if s.opts.proxy == "top1":
        return evaluate(net, s.val)
    x, y = s.val.tensors
    out = logits(net, x)
    if s.opts.proxy == "confidence":
        return confidence(out, y)
    if s.val_reference is None:
        s.val_reference = fidelity_reference(s.net, x, y, None)
    ref, t_ref = s.val_reference
    return fidelity(out, ref, temperature(out, y), t_ref)


def _retime(s: _Search, analysis: dict, table: dict, plan: dict[str, int], centre: Path, centre_ms: float,
            tmp: Path) -> dict:
    """The table re-timed around `plan` (profile.around): each layer moved alone from the plan to the
    next width the analysis offers above it and below it (NetAdapt times one step per layer too), the
    points the cost model is refitted with. Two variants a layer, not all six: on MobileNetV2 each
    variant is a dependency graph and an export, about a second."""
    from .export import ExportOptions, export_onnx
    from .profile import around

    channels = _channels(s.net)
    ratios = {p["ratio"] for r in analysis["layers"] for p in r.get("sweep") or [r]} | {0.0}
    variants = {}
    for name in (n for n in plan if n in table["layers"]):
        offered = {_keep(s, channels, name, r) for r in ratios if r <= s.opts.max_layer_ratio}
        up, down = [k for k in offered if k > plan[name]], [k for k in offered if k < plan[name]]
        for keep in ([min(up)] if up else []) + ([max(down)] if down else []):
            variants[(name, keep)] = tmp / f"v{len(variants)}.onnx"
            export_onnx(_apply(s.net, plan | {name: keep}, s.shape), s.shape, variants[(name, keep)], ExportOptions())
    return around(table, plan, centre, variants, centre_ms, RETIME_SECONDS)


def measured_latency_plan(s: _Search, analysis: dict, table: dict, target_ms: float | None,
                          reference: Path | None = None, fraction: float = 1.0) -> tuple[dict, list]:
    """The latency plan, measured and re-planned until it meets its goal on the table's target.

    Plans are priced by a profile.CostModel fitted to the table's measurements (constant, MACs,
    parameters, activations), not by the table's additive model, which claims the convolution
    between two cut layers twice (VGG16 at 32 px, 15% of the parameters: additive 0.80 ms, measured
    3.1-3.3, cost model 3.26). NetAdapt measures its proposals in the context of the plan so far; here each
    plan is exported and timed (LATENCY_ROUND_SECONDS, the table's own settings: target, host,
    warmup), then the table is re-timed around it (`_retime`, --retimes times) and the cost model
    refitted with those points and every measured plan weighted CONTEXT_WEIGHT times the unpruned
    table's: fitted where it is used. Between re-timings the goal is rescaled by what the plan missed
    (`_next_goal`). Of the measured plans that meet the goal, the one the analysis prices lowest is
    taken (`plan_drop`). A hand-written table (no `options`) is taken as it is (additive). A goal the
    first plan's pricing cannot reach is refused only once the deepest plan, measured, misses it too:
    the goal is itself a timing, and its noise can fall under the pricing's floor.

    With a `reference` model (`--latency-of`) the goal is `fraction` of its latency, and each plan is
    timed against the reference itself: a ratio of two models of about one speed holds still when the
    machine's speed drifts, where a ratio to the unpruned model does not (on this shared 2-core
    machine MobileNetV2 at half its parameters measured 0.62 to 0.75 of the unpruned model's p50 from
    one run to the next, the slower the machine the lower)."""
    from .export import ExportOptions, export_onnx
    from .profile import CostModel, timed_ms, timed_ratio

    measured_table = bool(table.get("options")) and "measured_on" in table
    if reference is None and not measured_table:
        s.latency_goal_ms = target_ms
        return latency_plan(s, analysis, table, target_ms), []
    rounds, plans = [], []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base.onnx"
        export_onnx(s.net, s.shape, base, ExportOptions())
        if reference is not None:  # in the table's scale: where the plan starts; each round compares directly
            target_ms = fraction * timed_ms(table, base, reference, seconds=LATENCY_ROUND_SECONDS)
        s.latency_goal_ms = round(target_ms, 4)
        channels = _channels(s.net)
        feats, ms = _table_points(s, table)
        weights = [1.0] * len(ms)
        cost = _fit(s, CostModel(feats, ms, weights))
        price = _pricer(s, table, cost)
        since, retimes = 0, 0  # the first round the current fit priced; re-timings so far
        goal, floored = target_ms, None
        try:
            plan = latency_plan(s, analysis, table, target_ms, cost)
        except OutOfReach as e:  # by the prediction; the goal itself is a timing (noise on a 0.02 ms
            plan, floored = e.deepest, e  # LeNet put 1.0x of itself at 0.79): the deepest plan is measured first
            s.plan_cap, s.plan_lambda = _caps(s)[-1], None
        for i in range(LATENCY_ROUNDS):
            candidate = Path(tmp) / f"plan{i}.onnx"
            export_onnx(_apply(s.net, plan, s.shape), s.shape, candidate, ExportOptions())
            if reference is None:
                measured = timed_ms(table, base, candidate, seconds=LATENCY_ROUND_SECONDS)
            else:
                vs = timed_ratio(table, reference, candidate, seconds=LATENCY_ROUND_SECONDS)
                measured = target_ms * vs / fraction
            rounds.append({"goal_ms": round(goal, 4), "predicted_ms": round(price(plan), 4),
                           "measured_ms": round(measured, 4), "cap": s.plan_cap, "lambda": s.plan_lambda,
                           "analysed_drop": round(analysed_drop(s, analysis, plan), 4), "retimed": retimes}
                          | ({"adapted_drop": round(plan_drop(s, analysis, plan), 4)}
                             if s.opts.select == "adaptive-bn" else {})
                          | ({"vs_reference": round(vs, 4)} if reference is not None else {})
                          | ({"deepest": True} if floored is not None else {}))
            if floored is not None and measured > target_ms * (1 + LATENCY_TOLERANCE):
                raise CompressError(f"{floored}; measured, that plan takes {measured:.4g} ms")
            floored = None
            plans.append(plan)
            feats.append(_size_model(s).features(channels | plan))
            ms.append(measured)
            weights.append(CONTEXT_WEIGHT)
            whole = plan == {n: channels[n] for n in plan}
            if measured <= target_ms * (1 + LATENCY_TOLERANCE) and (whole or (
                    retimes == s.opts.retimes and measured >= target_ms * (1 - LATENCY_TOLERANCE))):
                break  # within 3% of the goal on a model refitted as often as asked, or met with no cut
            if retimes < s.opts.retimes:
                more, more_ms = _table_points(s, _retime(s, analysis, table, plan, candidate, measured, Path(tmp)))
                feats, ms, weights = feats + more, ms + more_ms, weights + [CONTEXT_WEIGHT] * len(more)
                cost, since, retimes, goal = _fit(s, CostModel(feats, ms, weights)), i + 1, retimes + 1, target_ms
                price = _pricer(s, table, cost)
            else:
                goal = _next_goal(rounds[since:], target_ms)
            try:
                plan = latency_plan(s, analysis, table, goal, cost)
            except CompressError:  # out of reach: the measured plans stand
                break
            if plan in plans:  # planned and measured already: measuring again would tell nothing new
                break
    meeting = [i for i, r in enumerate(rounds) if r["measured_ms"] <= target_ms * (1 + LATENCY_TOLERANCE)]
    best = min(meeting, key=lambda i: plan_drop(s, analysis, plans[i])) if meeting else len(rounds) - 1
    if not meeting:
        logger.warning("the latency plan measures %.3f ms against the goal %.3f ms after %d rounds",
                       rounds[best]["measured_ms"], target_ms, len(rounds))
    rounds[best]["chosen"] = True
    s.plan_cap, s.plan_lambda = rounds[best]["cap"], rounds[best]["lambda"]  # the chosen plan's, not the last
    return plans[best], rounds


def _step_keep(channels: int, step: float, unit: int) -> int:
    """Channels after one cut of `step`: at least one unit fewer (2 channels less 25% would round to
    2), never below one unit (then no cut is possible: `channels` back)."""
    return max(min(unit, channels), min(surgery.keep_count(channels, step, unit), channels - unit))


def _visits(s: _Search, plan: dict[str, int]) -> int:
    """How many cuts an ordered walk makes to bring every layer down to the plan."""
    total, channels = 0, _channels(s.net)
    for name, target in plan.items():
        c = channels.get(name, 0)
        while c > target:
            nxt = max(target, _step_keep(c, s.opts.step, s.unit(name)))
            if nxt == c:
                break
            c, total = nxt, total + 1
    return total


def _ordered(s: _Search, order: list[str], advance, lowest: dict[str, int]) -> None:
    """Rounds over the layers in order: each layer loses a step of its channels (never below
    `lowest`; in the accordion autoencoder it may go whole when it may reach its floor), the step
    is kept while the budget holds, and a rolled-back layer is frozen. Rounds repeat until the goal
    is met or no layer gives way, so the layers early in the order take the accuracy budget and,
    with a size goal, the last partial round."""
    done = set(s.frozen)  # rolled back (for good) or down to `lowest` (for this walk)
    params = s.params()
    while not s.goal_met(params) and len(done) < len(order):
        s.rounds += 1
        progressed = False
        for name in order:
            if name in done or s.goal_met(params):
                continue
            step = _step(s, name, lowest.get(name, 1), params, advance)
            if step is None:
                done.add(name)
            else:
                params, progressed = step, True
        if not progressed:
            break


def _step(s: _Search, name: str, lowest: int, params: int, advance) -> int | None:
    """One step on one layer: the new parameter count if kept, None if rolled back or impossible."""
    channels = _channels(s.net)
    if name not in channels:  # removed whole in an earlier step
        return None
    current = channels[name]
    candidates = []
    removable = surgery.removable_layers(s.net)
    if s.opts.remove_layers and lowest <= s.floor.get(name, 1) and name in removable and len(removable) > 1:
        removed, spec = surgery.remove_layer(s.net, s.spec, name)
        if s.params(removed) < params:
            candidates.append(("remove", removed, spec, 0))
    keep = max(_step_keep(current, s.opts.step, s.unit(name)), min(lowest, current))
    if keep < current:
        shrunk = copy.deepcopy(s.net)
        surgery.prune_layer(shrunk, name, keep, "l1", s.shape)
        candidates.append(("shrink", shrunk, s.spec, keep))
    for action, trial, spec, kept in candidates:
        acc, ok = s.trial(trial, s.opts.finetune_epochs, name)
        trial_params = s.params(trial)
        s.steps.append({"round": s.rounds, "layer": name, "action": action, "channels": current, "kept": kept,
                        "params": trial_params, "val_accuracy": acc, "accepted": ok})
        advance(info=f"{name} {action} {current}->{kept} val {acc:.2f}% {'kept' if ok else 'rolled back'}")
        if ok:
            s.net, s.spec = trial, spec
            return trial_params
    if candidates:
        s.frozen.add(name)
    return None


def _one_shot(s: _Search, advance) -> None:
    """The whole plan at once (Torch-Pruning's one-shot), then the fine-tuning an ordered walk to the
    same plan would have spent (one step's epochs per cut)."""
    s.rounds = 1
    cuts = _visits(s, s.plan)
    trial = _apply(s.net, s.plan, s.shape)
    acc, ok = s.trial(trial, s.opts.finetune_epochs * cuts, "one shot")
    params = s.params(trial)
    s.steps.append({"round": 1, "layer": "*", "action": "oneshot", "cuts": cuts, "params": params,
                    "val_accuracy": acc, "accepted": ok})
    advance(info=f"one shot: {params:,} params, val {acc:.2f}% {'kept' if ok else 'rolled back'}")
    if ok:
        s.net = trial


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
    from .onnxio import input_dims

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
    channels = _channels(st.prep.model)
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


def _for_target(src: str, dst: Path, opts: PruneOptions, *, force: bool, trust: bool) -> PruneOptions:
    """What `opts.target` implies: widths in multiples of the device's channel step, and for the
    latency objective without a table, the table, profiled now with the target's settings (cached
    per model) and written beside `dst`."""
    if not opts.target:
        return opts
    from .bench import load_target

    for table in _profiles_beside(dst, opts):
        from . import profile

        profile.run(src, table, profile.ProfileOptions(data=opts.data, target=opts.target,
                                                       include_linear=opts.include_linear), force=force, trust=trust)
        opts = replace(opts, latency_table=table)
    return replace(opts, round_to=math.lcm(opts.round_to, load_target(opts.target).runtime.channel_multiple))


def _profiles_beside(dst: Path, opts: PruneOptions) -> list[Path]:
    """The latency table `_for_target` will profile and write beside `dst`, if it must."""
    needed = opts.target and opts.latency_goal and opts.latency_table is None
    return [dst.with_suffix(".latency.json")] if needed else []


def run(src: str, dst: Path, opts: PruneOptions, *, force: bool = False, trust: bool = False) -> artifact.Artifact:
    """Prune a model toward the goal and write the smaller model with its step log."""
    opts.validate()
    dst = Path(dst)
    artifact.check_output(dst, force, *_profiles_beside(dst, opts))
    opts = _for_target(src, dst, opts, force=force, trust=trust)
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
    channels_before, channels_after = _channels(prep.model), _channels(s.net)
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
    artifact.check_output(dst, force, dst.with_suffix(".png"), *_profiles_beside(dst, opts))
    opts = _for_target(src, dst, opts, force=force, trust=trust)
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
    from .report import plot_orders
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
