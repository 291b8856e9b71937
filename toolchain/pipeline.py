"""`compress run`: train (or reuse) → analyze → prune → quantize → export → bench from one config.

Each stage reads and writes artifacts in a fresh run folder, exactly as the stage commands do,
so a run can be repeated stage by stage by hand. The trained model is cached between runs (it
depends only on model, data and training options).
"""

from __future__ import annotations

import copy
import dataclasses
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

from . import analyze, artifact, bench, cache, data, export, fileio, models, profile, prune, quantize, train
from .errors import CompressError
from .options import from_table, unknown_keys
from .target import load_target

logger = logging.getLogger(__name__)

SECTIONS = ("model", "data", "train", "analyze", "prune", "quantize", "export", "bench", "quick")


def fresh_run_dir(label: str = "run", root: Path = Path("runs")) -> Path:
    """A new, empty folder under runs/ named by the time (never reused)."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    for i in range(1000):
        path = root / (f"{stamp}-{label}" + (f"-{i}" if i else ""))
        try:
            with fileio.writing(path):
                path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:
            continue
    raise CompressError(f"could not make a fresh folder under {root}")


def load_config(path: Path | None, quick: bool = False) -> dict:
    """The embedded default, overlaid with a user's TOML file."""
    cfg = tomllib.loads(resources.files("toolchain").joinpath("defaults/pipeline.toml").read_text())
    if path is not None:
        user = fileio.read_toml(path, "config")
        unknown_keys(user, SECTIONS, f"{path} (sections)")
        for section, values in user.items():
            if not isinstance(values, dict):
                raise CompressError(f"{path}: [{section}] must be a table")
            cfg[section] = cfg.get(section, {}) | values
    cfg["quick_mode"] = quick
    return cfg


QUICK_KEYS = ("train_limit", "train_epochs", "eval_samples", "finetune_epochs", "final_epochs", "runs")


def stage_options(cfg: dict) -> dict:
    """Every stage's options from the config, checked whole before anything runs: unknown keys,
    wrong types, bad enum values and out-of-range numbers, the model spec against the data, and
    the bench target. Returns {stage: options}."""
    for section in ("model", "data"):
        unknown_keys(cfg.get(section, {}), ("spec",), f"[{section}]")
        if not isinstance(cfg.get(section, {}).get("spec"), str):
            raise CompressError(f"[{section}] spec must be a string")
    quick, q = cfg.get("quick_mode", False), cfg.get("quick", {})
    unknown_keys(q, QUICK_KEYS, "[quick]")
    for key, value in q.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise CompressError(f"[quick] {key} must be a number > 0, not {value!r}")
    t_cfg = dict(cfg.get("train", {}))
    if quick:
        t_cfg |= {"epochs": q["train_epochs"], "train_limit": q["train_limit"]}
    a_cfg = dict(cfg["analyze"]) | ({"eval_samples": q["eval_samples"]} if quick else {})
    p_cfg = dict(cfg["prune"])
    if quick:
        p_cfg |= {"finetune_epochs": q["finetune_epochs"], "final_epochs": q["final_epochs"],
                  "val_samples": q["eval_samples"]}
    b_cfg = dict(cfg["bench"]) | ({"runs": q["runs"]} if quick else {})
    spec, data_spec = cfg["model"]["spec"], cfg["data"]["spec"]
    opts = {"train": from_table(train.TrainOptions, t_cfg, "[train]", data=data_spec),
            "analyze": from_table(analyze.AnalyzeOptions, a_cfg, "[analyze]", data=data_spec),
            "prune": from_table(prune.PruneOptions, p_cfg, "[prune]", data=data_spec, analysis=Path("analysis.json"),
                                train_limit=q["train_limit"] if quick else None),
            "quantize": from_table(quantize.QuantizeOptions, dict(cfg["quantize"]), "[quantize]", data=data_spec),
            "export": from_table(export.ExportOptions, dict(cfg.get("export", {})), "[export]"),
            "bench": from_table(bench.BenchOptions, b_cfg, "[bench]")}
    if opts["bench"].target:
        load_target(opts["bench"].target)
    if spec.endswith((".pt", ".pth")):
        train.prepare(spec, data_spec, train_limit=64, test_limit=64)
    else:
        models_shape = data.native_shape(data_spec)
        built = models.build(spec, models_shape, data.num_classes(data_spec))
        train.check_fits(built.model, built.input_shape, spec,
                         data.load(data_spec, built.input_shape, train_limit=64, test_limit=64))
    return opts


