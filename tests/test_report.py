"""report.py: the run report (HTML + Markdown), its plots, and a look at it in headless Chromium."""

from __future__ import annotations

import base64
import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from toolchain import report
from toolchain.cli import main
from toolchain.errors import CompressError

SUMMARY = {
    "kind": "compress-run",
    "created": "2026-01-01T00:00:00+00:00",
    "run_dir": "runs/x",
    "model": "zoo:lenet5",
    "data": "digits",
    "quick": False,
    "data_source": "scikit-learn load_digits",
    "host": {"cpu": "Test CPU", "cores": 2, "onnxruntime": "1.0"},
    "stage_seconds": {"train": 1.0, "analyze": 0.5, "prune": 3.0},
    "stages": [
        {
            "stage": "trained",
            "params": 61706,
            "macs": 435850,
            "param_bytes": 246824,
            "bytes": 250983,
            "accuracy": 94.43,
            "eval_samples": 359,
            "p50_ms": 0.026,
            "p90_ms": 0.028,
            "compression_x": 1.0,
            "speedup_x": 1.0,
        },
        {
            "stage": "pruned",
            "params": 33815,
            "macs": 347296,
            "param_bytes": 135260,
            "bytes": 140045,
            "accuracy": 94.99,
            "eval_samples": 359,
            "p50_ms": 0.025,
            "p90_ms": 0.027,
            "compression_x": 1.82,
            "speedup_x": 1.02,
        },
        {
            "stage": "quantized",
            "params": 33815,
            "macs": 347296,
            "param_bytes": 42101,
            "bytes": 53386,
            "accuracy": 94.71,
            "eval_samples": 359,
            "p50_ms": 0.034,
            "p90_ms": 0.037,
            "compression_x": 5.86,
            "speedup_x": 0.77,
        },
    ],
}

PRUNED = {
    "stage": "prune",
    "report": {
        "order": ["classifier.1", "features.3"],
        "goal_met": True,
        "params_kept": 0.548,
        "layers": {
            "features.0": {"before": 6, "after": 6},
            "features.3": {"before": 16, "after": 12},
            "classifier.1": {"before": 120, "after": 90},
        },
        "steps": [
            {
                "round": 1,
                "layer": "classifier.1",
                "channels": 120,
                "kept": 90,
                "params": 47156,
                "val_accuracy": 98.5,
                "accepted": True,
            },
            {
                "round": 1,
                "layer": "features.0",
                "channels": 6,
                "kept": 4,
                "params": 46304,
                "val_accuracy": 91.5,
                "accepted": False,
            },
        ],
    },
}

ANALYSIS = {
    "kind": "compress-analysis",
    "model": {"spec": "zoo:lenet5"},
    "data": {"spec": "digits"},
    "options": {"ratio": 0.5, "ratios": [0.5]},
    "baseline": {"accuracy": 94.3},
    "priority": ["classifier.1", "features.3"],
    "layers": [
        {
            "name": "features.3",
            "channels": 16,
            "kept": 8,
            "accuracy": 91.3,
            "drop": 3.0,
            "sweep": [{"ratio": 0.5, "accuracy": 91.3}],
        },
        {
            "name": "classifier.1",
            "channels": 120,
            "kept": 60,
            "accuracy": 95.3,
            "drop": -1.0,
            "sweep": [{"ratio": 0.5, "accuracy": 95.3}],
        },
    ],
}


@pytest.fixture
def run_dir(tmp_path) -> Path:
    """A hand-written run folder: summary, pruned sidecar, analysis and its plot."""
    d = tmp_path / "run"
    d.mkdir()
    (d / "summary.json").write_text(json.dumps(SUMMARY))
    (d / "pruned.pt.json").write_text(json.dumps(PRUNED))
    (d / "analysis.json").write_text(json.dumps(ANALYSIS))
    report.plot_sensitivity(ANALYSIS, d / "analysis.json")
    return d


