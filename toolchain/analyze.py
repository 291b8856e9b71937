"""`compress analyze`: per-layer sensitivity, the paper's characterization step.

Each prunable layer is pruned alone at a fixed ratio (or a sweep of ratios), the model is
evaluated on the validation split (carved from the training data; the test split is never read
here) without fine-tuning, and the layer is restored. The layers are then ranked from the
one that loses the least accuracy to the one that loses the most: that ranking is the pruning
priority `compress prune` follows.

Every (layer, ratio) result is appended to a cache file, so an interrupted run resumes and a
rerun with more ratios computes only the new ones.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from . import artifact, cache, data, importance, streaming, surgery
from .errors import CompressError
from .executor import Executor, run_units
from .measure import spearman
from .plots import plot_sensitivity
from .progress import task
from .train import (
    adapt_batchnorm,
    batchnorm_kept,
    confidence,
    data_meta,
    fidelity,
    fidelity_reference,
    logits,
    model_digest,
    performance,
    prepare,
    reconstructs,
    temperature,
)

logger = logging.getLogger(__name__)

SCHEMA = artifact.ANALYSIS_SCHEMA
CUT_METHODS = {"streamed": "masked where exact, from the unchanged prefix computed once (toolchain.streaming)",
               "whole": "masked where exact, the whole network run per cut",
               "copies": "every cut on a physically pruned copy"}  # the A/Bs of benchmarks/analyze_speed.py
SWEEP_FIELDS = ("ratio", "kept", "accuracy", "confidence", "fidelity", "temperature", "params_removed", "macs_removed")


@dataclass(frozen=True)
class AnalyzeOptions:
    data: str | None = None  # data spec; None: the one the model file's sidecar names
    ratio: float = 0.5
    ratios: tuple[float, ...] = ()
    criterion: str = "l1"
    eval_samples: int | None = 2000
    include_linear: bool = False
    workers: int = 1
    seed: int = 0
    plots: bool = True
    cache_dir: Path | None = None  # default: <compress cache>/analysis
    adapt_bn: int = 0  # training images to re-estimate BatchNorm statistics with after each cut (0: off)
    executor: str = "local"  # local (forked `workers`) or ray (toolchain.executor)
    address: str | None = None  # the Ray cluster (default $RAY_ADDRESS, else a local one)
    cuts: str = "streamed"  # how a cut is measured (CUT_METHODS); every method gives the same figures

    @property
    def all_ratios(self) -> tuple[float, ...]:
        return tuple(sorted(set(self.ratios) | {self.ratio}))

    def validate(self) -> None:
        for r in self.all_ratios:
            if not 0 < r < 1:
                raise CompressError(f"ratio {r} is outside (0, 1)")
        importance.get_criterion(self.criterion)
        if self.cuts not in CUT_METHODS:
            raise CompressError(f"cuts must be one of {', '.join(CUT_METHODS)}, not {self.cuts!r}")
        if self.eval_samples is not None and self.eval_samples < 10:
            raise CompressError(f"--eval-samples must be at least 10, not {self.eval_samples}")
        if not 1 <= self.workers <= 64:
            raise CompressError(f"--workers must be in 1..64, not {self.workers}")
        if self.adapt_bn < 0:
            raise CompressError(f"--adapt-bn must be >= 0, not {self.adapt_bn}")
        if self.seed < 0:
            raise CompressError(f"--seed must be >= 0, not {self.seed}")
        Executor(self.executor, self.address, self.workers).validate()


class _Cache:
    """Append-only JSON-lines store of (layer, ratio) results for one model, data and subset. A line
    that is not a whole result (cut short by a killed run, bytes of a disk error, another schema) is
    dropped with a warning and measured again; a store that cannot be written is warned about once
    and the analysis goes on without it."""

    def __init__(self, key: str, root: Path | None = None):
        root = root or data.CACHE_DIR / "analysis"
        self.path = root / f"{key}.jsonl"
        self.rows: dict[tuple[str, float], dict] = {}
        rows = [_cached_row(line) for line in cache.read_bytes(self.path).splitlines()]
        for row in filter(None, rows):
            self.rows[(row["name"], float(row["ratio"]))] = row
        bad = rows.count(None)
        if bad:
            logger.warning("dropping %d unreadable line(s) of the cache %s (a killed run or a disk error); "
                           "those cuts are measured again", bad, self.path)
            text = "".join(json.dumps(r) + "\n" for r in self.rows.values())
            cache.put(self.path, lambda tmp: tmp.write_text(text), hashed=False)
        self.writable = True

    def get(self, name: str, ratio: float) -> dict | None:
        return self.rows.get((name, ratio))

    def put(self, row: dict) -> None:
        self.rows[(row["name"], float(row["ratio"]))] = row
        if self.writable:
            self.writable = cache.append(self.path, json.dumps(row) + "\n")


_ROW_NUMBERS = ("ratio", "kept", "accuracy", "params_removed", "macs_removed")


def _cached_row(line: bytes) -> dict | None:
    """One cached result, or None where the line is not one (bad bytes, cut short, another schema)."""
    try:
        row = json.loads(line.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError and JSONDecodeError both
        return None
    ok = (isinstance(row, dict) and isinstance(row.get("name"), str)
          and all(isinstance(row.get(k), (int, float)) and not isinstance(row.get(k), bool) for k in _ROW_NUMBERS))
    return row if ok else None


def _accuracies(model: nn.Module, x: torch.Tensor, y: torch.Tensor, half: int,
                reference: tuple[torch.Tensor, float] | None = None, out: torch.Tensor | None = None) -> dict:
    """The performance (top-1 %, or ROC-AUC x100 of a reconstruction head), the confidence (mean
    probability of the true class at the temperature that fits best, %) and the fidelity to the
    unpruned network's outputs (`reference`: its logits and fitted temperature; train.fidelity, %) on
    all, the first and the second half of the images, and that temperature on all; the confidence
    and fidelity are None for a reconstruction head. `out`: the model's logits on `x`, when known."""
    out, r = logits(model, x) if out is None else out, reconstructs(model)
    parts = {"": slice(None), "_a": slice(None, half), "_b": slice(half, None)}
    t = None if r else temperature(out, y)
    ref_out, ref_t = reference if reference is not None else (out, t)
    return ({f"accuracy{k}": performance(out[i], x[i], y[i], r) for k, i in parts.items()}
            | {f"confidence{k}": None if r else confidence(out[i], y[i]) for k, i in parts.items()}
            | {f"fidelity{k}": None if r else fidelity(out[i], ref_out[i], t, ref_t) for k, i in parts.items()}
            | {"temperature": None if r else round(t, 4)})


