"""Latency, size and peak memory of ONNX files, measured honestly: the measurement every stage that
times a model shares (`compress bench`, quantize's speed guard, profile's latency table).

Fewer parameters do not always mean lower latency, so the figures come from running the models:
here, on the real device over SSH (`toolchain.remote`), or on an emulated arm64 userland
(`toolchain.emulate`). All go through one standalone script, `toolchain.bench_runner`, which needs
only python3, numpy and onnxruntime. Several models are timed in one run, interleaved in rounds
(after one untimed run that re-warms its caches; who goes first rotates), so that a noisy machine
treats them alike; each is reported with its ratio to the first. Peak memory is measured per model
in a fresh child process (see docs/bench.md).
"""

from __future__ import annotations

import logging
import math
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import bench_runner, remote
from .errors import CompressError
from .progress import task
from .remote import Remote, SSHDefaults
from .target import GraphOpt, Precision, Target, TargetRuntime, arch, load_target, provider_name

logger = logging.getLogger(__name__)

EMULATE_TOLERANCE = 1e-3  # emulate.TOLERANCE, repeated here so that a report needs no torch (a test holds them equal)

NOISY_IQR = 0.10  # IQR / median above this: the machine was busy, say so (torch.utils.benchmark's rule)
LOADED_PER_CORE = 0.5  # a run that starts above this load per core is flagged (EVALUATION.md: 1.0 on 2 cores)
DEFAULT_RUNS = 200
@dataclass(frozen=True)
class Runtime:
    """How sessions are made. Unset fields come from the target profile, then onnxruntime's defaults."""

    providers: tuple[str, ...] = ()  # in order of preference: "cuda", "CPUExecutionProvider", ...
    strict: bool = False  # a missing provider is an error instead of a warning and a fallback
    graph_optimization: GraphOpt | None = None
    input_shape: tuple[int, ...] | None = None  # for dimensions the model leaves dynamic
    memory: bool = True  # measure peak memory per model in a child process


@dataclass(frozen=True)
class BenchOptions:
    runs: int | None = None  # timed runs per model (default DEFAULT_RUNS), or:
    warmup: int = 20
    seconds: float | None = None  # time for this long instead of a fixed number of runs
    threads: int | None = None
    batch: int = 1
    target: str | None = None  # a profile name (rpi4) or a .toml path
    runtime: Runtime = field(default_factory=Runtime)
    remote: Remote | None = None  # measure on this device over SSH
    emulate: bool = False  # run on an arm64 userland under qemu-user (toolchain.emulate): load, ops, parity

    def validate(self) -> None:
        if self.runs is not None and self.seconds is not None:
            raise CompressError("pass --runs or --seconds, not both")
        if (self.runs is not None and self.runs < 1) or self.warmup < 0 or self.batch < 1:
            raise CompressError("--runs and --batch must be >= 1, --warmup >= 0")
        if self.seconds is not None and self.seconds <= 0:
            raise CompressError(f"--seconds must be > 0, not {self.seconds}")
        if self.threads is not None and self.threads < 1:
            raise CompressError(f"--threads must be >= 1, not {self.threads}")
        shape = self.runtime.input_shape
        if shape is not None and (len(shape) < 1 or min(shape) < 1):
            raise CompressError(f"--input-shape must be positive sizes, not {shape}")
        for p in self.runtime.providers:
            provider_name(p)
        if self.remote is not None:
            self.remote.validate()
        if self.emulate and self.remote is not None:
            raise CompressError("pass --host (a real device) or --emulate, not both")


# ---------------------------------------------------------------- results

