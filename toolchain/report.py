"""`compress report`: one page (HTML and Markdown) of a run folder: every stage's figures, tables
and plots, drawn by `toolchain.plots`."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from .errors import CompressError
from .fileio import check_outputs, read_json, write_text
from .plots import finite, pareto_front, plot_channels, plot_pareto, plot_sensitivity  # noqa: F401 - report.* too

REPORT_HTML = "report.html"
REPORT_MD = "report.md"
_PRUNE_SIDECARS = ("pruned.pt.json", "pruned.json")  # the sidecar name of pruned.pt, newer first
_COMPARE_FILES = ("compare.json", "orders.json")  # `compress prune --compare-orders` output, when a run has one
REPORT_PLOTS = ("report.pareto-bytes.png", "report.pareto-latency.png", "report.channels.png")


def write_run_report(run_dir: Path, force: bool = False) -> Path:
    """Write report.html (self-contained: images inlined) and report.md (images by relative path)
    into a `compress run` folder, drawing the Pareto and channel plots beside them. Returns the
    HTML path."""
    run_dir = Path(run_dir)
    summary = _read_json(run_dir / "summary.json")
    if summary is None:
        raise CompressError(f"{run_dir}: no summary.json; is this a `compress run` folder?")
    if summary.get("kind") != "compress-run" or not isinstance(summary.get("stages"), list):
        raise CompressError(f"{run_dir / 'summary.json'}: not the summary of `compress run`")
    check_outputs(force, run_dir / REPORT_HTML, run_dir / REPORT_MD, *(run_dir / p for p in REPORT_PLOTS))
    sections = _report_sections(run_dir, summary)
    html_path = run_dir / REPORT_HTML
    write_text(html_path, _to_html(summary, sections, run_dir))
    write_text(run_dir / REPORT_MD, _to_markdown(summary, sections))
    return html_path


def _report_sections(run_dir: Path, summary: dict) -> list[dict]:
    """The report as data: sections of (title, text, tables, images); both renderers read this."""
    stages = summary["stages"]
    out = [
        {
            "title": "Stages",
            "text": "Each stage's model as exported to ONNX and timed in one interleaved "
            "onnxruntime run; accuracy measured in onnxruntime.",
            "tables": [_stage_table(stages)],
            "images": [],
        }
    ]

    imgs = [
        plot_pareto(
            stages, "bytes", "file size", run_dir / "report.pareto-bytes.png", "Accuracy against size", unit="B"
        ),
        plot_pareto(
            stages, "p50_ms", "p50 latency (ms)", run_dir / "report.pareto-latency.png", "Accuracy against latency"
        ),
    ]
    out.append(
        {
            "title": "Pareto: accuracy against size and latency",
            "text": "One point per stage; filled points are on the Pareto front (no other stage is "
            "both smaller or faster and more accurate).",
            "tables": [],
            "images": [Path(p) for p in imgs if p],
        }
    )

    pruned = next((d for d in (_read_json(run_dir / n) for n in _PRUNE_SIDECARS) if d), None)
    rep = (pruned or {}).get("report") or {}
    layers = rep.get("layers") or {}
    if layers:
        before = {k: v["before"] for k, v in layers.items()}
        after = {k: v["after"] for k, v in layers.items()}
        title = "Channels per layer"
        if finite(rep.get("params_kept")):
            title += f" ({rep['params_kept']:.1%} of parameters kept)"
        img = plot_channels(before, after, run_dir / "report.channels.png", title)
        layer_rows = [
            [k, str(v["before"]), str(v["after"]), f"{1 - v['after'] / v['before']:.0%}" if v["before"] else "-"]
            for k, v in layers.items()
        ]
        tables = [{"head": ["layer", "before", "after", "removed"], "rows": layer_rows}]
        steps = rep.get("steps") or []
        if steps:
            tables.append(
                {
                    "head": ["round", "layer", "channels", "kept", "params", "val accuracy", "step"],
                    "rows": [
                        [
                            str(s.get("round", "")),
                            s.get("layer", ""),
                            str(s.get("channels", "")),
                            str(s.get("kept", "")),
                            f"{s['params']:,}" if finite(s.get("params")) else "-",
                            f"{s['val_accuracy']:.2f}%" if finite(s.get("val_accuracy")) else "-",
                            "kept" if s.get("accepted") else "undone",
                        ]
                        for s in steps
                    ],
                }
            )
        goal = rep.get("goal_met")
        text = f"Pruning order: {', '.join(rep.get('order', []))}." if rep.get("order") else ""
        if goal is False:
            text += " The size goal was not met within the accuracy budget."
        out.append(
            {"title": "Pruning: channels per layer", "text": text.strip(), "tables": tables, "images": [Path(img)]}
        )

    analysis = _read_json(run_dir / "analysis.json") or {}
    sens = sorted(p for p in run_dir.glob("analysis*.png"))
    if sens or analysis.get("layers"):
        tables = []
        if analysis.get("layers") and analysis.get("priority"):
            by = {layer["name"]: layer for layer in analysis["layers"]}
            tables.append(
                {
                    "head": ["priority", "layer", "channels", "kept", "accuracy", "drop"],
                    "rows": [
                        [
                            str(i),
                            n,
                            str(by[n].get("channels", "")),
                            str(by[n].get("kept", "")),
                            f"{by[n]['accuracy']:.2f}%",
                            f"{by[n].get('drop', 0):+.2f}",
                        ]
                        for i, n in enumerate(analysis["priority"], 1)
                        if n in by
                    ],
                }
            )
        base = (analysis.get("baseline") or {}).get("accuracy")
        ratio = (analysis.get("options") or {}).get("ratio")
        text = (
            f"Each layer pruned alone at {ratio:.0%} without fine-tuning; unpruned accuracy {base:.2f}%."
            if finite(base) and finite(ratio)
            else ""
        )
        out.append({"title": "Sensitivity analysis", "text": text, "tables": tables, "images": sens})

    compare = next((d for d in (_read_json(run_dir / n) for n in _COMPARE_FILES) if d is not None), None)
    order_imgs = sorted({*run_dir.glob("compare*.png"), *run_dir.glob("order*.png"), *run_dir.glob("*.orders*.png")})
    if compare is not None or order_imgs:
        about = compare if isinstance(compare, dict) else {}
        note = next((about[k] for k in ("finetune_protocol", "note") if isinstance(about.get(k), str)), "")
        out.append(
            {
                "title": "Pruning orders compared",
                "text": note,
                "tables": [t for t in [_generic_table(compare)] if t],
                "images": order_imgs,
            }
        )

    times = summary.get("stage_seconds") or {}
    if times:
        out.append(
            {
                "title": "Time per stage",
                "text": "",
                "images": [],
                "tables": [
                    {"head": list(times), "rows": [[f"{v:.1f} s" if finite(v) else str(v) for v in times.values()]]}
                ],
            }
        )
    return out


def _stage_table(stages: list[dict]) -> dict:
    def num(v, fmt="{:,}"):
        return fmt.format(v) if finite(v) else "-"

    rows = []
    for s in stages:
        acc = s.get("accuracy")
        rows.append(
            [
                s.get("stage", "?"),
                num(s.get("params")),
                num(s.get("macs")),
                num(s.get("param_bytes")),
                num(s.get("bytes")),
                (f"{acc:.2f}%" + (f" (n={s['eval_samples']})" if s.get("eval_samples") else ""))
                if finite(acc)
                else "-",
                num(s.get("p50_ms"), "{:.3f}"),
                num(s.get("p90_ms"), "{:.3f}"),
                num(s.get("compression_x"), "{:.2f}x"),
                num(s.get("speedup_x"), "{:.2f}x"),
            ]
        )
    return {
        "head": [
            "stage",
            "params",
            "MACs",
            "param bytes",
            "file bytes",
            "accuracy",
            "p50 ms",
            "p90 ms",
            "compression",
            "speed-up",
        ],
        "rows": rows,
    }


def _generic_table(obj) -> dict | None:
    """A table from an unknown JSON shape: a list of flat objects, at the top or one level down."""

    def flat_rows(v) -> bool:
        return isinstance(v, list) and bool(v) and all(isinstance(r, dict) for r in v)

    rows = obj if flat_rows(obj) else None
    if rows is None and isinstance(obj, dict):
        rows = next((v for v in obj.values() if flat_rows(v)), None)
    if not rows:
        return None
    keys = list(dict.fromkeys(k for r in rows for k in r))  # every column, in order of first appearance
    head = [k for k in keys if all(not isinstance(r.get(k), (dict, list)) for r in rows)]
    return {"head": head, "rows": [[_cell(r[k]) if r.get(k) is not None else "-" for k in head] for r in rows]}


def _cell(v) -> str:
    return f"{v:.3f}".rstrip("0").rstrip(".") if isinstance(v, float) else str(v)


def _numeric_columns(t: dict) -> list[bool]:
    """Which columns hold figures (right-aligned); names and words stay left."""

    def numeric(v) -> bool:
        return bool(re.match(r"[+-]?[0-9.,]+(\s|%|x|$)", str(v))) or str(v) == "-"

    return [i > 0 and all(numeric(row[i]) for row in t["rows"]) for i in range(len(t["head"]))]


def _meta_lines(summary: dict) -> list[str]:
    host = summary.get("host") or {}
    lines = [
        f"model {summary.get('model')} on {summary.get('data')}" + (" (quick run)" if summary.get("quick") else ""),
        f"data: {summary.get('data_source') or 'unknown source'}",
        f"created {summary.get('created', '?')} in {summary.get('run_dir', '?')}",
    ]
    if host:
        lines.append(
            f"host: {host.get('cpu', '?')}, {host.get('cores', '?')} cores, onnxruntime {host.get('onnxruntime', '?')}"
        )
    return lines


def _to_html(summary: dict, sections: list[dict], run_dir: Path) -> str:
    e = html.escape
    parts = ["<h1>compress run report</h1>", "<ul class=meta>"]
    parts += [f"<li>{e(line)}</li>" for line in _meta_lines(summary)] + ["</ul>"]
    for sec in sections:
        parts.append(f"<section><h2>{e(sec['title'])}</h2>")
        if sec["text"]:
            parts.append(f"<p>{e(sec['text'])}</p>")
        for t in sec["tables"]:
            cls = ["" if n else " class=l" for n in _numeric_columns(t)]
            parts.append(
                "<table><thead><tr>" + "".join(f"<th{c}>{e(h)}</th>" for c, h in zip(cls, t["head"], strict=True))
            )
            parts.append("</tr></thead><tbody>")
            parts += [
                "<tr>" + "".join(f"<td{c}>{e(str(v))}</td>" for c, v in zip(cls, row, strict=True)) + "</tr>"
                for row in t["rows"]
            ]
            parts.append("</tbody></table>")
        if sec["images"]:
            parts.append('<div class="figs pair">' if len(sec["images"]) == 2 else "<div class=figs>")
            for img in sec["images"]:
                data = base64.b64encode(Path(img).read_bytes()).decode("ascii")
                parts.append(
                    f'<figure><img alt="{e(Path(img).name)}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{e(Path(img).name)}</figcaption></figure>"
                )
            parts.append("</div>")
        parts.append("</section>")
    title = e(f"compress report: {summary.get('model')} on {summary.get('data')}")
    return (
        f"<!doctype html>\n<html lang=en><head><meta charset=utf-8><title>{title}</title>"
        f"<style>{_CSS}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n"
    )


_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;
max-width:1150px;color:#1d2330;background:#fff}
h1{font-size:26px;margin:0 0 6px;border-bottom:3px solid #2f6fdf;padding-bottom:6px}
h2{font-size:19px;margin:26px 0 8px;color:#1b4fa8}
ul.meta{color:#4a5366;font-size:13px;margin:4px 0 10px;padding-left:18px}
p{font-size:14px;color:#333a48}
table{border-collapse:collapse;font-size:13px;margin:8px 0 12px}
th{background:#e8effc;text-align:right;padding:5px 10px;border-bottom:2px solid #9db6e6}
td{text-align:right;padding:4px 10px;border-bottom:1px solid #e1e5ee;
font-variant-numeric:tabular-nums}
th.l,td.l{text-align:left}
tbody tr:nth-child(even){background:#f7f9fd}
.figs{display:flex;flex-wrap:wrap;gap:12px}
.figs.pair figure{flex:1 1 0;min-width:0}
figure{margin:0;border:1px solid #e1e5ee;padding:6px;background:#fff}
figure img{max-width:100%;height:auto;display:block}
figcaption{font-size:11px;color:#6b7385;text-align:center}
"""


def _to_markdown(summary: dict, sections: list[dict]) -> str:
    lines = ["# compress run report", ""] + [f"- {line}" for line in _meta_lines(summary)]
    for sec in sections:
        lines += ["", f"## {sec['title']}", ""]
        if sec["text"]:
            lines += [sec["text"], ""]
        for t in sec["tables"]:
            lines.append("| " + " | ".join(t["head"]) + " |")
            lines.append("|" + "|".join("---:" if n else "---" for n in _numeric_columns(t)) + "|")
            lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in t["rows"]]
            lines.append("")
        for img in sec["images"]:
            lines.append(f"![{Path(img).stem}]({Path(img).name})")
    return "\n".join(lines).rstrip() + "\n"


def _read_json(path: Path):
    """A run folder's JSON file, or None where the run did not write it."""
    return read_json(path) if Path(path).exists() else None


