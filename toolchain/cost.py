"""What a plan costs: parameters, MACs and activations at any channel widths (SizeModel), and
milliseconds, from a measured latency table (`compress profile`): NetAdapt's additive model, the
table re-timed around a plan, and a fitted cost model (CostModel). Shared by prune's planners and
profile's table; it knows neither stage.
"""

from __future__ import annotations

import copy
import itertools
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import measure, surgery


def channel_counts(model: nn.Module) -> dict[str, int]:
    """Output channels of every convolution and fully-connected layer, by name."""
    return {n: surgery.out_channels(m)
            for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


class SizeModel:
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
        self.channels = channel_counts(net)
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
        """The plan's terms of CostModel: 1, MACs (millions), parameters (millions) and the
        weighted layers' output activations (thousands)."""
        macs = acts = 0.0
        sizes = self._sizes(plan)
        for p, dims in sizes.items():
            module = p.rpartition(".")[0]
            if p.endswith("weight") and len(dims) > 1 and module in self.pixels:
                macs += math.prod(dims) * self.pixels[module]
                acts += dims[0] * self.pixels[module]
        return [1.0, macs / 1e6, sum(math.prod(d) for d in sizes.values()) / 1e6, acts / 1e3]


def table_points(table: dict, features) -> tuple[list, list]:
    """(features, ms) of every model the table timed: the unpruned model, or a re-timed table's centre
    plan, with one layer moved to each width it measured; `features(plan)` gives a plan's cost terms."""
    centre = table.get("centre", {})
    feats, ms = [features(centre)], [table["base_ms"]]
    for name, row in table["layers"].items():
        for keep, t in row["ms"].items():
            if int(keep) != centre.get(name, row["channels"]):
                feats.append(features(centre | {name: int(keep)}))
                ms.append(t)
    return feats, ms


def predicted_ms(table: dict, channels: dict[str, int]) -> float:
    """The model's latency with each layer at `channels` (others unpruned), from the table: the base
    time less each layer's own saving, interpolated linearly between measured widths (NetAdapt's
    additive model)."""
    total = table["base_ms"]
    for name, keep in channels.items():
        if name in table["layers"]:
            total -= table["base_ms"] - layer_ms(table, name, keep)
    return total


def timed_ratio(table: dict, reference: Path, candidate: Path, runs: int | None = None,
                warmup: int | None = None, seconds: float | None = None) -> float:
    """`candidate`'s p50 over `reference`'s, timed interleaved in one run with the table's own
    settings (target, host; its runs and warmup unless given; for `seconds` instead of runs where
    given). A hand-written table (no `options`) times here with the defaults."""
    settings = table.get("options") or {}
    rep = measure.interleaved([reference, candidate], runs=runs or settings.get("runs", 100), seconds=seconds,
                      warmup=settings.get("warmup", 10) if warmup is None else warmup,
                      host=settings.get("host"), target=settings.get("target"))
    before, after = (m["p50_ms"] for m in rep["models"])
    return after / before


def timed_ms(table: dict, base: Path, candidate: Path, runs: int | None = None, warmup: int | None = None,
             seconds: float | None = None) -> float:
    """`candidate`'s p50 in the table's scale: its ratio to the unpruned model `base` (timed_ratio)
    times the table's unpruned p50."""
    return table["base_ms"] * timed_ratio(table, base, candidate, runs, warmup, seconds)


def around(table: dict, plan: dict[str, int], centre: Path, variants: dict[tuple[str, int], Path],
           centre_ms: float, seconds: float) -> dict:
    """The table re-timed around `plan`, as NetAdapt times each proposal in the context of the plan
    so far: the plan's model `centre` and each variant (one layer moved off the plan, up or down)
    timed interleaved with the table's settings, each as its ratio to the centre times `centre_ms`.
    The additive model holds near its centre; far from it, it counts the convolution between two cut
    layers twice (on VGG16 the unpruned table put the parameter objective's plan at 15% of the
    parameters at 0.80 ms of 10.3, where it measured 3.2)."""
    settings = table.get("options") or {}
    files = [centre, *variants.values(), centre]  # the centre twice: the first slot of a run can read slow
    rep = measure.interleaved(files, seconds=seconds, warmup=settings.get("warmup", 10),
                      host=settings.get("host"), target=settings.get("target"))
    p50 = [m["p50_ms"] for m in rep["models"]]
    scale = centre_ms / min(p50[0], p50[-1])
    layers = {name: {"channels": row["channels"], "kind": row.get("kind"),
                     "ms": {str(plan.get(name, row["channels"])): centre_ms}} for name, row in table["layers"].items()}
    for (name, keep), ms in zip(variants, p50[1:-1], strict=True):  # more channels never measure faster
        clamp = max if keep > plan.get(name, layers[name]["channels"]) else min  # (timing noise does)
        layers[name]["ms"][str(keep)] = clamp(ms * scale, centre_ms)
    return table | {"base_ms": centre_ms, "layers": layers, "centre": dict(plan), "runs": rep["runs"]}


def layer_ms(table: dict, name: str, keep: int) -> float:
    """The whole model's p50 with only layer `name` at `keep` channels (interpolated)."""
    points = sorted((int(k), v) for k, v in table["layers"][name]["ms"].items())
    if keep <= points[0][0]:
        (k0, v0), (k1, v1) = points[0], points[min(1, len(points) - 1)]
    else:
        i = next((i for i, (k, _) in enumerate(points) if k >= keep), len(points) - 1)
        (k0, v0), (k1, v1) = points[max(0, i - 1)], points[i]
    return v0 if k1 == k0 else v0 + (v1 - v0) * (keep - k0) / (k1 - k0)


class CostModel:
    """A plan's latency as a constant plus compute, weight traffic and activation traffic:
    ms = c + a * MACs + b * parameters + g * activations, the coefficients fitted (non-negative, least
    squares, weighted) to measured models. The table's additive model sums each layer's saving as
    timed with every other layer whole, so a cut layer and the one that reads it both claim their
    shared convolution: on VGG16 it put the parameter objective's plan at 15% of the parameters at
    0.80 ms of 10.3, where it measured 3.1-3.3. Counting a plan's MACs and parameters as they are, all
    cuts together, no saving is claimed twice; fitted to the table alone, this model put the same
    plan at 3.26 ms. Each `feature` row is `CostModel.terms` long, as `SizeModel.features` gives."""

    terms = ("ms", "ms per M MACs", "ms per M parameters", "ms per k activations")
    parts = ("fixed", "compute", "weights", "activations")  # what each term's share of a time is called

    def __init__(self, features: list[list[float]], ms: list[float], weights: list[float] | None = None) -> None:
        x, y = np.asarray(features, float), np.asarray(ms, float)
        w = np.sqrt(np.asarray(weights if weights is not None else [1.0] * len(ms), float))[:, None]
        best = (np.inf, np.zeros(x.shape[1]))
        for k in range(1, x.shape[1] + 1):  # non-negative least squares over 4 terms: every subset, exactly
            for cols in itertools.combinations(range(x.shape[1]), k):
                coef = np.zeros(x.shape[1])
                coef[list(cols)] = np.linalg.lstsq(x[:, cols] * w, y * w[:, 0], rcond=None)[0]
                err = float(np.sum(((x @ coef - y) * w[:, 0]) ** 2))
                if coef.min() >= 0 and err < best[0]:
                    best = (err, coef)
        self.coef = best[1]
        self.rmse = float(np.sqrt(np.mean((x @ self.coef - y) ** 2)))
        self.spread = float(np.ptp(x @ self.coef))  # the most it tells two fitted models apart by, ms

    def ms(self, features: list[float]) -> float:
        return float(sum(c * f for c, f in zip(self.coef, features, strict=True)))

    def summary(self) -> dict:
        return {t: round(float(c), 6) for t, c in zip(self.terms, self.coef, strict=True)} | \
            {"rmse_ms": round(self.rmse, 4)}
