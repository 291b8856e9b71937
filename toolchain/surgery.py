"""Physical structured pruning of one layer at a time, through torch-pruning's dependency graph.

The two plug-ins live here as small registries (STYLE rules 5-6): a *criterion* scores the
channels of a dependency group (torch-pruning's Importance), and `prunable_layers` says which
layers can lose output channels at all, and why not when they cannot.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .errors import CompressError

logger = logging.getLogger(__name__)

CRITERIA: dict[str, Callable[[], object]] = {}


def register_criterion(name: str):
    def deco(factory):
        if name in CRITERIA:
            raise ValueError(f"criterion {name!r} registered twice")
        CRITERIA[name] = factory
        return factory
    return deco


def get_criterion(name: str):
    """A torch-pruning Importance for a criterion name."""
    if name not in CRITERIA:
        raise CompressError(f"unknown criterion {name!r}; known: {', '.join(CRITERIA)}")
    return CRITERIA[name]()


@register_criterion("l1")
def _l1():
    import torch_pruning as tp
    return tp.importance.GroupMagnitudeImportance(p=1)


@register_criterion("l2")
def _l2():
    import torch_pruning as tp
    return tp.importance.GroupMagnitudeImportance(p=2)


@register_criterion("fpgm")
def _fpgm():
    import torch_pruning as tp
    return tp.importance.FPGMImportance(p=2)


@register_criterion("bn-scale")
def _bn():
    import torch_pruning as tp
    return tp.importance.BNScaleImportance()


@register_criterion("random")
def _random():
    import torch_pruning as tp
    return tp.importance.RandomImportance()


@dataclass(frozen=True)
class Layer:
    """A prunable layer: its module name, type and output channels (or why it is skipped)."""

    name: str
    kind: str
    channels: int
    skip: str | None = None


def graph(model: nn.Module, input_shape: tuple[int, ...]):
    import torch_pruning as tp

    try:
        return tp.DependencyGraph().build_dependency(model, example_inputs=torch.zeros(1, *input_shape),
                                                     verbose=False)
    except (ZeroDivisionError, IndexError, KeyError, ValueError, RuntimeError, AttributeError) as e:
        raise CompressError(f"torch-pruning cannot trace this model's dependency graph "
                            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'no message'}); "
                            f"layers joined by channel shuffles or custom ops are not supported") from e


def _out_fn(m: nn.Module):
    import torch_pruning as tp

    return tp.prune_linear_out_channels if isinstance(m, nn.Linear) else tp.prune_conv_out_channels


def output_layers(model: nn.Module, input_shape: tuple[int, ...]) -> set[str]:
    """Names of the layers whose outputs are the model's outputs (never pruned: they are the classes)."""
    model.eval()
    x = torch.zeros(1, *input_shape)
    seen: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: seen.__setitem__(n, o))
             for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.inference_mode():
            out = model(x)
    finally:
        for h in hooks:
            h.remove()
    outs = out if isinstance(out, (tuple, list)) else [out]
    return {n for n, t in seen.items() for o in outs if t.shape == o.shape and torch.equal(t, o)}


