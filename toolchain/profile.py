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
import math
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from . import artifact, cache, data, fileio, importance, measure, surgery
from .convert import export_onnx
from .cost import CostModel, SizeModel, table_points
from .errors import CompressError
from .plots import plot_latency
from .remote import Remote
from .target import load_target
from .train import model_digest, prepare

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
        importance.get_criterion(self.criterion)
        if self.target:
            load_target(self.target)
        if self.host:
            Remote(host=self.host).validate()


def run(src: str, dst: Path, opts: ProfileOptions, *, force: bool = False, trust: bool = False) -> artifact.Artifact:
    """Write the latency table (JSON, and a PNG beside it) for every prunable layer of `src`; the
    returned artifact's `meta` is the table."""

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

    result["plot"] = plot_latency(result, dst.with_suffix(".png"))
    artifact.write_json(result, dst)
    return artifact.Artifact(dst, result)


def _cost_fit(model, shape: tuple[int, ...], table: dict) -> dict:
    """The CostModel fitted to the table, and how the unpruned model's time splits by it: mostly
    weight traffic (VGG16 at 32 px, batch 1: half) and fewer parameters are already fewer
    milliseconds; mostly compute or activations, and the latency objective has room to differ."""
    sizes = SizeModel(model, list(table["layers"]), {}, shape)
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

    step = load_target(opts.target).runtime.channel_multiple if opts.target else 1  # widths prune could choose
    layers = [l for l in surgery.prunable_layers(model, shape, opts.include_linear) if l.skip is None]
    if not layers:
        raise CompressError("no prunable layer to profile" + ("" if opts.include_linear else " (try --include-linear)"))
    with tempfile.TemporaryDirectory() as tmp:
        files, variants = [Path(tmp) / "base.onnx"], [None]
        export_onnx(model, shape, files[0])
        for layer in layers:
            for w in opts.widths:
                keep = surgery.keep_count(layer.channels, 1 - w, math.lcm(layer.multiple, step))
                if keep >= layer.channels or (layer.name, keep) in variants:
                    continue
                files.append(Path(tmp) / f"v{len(files)}.onnx")
                export_onnx(surgery.pruned_copy(model, layer.name, keep, opts.criterion, shape), shape, files[-1])
                variants.append((layer.name, keep))
        files.append(files[0])  # the unpruned model again, last: the first slot of a run can read slow
        report = measure.interleaved(files, runs=opts.runs, warmup=opts.warmup, host=opts.host, target=opts.target)
    base = min(report["models"][0]["p50_ms"], report["models"][-1]["p50_ms"])
    rows: dict[str, dict] = {l.name: {"channels": l.channels, "kind": l.kind, "ms": {str(l.channels): base}}
                             for l in layers}
    for (name, keep), m in zip(variants[1:], report["models"][1:-1], strict=True):
        rows[name]["ms"][str(keep)] = m["p50_ms"]
    return {"base_ms": base, "layers": rows, "measured_on": report["measured_on"], "host": report["host"],
            "runs": report["runs"], "loaded": report["loaded"]}


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


