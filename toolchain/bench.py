"""`compress bench`: size, latency and peak memory of ONNX models with onnxruntime, measured honestly.

Fewer parameters do not always mean lower latency, so the figures come from running the models:
here, or on the real device over SSH (`toolchain.remote`). Both go through one standalone
measurement script, `toolchain.bench_runner`, which needs only python3, numpy and onnxruntime.

Several models are timed in one run, interleaved in rounds (a block of consecutive runs of each
model per round, after one untimed run that re-warms its caches; who goes first rotates), so that
a noisy machine treats them alike; each is reported with its ratio to the first. Peak memory is
measured per model in a fresh child process (see docs/bench.md).

A target profile (`--target rpi4`, or a .toml file) sets providers, threads, optimization level,
input shape and SSH defaults. Run locally with a profile for another architecture, the report
says plainly that it measured THIS host, not the target.
"""

from __future__ import annotations

import logging
import platform
import tomllib
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from importlib import resources
from pathlib import Path

import numpy as np

from . import bench_runner, remote
from .errors import CompressError
from .fileio import Artifact, check_outputs, save_figure, write_json
from .options import from_table, unknown_keys
from .progress import task
from .remote import Remote, SSHDefaults

logger = logging.getLogger(__name__)

NOISY_IQR = 0.10  # IQR / median above this: the machine was busy, say so (torch.utils.benchmark's rule)
LOADED_PER_CORE = 0.5  # a run that starts above this load per core is flagged (EVALUATION.md: 1.0 on 2 cores)
DEFAULT_RUNS = 200
TARGETS_PACKAGE_DIR = "targets"  # toolchain/targets/*.toml, shipped as package data
PROVIDER_ALIASES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
                    "tensorrt": "TensorrtExecutionProvider", "trt": "TensorrtExecutionProvider",
                    "openvino": "OpenVINOExecutionProvider", "coreml": "CoreMLExecutionProvider",
                    "xnnpack": "XnnpackExecutionProvider", "acl": "ACLExecutionProvider",
                    "armnn": "ArmNNExecutionProvider", "dml": "DmlExecutionProvider",
                    "rocm": "ROCMExecutionProvider", "qnn": "QNNExecutionProvider"}
ARCH_ALIASES = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64", "armv8l": "aarch64"}


class GraphOpt(str, Enum):
    DISABLE = "disable"
    BASIC = "basic"
    EXTENDED = "extended"
    ALL = "all"


class Precision(str, Enum):
    FP32 = "fp32"
    FP16 = "fp16"  # with TensorRT: trt_fp16_enable


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


# ---------------------------------------------------------------- target profiles

@dataclass(frozen=True)
class TargetRuntime:
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    threads: int | None = None
    graph_optimization: GraphOpt | None = None
    precision: Precision = Precision.FP32
    input_shape: tuple[int, ...] | None = None
    provider_options: dict[str, dict] = field(default_factory=dict)
    channel_multiple: int = 1  # channel counts the device's kernels run best at: prune rounds to it

    def validate(self) -> None:
        if self.channel_multiple < 1:
            raise CompressError(f"channel_multiple must be >= 1, not {self.channel_multiple}")


@dataclass(frozen=True)
class Int8Preference:
    """What `quantize` should prefer for this target (onnxruntime's quantizer terms)."""

    format: str = "qdq"  # qdq | qoperator
    activation_type: str = "uint8"
    weight_type: str = "int8"
    per_channel: bool = True  # one weight scale per output channel
    op_types: tuple[str, ...] | None = None  # the op types int8 may take (None: every one the scope allows)

    def validate(self) -> None:
        if self.format not in ("qdq", "qoperator"):
            raise CompressError(f"format must be 'qdq' or 'qoperator', not {self.format!r}")
        for key in ("activation_type", "weight_type"):
            if getattr(self, key) not in ("int8", "uint8"):
                raise CompressError(f"{key} must be 'int8' or 'uint8', not {getattr(self, key)!r}")


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    arch: str  # platform.machine() of the device: x86_64, aarch64
    cpu: str
    runtime: TargetRuntime
    int8: Int8Preference
    ssh: SSHDefaults
    source: str  # where the profile was read from
    emulate: str | None = None  # "qemu-aarch64": bench this target on an emulated arm64 userland


_TARGET_KEYS = {"name", "description", "arch", "cpu", "runtime", "int8", "ssh", "emulate"}
EMULATORS = ("qemu-aarch64",)


def targets() -> list[str]:
    """The profiles shipped with the package."""
    folder = resources.files("toolchain").joinpath(TARGETS_PACKAGE_DIR)
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_target(spec: str) -> Target:
    """A profile by name (`rpi4`) or by path (`path/to/board.toml`)."""
    if spec.endswith(".toml") or "/" in spec:
        path = Path(spec)
        if not path.is_file():
            raise CompressError(f"--target {spec}: no such file")
        text, source = path.read_text(), str(path)
    else:
        known = targets()
        if spec not in known:
            raise CompressError(f"unknown target {spec!r}; known: {', '.join(known)} (or a path to a .toml file)")
        entry = resources.files("toolchain").joinpath(f"{TARGETS_PACKAGE_DIR}/{spec}.toml")
        text, source = entry.read_text(), f"toolchain/{TARGETS_PACKAGE_DIR}/{spec}.toml"
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise CompressError(f"target {source}: not valid TOML ({e})") from e
    return _target_from(raw, source)