def _trained(cfg: dict, run_dir: Path, opts: train.TrainOptions) -> tuple[Path, bool]:
    """The trained model: the user's .pt, or one trained now (cached by its recipe)."""
    spec = cfg["model"]["spec"]
    if spec.endswith((".pt", ".pth")):
        return Path(spec), False
    key = hashlib.sha256(json.dumps([spec, cfg["data"]["spec"], repr(opts)]).encode()).hexdigest()[:16]
    cached = data.CACHE_DIR / "models" / f"{re.sub(r'[^A-Za-z0-9.-]+', '_', spec)}-{key}.pt"
    dst = run_dir / "trained.pt"
    reused = cache.get(cached, _cached_model) is not None
    if reused:
        fileio.copy_file(cached, dst)
        fileio.copy_file(artifact.sidecar_of(cached), artifact.sidecar_of(dst))
    else:  # trained into the run folder, then cached: a cache that cannot be written costs no training
        train.run(spec, dst, opts, force=True)
        if cache.put(artifact.sidecar_of(cached), lambda tmp: shutil.copyfile(artifact.sidecar_of(dst), tmp)):
            cache.put(cached, lambda tmp: shutil.copyfile(dst, tmp))
    return dst, reused


def _cached_model(path: Path) -> Path:
    """A cached trained model, refused (ValueError: trained again) unless its sidecar says it is
    these very bytes (sha256)."""
    recorded = json.loads(artifact.sidecar_of(path).read_bytes().decode("utf-8"))["model"]["sha256"]
    if fileio.sha256_of(path) != recorded:
        raise ValueError(f"its sha256 is not the {str(recorded)[:12]} its sidecar records")
    return path


CONFIG_FILE, PROGRESS_FILE = "config.json", "progress.json"


class _Progress:
    """Which stages of a run folder finished, and from what (progress.json, rewritten atomically
    after each stage). A stage is reused on `--resume` only when its key (its options and the key
    of the stage before it) is unchanged and its outputs exist; otherwise it runs again."""

    def __init__(self, out: Path, resume: bool):
        self.path = out / PROGRESS_FILE
        self.done = _finished(self.path) if resume else {}
        self.key = ""

    def stage(self, name: str, options, outputs: list[Path], work) -> bool:
        """Run `work()` unless a finished run of this stage can be reused; True when reused."""
        self.key = hashlib.sha256(json.dumps([self.key, name, repr(options)]).encode()).hexdigest()
        entry = self.done.get(name)
        if entry and entry["key"] == self.key and all(p.exists() for p in outputs):
            return True
        self.done.pop(name, None)
        work()
        self.done[name] = {"key": self.key, "outputs": [p.name for p in outputs], "finished": artifact.now()}
        artifact.write_json(self.done, self.path)
        return False


def _finished(path: Path) -> dict:
    """progress.json's finished stages, or none (every stage runs again) where it is damaged."""
    try:
        done = json.loads(path.read_bytes().decode("utf-8")) if path.exists() else {}
    except (OSError, ValueError) as e:
        logger.warning("ignoring the unreadable %s (%s); every stage runs again", path, e)
        return {}
    return done if isinstance(done, dict) and all(isinstance(v, dict) and "key" in v for v in done.values()) else {}


def resume_config(run_dir: Path) -> dict:
    """The config a run folder was started with (for `compress run --resume DIR`)."""
    if not Path(run_dir).is_dir():
        raise CompressError(f"{run_dir}: no such run folder to resume")
    return fileio.read_json(Path(run_dir) / CONFIG_FILE, "run config")


