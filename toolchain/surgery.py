"""Physical structured pruning of one layer at a time, through torch-pruning's dependency graph.

A cut's channels are chosen by a criterion (`toolchain.importance`, torch-pruning's Importance);
`prunable_layers` says which layers can lose output channels at all, and why not when they cannot.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from .errors import CompressError
from .importance import get_criterion

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class Layer:
    """A prunable layer: its module name, type and output channels (or why it is skipped)."""

    name: str
    kind: str
    channels: int
    skip: str | None = None
    multiple: int = 1  # its channel count stays a multiple of this (the groups of grouped convolutions it feeds)


def _tolerate_channel_shuffles() -> None:
    """Let torch-pruning trace a network with a channel shuffle instead of dividing by zero.

    A shuffle reshapes the channel dimension into (groups, channels / groups) and back, which
    torch-pruning's index mapping cannot express (ShuffleNetV2 fails inside it). The wrapper records
    such reshapes on the graph (`unmapped`) instead; every layer whose dependency group reaches one
    is then refused with that reason, and the layers that do not (the branch convolutions between
    two shuffles) stay prunable."""
    from torch_pruning.dependency import index_mapping

    original = index_mapping.update_reshape_index_mapping
    if getattr(original, "compress_wrapped", False):
        return

    def update(graph, node):
        sizes = getattr(node.grad_fn, "_saved_self_sym_sizes", None)
        try:
            if sizes is not None and len(sizes) > 4:  # (b, g, c/g, h, w) back to (b, c, h, w)
                raise ValueError("channel dimension split into groups")
            original(graph, node)
        except (ValueError, ZeroDivisionError, IndexError):
            graph.__dict__.setdefault("unmapped", set()).add(node)

    update.compress_wrapped = True
    index_mapping.update_reshape_index_mapping = update

    # A concatenation whose inputs' widths torch-pruning cannot infer (its recursive shape inference
    # stops at a fixed depth: Swin-S's patch merging) is likewise recorded, not a TypeError.
    concat = index_mapping.update_concat_index_mapping

    def update_concat(graph, node):
        try:
            concat(graph, node)
        except TypeError:
            graph.__dict__.setdefault("unmapped", set()).add(node)

    index_mapping.update_concat_index_mapping = update_concat

    # Channels-last reshapes (Swin's windows) chain flatten mappings whose index lists multiply
    # without bound: minutes per layer, then a meaningless cut. Past MAX_MAPPED indices, give up.
    flatten = index_mapping._FlattenIndexMapping
    expand = flatten.__call__

    def call(self, idxs):
        if not self.reverse and len(idxs) * self._stride > MAX_MAPPED:
            raise ValueError("index mapping explodes (channels-last reshapes)")
        return expand(self, idxs)

    flatten.__call__ = call


MAX_MAPPED = 1 << 18  # indices one flatten may map a cut to (VGG16 at 224 px: 512 x 7 x 7 = 25,088)


def _map_once_per_shape() -> None:
    """Let torch-pruning rebuild its index maps only when a cut has changed some layer's shape.

    It rebuilds every concatenation's, split's and reshape's map before each group lookup, and a
    concatenation's rebuild is quadratic in its inputs: on DenseNet-201 that was 300 s of the
    490 s an analyze and prune took. The maps follow from the layers' widths alone, so a lookup on
    a network whose parameter shapes are those of the last rebuild (an analysis's masked cuts,
    `prunable_layers`) keeps them; a physical cut changes a shape and rebuilds them."""
    from torch_pruning.dependency import index_mapping

    rebuild = index_mapping.update_index_mapping
    if getattr(rebuild, "compress_wrapped", False):
        return

    def update(graph):
        shapes = tuple(tuple(p.shape) for p in graph.model.parameters())
        if graph.__dict__.get("mapped_for") != shapes:
            rebuild(graph)
            graph.mapped_for = shapes

    update.compress_wrapped = True
    index_mapping.update_index_mapping = update


def graph(model: nn.Module, input_shape: tuple[int, ...]):
    import torch_pruning as tp

    _tolerate_channel_shuffles()
    _map_once_per_shape()
    try:
        return tp.DependencyGraph().build_dependency(model, example_inputs=torch.zeros(1, *input_shape),
                                                     verbose=False)
    except (ZeroDivisionError, IndexError, KeyError, ValueError, RuntimeError, AttributeError) as e:
        raise CompressError(f"torch-pruning cannot trace this model's dependency graph "
                            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'no message'}); "
                            f"layers joined by channel shuffles or custom ops are not supported") from e


def out_channels(m: nn.Module) -> int:
    """Output channels of a convolution, output features of a linear layer."""
    return m.out_channels if isinstance(m, nn.modules.conv._ConvNd) else m.out_features


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


def _grouped(m: nn.Module) -> bool:
    """A grouped convolution that is not depthwise (torch-pruning prunes depthwise ones channel by channel)."""
    return isinstance(m, nn.Conv2d) and m.groups > 1 and not (m.groups == m.in_channels == m.out_channels)


def blocks(group) -> int:
    """How many equal blocks a dependency group's channels fall into: the least common multiple of
    the `groups` of every grouped convolution whose input or output channels the group cuts. A cut
    must take the same positions from every block, or the convolution's groups come apart."""
    out = 1
    for dep, _ in group:
        if _grouped(dep.target.module):
            out = math.lcm(out, dep.target.module.groups)
    return out


