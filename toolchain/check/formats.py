"""The gate's result for people and CI: a rich table, Markdown ($GITHUB_STEP_SUMMARY), JUnit XML,
JSON and GitHub annotations."""

from __future__ import annotations

import json
import math
from pathlib import Path
from xml.etree import ElementTree as ET

from .. import fileio
from ..errors import CompressError
from ..fileio import check_outputs, write_text
from .gate import CheckResult, Figure, Row, Status, _fmt, _label, run, update_baseline


def table(result: CheckResult):
    from rich.table import Table

    verdict = "[green]PASS[/green]" if result.passed else f"[red]FAIL ({len(result.failures)})[/red]"
    t = Table(title=f"compress check {result.report} against {result.baseline}: {verdict}")
    for col in ("model", "figure", "baseline", "now", "delta", "limit", "result", "note"):
        t.add_column(col, justify="left" if col in ("model", "figure", "note") else "right")
    colour = {Status.PASS: "green", Status.FAIL: "bold red", Status.SKIP: "dim"}
    for r in result.rows:
        c = cells(r)
        t.add_row(
            r.model,
            _label(r.figure, result.reference),
            c["baseline"],
            c["now"],
            c["delta"],
            c["limit"],
            f"[{colour[r.status]}]{r.status.value}[/{colour[r.status]}]",
            r.reason,
        )
    return t


def cells(r: Row) -> dict[str, str]:
    """A row's figures as text, the same in the terminal, Markdown and JUnit."""
    if r.now is None:
        now = "missing"
    else:
        now = _fmt(r.figure, r.now) if math.isfinite(r.now) else str(r.now)
    delta = "-"
    if r.delta is not None:
        if r.figure is Figure.ACCURACY:
            delta = f"{r.delta:+.2f} pts"
        else:
            rel = f" ({r.delta / r.baseline:+.1%})" if r.baseline else ""
            delta = (f"{r.delta:+.3f}" if r.figure is Figure.LATENCY_RATIO else f"{r.delta:+,.0f}") + rel
    sign = ">=" if r.figure is Figure.ACCURACY else "<="
    limit = "off" if r.limit is None else f"{sign} {_fmt(r.figure, r.limit)} ({r.tolerance})"
    return {"baseline": _fmt(r.figure, r.baseline), "now": now, "delta": delta, "limit": limit}


def markdown(result: CheckResult) -> str:
    """A GitHub step summary (or any Markdown page): verdict line and the figure table."""
    head = "✅ passed" if result.passed else f"❌ {len(result.failures)} figure(s) failed"
    lines = [
        f"### compress check: {head}",
        "",
        f"`{result.report}` against baseline `{result.baseline}`; latency is p50 relative to "
        f"`{result.reference}` in the same run.",
        "",
        "| model | figure | baseline | now | delta | limit | result |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in result.rows:
        c = cells(r)
        mark = {"PASS": "✅ PASS", "FAIL": "❌ FAIL", "SKIP": "SKIP"}[r.status.value]
        why = f" ({r.reason})" if r.status is Status.FAIL else ""
        lines.append(
            f"| {r.model} | {r.figure.value} | {c['baseline']} | {c['now']} | {c['delta']} | "
            f"{c['limit']} | {mark}{why} |".replace("\n", " ")
        )
    return "\n".join(lines) + "\n"


def github_annotations(result: CheckResult) -> list[str]:
    """`::error` workflow commands, one per failed figure (GitHub shows them on the run page)."""
    out = []
    for r in result.failures:
        msg = f"{r.model} {r.figure.value}: {r.reason} (baseline {cells(r)['baseline']})"
        out.append(f"::error file={_gh_escape(str(result.baseline), True)},title=compress check::{_gh_escape(msg)}")
    return out


def _gh_escape(s: str, prop: bool = False) -> str:
    s = s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return s.replace(":", "%3A").replace(",", "%2C") if prop else s


def junit(result: CheckResult) -> str:
    """JUnit XML: one testcase per figure, a <failure> for each failed one, <skipped> for "off"."""
    suite = ET.Element(
        "testsuite",
        name="compress check",
        tests=str(len(result.rows)),
        failures=str(len(result.failures)),
        errors="0",
        skipped=str(sum(r.status is Status.SKIP for r in result.rows)),
    )
    props = ET.SubElement(suite, "properties")
    for k, v in (("report", result.report), ("baseline", result.baseline), ("reference", result.reference)):
        ET.SubElement(props, "property", name=k, value=str(v))
    for r in result.rows:
        c = cells(r)
        case = ET.SubElement(suite, "testcase", classname=f"compress.check.{r.model}", name=r.figure.value, time="0")
        text = f"baseline {c['baseline']}, now {c['now']}, delta {c['delta']}, limit {c['limit']}"
        if r.status is Status.FAIL:
            ET.SubElement(case, "failure", message=r.reason, type="regression").text = text
        elif r.status is Status.SKIP:
            ET.SubElement(case, "skipped", message=r.reason)
        else:
            ET.SubElement(case, "system-out").text = text
    root = ET.Element(
        "testsuites", name="compress check", tests=suite.get("tests"), failures=suite.get("failures"), errors="0"
    )
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(result: CheckResult, dst: Path) -> Path:
    write_text(Path(dst), junit(result))
    return Path(dst)


def write_json(result: CheckResult, dst: Path) -> Path:
    write_text(Path(dst), json.dumps(result.to_dict(), indent=2) + "\n")
    return Path(dst)


def to_github(result: CheckResult, environ) -> list[str]:
    """On GitHub Actions: the Markdown table appended to $GITHUB_STEP_SUMMARY, and the ::error
    lines to print (empty elsewhere)."""
    if environ.get("GITHUB_STEP_SUMMARY"):
        append_step_summary(result, Path(environ["GITHUB_STEP_SUMMARY"]))
    return github_annotations(result) if environ.get("GITHUB_ACTIONS") == "true" else []


def append_step_summary(result: CheckResult, dst: Path) -> None:
    """Append the Markdown table to a GitHub Actions step summary file ($GITHUB_STEP_SUMMARY)."""
    try:
        with fileio.writing(dst), open(dst, "a", encoding="utf-8") as f:
            f.write(markdown(result) + "\n")
    except OSError as e:  # not a fault of the machine: no such folder, a folder in its place
        raise CompressError(f"{dst}: cannot append the step summary ({e})") from e


def enforce(report: Path, baseline: Path, *, update: bool = False, junit_path: Path | None = None,
            json_path: Path | None = None, environ=None, force: bool = False) -> tuple[CheckResult, list[str]]:
    """`compress check` end to end: accept the report's figures as the baseline first when `update`,
    compare, write the JUnit XML and JSON asked for (refused before any work if they exist, unless
    `force`), and on GitHub Actions append the step summary: the result, and the ::error lines to print."""
    check_outputs(force, *(p for p in (junit_path, json_path) if p))
    if update:
        update_baseline(report, baseline)
    result = run(report, baseline)
    if junit_path:
        write_junit(result, junit_path)
    if json_path:
        write_json(result, json_path)
    return result, to_github(result, environ or {})
