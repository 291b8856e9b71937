"""`compress bench`: size and latency of ONNX models with onnxruntime, measured honestly.

Several models are timed in one run, interleaved (one inference of each in turn), so that a noisy
shared machine treats them alike; each is reported with its ratio to the first.
"""

from __future__ import annotations

import logging
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import CompressError
from .progress import task

logger = logging.getLogger(__name__)

NOISY_SPREAD = 0.25  # (p90 - p50) / p50 above this: the machine was busy, say so


@dataclass(frozen=True)
class BenchOptions:
    runs: int = 200
    warmup: int = 20
    threads: int | None = None
    batch: int = 1

    def validate(self) -> None:
        if self.runs < 1 or self.warmup < 0 or self.batch < 1:
            raise CompressError("--runs and --batch must be >= 1, --warmup >= 0")
        if self.threads is not None and self.threads < 1:
            raise CompressError(f"--threads must be >= 1, not {self.threads}")


@dataclass
class Timing:
    """Raw latencies of one model; the percentiles are derived."""

    path: Path
    bytes: int
    session_ms: float
    first_ms: float
    latencies_ms: list[float] = field(default_factory=list)

    def pct(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q))

    def to_dict(self, batch: int) -> dict:
        p50 = self.pct(50)
        return {"path": str(self.path), "bytes": self.bytes, "session_ms": round(self.session_ms, 3),
                "first_ms": round(self.first_ms, 3), "p50_ms": round(p50, 4), "p90_ms": round(self.pct(90), 4),
                "p99_ms": round(self.pct(99), 4), "mean_ms": round(statistics.fmean(self.latencies_ms), 4),
                "std_ms": round(statistics.pstdev(self.latencies_ms), 4),
                "min_ms": round(min(self.latencies_ms), 4), "runs": len(self.latencies_ms),
                "throughput_per_s": round(1000.0 * batch / p50, 2),
                "noisy": (self.pct(90) - p50) / p50 > NOISY_SPREAD}


def _input_for(sess, batch: int) -> dict[str, np.ndarray]:
    inp = sess.get_inputs()[0]
    shape = [batch if not isinstance(d, int) or d <= 0 else d for d in inp.shape]
    shape[0] = batch
    return {inp.name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}


def run(paths: list[Path], opts: BenchOptions) -> dict:
    """Time every model, interleaved; return the report (a `models` list and the host)."""
    import onnxruntime as ort

    opts.validate()
    timings, sessions, feeds = [], [], []
    for path in paths:
        if not Path(path).is_file():
            raise CompressError(f"{path}: no such file")
        so = ort.SessionOptions()
        if opts.threads:
            so.intra_op_num_threads = opts.threads
        so.log_severity_level = 3
        start = time.perf_counter()
        try:
            sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - ORT raises its own types for an unreadable model
            raise CompressError(f"{path}: onnxruntime cannot load it: {str(e).splitlines()[0]}") from e
        session_ms = 1000 * (time.perf_counter() - start)
        feed = _input_for(sess, opts.batch)
        start = time.perf_counter()
        sess.run(None, feed)
        timings.append(Timing(Path(path), Path(path).stat().st_size, session_ms,
                              1000 * (time.perf_counter() - start)))
        sessions.append(sess)
        feeds.append(feed)
    for _ in range(opts.warmup):
        for sess, feed in zip(sessions, feeds):
            sess.run(None, feed)
    with task(f"bench {len(paths)} model(s)", opts.runs) as advance:
        for _ in range(opts.runs):
            for t, sess, feed in zip(timings, sessions, feeds):
                start = time.perf_counter()
                sess.run(None, feed)
                t.latencies_ms.append(1000 * (time.perf_counter() - start))
            advance()
    models = [t.to_dict(opts.batch) for t in timings]
    for m in models:
        m["p50_ratio"] = round(m["p50_ms"] / models[0]["p50_ms"], 4)
        m["bytes_ratio"] = round(m["bytes"] / models[0]["bytes"], 4)
    return {"kind": "compress-bench", "host": host_facts(), "batch": opts.batch, "threads": opts.threads,
            "runs": opts.runs, "warmup": opts.warmup, "models": models}


def host_facts() -> dict:
    import onnxruntime as ort

    return {"hostname": platform.node(), "machine": platform.machine(), "cpu": _cpu_name(),
            "cores": os.cpu_count(), "onnxruntime": ort.__version__,
            "providers": ort.get_available_providers()}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def table(report: dict):
    from rich.table import Table

    t = Table(title=f"onnxruntime on {report['host']['cpu']} ({report['host']['cores']} cores), "
                    f"batch {report['batch']}, {report['runs']} runs interleaved")
    for col in ("model", "bytes", "p50 ms", "p90 ms", "p99 ms", "p50 vs first", "note"):
        t.add_column(col, justify="left" if col in ("model", "note") else "right")
    for m in report["models"]:
        t.add_row(Path(m["path"]).name, f"{m['bytes']:,}", f"{m['p50_ms']:.3f}", f"{m['p90_ms']:.3f}",
                  f"{m['p99_ms']:.3f}", f"{m['p50_ratio']:.2f}x", "noisy" if m["noisy"] else "")
    return t
