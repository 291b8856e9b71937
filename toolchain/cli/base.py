"""The command group and what every command shares: one-line errors, parsers of comma lists and
shapes, the common options, the summary table."""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path

import click

from ..errors import CompressError

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
    from ..pipeline import fresh_run_dir
    return fresh_run_dir(stage) / name


def _write_json(obj: dict, path: str | None) -> None:
    if path:
        from ..artifact import write_json
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