_MASKED: list[surgery.MaskedCuts] = []  # this process's, for the model it was made for


def _masked_cuts(model: nn.Module, shape: tuple[int, ...]) -> surgery.MaskedCuts:
    if not _MASKED or _MASKED[0].model is not model:
        _MASKED[:] = [surgery.MaskedCuts(model, shape)]
    return _MASKED[0]


def _copy_seconds(model: nn.Module, shape: tuple[int, ...]) -> float:
    """What measuring a cut on a copy costs beyond its forward passes: the copy, its dependency
    graph and its count (timed once per analysis, on the unpruned network)."""
    start = time.perf_counter()
    clone = copy.deepcopy(model)
    surgery.graph(clone, shape)
    artifact.count(clone, shape, throwaway=True)
    return time.perf_counter() - start


def _measure(model, layer: surgery.Layer, ratio, opts, shape, x, y, half, base_counts, adapt=None,
             reference=None) -> dict:
    """One layer cut alone to `ratio`: masked on the network itself where the cut allows (exactly the
    pruned network's outputs and counts, without a copy, a new dependency graph or a recount:
    `surgery.MaskedCuts`), else physically on a copy. A masked cut evaluates the full-width network,
    so a cut that removes more than `mask_below` of the MACs (the copy's cost over one evaluation's)
    is cheaper on the copy: many evaluation images, a small network (VGG16 at 32 px on 1,000)."""
    start = time.perf_counter()
    keep = surgery.keep_count(layer.channels, ratio, layer.multiple)
    with _masked_cuts(model, shape).cut(layer.name, keep, opts.criterion) as removed:
        if removed is not None and removed[1] > base_counts.get("mask_below", 1.0) * base_counts["macs"]:
            removed = None  # the copy's forward passes save more than making the copy costs
        masked = removed is not None
        if removed is not None:
            with batchnorm_kept(model):
                adapt_batchnorm(model, adapt)
                measured = _accuracies(model, x, y, half, reference)
            params_removed, macs_removed = removed
    if removed is None:
        clone = surgery.pruned_copy(model, layer.name, keep, opts.criterion, shape)
        adapt_batchnorm(clone, adapt)
        counts = artifact.count(clone, shape, throwaway=True)
        measured = _accuracies(clone, x, y, half, reference)
        params_removed, macs_removed = base_counts["params"] - counts["params"], base_counts["macs"] - counts["macs"]
    return {"name": layer.name, "ratio": ratio, "channels": layer.channels, "kept": keep, **measured,
            "params_removed": params_removed, "macs_removed": macs_removed,
            "seconds": round(time.perf_counter() - start, 3), "path": "masked" if masked else "copy"}