def embedded_images(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def test_html_is_self_contained_with_table_and_every_plot(run_dir):
    page_path = report.write_run_report(run_dir)
    assert page_path == run_dir / "report.html"
    page = page_path.read_text()
    assert "<table>" in page and all(f"<td class=l>{s}</td>" in page for s in ("trained", "pruned", "quantized"))
    assert "94.71% (n=359)" in page and "5.86x" in page and "53,386" in page
    images = embedded_images(page)
    # pareto bytes, pareto latency, channels, sensitivity bars
    assert len(images) == 4 and all(img.startswith(b"\x89PNG") for img in images)
    assert not re.search(r'src="(?!data:)', page)  # nothing loaded from outside the page
    for title in ("Stages", "Pareto", "Pruning: channels per layer", "Sensitivity analysis"):
        assert title in page
    assert "Pruning orders compared" not in page  # optional section: no compare.json here


def test_markdown_references_the_pngs_by_relative_path(run_dir):
    report.write_run_report(run_dir)
    md = (run_dir / "report.md").read_text()
    assert "| stage | params | MACs |" in md and "| quantized | 33,815 |" in md
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert set(links) == {
        "report.pareto-bytes.png",
        "report.pareto-latency.png",
        "report.channels.png",
        "analysis.bars.png",
    }
    assert all((run_dir / link).is_file() for link in links)


def test_order_comparison_section_when_the_run_has_one(run_dir):
    # the shape `compress prune --compare-orders` writes (orders.json + orders.png); a row that
    # did not reach its target has fewer keys
    rows = [
        {"order": "sensitivity", "target": 0.1, "reached": True, "params_kept": 0.0987, "accuracy": 94.9},
        {"order": "sequential", "target": 0.1, "reached": True, "params_kept": 0.0991, "accuracy": 93.1},
        {"order": "reverse", "target": 0.1, "reached": False},
    ]
    (run_dir / "orders.json").write_text(
        json.dumps({"kind": "compress-order-comparison", "finetune_protocol": "same final fine-tuning", "rows": rows})
    )
    report.plot_channels({"a": 2}, {"a": 1}, run_dir / "orders.png", "stand-in for the order plot")
    page = report.write_run_report(run_dir).read_text()
    section = page[page.index("Pruning orders compared") :]
    assert "<td class=l>sequential</td>" in section and "same final fine-tuning" in section
    assert "<th>params_kept</th>" in section and "<td>0.099</td>" in section
    assert section.count("<td>-</td>") == 2  # the unreached row's params_kept and accuracy
    assert "orders.png" in section and len(embedded_images(page)) == 5
    assert "![orders](orders.png)" in (run_dir / "report.md").read_text()


def test_missing_parts_are_skipped_and_nan_never_breaks_the_page(tmp_path):
    summary = json.loads(json.dumps(SUMMARY))
    summary["stages"][2]["accuracy"] = math.nan
    summary["stages"][1]["p50_ms"] = None
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    page = report.write_run_report(tmp_path).read_text()
    assert "Sensitivity" not in page and "channels per layer" not in page
    assert len(embedded_images(page)) == 2  # just the two Pareto plots
    assert "<td>-</td>" in page


def test_pareto_front():
    # (bytes, accuracy): the small accurate one dominates the big worse one
    assert report.pareto_front([(100, 90.0), (50, 91.0), (20, 85.0), (60, 91.0)]) == [1, 2]


def test_not_a_run_folder_is_bad_input(tmp_path):
    with pytest.raises(CompressError, match="no summary.json"):
        report.write_run_report(tmp_path)
    (tmp_path / "summary.json").write_text(json.dumps({"kind": "compress-bench", "models": []}))
    with pytest.raises(CompressError, match="not the summary"):
        report.write_run_report(tmp_path)
    res = CliRunner().invoke(main, ["report", str(tmp_path / "nope")])
    assert res.exit_code == 2 and res.stderr.startswith("error: ") and "Traceback" not in res.output


def test_cli_report(run_dir):
    res = CliRunner().invoke(main, ["report", str(run_dir)])
    assert res.exit_code == 0, res.output
    assert "report.html" in res.stdout and (run_dir / "report.md").is_file()


# ---------------------------------------------------------------- the page in a real browser

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


def screenshot(page: Path, png: Path, profile: Path) -> None:
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            f"--screenshot={png}",
            "--window-size=1200,2000",
            page.resolve().as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=90,
    )


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (apt-get install -y chromium)")
def test_report_renders_in_headless_chromium(run_dir, tmp_path):
    from PIL import Image

    png = tmp_path / "shot.png"
    screenshot(report.write_run_report(run_dir), png, tmp_path / "profile")
    assert png.is_file()
    img = Image.open(png).convert("RGB")
    assert img.size == (1200, 2000)
    colours = img.getcolors(maxcolors=1 << 20)
    assert len(colours) > 200, "the page looks blank"
    by_rgb = {rgb: n for n, rgb in colours}
    assert by_rgb.get((255, 255, 255), 0) < 0.97 * img.size[0] * img.size[1], "all white: nothing rendered"

    def near(c: tuple[int, int, int]) -> int:
        return sum(n for rgb, n in by_rgb.items() if sum(abs(a - b) for a, b in zip(rgb, c, strict=True)) < 30)

    # the plots are there: the matplotlib default blue (C0) and orange (C1) appear in quantity
    assert near((31, 119, 180)) > 1000 and near((255, 127, 14)) > 1000


# ---------------------------------------------------------------- one real run folder (conftest.real_run)


@pytest.mark.slow
def test_real_run_report(real_run):
    page = report.write_run_report(real_run).read_text()
    summary = json.loads((real_run / "summary.json").read_text())
    for s in summary["stages"]:
        assert f"<td class=l>{s['stage']}</td>" in page and f"{s['bytes']:,}" in page
    assert len(embedded_images(page)) >= 4  # 2 Pareto, channels, sensitivity bars
    md = (real_run / "report.md").read_text()
    assert all((real_run / link).is_file() for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md))
    if CHROMIUM:
        shot = real_run / "report.screenshot.png"
        screenshot(real_run / "report.html", shot, real_run / ".chromium-profile")
        assert shot.stat().st_size > 20_000
