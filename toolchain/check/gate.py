"""The gate itself: the baseline file, the report's figures, and the comparison row by row (the
package docstring, `toolchain.check`, says what the gate holds to)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import re
import tomllib
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from ..errors import CompressError
from ..fileio import read_json, write_text
from ..options import unknown_keys

logger = logging.getLogger(__name__)

BASELINE_VERSION = 1
REPORT_KINDS = ("compress-run", "compress-bench")


class Figure(str, Enum):
    BYTES = "bytes"  # file bytes on disk
    PARAMS = "params"  # parameter count
    MACS = "macs"  # multiply-accumulates per sample
    ACCURACY = "accuracy"  # top-1 accuracy, percent
    LATENCY_RATIO = "latency_ratio"  # p50 of the model / p50 of the reference model, same run


class Status(str, Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    SKIP = "SKIP"  # the baseline says "off" for this figure


# Figures that must not grow (size-like: tolerance is "N%" of the baseline or an absolute count).
SIZE_FIGURES = (Figure.BYTES, Figure.PARAMS, Figure.MACS)

# What a baseline without tolerances gets: strict on purpose (docs/ci.md states these).
STRICT_DEFAULTS: dict[Figure, str | float] = {
    Figure.BYTES: "1%",  # the file may grow by 1%
    Figure.PARAMS: 0,  # not one parameter more
    Figure.MACS: 0,  # not one MAC more
    Figure.ACCURACY: 0.5,  # at most 0.5 points of top-1 accuracy lost
    Figure.LATENCY_RATIO: 1.25,  # the ratio to the reference may grow by 1.25x
}

_TOP_KEYS = {"version", "reference", "recorded", "tolerance", "models"}


@dataclass(frozen=True)
class Tolerance:
    """How much worse a figure may get. `relative`: `amount` is a percent of the baseline;
    for latency_ratio `amount` is a factor; `off` skips the figure."""

    figure: Figure
    amount: float
    relative: bool = False
    off: bool = False

    @classmethod
    def parse(cls, figure: Figure, value: object, where: str) -> Tolerance:
        if isinstance(value, str) and value.strip().lower() == "off":
            return cls(figure, 0.0, off=True)
        pct = None
        if isinstance(value, str):
            m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*%\s*", value)
            if not m:
                raise CompressError(f"{where}: tolerance {value!r} for {figure.value} is not a number, 'N%' or 'off'")
            pct = float(m.group(1))
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise CompressError(f"{where}: tolerance {value!r} for {figure.value} must be a number >= 0, 'N%' or 'off'")
        if figure is Figure.ACCURACY:
            if pct is not None:
                raise CompressError(f"{where}: the accuracy tolerance is in points (e.g. 2.0), not {value!r}")
            return cls(figure, float(value))
        if figure is Figure.LATENCY_RATIO:
            factor = 1 + pct / 100 if pct is not None else float(value)
            if factor < 1:
                raise CompressError(
                    f"{where}: the latency_ratio tolerance is a factor >= 1 (e.g. 1.5) or 'N%', not {value!r}"
                )
            return cls(figure, factor)
        if pct is not None:
            return cls(figure, pct, relative=True)
        return cls(figure, float(value))

    def limit(self, base: float) -> float:
        """The worst value that still passes."""
        if self.figure is Figure.ACCURACY:
            return base - self.amount
        if self.figure is Figure.LATENCY_RATIO:
            return base * self.amount
        return base * (1 + self.amount / 100) if self.relative else base + self.amount

    def describe(self) -> str:
        if self.off:
            return "off"
        if self.figure is Figure.ACCURACY:
            return f"-{_num(self.amount)} pts"
        if self.figure is Figure.LATENCY_RATIO:
            return f"x{_num(self.amount)}"
        return f"+{_num(self.amount)}%" if self.relative else f"+{_num(self.amount)}"

    def to_toml_value(self) -> str | float | int:
        if self.off:
            return "off"
        if self.relative:
            return f"{_num(self.amount)}%"
        return int(self.amount) if self.amount.is_integer() and self.figure in SIZE_FIGURES else self.amount


@dataclass(frozen=True)
class ModelBaseline:
    figures: dict[Figure, float]
    tolerance: dict[Figure, Tolerance] = field(default_factory=dict)


@dataclass(frozen=True)
class Baseline:
    path: Path
    models: dict[str, ModelBaseline]
    tolerance: dict[Figure, Tolerance] = field(default_factory=dict)
    reference: str | None = None

    def tolerance_for(self, model: str, figure: Figure) -> Tolerance:
        own = self.models[model].tolerance if model in self.models else {}
        if figure in own:
            return own[figure]
        if figure in self.tolerance:
            return self.tolerance[figure]
        return Tolerance.parse(figure, STRICT_DEFAULTS[figure], "defaults")


@dataclass(frozen=True)
class Report:
    """The figures of a run or bench report, by model name (stage name or ONNX file name)."""

    path: Path
    kind: str
    reference: str
    models: dict[str, dict[Figure, object]]
    duplicates: frozenset[str] = frozenset()
    notes: dict[str, str] = field(default_factory=dict)
    about: dict[str, str | bool] = field(default_factory=dict)  # model, data, host: for people


@dataclass(frozen=True)
class Row:
    model: str
    figure: Figure
    baseline: float
    now: float | None
    limit: float | None
    tolerance: str
    status: Status
    reason: str = ""

    @property
    def delta(self) -> float | None:
        if self.now is None or not math.isfinite(self.now):
            return None
        return self.now - self.baseline

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "figure": self.figure.value,
            "baseline": self.baseline,
            "now": _json_num(self.now),
            "delta": _json_num(self.delta),
            "limit": self.limit,
            "tolerance": self.tolerance,
            "status": self.status.value,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class CheckResult:
    report: Path
    baseline: Path
    kind: str
    reference: str
    rows: list[Row]

    @property
    def failures(self) -> list[Row]:
        return [r for r in self.rows if r.status is Status.FAIL]

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict:
        return {
            "kind": "compress-check",
            "report": str(self.report),
            "baseline": str(self.baseline),
            "report_kind": self.kind,
            "reference": self.reference,
            "passed": self.passed,
            "failures": len(self.failures),
            "rows": [r.to_dict() for r in self.rows],
        }


# ---------------------------------------------------------------- reading inputs


def load_report(path: Path, reference: str | None = None) -> Report:
    """Read summary.json of `compress run` (or its run folder) or the JSON of `compress bench`."""
    path = Path(path)
    if path.is_dir():
        path = path / "summary.json"
    raw = _read_json(path, "report")
    kind = raw.get("kind") if isinstance(raw, dict) else None
    if kind == "compress-run":
        entries, default_ref = _entries(raw, "stages", path, lambda e: e.get("stage")), "trained"
    elif kind == "compress-bench":
        entries, default_ref = (_entries(raw, "models", path, lambda e: Path(str(e.get("path", ""))).name), None)
    else:
        raise CompressError(
            f"{path}: a report of unknown kind {kind!r}; expected the JSON of "
            f"`compress run` (summary.json) or `compress bench --json`"
        )
    if not entries:
        raise CompressError(f"{path}: the report lists no models")
    names = [name for name, _ in entries]
    duplicates = frozenset(n for n in names if names.count(n) > 1)
    ref = reference or (default_ref if default_ref in names else names[0])
    if ref not in names:
        raise CompressError(f"{path}: the latency reference {ref!r} is not in the report (it has {', '.join(names)})")
    if ref in duplicates:
        raise CompressError(f"{path}: the latency reference {ref!r} names more than one model")
    ref_p50 = dict(entries)[ref].get("p50_ms")
    models, notes = {}, {}
    for name, e in entries:
        figs: dict[Figure, object] = {}
        for fig in (Figure.BYTES, Figure.PARAMS, Figure.MACS, Figure.ACCURACY):
            if e.get(fig.value) is not None:
                figs[fig] = e[fig.value]
        p50 = e.get("p50_ms")
        if p50 is not None and ref_p50 is not None:
            if _is_num(p50) and _is_num(ref_p50) and ref_p50 > 0:
                figs[Figure.LATENCY_RATIO] = p50 / ref_p50
            else:
                figs[Figure.LATENCY_RATIO] = math.nan
        if e.get("noisy"):
            notes[name] = "timed on a busy machine (noisy)"
        models[name] = figs
    host = raw.get("host") if isinstance(raw.get("host"), dict) else {}
    about = {k: raw[k] for k in ("model", "data", "quick") if isinstance(raw.get(k), (str, bool))}
    if host.get("cpu"):
        about["host"] = f"{host['cpu']}, {host.get('cores', '?')} cores"
    return Report(path, kind, ref, models, duplicates, notes, about)


def _entries(raw: dict, key: str, path: Path, name_of) -> list[tuple[str, dict]]:
    items = raw.get(key)
    if not isinstance(items, list) or not all(isinstance(e, dict) for e in items):
        raise CompressError(f"{path}: '{key}' must be a list of objects; is this file complete?")
    out = []
    for e in items:
        name = name_of(e)
        if not name:
            raise CompressError(f"{path}: an entry of '{key}' has no name")
        out.append((str(name), e))
    return out


def load_baseline(path: Path) -> Baseline:
    """Read and validate a baseline; unknown keys are errors (a typo must not disable a check)."""
    path = Path(path)
    raw = _read_baseline_raw(path)
    unknown_keys(raw, _TOP_KEYS, str(path))
    version = raw.get("version", BASELINE_VERSION)
    if version != BASELINE_VERSION:
        raise CompressError(f"{path}: baseline version {version!r}; this compress reads version {BASELINE_VERSION}")
    ref = raw.get("reference")
    if ref is not None and not isinstance(ref, str):
        raise CompressError(f"{path}: 'reference' must be a model name")
    tolerance = _tolerances(raw.get("tolerance", {}), f"{path} [tolerance]")
    models_raw = raw.get("models", {})
    if not isinstance(models_raw, dict):
        raise CompressError(f"{path}: 'models' must be a table of model names")
    models = {}
    for name, entry in models_raw.items():
        where = f"{path} [models.{name}]"
        if not isinstance(entry, dict):
            raise CompressError(f"{where}: must be a table of figures")
        figures = {}
        for key, value in entry.items():
            if key == "tolerance":
                continue
            fig = _figure(key, where)
            if not _is_num(value):
                raise CompressError(f"{where}: {key} = {value!r} is not a finite number")
            figures[fig] = float(value)
        models[name] = ModelBaseline(figures, _tolerances(entry.get("tolerance", {}), f"{where}.tolerance"))
    return Baseline(path, models, tolerance, ref)


def _read_baseline_raw(path: Path) -> dict:
    if path.suffix.lower() == ".json":
        raw = _read_json(path, "baseline")
    else:
        try:
            text = path.read_text()
        except FileNotFoundError as e:
            raise CompressError(
                f"{path}: no such baseline; create it with `compress check REPORT --baseline {path} --update-baseline`"
            ) from e
        except (OSError, UnicodeDecodeError) as e:
            raise CompressError(f"{path}: cannot read the baseline ({e})") from e
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise CompressError(f"{path}: not valid TOML ({e})") from e
    if not isinstance(raw, dict):
        raise CompressError(f"{path}: a baseline must be a table/object")
    return raw


def _tolerances(raw: object, where: str) -> dict[Figure, Tolerance]:
    if not isinstance(raw, dict):
        raise CompressError(f"{where}: must be a table of figure = tolerance")
    return {_figure(k, where): Tolerance.parse(_figure(k, where), v, where) for k, v in raw.items()}


def _figure(key: str, where: str) -> Figure:
    try:
        return Figure(key)
    except ValueError as e:
        raise CompressError(f"{where}: unknown figure {key!r}; known: {', '.join(f.value for f in Figure)}") from e


def _read_json(path: Path, what: str) -> object:
    return read_json(path, what)


# ---------------------------------------------------------------- comparing


def run(report_path: Path, baseline_path: Path) -> CheckResult:
    """Compare every figure the baseline names with the report (`compress check`)."""
    baseline = load_baseline(baseline_path)
    if not baseline.models:
        raise CompressError(
            f"{baseline_path}: the baseline names no models, so it would check nothing; "
            f"write one with --update-baseline"
        )
    report = load_report(report_path, baseline.reference)
    missing = [m for m in baseline.models if m not in report.models]
    if missing:
        raise CompressError(
            f"{report.path}: the baseline names model(s) the report lacks: "
            f"{', '.join(missing)} (the report has {', '.join(report.models)})"
        )
    ambiguous = [m for m in baseline.models if m in report.duplicates]
    if ambiguous:
        raise CompressError(
            f"{report.path}: {', '.join(ambiguous)} names more than one model in the "
            f"report; bench files with distinct names"
        )
    rows = [
        _compare(
            name,
            fig,
            base,
            report.models[name].get(fig, _MISSING),
            baseline.tolerance_for(name, fig),
            report.notes.get(name, ""),
        )
        for name, mb in baseline.models.items()
        for fig, base in mb.figures.items()
    ]
    result = CheckResult(report.path, Path(baseline_path), report.kind, report.reference, rows)
    for r in result.failures:
        logger.info("FAIL %s %s: %s", r.model, r.figure.value, r.reason)
    return result


_MISSING = object()


def _compare(model: str, fig: Figure, base: float, now: object, tol: Tolerance, note: str) -> Row:
    limit = None if tol.off else tol.limit(base)
    desc = tol.describe()
    if now is _MISSING:
        return Row(model, fig, base, None, limit, desc, Status.FAIL, "missing from the report")
    if isinstance(now, bool) or not isinstance(now, (int, float)):
        return Row(model, fig, base, None, limit, desc, Status.FAIL, f"not a number: {now!r}")
    now = float(now)
    if not math.isfinite(now):
        return Row(model, fig, base, now, limit, desc, Status.FAIL, f"{now} is not a measurement")
    if tol.off:
        return Row(model, fig, base, now, None, desc, Status.SKIP, "tolerance is off")
    worse = now < limit if fig is Figure.ACCURACY else now > limit
    if worse:
        word = "below" if fig is Figure.ACCURACY else "above"
        return Row(
            model, fig, base, now, limit, desc, Status.FAIL, f"{_fmt(fig, now)} is {word} the limit {_fmt(fig, limit)}"
        )
    return Row(model, fig, base, now, limit, desc, Status.PASS, note if fig is Figure.LATENCY_RATIO else "")


# ---------------------------------------------------------------- writing the baseline


def update_baseline(report_path: Path, baseline_path: Path) -> Path:
    """Write the report's figures as the baseline; keep its tolerances and reference."""
    baseline_path = Path(baseline_path)
    old = load_baseline(baseline_path) if baseline_path.exists() else None
    report = load_report(report_path, old.reference if old else None)
    if report.duplicates:
        raise CompressError(
            f"{report.path}: {', '.join(sorted(report.duplicates))} names more than one "
            f"model; a baseline needs distinct names"
        )
    models = {}
    for name, figs in report.models.items():
        clean = {}
        for fig, value in figs.items():
            if fig is Figure.LATENCY_RATIO and name == report.reference:
                continue  # always 1.0
            if not _is_num(value):
                raise CompressError(
                    f"{report.path}: {name} {fig.value} is {value!r}; refusing to record it in the baseline"
                )
            clean[fig] = round(float(value), 4) if fig in (Figure.ACCURACY, Figure.LATENCY_RATIO) else float(value)
        own = old.models[name].tolerance if old and name in old.models else {}
        models[name] = ModelBaseline(clean, own)
    if old:
        dropped = [m for m in old.models if m not in models]
        if dropped:
            logger.warning("dropping model(s) the report lacks from the baseline: %s", ", ".join(dropped))
    new = Baseline(baseline_path, models, old.tolerance if old else {}, old.reference if old else report.reference)
    recorded = {
        "from": str(report.path),
        "kind": report.kind,
        "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    } | report.about
    text = (
        to_toml(new, recorded)
        if baseline_path.suffix.lower() != ".json"
        else json.dumps(_baseline_dict(new, recorded), indent=2) + "\n"
    )
    write_text(baseline_path, text)
    return baseline_path


def _baseline_dict(b: Baseline, recorded: dict) -> dict:
    out: dict = {"version": BASELINE_VERSION}
    if b.reference:
        out["reference"] = b.reference
    out["recorded"] = recorded
    if b.tolerance:
        out["tolerance"] = {f.value: t.to_toml_value() for f, t in b.tolerance.items()}
    out["models"] = {}
    for name, mb in b.models.items():
        entry: dict = {f.value: _plain(v) for f, v in mb.figures.items()}
        if mb.tolerance:
            entry["tolerance"] = {f.value: t.to_toml_value() for f, t in mb.tolerance.items()}
        out["models"][name] = entry
    return out


_HEADER = """\
# compress check baseline: the figures a change must not make worse.
# Written by `compress check REPORT --baseline FILE --update-baseline`, which keeps the
# [tolerance] tables and `reference` below and rewrites the figures (comments are not kept).
#
# Tolerances, globally in [tolerance] or per model in [models.NAME.tolerance]:
#   bytes, params, macs: "N%" of the baseline, or an absolute count (0: not one more)
#   accuracy:            points of top-1 accuracy a model may lose
#   latency_ratio:       factor the ratio (p50 / p50 of `reference`, same run) may grow by
#   "off":               do not check this figure (shown as SKIP)
# Figures without a tolerance get the strict defaults of docs/ci.md.
"""


def to_toml(b: Baseline, recorded: dict) -> str:
    """The baseline as TOML (a small writer: the schema is flat tables of numbers and strings)."""
    d = _baseline_dict(b, recorded)
    lines = [_HEADER, f"version = {d['version']}"]
    if "reference" in d:
        lines.append(f"reference = {_toml_value(d['reference'])}")
    for table in ("recorded", "tolerance"):
        if table in d:
            lines += ["", f"[{table}]"] + [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in d[table].items()]
    for name, entry in d["models"].items():
        lines += ["", f"[models.{_toml_key(name)}]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in entry.items() if k != "tolerance"]
        if "tolerance" in entry:
            lines += ["", f"[models.{_toml_key(name)}.tolerance]"]
            lines += [f"{k} = {_toml_value(v)}" for k, v in entry["tolerance"].items()]
    return "\n".join(lines) + "\n"


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(str(v))


def _label(fig: Figure, reference: str) -> str:
    return f"latency ÷ {reference}" if fig is Figure.LATENCY_RATIO else fig.value

def _fmt(fig: Figure, v: float) -> str:
    if fig is Figure.ACCURACY:
        return f"{v:.2f}%"
    if fig is Figure.LATENCY_RATIO:
        return f"{v:.3f}x"
    return f"{v:,.0f}"

def _num(v: float) -> str:
    return f"{v:g}"

def _is_num(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

def _plain(v: float) -> int | float:
    return int(v) if float(v).is_integer() and abs(v) < 2**53 else v

def _json_num(v: float | None) -> float | str | None:
    if v is None or math.isfinite(v):
        return v
    return str(v)
