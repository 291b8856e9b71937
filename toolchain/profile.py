"""`compress profile`: what each layer's channels cost in milliseconds, on the target.

Parameters are not milliseconds: a cut that removes many weights from a fully-connected layer can
save nothing on a device whose time goes to early convolutions. NetAdapt (Yang et al., 2018)
measures instead: for each prunable layer and each width of a ladder, the whole model with only
that layer narrowed is exported and timed in onnxruntime, all variants interleaved in one run, on
this host or on the device (`--host`, with the target's settings). The table (ms per layer per
width, and the unpruned model's) is cached per model, target and settings, and drawn as a plot.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from . import artifact, cache, data, fileio, surgery
from .errors import CompressError
from .train import prepare

SCHEMA = 1


@dataclass(frozen=True)
class ProfileOptions:
    data: str | None = None  # data spec; None: the one the model file's sidecar names
    widths: tuple[float, ...] = (0.75, 0.5, 0.25)  # fractions of each layer's channels kept
    target: str | None = None  # a bench target profile: threads, graph optimization, providers
    host: str | None = None  # measure on this device over SSH
    runs: int = 100
    warmup: int = 10
    include_linear: bool = False
    criterion: str = "l1"

    def validate(self) -> None:
        if not self.widths or any(not 0 < w < 1 for w in self.widths):
            raise CompressError(f"--widths must be fractions in (0, 1), not {list(self.widths)}")
        if self.runs < 5 or self.warmup < 0:
            raise CompressError(f"--runs must be >= 5 and --warmup >= 0, not {self.runs} and {self.warmup}")
        surgery.get_criterion(self.criterion)
        if self.target:
            from .bench import load_target
            load_target(self.target)
        if self.host:
            from .remote import Remote
            Remote(host=self.host).validate()


def run(src: str, dst: Path, opts: ProfileOptions, *, force: bool = False, trust: bool = False) -> artifact.Artifact:
    """Write the latency table (JSON, and a PNG beside it) for every prunable layer of `src`; the
    returned artifact's `meta` is the table."""
    from .analyze import model_digest

    opts.validate()
    dst = Path(dst)
    artifact.check_output(dst, force, dst.with_suffix(".png"))
    prep = prepare(src, opts.data, trust=trust)
    shape = prep.input_shape
    timing = {k: v for k, v in asdict(opts).items() if k != "data"}  # the data only sets the shape, keyed already
    key = hashlib.sha256(json.dumps([model_digest(prep), list(shape), timing]).encode()).hexdigest()[:24]
    cached = data.CACHE_DIR / "latency" / f"{key}.json"
    table = cache.get(cached, _read_table)
    if table is None:
        table = _measure(prep.model, shape, opts)
        cache.put(cached, lambda tmp: tmp.write_text(fileio.dumps(table)))
    result = {"schema": SCHEMA, "kind": "compress-latency-table", "created": artifact.now(),
              "model": {"spec": prep.spec, "sha256": model_digest(prep), "input_shape": list(shape)},
              "options": asdict(opts), "cached": str(cached)} | table
    result["cost_model"] = _cost_fit(prep.model, shape, result)
    from .report import plot_latency

    result["plot"] = plot_latency(result, dst.with_suffix(".png"))
    artifact.write_json(result, dst)
    return artifact.Artifact(dst, result)


def table_points(table: dict, features) -> tuple[list, list]:
    """(features, ms) of every model the table timed: the unpruned model, or a re-timed table's centre
    plan, with one layer moved to each width it measured; `features(plan)` gives a plan's cost terms."""
    centre = table.get("centre", {})
    feats, ms = [features(centre)], [table["base_ms"]]
    for name, row in table["layers"].items():
        for keep, t in row["ms"].items():
            if int(keep) != centre.get(name, row["channels"]):
                feats.append(features(centre | {name: int(keep)}))
                ms.append(t)
    return feats, ms


def _cost_fit(model, shape: tuple[int, ...], table: dict) -> dict:
    """The CostModel fitted to the table, and how the unpruned model's time splits by it: mostly
    weight traffic (VGG16 at 32 px, batch 1: half) and fewer parameters are already fewer
    milliseconds; mostly compute or activations, and the latency objective has room to differ."""
    from .prune import _SizeModel

    sizes = _SizeModel(model, list(table["layers"]), {}, shape)
    fit = CostModel(*table_points(table, sizes.features))
    parts = [c * f for c, f in zip(fit.coef, sizes.features({}), strict=True)]
    share = dict(zip(CostModel.parts, parts, strict=True))
    return fit.summary() | {"share": {k: round(v / (sum(parts) or 1.0), 3) for k, v in share.items()}}