def misaligned(dg, group) -> str | None:
    """Why a block-symmetric cut of this group would still break the network, or None: it reaches
    a channel shuffle, an attention layer's embedding, or a grouped convolution out of step with
    its groups.

    A concatenation can shift a layer's channels against the groups of a convolution that reads
    them (48 channels of a 64-channel input cut in groups of 16): the same positions of the layer's
    own blocks are then different positions of the convolution's groups."""
    unmapped = getattr(dg, "unmapped", set())
    for dep, idxs in group:
        if dep.target in unmapped or dep.source in unmapped:
            return ("its channels pass through a reshape that splits the channel dimension "
                    "(a channel shuffle, or a transformer's window partition) or a concatenation of "
                    "widths torch-pruning cannot infer")
        m = dep.target.module
        if isinstance(m, nn.MultiheadAttention):
            return ("its channels are an attention layer's embedding width (the residual stream); "
                    "the MLP's hidden channels are prunable (--include-linear)")
        if not _grouped(m):
            continue
        n = m.out_channels if dg.is_out_channel_pruning_fn(dep.handler) else m.in_channels
        width = n // m.groups
        cut = set(int(i) for i in idxs)
        if any({(i % width) + g * width for g in range(m.groups)} - cut for i in cut):
            return (f"its channels reach the grouped convolution {_name_of(dg, m)} (groups={m.groups}) out of "
                    f"step with its groups (through a concatenation or a reshape)")
    return None


def _name_of(dg, m: nn.Module) -> str:
    return getattr(dg, "_module2name", {}).get(m) or type(m).__name__


