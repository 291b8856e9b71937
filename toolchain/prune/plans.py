"""The plans: how many channels each layer keeps. A plan is a function from the search and the analysis
to channels per layer, fitted to the size goal within PLAN_TOLERANCE (`make_plan` dispatches on `Plan`)."""

from __future__ import annotations

import logging
import random

from torch import nn

from .. import data, surgery
from ..cost import channel_counts
from ..errors import CompressError
from ..train import (
    adapt_batchnorm,
    confidence,
    evaluate,
    fidelity,
    fidelity_reference,
    logits,
    temperature,
)
from .options import PLAN_TOLERANCE, PROXIES, SELECT_ADAPT_IMAGES, Order, Plan, PruneOptions
from .search import PLAN_CAPS, SELECT_MAX_CAP, UNMEASURED_SLOPE, _apply, _fill, _global_ratio, _keep, _Search

logger = logging.getLogger(__name__)


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
    channels = channel_counts(s.net)
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


def _lagrangian(s: _Search, options_at, fits, caps: list[float] | None = None) -> tuple[dict | None, dict]:
    """The allocator of the sensitivity and latency plans. At the mildest cap of `caps` (`_caps(s)`) whose
    deepest options `fits`, each layer takes the option (ratio, accuracy drop, gain) of
    `options_at(cap)` that maximises `lam * gain - drop`, and `lam` is bisected (log scale) until the
    plan just fits. Returns the plans at the two ends of the bisection, the fitting one first (and
    sets the search's plan_cap and plan_lambda), or None and the deepest plan tried if none fits."""
    channels = channel_counts(s.net)

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


def _uniform_plan(s: _Search, names: list[str]) -> dict[str, int]:
    """Every layer cut by one ratio, bisected to the goal, then filled up to it."""
    channels = channel_counts(s.net)

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
        small, big = channel_counts(shrunk), channel_counts(near)
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


def analysed_drop(s: _Search, analysis: dict, plan: dict[str, int]) -> float:
    """What the plan costs by the analysis: its layers' single-layer drops (in the --proxy measure),
    read off each sweep at the plan's ratio and summed; the allocator's objective, by which measured
    plans that meet the goal are compared."""
    field = _cost_field(s, analysis)
    channels = channel_counts(s.net)
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
