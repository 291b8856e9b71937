"""The state of one pruning search (the network, its budget and what the plans and the walk share), and
the physical cuts it makes: a plan applied, global L1 shrinking (Torch-Pruning), floors per layer."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import TensorDataset

from .. import artifact, surgery
from ..cost import SizeModel, channel_counts
from ..importance import get_criterion
from ..train import (
    evaluate,
    fit,
)
from .options import PLAN_TOLERANCE, PruneOptions


def _global_shrink(net: nn.Module, ratio: float, coupled: set[str], shape, round_to: int,
                   max_layer_ratio: float = 0.95) -> nn.Module:
    """A copy with `ratio` of all channels of the `coupled` layers removed by one global L1 ranking
    (Torch-Pruning's MetaPruner, which keeps grouped convolutions' blocks equal itself)."""
    import torch_pruning as tp

    clone = copy.deepcopy(net)
    ignored = [m for n, m in clone.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and n not in coupled]
    pruner = tp.pruner.MetaPruner(clone, torch.zeros(1, *shape), importance=get_criterion("l1"),
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


def _floors(channels: dict[str, int], max_layer_ratio: float, units: dict[str, int] | None = None) -> dict[str, int]:
    """Channels each layer keeps at least (--max-layer-ratio), up to a whole number of its units."""
    units = units or {}
    return {n: min(c, _snap(max(1, int(round(c * (1 - max_layer_ratio)))), units.get(n, 1), up=True))
            for n, c in channels.items()}


def _snap(channels: int, unit: int, up: bool = False) -> int:
    """A channel count moved to a multiple of `unit` (never below one unit)."""
    return max(unit, (-(-channels // unit) if up else channels // unit) * unit)


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
    sizes: SizeModel | None = None  # parameter counts of plans, measured once on the unpruned model
    candidates: list = field(default_factory=list)  # the plans made at each cap and what each was priced at
    adapted: dict = field(default_factory=dict)  # --select adaptive-bn: each plan's measured drop
    adapt_reference: tuple | None = None  # --select adaptive-bn: (training images for BatchNorm, unpruned score)
    val_reference: tuple | None = None  # --proxy fidelity: the unpruned network's logits on `val`, its temperature
    spent: float = 0.0  # fine-tune epochs the walk has given its candidates (an equal-budget control gets them too)

    def __post_init__(self) -> None:
        self.floor = _floors(channel_counts(self.net), self.opts.max_layer_ratio, self.units)

    def unit(self, name: str) -> int:
        return self.units.get(name, self.opts.round_to)

    def params(self, net: nn.Module | None = None) -> int:
        """Parameter count (the same figure as artifact.count, without its copy and forward pass)."""
        return artifact.param_count(net if net is not None else self.net)

    def planned(self, plan: dict[str, int]) -> int:
        """Parameters of the model with each named layer cut to its channel count in `plan`
        (the search's unpruned model; counted by `SizeModel`, not by pruning a copy)."""
        if self.sizes is None:
            self.sizes = SizeModel(self.net, list(plan), self.units, self.shape)
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


def _keep(s: _Search, channels: dict[str, int], name: str, ratio: float) -> int:
    """Channels `name` keeps cut by `ratio`, in whole units, never below its floor."""
    return max(s.floor[name], surgery.keep_count(channels[name], ratio, s.unit(name)))


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
    channels = channel_counts(s.net)  # coarse layers (LeNet's 16 filters): top layers up alone, widest (finest) first
    for name in sorted(plan, key=lambda n: -channels[n]):
        u = s.unit(name)  # bisect over whole units
        low, high = plan[name] // u, channels[name] // u
        while high - low > 1:
            mid = (low + high) // 2
            low, high = (mid, high) if fits(plan | {name: mid * u}) else (low, mid)
        plan[name] = max(plan[name], (high if fits(plan | {name: high * u}) else low) * u)
    return plan