@dataclass(frozen=True)
class BenchResult:
    """One model's raw measurements; every statistic is derived from them."""

    path: str
    bytes: int
    session_ms: float
    first_ms: float
    latencies_ms: tuple[float, ...]
    batch: int = 1
    providers: tuple[str, ...] = ()
    memory: dict | None = None  # peak_mem_bytes, peak_rss_bytes, baseline_rss_bytes, method

    @classmethod
    def from_runner(cls, m: dict) -> BenchResult:
        return cls(path=m["path"], bytes=m["bytes"], session_ms=m["session_ms"], first_ms=m["first_ms"],
                   latencies_ms=tuple(m["latencies_ms"]), batch=m.get("batch", 1),
                   providers=tuple(m.get("providers", ())), memory=m.get("memory"))

    def pct(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q))

    @property
    def p50(self) -> float:
        return self.pct(50)

    @property
    def iqr(self) -> float:
        return self.pct(75) - self.pct(25)

    @property
    def mean(self) -> float:
        return float(np.mean(self.latencies_ms))

    @property
    def noisy(self) -> bool:
        return self.iqr / self.p50 > NOISY_IQR if self.p50 > 0 else True

    @property
    def throughput(self) -> float:
        """Items per second, one stream: batch x runs / total time of the runs."""
        return 1000.0 * self.batch * len(self.latencies_ms) / sum(self.latencies_ms)

    def to_dict(self) -> dict:
        lat = np.asarray(self.latencies_ms)
        d = {"path": self.path, "bytes": self.bytes, "session_ms": round(self.session_ms, 3),
             "first_ms": round(self.first_ms, 3), "p50_ms": round(self.p50, 4), "p90_ms": round(self.pct(90), 4),
             "p99_ms": round(self.pct(99), 4), "mean_ms": round(self.mean, 4), "std_ms": round(float(lat.std()), 4),
             "min_ms": round(float(lat.min()), 4), "max_ms": round(float(lat.max()), 4),
             "iqr_ms": round(self.iqr, 4), "runs": len(lat), "batch": self.batch,
             "throughput_per_s": round(self.throughput, 2), "providers": list(self.providers),
             "noisy": self.noisy, "peak_mem_bytes": None, "peak_rss_bytes": None}
        if self.memory:
            d["peak_mem_bytes"] = self.memory["peak_mem_bytes"]
            d["peak_rss_bytes"] = self.memory["peak_rss_bytes"]
        d["latencies_ms"] = [round(x, 5) for x in self.latencies_ms]
        return d


def measure(files: list[Path], opts: BenchOptions) -> dict:
    """Every model in `files` measured, interleaved, here, on `opts.remote` or emulated: the report.

    The report: `models` (path, bytes, p50_ms, p90_ms, p99_ms, mean/std/min, throughput, peak
    memory, ratios to the first, raw latencies), `host` (the machine measured), `measured_on`
    (a sentence that names it), the settings used and any warnings.
    """
    opts.validate()
    target = load_target(opts.target) if opts.target else None
    files = [Path(p) for p in files]
    if not files:
        raise CompressError("no models to bench")
    for f in files:
        if not f.is_file():
            raise CompressError(f"{f}: no such file")
    cfg = _runner_config(files, opts, target)
    if opts.emulate or bool(target and target.emulate and opts.remote is None):
        if target and target.arch and arch(target.arch) != arch("aarch64"):
            raise CompressError(f"--emulate runs an arm64 userland; target {target.name} is {target.arch}")
        from . import emulate  # lazily: emulate reads data's cache folder, and data imports torch (bench and
        #                         check start without it)
        raw = emulate.measure(cfg, cpu=target.cpu if target else None)
    elif opts.remote is not None:
        raw = remote.run(opts.remote, target.ssh if target else SSHDefaults(), files, cfg)
    else:
        raw = _measure_here(cfg)
    return _report(raw, cfg, opts, target)


def interleaved(files: list[Path], *, runs: int = 300, warmup: int = 30, host: str | None = None,
                target: str | None = None, seconds: float | None = None) -> dict:
    """The report of one interleaved latency run, no memory figures, here or on `host` over SSH:
    what quantize's speed guard and profile's latency table are timed with. `seconds` times for that
    long instead of `runs` (a sub-millisecond model needs thousands of runs to steady its median)."""
    opts = BenchOptions(runs=None if seconds else runs, seconds=seconds, warmup=warmup, target=target,
                        runtime=Runtime(memory=False),
                        remote=Remote(host=host) if host else None)
    return measure(files, opts)