def prunable_layers(model: nn.Module, input_shape: tuple[int, ...], include_linear: bool = False) -> list[Layer]:
    """Every convolution (and Linear with include_linear) in forward order, each with a skip
    reason when it cannot be pruned alone: the output layer, a single channel, or a dependency
    group already led by an earlier layer (depthwise convs, residual adds)."""
    dg = graph(model, input_shape)
    outputs = output_layers(model, input_shape)
    layers, group_owner = [], {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            kind, channels = "conv", m.out_channels
        elif isinstance(m, nn.Linear):
            kind, channels = "linear", m.out_features
        else:
            continue
        skip = None
        if name in outputs:
            skip = "output layer: its channels are the model's outputs"
        elif kind == "linear" and not include_linear:
            skip = "linear layer (pass --include-linear to analyze it)"
        elif channels < 2:
            skip = "fewer than 2 channels"
        else:
            group = dg.get_pruning_group(m, _out_fn(m), idxs=[0])
            members = frozenset(dep.target.module for dep, _ in group
                                if dg.is_out_channel_pruning_fn(dep.handler)
                                and isinstance(dep.target.module, (nn.Conv2d, nn.Linear)))
            owner = next((group_owner[k] for k in group_owner if k & members), None)
            if owner is not None:
                skip = f"same dependency group as {owner}"
            else:
                group_owner[members] = name
        layers.append(Layer(name, kind, channels, skip))
    return layers


def keep_count(channels: int, ratio: float, round_to: int = 1) -> int:
    """Channels left after pruning `ratio` of them, rounded to a multiple of round_to, at least 1."""
    keep = max(1, int(round(channels * (1 - ratio))))
    if round_to > 1:
        keep = max(round_to, int(round(keep / round_to)) * round_to)
    return min(channels, keep)


def prune_layer(model: nn.Module, name: str, keep: int, criterion: str, input_shape: tuple[int, ...],
                dg=None) -> int:
    """Physically remove output channels of layer `name` (and its whole dependency group) in
    place, keeping the `keep` most important by `criterion`. Returns channels removed."""
    m = dict(model.named_modules()).get(name)
    if not isinstance(m, (nn.Conv2d, nn.Linear)):
        raise CompressError(f"no convolution or linear layer named {name!r} in the model")
    dg = dg or graph(model, input_shape)
    channels = m.out_channels if isinstance(m, nn.Conv2d) else m.out_features
    n_remove = channels - keep
    if n_remove <= 0:
        return 0
    group = dg.get_pruning_group(m, _out_fn(m), idxs=list(range(channels)))
    scores = get_criterion(criterion)(group)
    if scores is None:  # e.g. bn-scale on a layer without BatchNorm
        raise CompressError(f"criterion {criterion!r} cannot score layer {name!r}")
    idxs = torch.argsort(scores)[:n_remove].tolist()
    group = dg.get_pruning_group(m, _out_fn(m), idxs=idxs)
    if not dg.check_pruning_group(group):
        raise CompressError(f"pruning {n_remove} channels of {name!r} would empty a layer")
    group.prune()
    return n_remove


def pruned_copy(model: nn.Module, name: str, keep: int, criterion: str, input_shape) -> nn.Module:
    """A pruned deep copy; the original is untouched."""
    clone = copy.deepcopy(model)
    prune_layer(clone, name, keep, criterion, input_shape)
    return clone


def removable_layers(model: nn.Module) -> list[str]:
    """Hidden layers that can be removed whole (the accordion autoencoder's blocks), by Linear name."""
    from .models.zoo import AccordionAE

    if not isinstance(model, AccordionAE):
        return []
    return [f"hidden.{i}.0" for i, b in enumerate(model.hidden) if not isinstance(b, nn.Identity)]


def remove_layer(model: nn.Module, spec: str, name: str) -> tuple[nn.Module, str]:
    """Drop a whole hidden layer of an accordion autoencoder: a new model and its spec.

    The next layer, which now reads the previous layer's output, starts from the product of the
    two linear maps (the removed layer's eval-mode BatchNorm folded in, its ReLU taken as
    identity): a warm start that fine-tuning then corrects.
    """
    from .models import build
    from .models.zoo import AccordionAE

    if not isinstance(model, AccordionAE) or name not in removable_layers(model):
        raise CompressError(f"{name!r} is not a removable hidden layer of this model")
    idx = int(name.split(".")[1])
    if len(removable_layers(model)) <= 1:
        raise CompressError("cannot remove the last hidden layer")
    widths = [0 if isinstance(b, nn.Identity) else b[0].out_features for b in model.hidden]  # as pruned now
    widths[idx] = 0
    base, _, query = spec.partition("?")
    from urllib.parse import parse_qsl, urlencode
    kw = dict(parse_qsl(query)) | {"widths": ",".join(map(str, widths))}
    new_spec = f"{base}?{urlencode(kw, safe=',')}"
    in_features = next(b[0].in_features for b in model.hidden if not isinstance(b, nn.Identity))
    num_classes = model.head.out_features if model.head_kind == "classifier" else 0
    new = build(new_spec, (in_features,), num_classes).model
    block = model.hidden[idx]
    lin, bn = block[0], block[1]
    scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach()
    w_eff = scale[:, None] * lin.weight.detach()
    b_eff = scale * (lin.bias.detach() - bn.running_mean) + bn.bias.detach()
    nxt = next((f"hidden.{j}.0" for j in range(idx + 1, len(widths)) if widths[j]), "head")
    old_state, new_state = model.state_dict(), new.state_dict()
    for key in new_state:
        if key.startswith(nxt + "."):
            continue
        if key in old_state and old_state[key].shape == new_state[key].shape:
            new_state[key] = old_state[key]
    w_next, b_next = old_state[nxt + ".weight"], old_state[nxt + ".bias"]
    new_state[nxt + ".weight"] = w_next @ w_eff
    new_state[nxt + ".bias"] = b_next + w_next @ b_eff
    new.load_state_dict(new_state)
    return new.eval(), new_spec
