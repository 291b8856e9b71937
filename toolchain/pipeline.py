"""`compress run`: train (or reuse) → analyze → prune → quantize → export → bench from one config.

Each stage reads and writes artifacts in a fresh run folder, exactly as the stage commands do,
so a run can be repeated stage by stage by hand. The trained model is cached between runs (it
depends only on model, data and training options).
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import logging
import re
import shutil
import time
import tomllib
from importlib import resources
from pathlib import Path

from . import analyze, artifact, bench, data, export, prune, quantize, train
from .errors import CompressError

logger = logging.getLogger(__name__)

SECTIONS = ("model", "data", "train", "analyze", "prune", "quantize", "export", "bench", "quick")


def fresh_run_dir(label: str = "run", root: Path = Path("runs")) -> Path:
    """A new, empty folder under runs/ named by the time (never reused)."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    for i in range(1000):
        path = root / (f"{stamp}-{label}" + (f"-{i}" if i else ""))
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:
            continue
    raise CompressError(f"could not make a fresh folder under {root}")


def load_config(path: Path | None, quick: bool = False) -> dict:
    """The embedded default, overlaid with a user's TOML file."""
    cfg = tomllib.loads(resources.files("toolchain").joinpath("defaults/pipeline.toml").read_text())
    if path is not None:
        try:
            user = tomllib.loads(Path(path).read_text())
        except FileNotFoundError as e:
            raise CompressError(f"{path}: no such config file") from e
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise CompressError(f"{path}: not valid TOML ({e})") from e
        unknown = set(user) - set(SECTIONS)
        if unknown:
            raise CompressError(f"{path}: unknown section(s) {', '.join(sorted(unknown))}; "
                                f"known: {', '.join(SECTIONS)}")
        for section, values in user.items():
            if not isinstance(values, dict):
                raise CompressError(f"{path}: [{section}] must be a table")
            cfg[section] = cfg.get(section, {}) | values
    cfg["quick_mode"] = quick
    return cfg