def priority(layers: list[dict]) -> list[str]:
    """Least accuracy lost first; ties go to the layer that removes more parameters."""
    return [l["name"] for l in sorted(layers, key=lambda l: (-l["accuracy"], -l["params_removed"]))]


def run(src: str, dst: Path, opts: AnalyzeOptions, *, force: bool = False, trust: bool = False) -> artifact.Artifact:
    """Analyze every prunable layer and write analysis.json (plus PNG plots beside it); the
    returned artifact's `meta` is the analysis itself."""
    opts.validate()
    dst = Path(dst)
    plots = (dst.with_suffix(".curves.png"), dst.with_suffix(".bars.png")) if opts.plots else ()
    artifact.check_output(dst, force, *plots)
    with data.deciding("analyze"):
        return artifact.Artifact(dst, _run(src, opts.data, dst, opts, trust))


def _run(model: str, data_spec: str | None, dst: Path, opts: AnalyzeOptions, trust: bool) -> dict:
    prep = prepare(model, data_spec, trust=trust, seed=opts.seed)
    shape = prep.input_shape
    x, y = prep.dataset.val.tensors
    if opts.eval_samples and opts.eval_samples < len(y):
        idx = data.stratified_indices(y, opts.eval_samples, seed=opts.seed)
        # interleave the two halves' classes alike: a stratified half for the stability check
        x, y = x[idx], y[idx]
    half = len(y) // 2
    layers = surgery.prunable_layers(prep.model, shape, opts.include_linear)
    todo = [l for l in layers if l.skip is None]
    if not todo:
        raise CompressError(f"{prep.spec} has no prunable convolution layer"
                            + ("" if opts.include_linear else " (try --include-linear)"))
    base_counts = artifact.count(prep.model, shape)
    adapt = None
    if opts.adapt_bn:
        tx, ty = prep.dataset.train.tensors
        adapt = tx[data.stratified_indices(ty, min(opts.adapt_bn, len(ty)), seed=opts.seed)]
    key = hashlib.sha256(json.dumps([model_digest(prep), prep.dataset.name, "val", len(y), opts.seed, opts.criterion]
                                    + ([opts.adapt_bn] if opts.adapt_bn else [])).encode()).hexdigest()[:24]
    cache = _Cache(key, opts.cache_dir)
    jobs = [(l, r) for l in todo for r in opts.all_ratios  # a cut cached by a version that measured less: again
            if not {"temperature", "fidelity"} <= (cache.get(l.name, r) or {}).keys()]
    reused = len(todo) * len(opts.all_ratios) - len(jobs)
    start = time.perf_counter()
    streams = _streams(prep.model, shape, jobs, opts, adapt)  # None: every cut run whole (`_measure`)
    here = streams is not None and len(streams) == 1 and opts.executor == "local"
    first = _stream_pass(prep.model, shape, streams[0], opts, x, clean=True) if here else None
    timer = time.perf_counter()
    base_out = first[0].pop(None) if here else logits(prep.model, x)  # one worker: its pass gives it too
    base = _accuracies(prep.model, x, y, half, out=base_out)
    base_acc = base["accuracy"]
    mask_below = 1.0  # streamed, a cut that cannot be is masked where it can; run whole, it is masked unless
    if streams is None:  # it removes more MACs than a copy costs, against one evaluation of the network
        mask_below = 0.0 if opts.cuts == "copies" else \
            _copy_seconds(prep.model, shape) / max(time.perf_counter() - timer, 1e-6)
    reference = None  # the fidelity's: without adaptive BN, the baseline's own logits
    if base["temperature"] is not None:
        reference = fidelity_reference(prep.model, x, y, adapt) if adapt is not None \
            else (base_out, temperature(base_out, y))
    counts = base_counts | {"mask_below": mask_below}
    shared = (prep.model, opts, shape, x, y, half, counts, adapt, reference)
    with task(f"analyze {len(todo)} layers x {len(opts.all_ratios)} ratios", len(jobs)) as advance:
        if streams is None:
            done = ([row] for row in _run_jobs(prep.model, jobs, opts, shape, x, y, half, counts, adapt, reference))
        elif here:
            done = [_stream_rows(shared, *first)]
        else:
            done = run_units(Executor(opts.executor, opts.address, opts.workers), _stream_unit, shared, streams)
        paths: dict[str, int] = {}
        for rows in done:
            for row in rows:
                cache.put(row)
                paths[row.get("path", "?")] = paths.get(row.get("path", "?"), 0) + 1
                advance(info=f"{row['name']} @ {row['ratio']}: {row['accuracy']:.2f}%")
    rows = []
    for l in todo:
        sweep = [cache.get(l.name, r) for r in opts.all_ratios]
        fixed = cache.get(l.name, opts.ratio)
        rows.append(fixed | {
            "type": l.kind, "drop": round(base_acc - fixed["accuracy"], 3),
            "params_removed_frac": round(fixed["params_removed"] / base_counts["params"], 5),
            "macs_removed_frac": round(fixed["macs_removed"] / max(1, base_counts["macs"]), 5),
            "sweep": [{k: s[k] for k in SWEEP_FIELDS} for s in sweep]})
    order = priority(rows)
    result = {
        "schema": SCHEMA, "kind": "compress-analysis", "created": artifact.now(),
        "model": {"spec": prep.spec, "file": str(prep.parent.path) if prep.parent else None,
                  "sha256": model_digest(prep), "input_shape": list(shape),
                  "num_classes": prep.dataset.num_classes},
        "data": data_meta(prep.dataset) | {"eval_samples": len(y), "eval_split": "validation"},
        "options": asdict(opts) | {"ratios": list(opts.all_ratios), "cache_dir": str(cache.path.parent)},
        "baseline": {"accuracy": base_acc, "confidence": base["confidence"], "fidelity": base["fidelity"],
                     "temperature": base["temperature"],
                     "params": base_counts["params"],
                     "macs": base_counts["macs"]},
        "layers": rows,
        "skipped": [{"name": l.name, "reason": l.skip} for l in layers if l.skip],
        "priority": order,
        "stability": _stability(rows, half),
        "seconds": round(time.perf_counter() - start, 2), "reused_results": reused,
        "workers": opts.workers, "executor": opts.executor,
        "cuts": {"method": opts.cuts, "measured_now": paths},  # by path: streamed, masked (whole), copy
    }
    artifact.write_json(result, dst)
    if opts.plots:
        result["plots"] = plot_sensitivity(result, dst)
        artifact.write_json(result, dst)
    return result