def _target_from(raw: dict, source: str) -> Target:
    where = f"target {source}"
    unknown_keys(raw, _TARGET_KEYS, where)
    for name in ("runtime", "int8", "ssh"):
        if not isinstance(raw.get(name, {}), dict):
            raise CompressError(f"{where}: [{name}] must be a table")
    runtime = from_table(TargetRuntime, raw.get("runtime", {}), f"{where} [runtime]")
    runtime = replace(runtime, providers=tuple(provider_name(p) for p in runtime.providers))
    int8 = from_table(Int8Preference, raw.get("int8", {}), f"{where} [int8]")
    ssh = from_table(SSHDefaults, raw.get("ssh", {}), f"{where} [ssh]")
    name = raw.get("name") or Path(source).stem
    if raw.get("emulate") not in (None, *EMULATORS):
        raise CompressError(f"{where}: emulate must be one of {', '.join(EMULATORS)}, not {raw['emulate']!r}")
    return Target(name=name, description=raw.get("description", ""), arch=raw.get("arch", ""),
                  cpu=raw.get("cpu", ""), runtime=runtime, int8=int8, ssh=ssh, source=source,
                  emulate=raw.get("emulate"))


def provider_name(name: str) -> str:
    """`cuda` -> `CUDAExecutionProvider`; full names pass through."""
    if name.endswith("ExecutionProvider"):
        return name
    full = PROVIDER_ALIASES.get(name.lower())
    if full is None:
        raise CompressError(f"unknown execution provider {name!r}; known: {', '.join(PROVIDER_ALIASES)} "
                            f"or a full onnxruntime name such as CUDAExecutionProvider")
    return full


def _arch(machine: str) -> str:
    return ARCH_ALIASES.get(machine.lower(), machine.lower())


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


# ---------------------------------------------------------------- running

def run(src: list[Path], dst: Path | None, opts: BenchOptions, *, force: bool = False) -> Artifact:
    """Measure every model in `src`, interleaved, here or on `opts.remote`; write the report to
    `dst` (JSON; None: not written) and return it as the artifact's `meta`.

    The report: `models` (path, bytes, p50_ms, p90_ms, p99_ms, mean/std/min, throughput, peak
    memory, ratios to the first, raw latencies), `host` (the machine measured), `measured_on`
    (a sentence that names it), the settings used and any warnings.
    """
    opts.validate()
    if dst is not None:
        check_outputs(force, Path(dst))
    target = load_target(opts.target) if opts.target else None
    files = [Path(p) for p in src]
    if not files:
        raise CompressError("no models to bench")
    for f in files:
        if not f.is_file():
            raise CompressError(f"{f}: no such file")
    cfg = _runner_config(files, opts, target)
    emulated = opts.emulate or bool(target and target.emulate and opts.remote is None)
    if emulated:
        from . import emulate

        if target and target.arch and _arch(target.arch) != _arch("aarch64"):
            raise CompressError(f"--emulate runs an arm64 userland; target {target.name} is {target.arch}")
        raw = emulate.measure(cfg, cpu=target.cpu if target else None)
    elif opts.remote is not None:
        raw = remote.run(opts.remote, target.ssh if target else SSHDefaults(), files, cfg)
    else:
        raw = _measure_here(cfg)
    report = _report(raw, cfg, opts, target)
    if dst is not None:
        write_json(report, Path(dst))
    return Artifact(Path(dst) if dst is not None else None, report)


def interleaved(files: list[Path], *, runs: int = 300, warmup: int = 30, host: str | None = None,
                target: str | None = None, seconds: float | None = None) -> dict:
    """The report of one interleaved latency run, no memory figures, here or on `host` over SSH:
    what quantize's speed guard and profile's latency table are timed with. `seconds` times for that
    long instead of `runs` (a sub-millisecond model needs thousands of runs to steady its median)."""
    from .remote import Remote

    opts = BenchOptions(runs=None if seconds else runs, seconds=seconds, warmup=warmup, target=target,
                        runtime=Runtime(memory=False),
                        remote=Remote(host=host) if host else None)
    return run(files, None, opts).meta


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
    mismatch = bool(target and target.arch and _arch(host.get("machine", "")) != _arch(target.arch))
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
                     f"(relative), over {emulate_tolerance()}" for c in bad]
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


def emulate_tolerance() -> float:
    from .emulate import TOLERANCE

    return TOLERANCE


def host_facts() -> dict:
    """This machine, as the runner describes a device."""
    return bench_runner.device_facts()


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