def _opts(cls, section: dict, **overrides):
    """Build a stage's options from its config section, rejecting unknown keys. TOML arrays become
    tuples, the type the (frozen) option classes use for sequences."""
    fields = set(cls.__dataclass_fields__)
    unknown = set(section) - fields
    if unknown:
        raise CompressError(f"unknown option(s) for {cls.__name__}: {', '.join(sorted(unknown))}; "
                            f"known: {', '.join(sorted(fields))}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in (section | overrides).items()}
    return cls(**values)


def _trained(cfg: dict, run_dir: Path, quick: bool) -> tuple[Path, bool]:
    """The trained model: the user's .pt, or one trained now (cached by its recipe)."""
    spec = cfg["model"]["spec"]
    if spec.endswith((".pt", ".pth")):
        return Path(spec), False
    tcfg = dict(cfg.get("train", {}))
    if quick:
        tcfg |= {"epochs": cfg["quick"]["train_epochs"], "train_limit": cfg["quick"]["train_limit"]}
    opts = _opts(train.TrainOptions, tcfg)
    key = hashlib.sha256(json.dumps([spec, cfg["data"]["spec"], repr(opts)]).encode()).hexdigest()[:16]
    cached = data.CACHE_DIR / "models" / f"{re.sub(r'[^A-Za-z0-9.-]+', '_', spec)}-{key}.pt"
    reused = cached.exists() and artifact.sidecar_of(cached).exists()
    if not reused:
        train.run(spec, cfg["data"]["spec"], cached, opts, force=True)
    dst = run_dir / "trained.pt"
    shutil.copyfile(cached, dst)
    shutil.copyfile(artifact.sidecar_of(cached), artifact.sidecar_of(dst))
    return dst, reused


def run(cfg: dict, out: Path | None = None, *, force: bool = False) -> dict:
    """Run every stage into a run folder and return the summary (also written as summary.json)."""
    quick = cfg.get("quick_mode", False)
    q = cfg["quick"]
    if out is None:
        out = fresh_run_dir()
    elif out.exists() and any(out.iterdir()) and not force:
        raise CompressError(f"{out} exists and is not empty; pass --force or choose another -o")
    out.mkdir(parents=True, exist_ok=True)
    data_spec, times = cfg["data"]["spec"], {}
    data.load(data_spec, None, train_limit=64, test_limit=64)  # fail early on bad data
    start = time.perf_counter()
    trained, reused = _trained(cfg, out, quick)
    times["train"] = round(time.perf_counter() - start, 1)

    a_cfg = dict(cfg["analyze"]) | ({"eval_samples": q["eval_samples"]} if quick else {})
    start = time.perf_counter()
    analyze.run(str(trained), data_spec, out / "analysis.json", _opts(analyze.AnalyzeOptions, a_cfg), force=force)
    times["analyze"] = round(time.perf_counter() - start, 1)

    p_cfg = dict(cfg["prune"])
    p_cfg["order"] = prune.Order(p_cfg.get("order", "sensitivity"))
    p_cfg["plan"] = prune.Plan(p_cfg["plan"]) if p_cfg.get("plan") else None
    p_cfg["analysis"] = out / "analysis.json"
    if quick:
        p_cfg |= {"finetune_epochs": q["finetune_epochs"], "final_epochs": q["final_epochs"],
                  "val_samples": q["eval_samples"]}
    start = time.perf_counter()
    prune.run(str(trained), data_spec, out / "pruned.pt", _opts(prune.PruneOptions, p_cfg), force=force,
              train_limit=q["train_limit"] if quick else None)
    times["prune"] = round(time.perf_counter() - start, 1)

    qz_cfg = dict(cfg["quantize"])
    qz_cfg["scope"] = quantize.Scope(qz_cfg.get("scope", "fc"))
    qz_cfg["calibrate"] = quantize.Calibrate(qz_cfg.get("calibrate", "minmax"))
    start = time.perf_counter()
    quantize.run(str(out / "pruned.pt"), data_spec, out / "quantized.pt",
                 _opts(quantize.QuantizeOptions, qz_cfg), force=force)
    times["quantize"] = round(time.perf_counter() - start, 1)

    e_opts = _opts(export.ExportOptions, dict(cfg.get("export", {})))
    start = time.perf_counter()
    onnx_files = {"trained": out / "original.onnx", "pruned": out / "pruned.fp32.onnx", "quantized": out / "model.onnx"}
    arts = {name: export.run(str(src), onnx_files[name], e_opts, force=force)
            for name, src in (("trained", trained), ("pruned", out / "pruned.pt"),
                              ("quantized", out / "quantized.pt"))}
    times["export"] = round(time.perf_counter() - start, 1)

    b_cfg = dict(cfg["bench"]) | ({"runs": q["runs"]} if quick else {})
    start = time.perf_counter()
    report = bench.run(list(onnx_files.values()), _opts(bench.BenchOptions, b_cfg))
    times["bench"] = round(time.perf_counter() - start, 1)
    artifact.write_json(report, out / "bench.json")

    original = artifact.Artifact.open(trained).metrics
    rows = []
    for (name, art), timing in zip(arts.items(), report["models"], strict=True):
        m = art.metrics
        rows.append({"stage": name, "file": str(art.path), "params": m.get("params"), "macs": m.get("macs"),
                     "param_bytes": m["param_bytes"], "bytes": m["bytes"], "accuracy": m.get("accuracy"),
                     "eval_samples": m.get("eval_samples"), "p50_ms": timing["p50_ms"],
                     "p90_ms": timing["p90_ms"],
                     "compression_x": round(original["params"] * 4 / m["param_bytes"], 2),
                     "file_ratio_x": round(rows[0]["bytes"] / m["bytes"], 2) if rows else 1.0,
                     "speedup_x": round(report["models"][0]["p50_ms"] / timing["p50_ms"], 2)})
    summary = {"kind": "compress-run", "created": artifact.now(), "run_dir": str(out),
               "model": cfg["model"]["spec"], "data": data_spec, "quick": quick,
               "data_source": artifact.Artifact.open(trained).meta.get("data", {}).get("source"),
               "trained_reused_from_cache": reused, "stage_seconds": times, "stages": rows,
               "host": report["host"], "config": copy.deepcopy({k: cfg[k] for k in SECTIONS if k in cfg})}
    artifact.write_json(summary, out / "summary.json")
    return summary


def table(summary: dict):
    from rich.table import Table

    t = Table(title=f"compress run: {summary['model']} on {summary['data']} -> {summary['run_dir']}")
    for col in ("stage", "params", "param bytes", "file bytes", "accuracy", "p50 ms", "compression", "speed-up"):
        t.add_column(col, justify="left" if col == "stage" else "right")
    for r in summary["stages"]:
        t.add_row(r["stage"], f"{r['params']:,}" if r["params"] else "-", f"{r['param_bytes']:,}", f"{r['bytes']:,}",
                  f"{r['accuracy']:.2f}%" if r["accuracy"] is not None else "-", f"{r['p50_ms']:.3f}",
                  f"{r['compression_x']:.2f}x", f"{r['speedup_x']:.2f}x")
    return t
