"""Breadth: every torchvision classification model through analyze → prune → quantize → export → bench.

This measures structure, not accuracy: random weights, `synthetic:` data and small inputs (64 px;
inception_v3 96, MaxViT 224, the size its attention windows need). Each model, in its own process
with a time limit (`--jobs` at a time; models over 400M parameters alone, after the rest, with the
threads of every job: two of them at once outgrow 24 GiB):

0. build it with seeded random weights made non-degenerate (layers initialised at zero drawn at
   random, BatchNorm statistics estimated on 64 images) and save it: every stage starts from it;
1. analyze at one ratio (0.5) on 32 validation images, fully-connected layers included (a vision
   transformer's prunable channels are its MLPs');
2. prune to half the parameters (the sensitivity plan, in one shot, no fine-tuning);
3. quantize all-int8 (static QDQ, 16 calibration images; `allow_slower`, so its speed guard is not
   timed: step 4 times the result), export with the fp32 ONNX checked against PyTorch
   (`parity_max_abs`); then `parity_int8`: the int8 ONNX that is timed against the fp32 pruned
   model, top-1 agreement and relative error on 64 images (thresholds fixed before the run);
   export the unpruned fp32 model as the reference;
4. bench both, interleaved, one thread: p50 before and after.

A row is `ok` when every stage finished and both parity checks held; `failed` when int8 parity
did not hold; `skipped` with the stage and the reason when a stage refused or broke. Rows are cached
one by one under the compress cache (each with the commit it was measured at), and the results JSON
is rewritten after every model, so a cut-short run resumes, on this machine from the cache and on a
fresh one from the committed benchmarks/results/zoo_breadth.json; `--fresh` reruns them all, and
only a run where every row was measured in the same invocation (`fresh_run`) has a `wall_s` that is
the time of one run of all models.

    python benchmarks/zoo_breadth.py [--only resnet18,vit_b_16] [--timeout 900] [--threads 1] [--jobs 1] [--fresh]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from common import RESULTS, git_state, load, write

from toolchain import data

SIZE, SIZES = 64, {"inception_v3": 96, "maxvit_t": 224, "vit_h_14": 56}  # ViT-H/14: a multiple of its patch
TARGET = 0.5
ALONE_PARAMS = 400_000_000  # models this large run alone, after the rest (memory, not time)
MIN_AGREEMENT, MAX_REL_ERROR = 0.9, 0.2  # int8 against fp32, fixed before the run (parity_int8)
ROW_FORMAT = 2  # rows of another format (before parity_int8) are measured again


def spec(name: str) -> tuple[str, int]:
    size = SIZES.get(name, SIZE)
    extra = f"&image_size={size}" if name.startswith("vit_") else ""
    return f"torchvision:{name}?size={size}{extra}", size


@dataclass(frozen=True)
class Zoo:
    """A family of architectures to take through every stage: its results file, its names (smallest
    first), each one's model spec and input size, and its size in parameters (models over
    ALONE_PARAMS run alone)."""

    results: str
    what: str
    names: Callable[[], list[str]]
    spec: Callable[[str], tuple[str, int]]
    params: Callable[[str], int]
    inputs: dict = None  # input sizes, for the page: {"default": px, name: px, ...}
    fuse: Callable | None = None  # model -> its re-parameterised (deploy) copy, or None where it has none


def one(name: str, threads: int, zoo: Zoo | None = None) -> dict:
    """Every stage for one model (run in a child process)."""
    import torch

    from toolchain import analyze, bench, export, prune, quantize
    from toolchain.errors import CompressError

    torch.set_num_threads(threads)
    zoo = zoo or TORCHVISION
    model, size = zoo.spec(name)
    data_spec = f"synthetic:3x{size}x{size}:10"
    row: dict = {"model": name, "input": size, "status": "skipped"}
    stage, start, seconds = "build", time.perf_counter(), {}

    def lap(nxt: str) -> str:  # seconds per stage, for the table
        seconds[stage] = round(time.perf_counter() - start - sum(seconds.values()), 1)
        return nxt
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        try:
            base = _base(model, size, data_spec, tmp / "base.pt")
            stage = lap("analyze")
            analyze.run(str(base), tmp / "analysis.json", analyze.AnalyzeOptions(ratio=0.5, eval_samples=32,
                                                                             include_linear=True, plots=False,
                                               cache_dir=tmp / "cache", data=data_spec))
            stage = lap("prune")
            pruned = prune.run(str(base), tmp / "pruned.pt", prune.PruneOptions(
                analysis=tmp / "analysis.json", target_params=TARGET, plan=prune.Plan.SENSITIVITY,
                order=prune.Order.ONESHOT, finetune_epochs=0, final_epochs=0, include_linear=True, val_samples=32,
                data=data_spec))
            report = pruned.meta["report"]
            row |= {"params_before": report["before"]["params"], "params_after": report["after"]["params"],
                    "macs_before": report["before"]["macs"], "macs_after": report["after"]["macs"],
                    "layers_pruned": sum(1 for v in report["layers"].values() if v["after"] < v["before"])}
            stage = lap("quantize")
            quantize.run(str(tmp / "pruned.pt"), tmp / "int8.pt", quantize.QuantizeOptions(
                scope=quantize.Scope.ALL, samples=16, eval_samples=32, allow_slower=True))
            stage = lap("export")
            opts = export.ExportOptions(eval_samples=32)
            out = export.run(str(tmp / "int8.pt"), tmp / "int8.onnx", opts)
            parity = out.meta["report"]["parity"]
            row |= {"parity_max_abs": parity["max_abs_diff"], "parity_max_rel": parity["max_rel_diff"],
                    "parity_int8": parity_int8(tmp / "pruned.pt", tmp / "int8.onnx", data_spec, size)}
            export.run(str(base), tmp / "fp32.onnx", export.ExportOptions(eval_samples=32, data=data_spec))
            fused = _fused(zoo, base, tmp / "fused.onnx", size)
            if fused:
                row["fused"] = fused
            stage = lap("bench")
            files = [tmp / "fp32.onnx", tmp / "int8.onnx"] + ([tmp / "fused.onnx"] if fused else [])
            rep = bench.run(files, None, bench.BenchOptions(runs=20, warmup=3, threads=1)).meta
            before, after = rep["models"][:2]
            row |= {"p50_before_ms": before["p50_ms"], "p50_after_ms": after["p50_ms"],
                    "bytes_before": before["bytes"], "bytes_after": after["bytes"]}
            if fused:
                row |= {"p50_fused_ms": rep["models"][2]["p50_ms"], "bytes_fused": rep["models"][2]["bytes"]}
            check = row["parity_int8"]
            row["status"] = "ok" if check["holds"] else "failed"
            if not check["holds"]:
                row["reason"] = f"parity_int8: {check['why']}"
        except CompressError as e:
            row["reason"] = f"{stage}: {e}"
        except Exception as e:  # noqa: BLE001 - a traceback is the finding this benchmark exists to count
            row["reason"] = f"{stage}: traceback: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            row["traceback"] = True
    lap("")
    row |= {"seconds": round(time.perf_counter() - start, 1), "stage_seconds": seconds}
    return row


def _base(model: str, size: int, data_spec: str, dst: Path) -> Path:
    """The random-weight network made to give outputs that are not degenerate, saved for every stage to
    start from: layers initialised at zero (torchvision's ViT head: every logit 0) drawn at random,
    and the BatchNorm statistics estimated on 64 training images (at torch's initial statistics, mean
    0 and variance 1, the activations of deep networks grow or vanish layer by layer)."""
    import torch

    from toolchain import artifact, models, train

    ds = data.load(data_spec, (3, size, size))
    torch.manual_seed(0)  # the same random weights every run
    built = models.build(model, (3, size, size), ds.num_classes)
    with torch.no_grad():
        for m in built.model.modules():
            if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)) and not m.weight.any():
                torch.nn.init.trunc_normal_(m.weight, std=0.02)
    x = ds.train.tensors[0][:64]
    train.adapt_batchnorm(built.model, x)
    net = built.model.eval()
    meta = artifact.new_meta("build", {"adapt_batchnorm": 64}, parent=None, spec=built.spec,
                             data=train.data_meta(ds), input_shape=built.input_shape, num_classes=ds.num_classes,
                             metrics={"params": artifact.param_count(net)})
    artifact.save(net, dst, meta)
    return dst


def parity_int8(fp32: Path, int8_onnx: Path, data_spec: str, size: int, n: int = 64) -> dict:
    """The int8 ONNX file that is timed against the fp32 PyTorch model it came from, on n test images:
    top-1 agreement and the relative error (L2 norm of the difference over the L2 norm of the fp32
    logits). It holds when the fp32 logits are not all near zero, agreement >= MIN_AGREEMENT and the
    relative error <= MAX_REL_ERROR: a check that fails when int8 breaks a model.

    A random network tends to give every input the same top class (`classes_predicted`), which makes
    agreement easy; so the part of the logits that depends on the input is also reported (each
    class's mean over the images taken away: `rel_error_centred`, `top1_agreement_centred`). In most
    random networks that part is 1-10% of the logits, so int8's rounding is large beside it: it is
    shown, not held to the thresholds."""
    import numpy as np
    import torch

    from toolchain import artifact
    from toolchain.onnxio import onnx_logits

    x = data.load(data_spec, (3, size, size)).test.tensors[0][:n]
    net, _ = artifact.load_model(fp32)
    with torch.inference_mode():
        ref = net.eval()(x).numpy().astype(np.float64)
    got = onnx_logits(int8_onnx, x.numpy()).astype(np.float64)
    ref_c, got_c = ref - ref.mean(0), got - got.mean(0)

    def rel_error(a, b) -> float:
        return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))
    scale = float(np.abs(ref).max())
    rel, agree = rel_error(got, ref), float((got.argmax(1) == ref.argmax(1)).mean())
    out = {"top1_agreement": round(agree, 4), "rel_error": round(rel, 5), "logit_scale": scale, "samples": len(x),
           "classes_predicted": int(len(np.unique(ref.argmax(1)))),
           "input_dependent_fraction": round(float(np.linalg.norm(ref_c) / max(np.linalg.norm(ref), 1e-30)), 5),
           "rel_error_centred": round(rel_error(got_c, ref_c), 5),
           "top1_agreement_centred": round(float((got_c.argmax(1) == ref_c.argmax(1)).mean()), 4),
           "min_agreement": MIN_AGREEMENT, "max_rel_error": MAX_REL_ERROR}
    why = []
    if scale < 1e-6:
        why.append(f"degenerate fp32 logits (all within {scale:.2g} of zero)")
    if agree < MIN_AGREEMENT:
        why.append(f"top-1 agreement {agree:.3f} < {MIN_AGREEMENT}")
    if rel > MAX_REL_ERROR:
        why.append(f"relative error {rel:.3f} > {MAX_REL_ERROR}")
    return out | {"holds": not why, "why": "; ".join(why)}


def _fused(zoo: Zoo, base: Path, dst: Path, size: int) -> dict | None:
    """The unpruned model's deploy form, where the zoo has one (RepVGG, MobileOne, FastViT: branches
    fused into one convolution), exported to `dst` for bench to time beside the others, and how far
    its outputs are from the unfused model's (max difference over the output scale)."""
    import torch

    from toolchain import artifact
    from toolchain.convert import export_onnx

    if zoo.fuse is None:
        return None
    net, _ = artifact.load_model(base)
    fused = zoo.fuse(net)
    if fused is None:
        return None
    x = data.load(f"synthetic:3x{size}x{size}:10", (3, size, size)).test.tensors[0][:16]
    with torch.inference_mode():
        ref, got = net.eval()(x), fused.eval()(x)
    export_onnx(fused, (3, size, size), dst)
    diff = float((ref - got).abs().max() / max(float(ref.abs().max()), 1e-12))
    return {"params": artifact.param_count(fused), "params_unfused": artifact.param_count(net),
            "max_rel_diff": diff}


def _size(name: str) -> int:
    """Parameters at ImageNet size, from torchvision's weight metadata (nothing is downloaded)."""
    from torchvision.models import get_model_weights

    return next(iter(get_model_weights(name))).meta["num_params"]


def _torchvision_names() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models), key=_size)


