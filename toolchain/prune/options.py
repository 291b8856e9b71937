"""What `compress prune` is asked: the goal, the plan, the walk, the recovery and the latency objective."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from ..errors import CompressError
from ..onnxio import input_dims
from ..target import load_target
from ..train import (
    TrainOptions,
)

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
    objective: str | None = None  # params or latency, as the CLI says it; None: the goal given decides
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
        if self.objective not in (None, "params", "latency"):
            raise CompressError(f"--objective must be params or latency, not {self.objective!r}")
        if self.objective is not None and (self.objective == "latency") != self.latency_goal:
            raise CompressError("--objective latency goes with a latency goal: --target-latency MS or --latency-of "
                                "MODEL.onnx")
        if self.target_latency is not None and self.latency_of is not None:
            raise CompressError("give one latency goal: --target-latency MS or --latency-of MODEL.onnx")
        if not 0 < self.latency_fraction <= 2:
            raise CompressError(f"--latency-fraction must be in (0, 2], not {self.latency_fraction}")
        if not 0 <= self.retimes <= MAX_RETIMES:
            raise CompressError(f"--retimes must be in [0, {MAX_RETIMES}], not {self.retimes}")
        if self.latency_of is not None and not Path(self.latency_of).is_file():
            raise CompressError(f"--latency-of {self.latency_of}: no such file (an ONNX model to be as fast as)")
        if self.latency_of is not None:
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
