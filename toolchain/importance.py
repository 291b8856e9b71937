"""Importance criteria: which channels of a dependency group a cut removes (torch-pruning's
Importance). A small registry (STYLE rules 5-6): `@register_criterion("name")` adds one, and every
stage's `--criterion` accepts it."""

from __future__ import annotations

from collections.abc import Callable

from .errors import CompressError

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
