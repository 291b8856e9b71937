"""`compress bench`: size, latency and peak memory of ONNX models with onnxruntime, as a table,
a JSON report and a plot. The measuring itself is `toolchain.measure` (shared with quantize's speed
guard and profile's latency table).

A target profile (`--target rpi4`, or a .toml file) sets providers, threads, optimization level,
input shape and SSH defaults. Run locally with a profile for another architecture, the report
says plainly that it measured THIS host, not the target.
"""

from __future__ import annotations

from pathlib import Path

from .errors import CompressError
from .fileio import Artifact, check_outputs, save_figure, write_json
from .measure import NOISY_IQR, BenchOptions, Runtime, measure

__all__ = ["BenchOptions", "Runtime", "run", "table", "plot"]


def run(src: list[Path], dst: Path | None, opts: BenchOptions, *, force: bool = False) -> Artifact:
    """Measure every model in `src` (`toolchain.measure`); write the report to `dst` (JSON; None:
    not written) and return it as the artifact's `meta`."""
    opts.validate()
    if dst is not None:
        check_outputs(force, Path(dst))
    report = measure(src, opts)
    if dst is not None:
        write_json(report, Path(dst))
    return Artifact(Path(dst) if dst is not None else None, report)


# ---------------------------------------------------------------- presentation

def _labels(models: list[dict]) -> list[str]:
    names = [Path(m["path"]).name for m in models]
    return names if len(set(names)) == len(names) else [m["path"] for m in models]


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, scale in (("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def table(report: dict):
    """A rich Table of the report, for the CLI."""
    from rich.table import Table

    host = report["host"]
    threads = report["threads"] or "default"
    caption = (f"onnxruntime {host['onnxruntime']}, {', '.join(report['providers'])}, batch {report['batch']}, "
               f"threads {threads}, graph opt {report['graph_optimization'] or 'default'}, {report['runs']} runs each, "
               f"interleaved in blocks of {report['block']}, after {report['warmup']} warm-up; "
               f"noisy: IQR/p50 > {NOISY_IQR:.0%}; ×: ratio to the first model")
    if report.get("emulated"):
        caption += (f"; emulated aarch64: parity max |diff| {report['parity_max_abs']:.2e}, unsupported ops: "
                    f"{', '.join(report['ops_unsupported']) or 'none'}")
    t = Table(title=report["measured_on"], caption=caption)
    cols = ("model", "size", "load ms", "1st ms", "p50 ms", "p90 ms", "p99 ms", "mean±std", "min ms", "items/s",
            "peak mem", "p50 ×", "size ×", "note")
    for col in cols:
        t.add_column(col, justify="left" if col in ("model", "note") else "right")
    preferred = report["providers"][0] if report["providers"] else None
    for label, m in zip(_labels(report["models"]), report["models"], strict=True):
        notes = ["noisy"] if m["noisy"] else []
        if preferred and m["providers"] and m["providers"][0] != preferred:
            notes.append(f"on {m['providers'][0].replace('ExecutionProvider', '')}")
        t.add_row(label, _size(m["bytes"]), f"{m['session_ms']:.1f}", f"{m['first_ms']:.2f}",
                  f"{m['p50_ms']:.3f}", f"{m['p90_ms']:.3f}", f"{m['p99_ms']:.3f}",
                  f"{m['mean_ms']:.3f}±{m['std_ms']:.3f}", f"{m['min_ms']:.3f}", f"{m['throughput_per_s']:,.0f}",
                  _size(m["peak_mem_bytes"]), f"{m['p50_ratio']:.2f}" if m["p50_ratio"] else "-",
                  f"{m['bytes_ratio']:.2f}", ", ".join(notes))
    return t


def plot(report: dict, dst: Path) -> Path:
    """A PNG of the latency distribution per model (box plot over the raw runs, p50 marked)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dst = Path(dst)
    if dst.parent and not dst.parent.exists():
        raise CompressError(f"--plot {dst}: the folder {dst.parent} does not exist")
    labels = _labels(report["models"])
    data = [m["latencies_ms"] for m in report["models"]]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.4 * len(data) + 2), 4.5))
    ax.boxplot(data, whis=(1, 99), showfliers=True, flierprops={"markersize": 2, "alpha": 0.4})
    ax.set_xticks(range(1, len(labels) + 1), labels, rotation=15 if len(labels) > 3 else 0, fontsize=8)
    for i, m in enumerate(report["models"], 1):
        ax.annotate(f"p50 {m['p50_ms']:.3g} ms", (i + 0.27, m["p50_ms"]), fontsize=7, va="center")
    lows = [min(d) for d in data if len(d)]
    if lows and min(lows) > 0 and max(max(d) for d in data) / min(lows) > 20:
        ax.set_yscale("log")  # a tiny model next to a big one: both stay readable
    ax.set_xlim(0.5, len(data) + 0.9)
    ax.set_ylabel("latency per inference (ms)")
    ax.set_title(report["measured_on"], fontsize=9)
    ax.set_xlabel(f"batch {report['batch']}, {report['runs']} runs each, interleaved; box: p25-p75, "
                  f"whiskers: p1-p99", fontsize=7, color="gray")
    fig.tight_layout()
    save_figure(fig, dst)
    plt.close(fig)
    return dst
