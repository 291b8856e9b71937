"""The figures (PNG) the stages draw: an analysis's sensitivity curves, a latency table, an order
comparison, channels before and after, Pareto fronts. Core: it knows no stage."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import EngFormatter, FuncFormatter, MaxNLocator  # noqa: E402

from .fileio import save_figure  # noqa: E402


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return str(path)


def plot_sensitivity(result: dict, dst: Path) -> list[str]:
    """The paper's characterization: accuracy against ratio per layer, and accuracy per layer
    at the fixed ratio as bars (priority order)."""
    dst = Path(dst)
    base = result["baseline"]["accuracy"]
    ratio = result["options"]["ratio"]
    out = []
    if len(result["options"]["ratios"]) > 1:
        fig, ax = plt.subplots(figsize=(8, 5))
        for layer in result["layers"]:
            rs = [s["ratio"] for s in layer["sweep"]]
            ax.plot(rs, [s["accuracy"] for s in layer["sweep"]], marker="o", ms=3, label=layer["name"])
        ax.axhline(base, color="k", ls="--", lw=1, label="unpruned")
        ax.set_xlabel("fraction of filters pruned (layer alone, no fine-tuning)")
        ax.set_ylabel("top-1 accuracy (%)")
        ax.set_title(f"Per-layer sensitivity: {result['model']['spec']} on {result['data']['spec']}")
        ax.legend(fontsize=6, ncol=2)
        out.append(_save(fig, dst.with_suffix(".curves.png")))
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(result["layers"])), 4.5))
    by_name = {l["name"]: l for l in result["layers"]}
    names = result["priority"]
    ax.bar(range(len(names)), [by_name[n]["accuracy"] for n in names], color="tab:blue")
    ax.axhline(base, color="k", ls="--", lw=1, label=f"unpruned {base:.2f}%")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(f"Accuracy with each layer pruned alone at {ratio:.0%} (priority order)")
    ax.legend(fontsize=8)
    out.append(_save(fig, dst.with_suffix(".bars.png")))
    return out


def plot_channels(before: dict[str, int], after: dict[str, int], dst: Path, title: str) -> str:
    names = list(before)
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(names)), 4.5))
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], [before[n] for n in names], width=0.4, label="before")
    ax.bar([x + 0.2 for x in xs], [after.get(n, 0) for n in names], width=0.4, label="after")
    ax.set_xticks(list(xs), names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("output channels")
    ax.set_title(title)
    ax.legend()
    return _save(fig, Path(dst))


# ---------------------------------------------------------------- the run report (`compress report`)



def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats (smaller x and higher y, one strictly)."""
    front = []
    for i, (x, y) in enumerate(points):
        if not any((x2 <= x and y2 >= y) and (x2 < x or y2 > y) for j, (x2, y2) in enumerate(points) if j != i):
            front.append(i)
    return front


def plot_pareto(stages: list[dict], key: str, xlabel: str, dst: Path, title: str, unit: str = "") -> str | None:
    """Accuracy against one cost (bytes, p50 latency), one point per stage; the Pareto front drawn.
    Stages without accuracy or the cost are left out; None when fewer than one point remains."""
    pts = [
        (s["stage"], float(s[key]), float(s["accuracy"]))
        for s in stages
        if finite(s.get(key)) and finite(s.get("accuracy"))
    ]
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(5.0, 3.9))
    xs, ys = [p[1] for p in pts], [p[2] for p in pts]
    ax.plot(xs, ys, ls=":", color="0.6", lw=1, zorder=1)
    front = set(pareto_front(list(zip(xs, ys, strict=True))))
    for i, (name, x, y) in enumerate(pts):
        on = i in front
        ax.scatter(
            [x], [y], s=70, zorder=3, color=f"C{i}", edgecolor="k", facecolor=f"C{i}" if on else "white", linewidth=1.2
        )
        right = len(pts) > 1 and x == max(xs)  # the rightmost label goes left of its point
        ax.annotate(
            name,
            (x, y),
            textcoords="offset points",
            xytext=(-6 if right else 6, 6),
            ha="right" if right else "left",
            fontsize=9,
        )
    fx = sorted((xs[i], ys[i]) for i in front)
    if len(fx) > 1:
        ax.step(
            [p[0] for p in fx],
            [p[1] for p in fx],
            where="post",
            color="tab:green",
            lw=1.2,
            alpha=0.7,
            label="Pareto front",
            zorder=2,
        )
        ax.legend(fontsize=8, loc="lower right")
    if unit:
        ax.xaxis.set_major_formatter(EngFormatter(unit=unit))
    ax.xaxis.set_major_locator(MaxNLocator(5))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(title, fontsize=10)
    span = (max(ys) - min(ys)) or 1.0
    ax.set_ylim(min(ys) - 0.3 * span, max(ys) + 0.3 * span)
    ax.grid(alpha=0.3)
    return _save(fig, Path(dst))




def plot_orders(result: dict, dst: Path) -> str:
    """The plan x order ablation: test accuracy against kept parameters, one line per plan and order
    (the mean over the seeds in the rows)."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    cells: dict[tuple[str, str], dict[float, list]] = {}
    for r in result["rows"]:
        cells.setdefault((r["plan"], r["order"]), {}).setdefault(r["kept"], []).append(r["top1"])
    for (plan, order), by_kept in cells.items():
        pts = sorted((k, sum(v) / len(v)) for k, v in by_kept.items())
        ax.plot([100 * p for p, _ in pts], [a for _, a in pts], marker="o", label=f"{plan} plan, {order}")
    ax.axhline(result["baseline"]["top1"], color="k", ls="--", lw=1, label="unpruned")
    ax.set_xscale("log")
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(plain)
    ax.set_xlabel("parameters kept (%)")
    ax.set_ylabel("test top-1 after fine-tuning (%)")
    ax.set_title(f"Plan x order: {result['model']} on {result['data']['spec']}")
    ax.legend(fontsize=8)
    return _save(fig, Path(dst))


def plot_latency(result: dict, dst: Path) -> str:
    """The latency table: the model's p50 with each layer alone narrowed, against the channels kept."""
    fig, ax = plt.subplots(figsize=(8, 5))
    for name, row in result["layers"].items():
        pts = sorted((int(k) / row["channels"], v) for k, v in row["ms"].items())
        ax.plot([100 * p for p, _ in pts], [v for _, v in pts], marker="o", ms=3, label=name)
    ax.axhline(result["base_ms"], color="k", ls="--", lw=1, label="unpruned")
    ax.set_xlabel("channels kept in that layer alone (%)")
    ax.set_ylabel("model p50 latency (ms)")
    ax.set_title(f"Latency per layer width: {result['model']['spec']}\n{result['measured_on']}", fontsize=9)
    ax.legend(fontsize=6, ncol=2)
    return _save(fig, Path(dst))


def finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
