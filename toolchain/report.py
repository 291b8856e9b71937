"""Plots (PNG) and human tables shared by the stages. The CLI prints; this module draws."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
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