def _runner_config(files: list[Path], opts: BenchOptions, target: Target | None) -> dict:
    rt = target.runtime if target else TargetRuntime()
    providers = [provider_name(p) for p in (opts.runtime.providers or rt.providers)]
    provider_options = {k: dict(v) for k, v in rt.provider_options.items()}
    if rt.precision is Precision.FP16 and "TensorrtExecutionProvider" in providers:
        provider_options.setdefault("TensorrtExecutionProvider", {}).setdefault("trt_fp16_enable", True)
    graph = opts.runtime.graph_optimization or rt.graph_optimization
    shape = opts.runtime.input_shape or rt.input_shape
    runs = opts.runs if opts.runs is not None else (None if opts.seconds else DEFAULT_RUNS)
    return {"models": [{"path": str(f)} for f in files], "runs": runs, "seconds": opts.seconds,
            "warmup": opts.warmup, "batch": opts.batch, "threads": opts.threads or rt.threads,
            "providers": providers, "provider_options": provider_options, "strict": opts.runtime.strict,
            "graph_optimization": GraphOpt(graph).value if graph else None,
            "input_shape": list(shape) if shape else None, "memory": opts.runtime.memory}


def _measure_here(cfg: dict) -> dict:
    n = len(cfg["models"])
    with task(f"bench {n} model(s)", None if cfg["seconds"] else cfg["runs"]) as advance:
        try:
            return bench_runner.measure(cfg, progress=advance)
        except bench_runner.RunnerError as e:
            raise CompressError(str(e)) from e


def _measured_on(host: dict, target: Target | None, ssh: dict | None) -> tuple[str, bool]:
    """The sentence that names the machine measured, and whether it is not the target's kind."""
    what = ", ".join(str(x) for x in (host.get("board"), host.get("machine"), host.get("cpu"),
                                      f"{host.get('cores')} cores") if x)
    mismatch = bool(target and target.arch and arch(host.get("machine", "")) != arch(target.arch))
    if ssh:
        text = f"measured on {ssh['host']} ({what})"
        if target:
            text += f", not a {target.name} ({target.arch})" if mismatch else f", target {target.name}"
        return text, mismatch
    if mismatch:
        return f"measured on THIS host ({what}), not on {target.name}", True
    return f"measured on this host ({what})" + (f", target {target.name}" if target else ""), False


def _report(raw: dict, cfg: dict, opts: BenchOptions, target: Target | None) -> dict:
    results = [BenchResult.from_runner(m) for m in raw["models"]]
    models = [r.to_dict() for r in results]
    first = models[0]
    for m, r in zip(models, raw["models"], strict=True):
        if "remote_path" in r:
            m["remote_path"] = r["remote_path"]
    for m in models:
        m["p50_ratio"] = round(m["p50_ms"] / first["p50_ms"], 4) if first["p50_ms"] else None
        m["bytes_ratio"] = round(m["bytes"] / first["bytes"], 4)
        m["mem_ratio"] = (round(m["peak_mem_bytes"] / first["peak_mem_bytes"], 4)
                          if m["peak_mem_bytes"] and first["peak_mem_bytes"] else None)
    warnings = list(raw.get("warnings", []))
    cores = raw["device"].get("cores") or 1
    load_before, load_after = raw.get("load_before"), raw.get("load_after")
    loaded = load_before is not None and load_before > LOADED_PER_CORE * cores
    if loaded:
        warnings.append(f"the machine was busy when timing began (load average {load_before} on {cores} cores, "
                        f"over {LOADED_PER_CORE * cores:g}): ratios hold, absolute times are inflated")
    measured_on, mismatch = _measured_on(raw["device"], target, raw.get("ssh"))
    emulation = raw.get("emulation")
    if emulation:
        measured_on, mismatch = (f"EMULATED aarch64 (qemu-user, cpu {emulation['qemu_cpu']}, onnxruntime "
                                 f"{emulation['onnxruntime']}) on this host: not a device figure"), False
        bad = [c for c in emulation["models"] if not c.get("parity_ok")]
        warnings += [f"{c['path']}: emulated aarch64 outputs differ from this host's by {c['parity_max_rel']:.2e} "
                     f"(relative), over {EMULATE_TOLERANCE}" for c in bad]
    elif mismatch:
        warnings.append(measured_on)
    for w in warnings:
        logger.warning("%s", w)
    memory = next((r.memory for r in results if r.memory), None)
    return {"kind": "compress-bench", "measured_on": measured_on, "where": "remote" if raw.get("ssh") else "local",
            "target_mismatch": mismatch, "host": raw["device"], "ssh": raw.get("ssh"),
            "target": ({"name": target.name, "arch": target.arch, "cpu": target.cpu, "source": target.source,
                        "int8": asdict(target.int8)} if target else None),
            "controller": None if not raw.get("ssh") else {"hostname": platform.node(),
                                                           "machine": platform.machine()},
            "batch": opts.batch, "threads": cfg["threads"], "runs": raw["runs"], "block": raw.get("block"),
            "seconds": cfg["seconds"], "warmup": cfg["warmup"], "providers": raw["providers"],
            "provider_options": cfg["provider_options"], "graph_optimization": cfg["graph_optimization"],
            "interleaved": True, "noisy_iqr_threshold": NOISY_IQR,
            "load_before": load_before, "load_after": load_after, "loaded": loaded,
            "memory_method": memory["method"] if memory else None,
            "loop_seconds": round(raw.get("loop_seconds", 0.0), 3), "warnings": warnings, "models": models,
            "arch": raw["device"].get("machine"), "emulated": bool(emulation), "emulation": emulation,
            **({"parity_max_abs": max(c["parity_max_abs"] for c in emulation["models"]),
                "parity_ok": all(c["parity_ok"] for c in emulation["models"]),
                "ops_unsupported": sorted({o for c in emulation["models"] for o in c["ops_unsupported"]})}
               if emulation else {})}