def run(cfg: dict, out: Path | None = None, *, force: bool = False, resume: bool = False) -> dict:
    """Run every stage into a run folder and return the summary (also written as summary.json).

    With `resume`, continue the run in `out` (killed at any point): finished stages whose inputs
    did not change are reused, the rest run again."""
    started = time.perf_counter()
    opts = stage_options(cfg)  # the whole config is checked before anything is written
    quick = cfg.get("quick_mode", False)
    if resume:
        if out is None or not (out / CONFIG_FILE).exists():
            raise CompressError(f"{out}: not a run folder to resume")
        force = True  # a stage that did not finish is redone over its partial outputs
    elif out is None:
        out = fresh_run_dir()
    elif out.exists() and any(out.iterdir()) and not force:
        raise CompressError(f"{out} exists and is not empty; pass --force or choose another -o, or --resume it")
    else:
        problem = fileio.writable(out / CONFIG_FILE)
        if problem:
            raise CompressError(f"cannot write the run folder {out}: {problem}")
    with fileio.writing(out):
        out.mkdir(parents=True, exist_ok=True)
    artifact.write_json(cfg, out / CONFIG_FILE)
    progress, data_spec, times = _Progress(out, resume), cfg["data"]["spec"], {}
    reused_stages = []

    def timed(name: str, options, outputs: list[Path], work) -> None:
        start = time.perf_counter()
        if progress.stage(name, options, outputs, work):
            reused_stages.append(name)
        times[name] = round(time.perf_counter() - start, 1)

    trained_reused = []
    timed("train", [cfg["model"]["spec"], data_spec, opts["train"]], [out / "trained.pt"],
          lambda: trained_reused.append(_trained(cfg, out, opts["train"])))
    trained = Path(cfg["model"]["spec"]) if cfg["model"]["spec"].endswith((".pt", ".pth")) else out / "trained.pt"
    reused = bool(trained_reused and trained_reused[0][1]) or "train" in reused_stages

    timed("analyze", opts["analyze"], [out / "analysis.json"],
          lambda: analyze.run(str(trained), out / "analysis.json", opts["analyze"], force=force))
    p_opts = dataclasses.replace(opts["prune"], analysis=out / "analysis.json")
    timed("prune", opts["prune"], [out / "pruned.pt"], lambda: prune.run(
        str(trained), out / "pruned.pt", with_latency_table(str(trained), out / "pruned.pt", p_opts, force=force),
        force=force))
    timed("quantize", opts["quantize"], [out / "quantized.pt"],
          lambda: quantize.run(str(out / "pruned.pt"), out / "quantized.pt", opts["quantize"], force=force))
    onnx_files = {"trained": out / "original.onnx", "pruned": out / "pruned.fp32.onnx", "quantized": out / "model.onnx"}
    sources = {"trained": trained, "pruned": out / "pruned.pt", "quantized": out / "quantized.pt"}
    timed("export", opts["export"], list(onnx_files.values()),
          lambda: [export.run(str(sources[n]), onnx_files[n], opts["export"], force=force) for n in onnx_files])
    arts = {n: artifact.Artifact.open(onnx_files[n]) for n in onnx_files}
    timed("bench", opts["bench"], [out / "bench.json"],
          lambda: bench.run(list(onnx_files.values()), out / "bench.json", opts["bench"], force=True))
    report = json.loads((out / "bench.json").read_text())

    original = artifact.Artifact.open(trained).metrics
    rows = []
    for (name, art), timing in zip(arts.items(), report["models"], strict=True):
        m = art.metrics
        rows.append({"stage": name, "file": str(art.path), "params": m.get("params"), "macs": m.get("macs"),
                     "param_bytes": m["param_bytes"], "bytes": m["bytes"], "accuracy": m.get("accuracy"),
                     "eval_samples": m.get("eval_samples"), "p50_ms": timing["p50_ms"],
                     "p90_ms": timing["p90_ms"],
                     "compression_x": artifact.compression_x(original["params"], m["param_bytes"], 2),
                     "file_ratio_x": round(rows[0]["bytes"] / m["bytes"], 2) if rows else 1.0,
                     "speedup_x": round(report["models"][0]["p50_ms"] / timing["p50_ms"], 2),
                     "note": _effect(name, out, cfg, reused)})
    first, last = rows[0], rows[-1]
    drop = (round(first["accuracy"] - last["accuracy"], 2)
            if first["accuracy"] is not None and last["accuracy"] is not None else None)
    summary = {"kind": "compress-run", "created": artifact.now(), "run_dir": str(out),
               "model": cfg["model"]["spec"], "data": data_spec, "quick": quick,
               "data_source": artifact.Artifact.open(trained).meta.get("data", {}).get("source"),
               "trained_reused_from_cache": reused, "stage_seconds": times, "stages": rows,
               "resumed_stages": reused_stages if resume else [],
               # the run in four figures: the final model against the trained one (the table's last line)
               "result": {"compression_x": last["compression_x"], "speedup_x": last["speedup_x"],
                          "accuracy_drop": drop, "int8_kept": bool(artifact.Artifact.open(
                              out / "quantized.pt").meta.get("quantization")),
                          "wall_seconds": round(time.perf_counter() - started, 1)},
               "host": report["host"], "config": copy.deepcopy({k: cfg[k] for k in SECTIONS if k in cfg})}
    artifact.write_json(summary, out / "summary.json")
    return summary


SCOPE_WORDS = {"fc": "the fully-connected layers", "all": "every layer"}