def _stability(rows: list[dict], half: int) -> dict:
    """How far the ranking can be trusted: rank correlation between two disjoint halves, of the
    top-1 each layer keeps (the ranking's), of its confidence and of its fidelity (the planner's
    `--proxy confidence` and `--proxy fidelity`)."""
    def rho(measure: str) -> float | None:
        if any(r.get(f"{measure}_a") is None for r in rows):
            return None
        return spearman([r[f"{measure}_a"] for r in rows], [r[f"{measure}_b"] for r in rows])

    return {"spearman_halves": rho("accuracy"), "spearman_halves_confidence": rho("confidence"),
            "spearman_halves_fidelity": rho("fidelity"), "half_samples": half,
            "note": "rank correlation of per-layer top-1 (confidence, fidelity) on two disjoint halves of the eval "
                    "subset"}


def _run_jobs(model, jobs, opts, shape, x, y, half, base_counts, adapt=None, reference=None):
    """Yield results as they finish: here, in forked worker processes, or on a Ray cluster."""
    shared = (model, opts, shape, x, y, half, base_counts, adapt, reference)
    yield from run_units(Executor(opts.executor, opts.address, opts.workers), _unit, shared, jobs)


_SUFFIXES: list = []  # this process's traced network, for the model it was made for


def _suffixes(model: nn.Module, shape: tuple[int, ...] | None = None) -> streaming.Suffixes | None:
    if not _SUFFIXES or _SUFFIXES[0] is not model:
        _SUFFIXES[:] = [model, streaming.Suffixes.of(model, shape)]
    return _SUFFIXES[1]


