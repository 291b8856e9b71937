"""Many one-layer cuts evaluated in one pass: what lies upstream of a cut is computed once.

A masked cut (`surgery.MaskedCuts`) changes a network's outputs only from the modules that read the
removed channels on. So the network is traced once (torch.fx) and run node by node, unchanged, on
each batch of images; when the last node a cut's changed part reads from is computed, that part
alone (the suffix) is run with the cut's masks in place, from the unchanged values. The suffix runs
the same operations on the same values, batch by batch, as the whole network would: the logits are
the masked network's, bit for bit (tests/test_analyze.py holds it).

A network torch.fx cannot trace, or one whose in-place operations write into a value that another
operation reads too, is not streamed: `Suffixes.of` returns None and the caller runs each cut whole.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable, Hashable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
from torch import fx, nn

logger = logging.getLogger(__name__)

_INPLACE_FUNCTIONS = {operator.iadd, operator.isub, operator.imul, operator.itruediv}


@dataclass
class Cut:
    """One cut to stream: `readers` are the modules (by name) whose input it masks, `masked()` the
    context in which they are masked."""

    key: Hashable
    readers: set[str]
    masked: Callable[[], AbstractContextManager]


class Suffixes:
    def __init__(self, gm: fx.GraphModule) -> None:
        self.gm = gm
        self.nodes = list(gm.graph.nodes)
        self.index = {n: i for i, n in enumerate(self.nodes)}
        self.modules = dict(gm.named_modules())

    @classmethod
    def of(cls, model: nn.Module, input_shape: tuple[int, ...] | None = None) -> Suffixes | None:
        """The traced network (sharing the model's modules and their hooks), or None where it cannot be
        streamed exactly: it does not trace, writes in place into a value read twice, or (run node by
        node on two images of `input_shape`) does not give the network's own outputs bit for bit."""
        try:
            gm = fx.symbolic_trace(model)
        except Exception as e:  # noqa: BLE001 - torch.fx raises many kinds; every one means "run it whole"
            logger.info("not streamed (torch.fx cannot trace it: %s)", str(e).splitlines()[0] if str(e) else e)
            return None
        s = cls(gm)
        for n in s.nodes:
            if s._inplace(n) and n.args and isinstance(n.args[0], fx.Node) and len(n.args[0].users) > 1:
                logger.info("not streamed (%s writes in place into a value %d operations read)", n.name,
                            len(n.args[0].users))
                return None
        if input_shape is not None:
            x = torch.randn(2, *input_shape, generator=torch.Generator().manual_seed(0))
            try:
                with torch.inference_mode():
                    same = torch.equal(model.eval()(x), s.logits(x, [], clean=True)[None])
            except Exception as e:  # noqa: BLE001 - a traced graph that does not run: the model runs whole
                logger.info("not streamed (the traced graph does not run: %s)", str(e).splitlines()[0] if str(e) else e)
                return None
            if not same:
                logger.info("not streamed (the traced graph's outputs differ from the network's)")
                return None
        return s

    def _inplace(self, n: fx.Node) -> bool:
        if n.op == "call_module":
            return bool(getattr(self.modules[n.target], "inplace", False))
        if n.op in ("call_function", "call_method"):
            name = n.target if isinstance(n.target, str) else getattr(n.target, "__name__", "")
            return n.target in _INPLACE_FUNCTIONS or (name.endswith("_") and not name.endswith("__"))
        return False

    def dirty(self, readers: set[str]) -> list[fx.Node] | None:
        """The nodes a cut changes (the readers' calls and all that depends on them), in order; None
        when a reader is not called as a module in the graph (the cut is then run whole)."""
        seeds = [n for n in self.nodes if n.op == "call_module" and n.target in readers]
        if {n.target for n in seeds} != set(readers):
            return None
        changed = set(seeds)
        for n in self.nodes:  # topological order: a node depends on a changed one only after it
            if n not in changed and any(a in changed for a in n.all_input_nodes):
                changed.add(n)
        return [n for n in self.nodes if n in changed]

    def _run(self, n: fx.Node, env: dict) -> object:
        args = fx.node.map_arg(n.args, env.__getitem__)
        kwargs = fx.node.map_arg(n.kwargs, env.__getitem__)
        if self._inplace(n) and args and isinstance(args[0], torch.Tensor):
            args = (args[0].clone(), *args[1:])  # the unchanged value stays what it was, for every cut
        if n.op == "call_module":
            return self.modules[n.target](*args, **kwargs)
        if n.op == "call_function":
            return n.target(*args, **kwargs)
        if n.op == "call_method":
            return getattr(args[0], n.target)(*args[1:], **kwargs)
        if n.op == "get_attr":
            value = self.gm
            for part in n.target.split("."):
                value = getattr(value, part)
            return value
        if n.op == "output":
            return args[0]
        raise ValueError(f"unexpected node {n.op}")

    def logits(self, x: torch.Tensor, cuts: Iterable[Cut], batch_size: int = 1024,
               clean: bool = False) -> dict[Hashable, torch.Tensor]:
        """Each cut's logits on `x` (eval mode, batches of `batch_size`, as `train.logits` runs them), and
        with `clean` the unchanged network's under the key None. Raises ValueError for a cut `dirty`
        refuses: call it first."""
        plans = []
        for cut in cuts:
            changed = self.dirty(cut.readers)
            if changed is None:
                raise ValueError(f"cut {cut.key!r} cannot be streamed")
            inside = set(changed)
            reads = {a for n in changed for a in n.all_input_nodes if a not in inside}
            ready = max((self.index[a] for a in reads), default=0)
            plans.append((ready, cut, changed, reads))
        last_use = {n: max((self.index[u] for u in n.users), default=len(self.nodes)) for n in self.nodes}
        for ready, _, _, reads in plans:
            for a in reads:
                last_use[a] = max(last_use[a], ready)
        by_ready: dict[int, list] = {}
        for plan in plans:
            by_ready.setdefault(plan[0], []).append(plan)
        evict: dict[int, list[fx.Node]] = {}
        for n, i in last_use.items():
            evict.setdefault(i, []).append(n)
        stop = len(self.nodes) - 1 if clean else max(by_ready, default=-1)  # past the last cut's reads, the
        #                                                              unchanged network is needed only when asked
        out: dict[Hashable, list[torch.Tensor]] = {p[1].key: [] for p in plans} | ({None: []} if clean else {})
        self.gm.eval()
        with torch.inference_mode():
            for start in range(0, len(x), batch_size):
                env: dict = {}
                for i, n in enumerate(self.nodes[:stop + 1]):
                    env[n] = x[start:start + batch_size] if n.op == "placeholder" else self._run(n, env)
                    for _, cut, changed, _ in by_ready.get(i, ()):
                        local = dict(env)
                        with cut.masked():
                            for d in changed:
                                local[d] = self._run(d, local)
                        out[cut.key].append(local[changed[-1]])
                    if clean and n.op == "output":
                        out[None].append(env[n])
                    for a in evict.get(i, ()):
                        env.pop(a, None)
        return {k: torch.cat(v) for k, v in out.items()}
