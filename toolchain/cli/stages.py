"""The stage commands: train, analyze, prune, profile, quantize, calibrate, export."""

from __future__ import annotations

from pathlib import Path

import click

from .base import (
    CONTEXT,
    _choice,
    _console,
    _default_out,
    _friendly,
    _ratios,
    _shape,
    _summary,
    data_opt,
    force_opt,
    main,
    model_arg,
    trust_opt,
)


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
    from .. import train as stage

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
    from .. import analyze as stage

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
    from .. import prune as stage
    from ..pipeline import with_latency_table

    opts = stage.PruneOptions(data=data_spec, order=stage.Order(order), plan=stage.Plan(plan) if plan else None,
                              analysis=Path(analysis) if analysis else None,
                              target_params=target_params, max_drop=max_drop, step=step,
                              finetune_epochs=finetune_epochs, final_epochs=final_epochs, lr=lr, distill=distill,
                              round_to=round_to, include_linear=include_linear, val_samples=val_samples,
                              remove_layers=not keep_layers, max_layer_ratio=max_layer_ratio, seed=seed,
                              target_latency=target_latency, train_limit=train_limit,
                              latency_of=Path(latency_of) if latency_of else None, latency_fraction=latency_fraction,
                              retimes=retimes, latency_table=Path(latency_table) if latency_table else None,
                              target=target, proxy=proxy, select=select, objective=objective)
    if compare_orders:
        fractions = _ratios(targets) or ((target_params,) if target_params else ())
        out = Path(output) if output else _default_out("compare", "orders.json")
        chosen = tuple(_choice(stage.Plan, p, "--plans") for p in plans.split(",") if p) if plans else None
        opts = with_latency_table(model, out, opts, force=force, trust=trust, also=(out.with_suffix(".png"),))
        result = stage.compare(model, out, opts, fractions, plans=chosen, force=force, trust=trust)
        _console().print(stage.compare_table(result))
        _console().print(f"wrote {out} and {result['plot']}")
        return
    out = Path(output) if output else _default_out("prune", "pruned.pt")
    opts = with_latency_table(model, out, opts, force=force, trust=trust)
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
    from .. import profile as stage

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
    from .. import quantize as stage

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
    from .. import quantize as stage

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
    from .. import export as stage

    opts = stage.ExportOptions(data=data_spec, opset=opset, simplify=not no_simplify, input_shape=_shape(input_shape),
                               tolerance=tolerance, eval_samples=eval_samples, check_target=check_target)
    out = Path(output) if output else _default_out("export", "model.onnx")
    art = stage.run(model, out, opts, force=force, trust=trust)
    _summary(art, f"exported (parity max abs diff {art.meta['report']['parity']['max_abs_diff']:.1e})")


