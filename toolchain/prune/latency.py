"""The latency objective: plans priced in milliseconds from a measured table (`compress profile`) and a
fitted cost model, each proposal timed, the table re-timed around the plan (NetAdapt)."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from .. import cost
from ..convert import export_onnx
from ..cost import CostModel, SizeModel, channel_counts, predicted_ms, table_points, timed_ms, timed_ratio
from ..errors import CompressError
from .plans import _caps, _cheapest, _cost_field, _lagrangian, _tradeoffs, analysed_drop, plan_drop
from .search import _apply, _between, _keep, _Search

logger = logging.getLogger(__name__)


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
    channels = channel_counts(s.net)
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


def _pricer(s: _Search, table: dict, cost=None):
    """plan -> predicted ms (layers not named: unpruned): by `cost` where given, else the table's additive model."""
    if cost is None:
        return lambda plan: predicted_ms(table, plan)
    channels = channel_counts(s.net)
    return lambda plan: cost.ms(_size_model(s).features(channels | plan))


def _size_model(s: _Search) -> SizeModel:
    if s.sizes is None:
        s.planned({n: c for n, c in channel_counts(s.net).items() if n in s.floor})
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


def _retime(s: _Search, analysis: dict, table: dict, plan: dict[str, int], centre: Path, centre_ms: float,
            tmp: Path) -> dict:
    """The table re-timed around `plan` (profile.around): each layer moved alone from the plan to the
    next width the analysis offers above it and below it (NetAdapt times one step per layer too), the
    points the cost model is refitted with. Two variants a layer, not all six: on MobileNetV2 each
    variant is a dependency graph and an export, about a second."""

    channels = channel_counts(s.net)
    ratios = {p["ratio"] for r in analysis["layers"] for p in r.get("sweep") or [r]} | {0.0}
    variants = {}
    for name in (n for n in plan if n in table["layers"]):
        offered = {_keep(s, channels, name, r) for r in ratios if r <= s.opts.max_layer_ratio}
        up, down = [k for k in offered if k > plan[name]], [k for k in offered if k < plan[name]]
        for keep in ([min(up)] if up else []) + ([max(down)] if down else []):
            variants[(name, keep)] = tmp / f"v{len(variants)}.onnx"
            export_onnx(_apply(s.net, plan | {name: keep}, s.shape), s.shape, variants[(name, keep)])
    return cost.around(table, plan, centre, variants, centre_ms, RETIME_SECONDS)


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

    measured_table = bool(table.get("options")) and "measured_on" in table
    if reference is None and not measured_table:
        s.latency_goal_ms = target_ms
        return latency_plan(s, analysis, table, target_ms), []
    rounds, plans = [], []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base.onnx"
        export_onnx(s.net, s.shape, base)
        if reference is not None:  # in the table's scale: where the plan starts; each round compares directly
            target_ms = fraction * timed_ms(table, base, reference, seconds=LATENCY_ROUND_SECONDS)
        s.latency_goal_ms = round(target_ms, 4)
        channels = channel_counts(s.net)
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
            export_onnx(_apply(s.net, plan, s.shape), s.shape, candidate)
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
