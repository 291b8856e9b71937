"""The walk: the order in which layers are cut toward the plan, a step at a time, each step
fine-tuned and kept while the accuracy budget holds (else rolled back and the layer frozen)."""

from __future__ import annotations

import copy

from .. import surgery
from ..cost import channel_counts
from .search import _apply, _Search


def _step_keep(channels: int, step: float, unit: int) -> int:
    """Channels after one cut of `step`: at least one unit fewer (2 channels less 25% would round to
    2), never below one unit (then no cut is possible: `channels` back)."""
    return max(min(unit, channels), min(surgery.keep_count(channels, step, unit), channels - unit))


def _visits(s: _Search, plan: dict[str, int]) -> int:
    """How many cuts an ordered walk makes to bring every layer down to the plan."""
    total, channels = 0, channel_counts(s.net)
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
    channels = channel_counts(s.net)
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