TORCHVISION = Zoo("zoo_breadth", "structure, not accuracy: random weights, synthetic data, small inputs",
                  _torchvision_names, spec, lambda name: _size(name), {"default": SIZE, **SIZES})


def main(zoo: Zoo = TORCHVISION, doc: str = __doc__, script: str = __file__) -> None:
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", help="comma-separated model names to measure (default: every classification model); "
                                   "the results keep every other model's last row")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per model")
    ap.add_argument("--fresh", action="store_true", help="rerun models a previous run already measured")
    ap.add_argument("--since", help="rerun models last measured before this time (YYYY-MM-DD[THH:MM]), keep the rest")
    ap.add_argument("--max-minutes", type=float, help="start no model after this long; the rest are listed as not run")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads per model (1 leaves a core to anything else running: oversubscribed "
                         "OpenMP threads made every stage ~20x slower here)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="models at a time (much of the work is single-threaded Python: 2 jobs x 1 thread "
                         "on 2 cores; p50s are then measured under load, before and after alike)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.threads, zoo)))
        return
    names = zoo.names()  # smallest first: a cut-short run covers most
    wanted = set(args.only.split(",") if args.only else names)
    if wanted - set(names):
        ap.error(f"not in this benchmark's list: {', '.join(sorted(wanted - set(names)))}")
    cells = data.CACHE_DIR / zoo.results.replace("_", "-")
    cells.mkdir(parents=True, exist_ok=True)
    committed = RESULTS / f"{zoo.results}.json"
    if committed.exists():  # rows measured in an earlier session, on a fresh machine
        earlier = json.loads(committed.read_text())
        for row in earlier.get("rows", []):
            row.setdefault("measured", earlier["created"][:10])
            if not (cells / f"{row['model']}.json").exists():
                (cells / f"{row['model']}.json").write_text(json.dumps(row))
    start, not_run, done_count, finished, lock = time.perf_counter(), [], [0], {}, threading.Lock()
    code, load_before = git_state(), load()
    big = [n for n in names if zoo.params(n) > ALONE_PARAMS]

    def measure(name: str, threads: int = args.threads) -> dict | None:
        cell = cells / f"{name}.json"
        late = args.max_minutes is not None and time.perf_counter() - start > 60 * args.max_minutes
        row = json.loads(cell.read_text()) if cell.exists() else None
        if row is not None:
            row["this_run"] = False
        due = row is None or args.fresh or row.get("format") != ROW_FORMAT or \
            args.since is not None and row.get("measured", "") < args.since
        if name in wanted and due and not late:
            try:
                child = [sys.executable, script, "--one", name, "--threads", str(threads)]
                done = subprocess.run(child, capture_output=True, text=True, timeout=args.timeout)
                lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
                row = json.loads(lines[-1]) if lines else {
                    "model": name, "status": "skipped", "traceback": True,
                    "reason": f"crashed (exit {done.returncode}): {(done.stderr.strip().splitlines() or [''])[-1]}"
                    if done.returncode != -9 else "killed by the system (signal 9: out of memory)"}
            except subprocess.TimeoutExpired:
                row = {"model": name, "status": "skipped", "reason": f"over the {args.timeout} s limit per model"}
            row |= {"measured": time.strftime("%Y-%m-%dT%H:%M"), "threads": threads, "format": ROW_FORMAT,
                    "git_commit": code["commit"], "code_dirty": code["dirty"], "this_run": True}
            cell.write_text(json.dumps(row))
        if row is None:  # not measured here (late, or not among --only) and never before
            not_run.append(name)
            return None
        with lock:
            finished[name] = row
            save([finished[n] for n in names if n in finished], [n for n in names if n not in finished])
        done_count[0] += 1
        print(f"[{done_count[0]}/{len(names)}] {name}: {row['status']} {row.get('reason', '')} "
              f"{row.get('params_before', '')}->{row.get('params_after', '')} {row.get('seconds', '')}s", flush=True)
        return row

    def save(rows: list[dict], not_run: list[str]) -> None:
        ok = [r for r in rows if r["status"] == "ok"]  # the fraction is of the models run; not_run lists the rest
        fresh = bool(rows) and not not_run and all(r.get("this_run") for r in rows)
        commits = sorted({r.get("git_commit") or "unknown" for r in rows})
        write(zoo.results, {
            "what": zoo.what,
            "input": zoo.inputs, "target_params": TARGET,
            "models": len(rows), "ok": len(ok), "ok_fraction": round(len(ok) / max(1, len(rows)), 3),
            "tracebacks": sum(1 for r in rows if r.get("traceback")), "goal_ok_fraction": 0.95,
            "parity_failed": [r["model"] for r in rows if r.get("parity_int8") and not r["parity_int8"]["holds"]],
            "parity_rule": {"min_agreement": MIN_AGREEMENT, "max_rel_error": MAX_REL_ERROR},
            "rows": rows, "not_run": not_run, "jobs": args.jobs, "threads": args.threads,
            "model_seconds": round(sum(r.get("seconds", args.timeout) for r in rows), 1), "alone": big,
            "measured_between": [min(r["measured"] for r in rows), max(r["measured"] for r in rows)] if rows else None,
            "row_commits": commits,
            "fresh_run": fresh, "wall_s": round(time.perf_counter() - start, 1),
            "note": "wall_s is this invocation's wall time; it is the time of one run of every model only when "
                    "fresh_run is true (every row measured in this invocation, none cached, none left out); "
                    "model_seconds sums each model's own time (a model over the limit counts the limit)",
            "provenance": {"parts": {"run": {"minutes": round((time.perf_counter() - start) / 60, 2),
                                             "load_before": load_before, "load_after": load()}},
                           "recipe": {"target_params": TARGET, "analysis_ratio": 0.5, "eval_samples": 32,
                                      "calibration": 16, "bench_runs": 20, "parity_samples": 64,
                                      "timeout_s": args.timeout, "jobs": args.jobs, "threads": args.threads}}})

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(args.jobs) as pool:  # each model is its own process: threads only wait
        list(pool.map(measure, [n for n in names if n not in big]))
    for name in big:  # one at a time: two of them at once outgrow 24 GiB (ViT-H/14 was killed beside RegNetY-128GF)
        measure(name, args.threads * args.jobs)  # alone, a model has the cores the jobs had


if __name__ == "__main__":
    main()
