"""`compress prune`: structured filter pruning under a size or accuracy goal, as a plan and a walk.

Two questions, two pieces, crossed freely (as Torch-Pruning separates importance from pruner):
- the plan (`Plan`): how many channels each layer keeps. `sensitivity` reads it from the sweep of
  `compress analyze` (the paper), `uniform` cuts every layer by one ratio, `global` ranks all
  filters by L1 norm at once (Torch-Pruning's global pruning). Each plan is fitted to the size goal
  within PLAN_TOLERANCE, so plans compare at one parameter count.
- the walk (`Order`): in which order the layers are cut toward the plan. Rounds walk the layers in
  order; each layer loses a step of its channels, the model is briefly fine-tuned, and the step is
  kept while the accuracy budget holds (otherwise rolled back and the layer frozen). `oneshot`
  applies the whole plan at once and fine-tunes with the budget the walk would have spent.
The paper's question "does the order matter?" is a walk question with the plan held fixed.

Every decision reads the validation split carved out of the training data (`ds.val`); the search
runs inside `data.deciding`, so it cannot read the test split, which reports the finished model.

The package: `options` (what is asked), `search` (the state and the cuts), `plans`, `walk`,
`latency` (the latency objective) and `stage` (run and compare); the size and latency cost models
are `toolchain.cost`, shared with `compress profile`.
"""

from .latency import LATENCY_MIN_SLOPE, LATENCY_ROUND_SECONDS, LATENCY_ROUNDS, RETIME_SECONDS, OutOfReach
from .options import ORDERED, PLAN_TOLERANCE, PROXIES, SELECT_ADAPT_IMAGES, SELECTORS, Order, Plan, PruneOptions
from .plans import layer_order, make_plan, sensitivity_plan
from .search import SELECT_MAX_CAP
from .stage import compare, compare_table, run, table_needed, tables

__all__ = [
    "LATENCY_MIN_SLOPE", "LATENCY_ROUND_SECONDS", "LATENCY_ROUNDS", "ORDERED", "PLAN_TOLERANCE", "PROXIES",
    "RETIME_SECONDS", "SELECT_ADAPT_IMAGES", "SELECT_MAX_CAP", "SELECTORS", "Order", "OutOfReach", "Plan",
    "PruneOptions", "compare", "compare_table", "layer_order", "make_plan", "run", "sensitivity_plan",
    "table_needed", "tables",
]