def _symmetric(scores: torch.Tensor, n_remove: int, n_blocks: int) -> list[int]:
    """The `n_remove` least important channels, the same positions in each of `n_blocks` blocks
    (importance averaged over the blocks, as torch-pruning's MetaPruner does for grouped layers)."""
    width = len(scores) // n_blocks
    pos = torch.argsort(scores.view(n_blocks, width).mean(0))[:n_remove // n_blocks].tolist()
    return sorted(p + b * width for b in range(n_blocks) for p in pos)


def prunable_layers(model: nn.Module, input_shape: tuple[int, ...], include_linear: bool = False) -> list[Layer]:
    """Every convolution (and Linear with include_linear) in forward order, each with a skip
    reason when it cannot be pruned alone: the output layer, a single channel, a dependency group
    already led by an earlier layer (depthwise convs, residual adds), or a cut torch-pruning cannot
    map or that would break a channel shuffle or a grouped convolution's groups. `multiple` is the
    channel step a layer's cuts take (the groups of the grouped convolutions it feeds)."""
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
        skip, multiple = None, 1
        if name in outputs:
            skip = "output layer: its channels are the model's outputs"
        elif kind == "linear" and not include_linear:
            skip = "linear layer (pass --include-linear to analyze it)"
        elif channels < 2:
            skip = "fewer than 2 channels"
        elif _split_into_heads(model, name):
            skip = "attention projection split into heads (fused q/k/v): left whole"
        else:
            try:
                skip, members, multiple = _layer_skip(dg, m, channels, group_owner)
            except _Unmappable as e:
                skip = str(e)
            if skip is None:
                group_owner[members] = name
            else:
                multiple = 1
        layers.append(Layer(name, kind, channels, skip, multiple))
    return layers


def _split_into_heads(model: nn.Module, name: str) -> bool:
    """A query, key or value projection of an attention module (timm's `qkv`, `q`, `kv`, ...): its
    outputs are reshaped into `num_heads` heads, which a cut of arbitrary channels breaks."""
    parent, _, leaf = name.rpartition(".")
    holder = model.get_submodule(parent) if parent else model
    return hasattr(holder, "num_heads") and leaf in {"qkv", "q", "k", "v", "kv", "qk", "to_q", "to_k", "to_v"}


class _Unmappable(Exception):
    """torch-pruning cannot map a cut of this layer onto the layers it reaches."""


def _pruning_group(dg, m: nn.Module, idxs: list[int]):
    try:
        return dg.get_pruning_group(m, _out_fn(m), idxs=idxs)
    except (IndexError, KeyError, ValueError, ZeroDivisionError, RuntimeError) as e:
        raise _Unmappable(f"torch-pruning cannot map its channels onto the layers they reach "
                          f"({type(e).__name__}; a reshape or split of the channel dimension)") from e


def _members(dg, group) -> frozenset[nn.Module]:
    """The convolution and linear layers whose output channels a dependency group cuts."""
    return frozenset(dep.target.module for dep, _ in group if dg.is_out_channel_pruning_fn(dep.handler)
                     and isinstance(dep.target.module, (nn.Conv2d, nn.Linear)))


def _layer_skip(dg, m: nn.Module, channels: int, group_owner: dict) -> tuple[str | None, frozenset, int]:
    """Why layer `m` cannot be pruned alone (or None), the layers its cuts carry along, and the
    channel step its cuts take (one group lookup for all three: on Swin each costs seconds)."""
    group = _pruning_group(dg, m, [0])
    members, multiple = _members(dg, group), blocks(group)
    owner = next((group_owner[k] for k in group_owner if k & members), None)
    if owner is not None:
        return f"same dependency group as {owner}", members, multiple
    if not any(isinstance(dep.target.module, (nn.Conv2d, nn.Linear)) and not dg.is_out_channel_pruning_fn(dep.handler)
               for dep, _ in group):  # SqueezeNet's classifier conv: pooled and flattened into the logits
        return "output layer: no layer reads its channels, they reach the model's outputs", members, multiple
    if channels % multiple or channels // multiple < 2:
        return f"{channels} channels in {multiple} groups: no whole group position can go", members, multiple
    probe = _pruning_group(dg, m, _symmetric(torch.arange(channels, 0, -1.0), multiple, multiple))
    try:  # a group torch-pruning maps but cannot score (LeViT's attention): left whole, not a traceback later
        get_criterion("l1")(_pruning_group(dg, m, list(range(channels))))
    except (IndexError, RuntimeError) as e:
        return f"torch-pruning cannot score its dependency group ({type(e).__name__})", members, multiple
    half = channels - keep_count(channels, 0.5, multiple)
    if not dg.check_pruning_group(_pruning_group(dg, m, _symmetric(torch.arange(channels, 0, -1.0), half, multiple))):
        return "a cut of half its channels would empty a layer it is coupled with", members, multiple
    return misaligned(dg, probe), members, multiple


def coupled(model: nn.Module, names: list[str], input_shape: tuple[int, ...]) -> set[str]:
    """The named layers and every conv/linear layer whose output channels their dependency groups cut
    with them (a residual branch, a depthwise conv): what torch-pruning's own pruners must not ignore."""
    dg = graph(model, input_shape)
    modules = dict(model.named_modules())
    names_of = {m: n for n, m in modules.items()}
    return {names_of[c] for name in names for c in _members(dg, _pruning_group(dg, modules[name], [0]))}


def keep_count(channels: int, ratio: float, round_to: int = 1) -> int:
    """Channels left after pruning `ratio` of them, rounded to a multiple of round_to, at least 1."""
    keep = max(1, int(round(channels * (1 - ratio))))
    if round_to > 1:
        keep = max(round_to, int(round(keep / round_to)) * round_to)
    return min(channels, keep)


def _chosen_group(dg, model: nn.Module, name: str, keep: int, criterion: str):
    """The dependency group that cuts layer `name` to `keep` channels, keeping the most important by
    `criterion` (the same positions in every block when grouped convolutions read them); None when
    nothing would go. Refuses, with the reason, a cut the network cannot take."""
    m = dict(model.named_modules()).get(name)
    if not isinstance(m, (nn.Conv2d, nn.Linear)):
        raise CompressError(f"no convolution or linear layer named {name!r} in the model")
    channels = out_channels(m)
    n_remove = channels - keep
    if n_remove <= 0:
        return None
    try:
        group = _pruning_group(dg, m, list(range(channels)))
    except _Unmappable as e:
        raise CompressError(f"cannot prune {name!r}: {e}") from e
    n_blocks = blocks(group)
    if n_remove % n_blocks:
        raise CompressError(f"{name!r} feeds convolutions in {n_blocks} groups: it can lose a multiple of "
                            f"{n_blocks} channels, not {n_remove}")
    scores = get_criterion(criterion)(group)
    if scores is None:  # e.g. bn-scale on a layer without BatchNorm
        raise CompressError(f"criterion {criterion!r} cannot score layer {name!r}")
    group = _pruning_group(dg, m, _symmetric(scores, n_remove, n_blocks))
    if reason := misaligned(dg, group):
        raise CompressError(f"cannot prune {name!r}: {reason}")
    if not dg.check_pruning_group(group):
        raise CompressError(f"pruning {n_remove} channels of {name!r} would empty a layer")
    return group


def _lost_inputs(dg, model: nn.Module, group) -> dict[str, list[int]]:
    names = {mod: n for n, mod in model.named_modules()}
    return {names[dep.target.module]: sorted(int(i) for i in idxs) for dep, idxs in group
            if isinstance(dep.target.module, (nn.Conv2d, nn.Linear)) and not dg.is_out_channel_pruning_fn(dep.handler)}


def prune_layer(model: nn.Module, name: str, keep: int, criterion: str, input_shape: tuple[int, ...],
                dg=None) -> dict[str, list[int]]:
    """Physically remove output channels of layer `name` (and its whole dependency group) in
    place, keeping the `keep` most important by `criterion`. Returns the input channels each layer
    that read them lost, by layer name: masking exactly those is the same network (`mask_inputs`)."""
    dg = dg or graph(model, input_shape)
    group = _chosen_group(dg, model, name, keep, criterion)
    if group is None:
        return {}
    lost = _lost_inputs(dg, model, group)
    group.prune()
    return lost


@contextmanager
def mask_inputs(model: nn.Module, lost: dict[str, list[int]]) -> Iterator[None]:
    """Within the block, the channels in `lost` get zero weight where they are read (a grouped
    convolution: in its own group); the weights come back after. The network then computes what the
    pruned one computes, without a copy of it."""
    modules = dict(model.named_modules())
    saved = {name: modules[name].weight.detach().clone() for name in lost}
    try:
        with torch.no_grad():
            for name, idxs in lost.items():
                m = modules[name]
                if isinstance(m, nn.Linear):
                    m.weight[:, idxs] = 0
                    continue
                width, out_per_group = m.in_channels // m.groups, m.out_channels // m.groups
                for i in idxs:
                    g = i // width
                    m.weight[g * out_per_group:(g + 1) * out_per_group, i % width] = 0
        yield
    finally:
        with torch.no_grad():
            for name, w in saved.items():
                modules[name].weight.copy_(w)


# Layers a masked cut can pass through and still equal the physical one: per-channel arithmetic only.
# (LayerNorm, GroupNorm mix the channels they normalize: a cut through them is measured on a copy.)
_CHANNELWISE = (nn.ReLU, nn.ReLU6, nn.SiLU, nn.GELU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh, nn.ELU,
                nn.LeakyReLU, nn.Mish, nn.Dropout, nn.Identity, nn.Flatten, nn.MaxPool2d, nn.AvgPool2d,
                nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


# The parameter-free layers torch-pruning's counter gives MACs: by output size, by input size.
_COUNTED_OUT = (nn.ReLU, nn.ReLU6, nn.ELU, nn.LeakyReLU, nn.GELU)
_COUNTED_IN = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


class MaskedCuts:
    """One-layer cuts measured on the network itself (what `analyze` does for every layer and ratio):
    one dependency graph, no copy, no recount. A cut masks the channels it removes where they are
    read (`mask_inputs`), and its parameters and MACs removed follow from each layer's shape, with
    the formulas torch-pruning's counter uses, so they equal counting the physically pruned copy.
    A cut that reaches a layer whose arithmetic mixes channels returns None: measure it on a copy."""

    def __init__(self, model: nn.Module, input_shape: tuple[int, ...]):
        self.model, self.shape, self.dg = model, input_shape, graph(model, input_shape)
        self.io = _io_sizes(model, input_shape)

    def plan(self, name: str, keep: int, criterion: str) -> tuple[tuple[int, int] | None, dict[str, list[int]]]:
        """What `cut` would do, without masking: (parameters removed, MACs removed) or None (measure
        it on a copy), and the input channels it masks per reading module (`mask_inputs`)."""
        group = _chosen_group(self.dg, self.model, name, keep, criterion)
        if group is None:
            return (0, 0), {}
        cuts = self._cuts(group)
        lost = _lost_inputs(self.dg, self.model, group)
        between = self._between(cuts, lost) if cuts is not None else None
        if between is None:
            return None, lost
        params, macs = self._removed(cuts)
        return (params, macs + between), lost

    @contextmanager
    def cut(self, name: str, keep: int, criterion: str) -> Iterator[tuple[int, int] | None]:
        """Yield (parameters removed, MACs removed) with the cut masked in place, or None."""
        group = _chosen_group(self.dg, self.model, name, keep, criterion)
        if group is None:  # nothing to cut
            yield 0, 0
            return
        cuts = self._cuts(group)
        lost = _lost_inputs(self.dg, self.model, group)
        between = self._between(cuts, lost) if cuts is not None else None
        if between is None:
            yield None
            return
        params, macs = self._removed(cuts)
        with mask_inputs(self.model, lost):
            yield params, macs + between

    def _between(self, cuts: dict[nn.Module, dict[str, set[int]]], lost: dict[str, list[int]]) -> int | None:
        """MACs the counter gives the parameter-free layers (activations, pools) on the removed
        channels between the cut layers and their readers: found by one batch-1 pass in which the
        removed channels are NaN from the cut layers on and zero again where they are read. None when
        a NaN reaches the outputs: something the graph does not show (a functional norm) mixed them."""
        cut = {m: c["out"] if isinstance(m, (nn.Conv2d, nn.Linear)) else c["in"] for m, c in cuts.items()
               if isinstance(m, (nn.Conv2d, nn.Linear, nn.modules.batchnorm._BatchNorm))}
        cut = {m: idxs for m, idxs in cut.items() if idxs}
        modules = dict(self.model.named_modules())
        readers = {modules[n]: idxs for n, idxs in lost.items()}
        macs = [0]

        def poison(m, inputs, output):  # a linear layer's features are the last dimension, a conv's the second
            output = output.clone()
            output[(..., sorted(cut[m])) if isinstance(m, nn.Linear) else (slice(None), sorted(cut[m]))] = float("nan")
            return output

        def clean(m, inputs):
            x = inputs[0].clone()
            x[(..., readers[m]) if isinstance(m, nn.Linear) else (slice(None), readers[m])] = 0
            return (x, *inputs[1:])

        def count(m, inputs, output):  # a removed channel is NaN everywhere, a kept one nowhere: any layout
            x = inputs[0]  # per call: ResNet's blocks call one ReLU module on tensors of different sizes
            if not isinstance(x, torch.Tensor) or not isinstance(output, torch.Tensor):
                return
            full = output.numel() if isinstance(m, _COUNTED_OUT) else x.numel()  # the counter's hooks
            macs[0] += full - full * (x.numel() - torch.isnan(x).sum().item()) // x.numel()
        hooks = [m.register_forward_hook(poison) for m in cut]
        hooks += [m.register_forward_pre_hook(clean) for m in readers]
        hooks += [m.register_forward_hook(count) for m in self.model.modules()
                  if isinstance(m, (*_COUNTED_OUT, *_COUNTED_IN))]
        try:
            with torch.inference_mode():
                out = self.model.eval()(torch.zeros(1, *self.shape))
        finally:
            for h in hooks:
                h.remove()
        leaked = any(torch.isnan(o).any() for o in (out if isinstance(out, (tuple, list)) else [out]))
        return None if leaked else macs[0]

    def _cuts(self, group) -> dict[nn.Module, dict[str, set[int]]] | None:
        """The input and output channels the group removes from each of the network's layers; None
        when it reaches a layer a mask cannot stand in for."""
        cuts: dict[nn.Module, dict[str, set[int]]] = {}
        for dep, idxs in group:
            m = dep.target.module
            if m not in self.io:  # torch-pruning's own nodes (adds, concatenations): no parameters, no count
                if isinstance(m, nn.Module) and any(True for _ in m.parameters()):
                    return None
                continue
            if not isinstance(m, (nn.Conv2d, nn.Linear, nn.modules.batchnorm._BatchNorm, *_CHANNELWISE)):
                return None
            if self.io[m][3] > 1 and not isinstance(m, _CHANNELWISE):  # one module called twice: count it on a copy
                return None
            side = "out" if isinstance(m, (nn.Conv2d, nn.Linear)) and self.dg.is_out_channel_pruning_fn(dep.handler) \
                else "in"
            cuts.setdefault(m, {"in": set(), "out": set()})[side].update(int(i) for i in idxs)
        return cuts

    def _removed(self, cuts: dict[nn.Module, dict[str, set[int]]]) -> tuple[int, int]:
        """Parameters and MACs the cut takes from the convolution, linear and BatchNorm layers."""
        params = macs = 0
        for m, cut in cuts.items():
            if isinstance(m, _CHANNELWISE):
                continue  # their MACs: `_between`
            full, kept = _cost(m, self.io[m], 0, 0), _cost(m, self.io[m], len(cut["in"]), len(cut["out"]))
            params, macs = params + full[0] - kept[0], macs + full[1] - kept[1]
        return params, macs


def _io_sizes(model: nn.Module, input_shape: tuple[int, ...]) -> dict[nn.Module, tuple[int, int, int, int]]:
    """Each module's input size along dim 1, input and output element counts (batch 1, first call)
    and how many times it is called."""
    sizes: dict[nn.Module, tuple[int, int, int, int]] = {}

    def hook(m, inputs, output):
        x = inputs[0]
        if m in sizes:
            sizes[m] = (*sizes[m][:3], sizes[m][3] + 1)
        elif isinstance(x, torch.Tensor) and isinstance(output, torch.Tensor):
            sizes[m] = (x.shape[1] if x.dim() > 1 else x.shape[0], x.numel(), output.numel(), 1)
    hooks = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        with torch.inference_mode():
            model.eval()(torch.zeros(1, *input_shape))
    finally:
        for h in hooks:
            h.remove()
    return sizes


def _cost(m: nn.Module, io: tuple[int, int, int, int], cut_in: int, cut_out: int) -> tuple[int, int]:
    """(parameters, MACs) of a convolution, linear or BatchNorm layer with `cut_in` input and `cut_out`
    output channels removed, by torch-pruning's op counter's formulas (utils/op_counter.py)."""
    channels, n_in, n_out, _ = io
    if isinstance(m, nn.Conv2d):
        k = m.kernel_size[0] * m.kernel_size[1]
        depthwise = m.groups == m.in_channels == m.out_channels and m.groups > 1
        if depthwise:
            c = m.out_channels - max(cut_in, cut_out)
            i, o, g = c, c, c
        else:
            i, o, g = m.in_channels - cut_in, m.out_channels - cut_out, m.groups
        positions = n_out // m.out_channels
        bias = m.bias is not None
        return o * (i // g) * k + (o if bias else 0), k * i * (o // g) * positions + (o * positions if bias else 0)
    if isinstance(m, nn.Linear):
        i, o = m.in_features - cut_in, m.out_features - cut_out
        rows = n_in // m.in_features
        bias = m.bias is not None
        return i * o + (o if bias else 0), rows * i * o + (o if bias else 0)
    kept = (channels - cut_in) / channels  # BatchNorm: per channel
    return (2 * (channels - cut_in) if m.affine else 0), round(n_in * (2 if m.affine else 1) * kept)


def pruned_copy(model: nn.Module, name: str, keep: int, criterion: str, input_shape) -> nn.Module:
    """A pruned deep copy; the original is untouched."""
    clone = copy.deepcopy(model)
    prune_layer(clone, name, keep, criterion, input_shape)
    return clone


class RemovableLayers(Protocol):
    """A network whose hidden layers can be removed whole (out-of-order layer pruning). The model
    knows its own structure; surgery only asks (the accordion autoencoder implements this)."""

    def removable_layers(self) -> list[str]: ...

    def without_layer(self, name: str, spec: str) -> tuple[nn.Module, str]: ...


def removable_layers(model: nn.Module) -> list[str]:
    """Hidden layers that can be removed whole, by name (none unless the model says so)."""
    return list(model.removable_layers()) if hasattr(model, "removable_layers") else []


def remove_layer(model: nn.Module, spec: str, name: str) -> tuple[nn.Module, str]:
    """Drop a whole hidden layer: a new model and its spec (the model builds it; see RemovableLayers)."""
    names = removable_layers(model)
    if name not in names:
        raise CompressError(f"{name!r} is not a removable hidden layer of this model")
    if len(names) <= 1:
        raise CompressError("cannot remove the last hidden layer")
    return model.without_layer(name, spec)