def _read_table(path: Path) -> dict:
    """A cached table, refused (ValueError: measured again) unless it has the fields a table has."""
    table = json.loads(path.read_bytes().decode("utf-8"))
    if not isinstance(table, dict) or not isinstance(table.get("layers"), dict) or "base_ms" not in table:
        raise ValueError("not a latency table")
    return table


def _measure(model, shape: tuple[int, ...], opts: ProfileOptions) -> dict:
    import math

    from .bench import interleaved, load_target
    from .export import ExportOptions, export_onnx

    step = load_target(opts.target).runtime.channel_multiple if opts.target else 1  # widths prune could choose
    layers = [l for l in surgery.prunable_layers(model, shape, opts.include_linear) if l.skip is None]
    if not layers:
        raise CompressError("no prunable layer to profile" + ("" if opts.include_linear else " (try --include-linear)"))
    with tempfile.TemporaryDirectory() as tmp:
        files, variants = [Path(tmp) / "base.onnx"], [None]
        export_onnx(model, shape, files[0], ExportOptions())
        for layer in layers:
            for w in opts.widths:
                keep = surgery.keep_count(layer.channels, 1 - w, math.lcm(layer.multiple, step))
                if keep >= layer.channels or (layer.name, keep) in variants:
                    continue
                files.append(Path(tmp) / f"v{len(files)}.onnx")
                export_onnx(surgery.pruned_copy(model, layer.name, keep, opts.criterion, shape), shape, files[-1],
                            ExportOptions())
                variants.append((layer.name, keep))
        files.append(files[0])  # the unpruned model again, last: the first slot of a run can read slow
        report = interleaved(files, runs=opts.runs, warmup=opts.warmup, host=opts.host, target=opts.target)
    base = min(report["models"][0]["p50_ms"], report["models"][-1]["p50_ms"])
    rows: dict[str, dict] = {l.name: {"channels": l.channels, "kind": l.kind, "ms": {str(l.channels): base}}
                             for l in layers}
    for (name, keep), m in zip(variants[1:], report["models"][1:-1], strict=True):
        rows[name]["ms"][str(keep)] = m["p50_ms"]
    return {"base_ms": base, "layers": rows, "measured_on": report["measured_on"], "host": report["host"],
            "runs": report["runs"], "loaded": report["loaded"]}


def predicted_ms(table: dict, channels: dict[str, int]) -> float:
    """The model's latency with each layer at `channels` (others unpruned), from the table: the base
    time less each layer's own saving, interpolated linearly between measured widths (NetAdapt's
    additive model)."""
    total = table["base_ms"]
    for name, keep in channels.items():
        if name in table["layers"]:
            total -= table["base_ms"] - layer_ms(table, name, keep)
    return total


def timed_ratio(table: dict, reference: Path, candidate: Path, runs: int | None = None,
                warmup: int | None = None, seconds: float | None = None) -> float:
    """`candidate`'s p50 over `reference`'s, timed interleaved in one run with the table's own
    settings (target, host; its runs and warmup unless given; for `seconds` instead of runs where
    given). A hand-written table (no `options`) times here with the defaults."""
    from .bench import interleaved

    settings = table.get("options") or {}
    rep = interleaved([reference, candidate], runs=runs or settings.get("runs", 100), seconds=seconds,
                      warmup=settings.get("warmup", 10) if warmup is None else warmup,
                      host=settings.get("host"), target=settings.get("target"))
    before, after = (m["p50_ms"] for m in rep["models"])
    return after / before


def timed_ms(table: dict, base: Path, candidate: Path, runs: int | None = None, warmup: int | None = None,
             seconds: float | None = None) -> float:
    """`candidate`'s p50 in the table's scale: its ratio to the unpruned model `base` (timed_ratio)
    times the table's unpruned p50."""
    return table["base_ms"] * timed_ratio(table, base, candidate, runs, warmup, seconds)