def _streams(model, shape, jobs, opts, adapt) -> list[list[tuple]] | None:
    """The cuts dealt to the workers for streaming (`toolchain.streaming`: each worker one pass of the
    unchanged network), each worker's share about as much of the network to re-run (counted from
    each layer's place in the graph); None where nothing is streamed (`cuts` other than "streamed",
    adaptive BatchNorm, a network torch.fx cannot trace). A cut is streamed wherever a mask can stand
    in for it: its changed part costs less than a pruned copy's forward pass (run whole, the cuts
    that remove the most MACs go to copies: the two agree in top-1, and in the continuous figures to
    float rounding, as tests/test_analyze.py holds)."""
    suffixes = _suffixes(model, shape) if opts.cuts == "streamed" and adapt is None and jobs else None
    if suffixes is None:
        return None
    place = {n.target: i for i, n in enumerate(suffixes.nodes) if n.op == "call_module"}
    groups: list[list[tuple]] = [[] for _ in range(min(max(1, opts.workers), len(jobs)))]
    loads = [0] * len(groups)
    for job in sorted(jobs, key=lambda j: place.get(j[0].name, 0)):  # earliest (longest rest) first
        i = loads.index(min(loads))
        groups[i].append(job)
        loads[i] += len(suffixes.nodes) - place.get(job[0].name, 0)
    return groups


def _stream_pass(model, shape, jobs, opts, x, clean: bool = False) -> tuple[dict, list, list, float]:
    """A worker's cuts planned (`MaskedCuts.plan`) and those a mask stands in for streamed in one pass:
    (their logits, and with `clean` the unpruned network's under None; the streamed plans; the cuts
    left to run whole; the seconds it took)."""
    start, masked, suffixes = time.perf_counter(), _masked_cuts(model, shape), _suffixes(model)
    plans, whole = [], []
    for layer, ratio in jobs:
        keep = surgery.keep_count(layer.channels, ratio, layer.multiple)
        removed, lost = masked.plan(layer.name, keep, opts.criterion)
        if removed is None or not lost or suffixes.dirty(set(lost)) is None:
            whole.append((layer, ratio))
        else:
            plans.append((layer, ratio, keep, removed, lost))
    cuts = [streaming.Cut((layer.name, ratio), set(lost), lambda lost=lost: surgery.mask_inputs(model, lost))
            for layer, ratio, _, _, lost in plans]
    outs = suffixes.logits(x, cuts, clean=clean) if cuts or clean else {}
    return outs, plans, whole, time.perf_counter() - start


def _stream_unit(shared, jobs):
    """One worker's cuts: planned and streamed in one pass, the rest run whole; rows as `_measure` gives."""
    model, opts, shape, x, *_ = shared
    return _stream_rows(shared, *_stream_pass(model, shape, jobs, opts, x))


def _stream_rows(shared, outs: dict, plans: list, whole: list, seconds: float) -> list[dict]:
    model, opts, shape, x, y, half, base_counts, adapt, reference = shared
    rows, seconds = [], round(seconds / max(1, len(plans)), 3)
    for layer, ratio, keep, (params_removed, macs_removed), _ in plans:
        measured = _accuracies(model, x, y, half, reference, out=outs[(layer.name, ratio)])
        rows.append({"name": layer.name, "ratio": ratio, "channels": layer.channels, "kept": keep, **measured,
                     "params_removed": params_removed, "macs_removed": macs_removed, "seconds": seconds,
                     "path": "streamed"})
    return rows + [_measure(model, layer, ratio, opts, shape, x, y, half, base_counts, adapt, reference)
                   for layer, ratio in whole]


def _unit(shared, job):
    model, opts, shape, x, y, half, base_counts, adapt, reference = shared
    layer, ratio = job
    return _measure(model, layer, ratio, opts, shape, x, y, half, base_counts, adapt, reference)


def table(result: dict):
    """The analysis as a rich Table, in priority order (for the CLI)."""
    from rich.table import Table

    t = Table(title=f"sensitivity at ratio {result['options']['ratio']} — baseline "
                    f"{result['baseline']['accuracy']:.2f}% on {result['data']['eval_samples']} samples")
    for col in ("rank", "layer", "channels", "kept", "accuracy", "drop", "params removed", "MACs removed"):
        t.add_column(col, justify="left" if col == "layer" else "right")
    by_name = {l["name"]: l for l in result["layers"]}
    for i, name in enumerate(result["priority"], 1):
        l = by_name[name]
        t.add_row(str(i), name, str(l["channels"]), str(l["kept"]), f"{l['accuracy']:.2f}%", f"{l['drop']:+.2f}",
                  f"{l['params_removed_frac']:.1%}", f"{l['macs_removed_frac']:.1%}")
    return t