def host_facts() -> dict:
    """This machine, as the runner describes a device."""
    return bench_runner.device_facts()


def spearman(a: list[float], b: list[float]) -> float | None:
    """Rank correlation of two lists (None under 3 items, or without spread)."""
    import torch  # here only: bench and check start without torch

    if len(a) < 3:
        return None
    ra = torch.tensor(a).argsort().argsort().float()
    rb = torch.tensor(b).argsort().argsort().float()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = (ra.norm() * rb.norm()).item()
    return round((ra @ rb).item() / denom, 4) if denom else None


# ---- the statistics every figure needs (EVALUATION.md): the load before timing, paired verdicts

def load() -> float:
    """The 1-minute load average, as every timed part records it before and after."""
    return round(os.getloadavg()[0], 2)


def settle(max_seconds: float = 300.0, poll: float = 5.0) -> float:
    """Wait until the machine's 1-minute load average is below what bench flags as busy (EVALUATION.md
    section 5: 1.0 on 2 cores), at most `max_seconds`; the seconds waited. A timing that starts right
    after a fine-tune reads the fine-tune's own load for about a minute: without this every such run is
    flagged, though the machine is quiet. One still busy after `max_seconds` is timed and flagged."""
    start, limit = time.perf_counter(), LOADED_PER_CORE * (os.cpu_count() or 1)
    while os.getloadavg()[0] > limit and time.perf_counter() - start < max_seconds:
        time.sleep(poll)
    return round(time.perf_counter() - start, 1)

def summary(xs: list[float]) -> dict:
    """Mean and sample standard deviation (None for one value), rounded for tables."""
    return {"mean": round(statistics.fmean(xs), 3), "std": round(statistics.stdev(xs), 3) if len(xs) > 1 else None,
            "n": len(xs)}

def paired_verdict(a: dict, b: dict) -> dict:
    """A against B, paired by seed (EVALUATION.md section 3): "ahead" or "behind" only where the mean
    difference exceeds twice its standard error, else "tie" (also with fewer than 2 pairs)."""
    pairs = {s: x for s, x in zip(a["seeds"], a["top1"], strict=True)}
    diffs = [pairs[s] - y for s, y in zip(b["seeds"], b["top1"], strict=True) if s in pairs]
    mean = statistics.fmean(diffs) if diffs else 0.0
    se = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else None
    verdict = "tie" if se is None or abs(mean) <= 2 * se else ("ahead" if mean > 0 else "behind")
    return {"diff_pts": round(mean, 3), "se_pts": None if se is None else round(se, 3), "pairs": len(diffs),
            "verdict": verdict}