def around(table: dict, plan: dict[str, int], centre: Path, variants: dict[tuple[str, int], Path],
           centre_ms: float, seconds: float) -> dict:
    """The table re-timed around `plan`, as NetAdapt times each proposal in the context of the plan
    so far: the plan's model `centre` and each variant (one layer moved off the plan, up or down)
    timed interleaved with the table's settings, each as its ratio to the centre times `centre_ms`.
    The additive model holds near its centre; far from it, it counts the convolution between two cut
    layers twice (on VGG16 the unpruned table put the parameter objective's plan at 15% of the
    parameters at 0.80 ms of 10.3, where it measured 3.2)."""
    from .bench import interleaved

    settings = table.get("options") or {}
    files = [centre, *variants.values(), centre]  # the centre twice: the first slot of a run can read slow
    rep = interleaved(files, seconds=seconds, warmup=settings.get("warmup", 10),
                      host=settings.get("host"), target=settings.get("target"))
    p50 = [m["p50_ms"] for m in rep["models"]]
    scale = centre_ms / min(p50[0], p50[-1])
    layers = {name: {"channels": row["channels"], "kind": row.get("kind"),
                     "ms": {str(plan.get(name, row["channels"])): centre_ms}} for name, row in table["layers"].items()}
    for (name, keep), ms in zip(variants, p50[1:-1], strict=True):  # more channels never measure faster
        clamp = max if keep > plan.get(name, layers[name]["channels"]) else min  # (timing noise does)
        layers[name]["ms"][str(keep)] = clamp(ms * scale, centre_ms)
    return table | {"base_ms": centre_ms, "layers": layers, "centre": dict(plan), "runs": rep["runs"]}


def layer_ms(table: dict, name: str, keep: int) -> float:
    """The whole model's p50 with only layer `name` at `keep` channels (interpolated)."""
    points = sorted((int(k), v) for k, v in table["layers"][name]["ms"].items())
    if keep <= points[0][0]:
        (k0, v0), (k1, v1) = points[0], points[min(1, len(points) - 1)]
    else:
        i = next((i for i, (k, _) in enumerate(points) if k >= keep), len(points) - 1)
        (k0, v0), (k1, v1) = points[max(0, i - 1)], points[i]
    return v0 if k1 == k0 else v0 + (v1 - v0) * (keep - k0) / (k1 - k0)


def table(result: dict):
    """The latency table as a rich Table: per layer, the model's p50 at each width, and the saving."""
    from rich.table import Table

    t = Table(title=f"{result['model']['spec']}: p50 with one layer narrowed (unpruned {result['base_ms']:.3f} ms)",
              caption=result["measured_on"])
    for col in ("layer", "channels", "p50 ms at each width kept", "most saved"):
        t.add_column(col, justify="left" if col == "layer" else "right")
    for name, row in result["layers"].items():
        pts = sorted(((int(k), v) for k, v in row["ms"].items()), reverse=True)
        t.add_row(name, str(row["channels"]), "  ".join(f"{k}: {v:.3f}" for k, v in pts),
                  f"{result['base_ms'] - min(v for _, v in pts):+.3f} ms")
    return t


class CostModel:
    """A plan's latency as a constant plus compute, weight traffic and activation traffic:
    ms = c + a * MACs + b * parameters + g * activations, the coefficients fitted (non-negative, least
    squares, weighted) to measured models. The table's additive model sums each layer's saving as
    timed with every other layer whole, so a cut layer and the one that reads it both claim their
    shared convolution: on VGG16 it put the parameter objective's plan at 15% of the parameters at
    0.80 ms of 10.3, where it measured 3.1-3.3. Counting a plan's MACs and parameters as they are, all
    cuts together, no saving is claimed twice; fitted to the table alone, this model put the same
    plan at 3.26 ms. Each `feature` row is `CostModel.terms` long, as `_SizeModel.features` gives."""

    terms = ("ms", "ms per M MACs", "ms per M parameters", "ms per k activations")
    parts = ("fixed", "compute", "weights", "activations")  # what each term's share of a time is called

    def __init__(self, features: list[list[float]], ms: list[float], weights: list[float] | None = None) -> None:
        import itertools

        import numpy as np

        x, y = np.asarray(features, float), np.asarray(ms, float)
        w = np.sqrt(np.asarray(weights if weights is not None else [1.0] * len(ms), float))[:, None]
        best = (np.inf, np.zeros(x.shape[1]))
        for k in range(1, x.shape[1] + 1):  # non-negative least squares over 4 terms: every subset, exactly
            for cols in itertools.combinations(range(x.shape[1]), k):
                coef = np.zeros(x.shape[1])
                coef[list(cols)] = np.linalg.lstsq(x[:, cols] * w, y * w[:, 0], rcond=None)[0]
                err = float(np.sum(((x @ coef - y) * w[:, 0]) ** 2))
                if coef.min() >= 0 and err < best[0]:
                    best = (err, coef)
        self.coef = best[1]
        self.rmse = float(np.sqrt(np.mean((x @ self.coef - y) ** 2)))
        self.spread = float(np.ptp(x @ self.coef))  # the most it tells two fitted models apart by, ms

    def ms(self, features: list[float]) -> float:
        return float(sum(c * f for c, f in zip(self.coef, features, strict=True)))

    def summary(self) -> dict:
        return {t: round(float(c), 6) for t, c in zip(self.terms, self.coef, strict=True)} | \
            {"rmse_ms": round(self.rmse, 4)}