def _effect(stage: str, out: Path, cfg: dict, reused: bool) -> str:
    """What a stage did and what it kept, in plain words, for the run table."""
    if stage == "trained":
        spec = cfg["model"]["spec"]
        if spec.endswith((".pt", ".pth")):
            return "the baseline: your trained model, as given"
        lineage = artifact.Artifact.open(out / "trained.pt").meta.get("lineage", [])
        options = next((e["options"] for e in lineage if e.get("stage") == "train"), {})
        images = f", {options['train_limit']:,} images" if options.get("train_limit") else ""
        epochs = f" {options['epochs']:g} epochs" if isinstance(options.get("epochs"), int | float) else ""
        return (f"the baseline: trained{epochs} on {cfg['data']['spec']}{images}"
                + (" (reused from the cache)" if reused else ""))
    if stage == "pruned":
        rep = artifact.Artifact.open(out / "pruned.pt").meta["report"]
        goal = rep.get("goal_met")
        how = {"sensitivity": "cheapest layer first"}.get(rep.get("walk", ""), f"{rep.get('walk', '')} order")
        return (f"cut neurons and filters layer by layer ({how}), fine-tuned: kept {rep['params_kept']:.0%} "
                f"of the parameters" + ("" if goal is None else "" if goal else "; SIZE GOAL NOT MET"))
    if stage == "quantized":
        rep = artifact.Artifact.open(out / "quantized.pt").meta["report"]
        recipe = rep["recipe"]
        where, ratio = SCOPE_WORDS.get(recipe["scope"], recipe["scope"]), recipe.get("int8_vs_fp32_p50")
        if rep.get("kept_fp32_because_int8_was_slower"):
            return (f"nothing quantized, left in fp32: int8 in {where} took {ratio:.2f}x the fp32 time here "
                    f"(set [quantize] allow_slower = true to keep int8 anyway)")
        speed = ("kept without timing it (allow_slower = true)" if not ratio else
                 f"ran {1 / ratio:.2f}x faster than fp32 here" if ratio <= 1 else
                 f"took {ratio:.2f}x the fp32 time here (within the {quantize.SLOWER_TOLERANCE:.0%} allowed)")
        return f"int8 weights in {where}: {speed}, accuracy {-rep['drop_vs_fp32']:+.2f} pts"
    return ""


def headline(summary: dict) -> str:
    """The run in one line: smaller by X, faster by Y, accuracy -Z points, in N s."""
    r = summary["result"]
    drop = "n/a" if r["accuracy_drop"] is None else f"{-r['accuracy_drop']:+.2f}"
    cached = " (the trained model from the cache)" if summary.get("trained_reused_from_cache") else ""
    return (f"smaller by {r['compression_x']:.1f}x, faster by {r['speedup_x']:.1f}x, accuracy {drop} points, "
            f"in {r['wall_seconds']:.0f} s{cached}")


def table(summary: dict):
    from rich.table import Table

    t = Table(title=f"compress run: {summary['model']} on {summary['data']} -> {summary['run_dir']}")
    for col in ("stage", "params", "param bytes", "file bytes", "accuracy", "p50 ms", "compression", "speed-up",
                "what it did"):
        t.add_column(col, justify="left" if col in ("stage", "what it did") else "right")
    for r in summary["stages"]:
        t.add_row(r["stage"], f"{r['params']:,}" if r["params"] else "-", f"{r['param_bytes']:,}", f"{r['bytes']:,}",
                  f"{r['accuracy']:.2f}%" if r["accuracy"] is not None else "-", f"{r['p50_ms']:.3f}",
                  f"{r['compression_x']:.2f}x", f"{r['speedup_x']:.2f}x", r.get("note", ""))
    return t


def with_latency_table(src: str, dst: Path, opts: prune.PruneOptions, *, force: bool = False, trust: bool = False,
                       also: tuple[Path, ...] = ()) -> prune.PruneOptions:
    """prune's latency objective with a `--target` and no table: the table profiled first with the
    target's settings (`compress profile`, cached per model) and written beside `dst`. Composition
    lives here, not in prune: a stage never runs another stage."""
    table = prune.table_needed(dst, opts)
    if table is None:
        return opts
    artifact.check_output(Path(dst), force, table, *also)  # before minutes of profiling
    profile.run(src, table, profile.ProfileOptions(data=opts.data, target=opts.target,
                                                   include_linear=opts.include_linear), force=force, trust=trust)
    return dataclasses.replace(opts, latency_table=table)
