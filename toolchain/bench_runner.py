"""The measurement itself: a standalone script that needs only python3 (>= 3.6), numpy and onnxruntime.

`compress bench` imports it to measure on this machine, and copies this one file to a device to
measure there over SSH: one code path for both. It never imports `toolchain`.

    python3 bench_runner.py config.json          # prints one line: MARK + the result as JSON
    python3 bench_runner.py --memory 0 < config.json   # peak memory of model 0, in this process
    python3 bench_runner.py --outputs 0 config.json    # model 0's outputs on the seeded inputs (parity)

The config is JSON: {"models": [{"path": ...}], "runs": 200, "seconds": null, "warmup": 20,
"batch": 1, "threads": null, "providers": ["CPUExecutionProvider"], "provider_options": {},
"strict": false, "graph_optimization": "all", "input_shape": null, "memory": true, "block": 10}.

The result holds raw latencies only; percentiles are derived by the caller (toolchain.bench).
Written for old device Pythons too (Jetson Nano: 3.6): no dataclasses, no walrus, no `|` types.
"""

import functools
import gc
import json
import logging
import os
import platform
import subprocess
import sys
import time
from contextlib import contextmanager

logger = logging.getLogger(__name__)

MARK = "COMPRESS-BENCH-JSON "  # the result line on stdout: a login banner cannot be mistaken for it
RUNNER_VERSION = 1
MEMORY_PROBE_RUNS = 5  # inferences in the memory child after the first one
MAX_RUNS = 100000  # --seconds on a tiny model: stop collecting beyond this many runs per model
INTERLEAVE_BLOCK = 10  # consecutive timed runs of one model per round (see interleave)

GRAPH_OPT = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
             "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}
DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
          "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int16)": "int16",
          "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(bool)": "bool"}
ARM_PARTS = {0xd03: "Cortex-A53", 0xd04: "Cortex-A35", 0xd05: "Cortex-A55", 0xd07: "Cortex-A57",
             0xd08: "Cortex-A72", 0xd09: "Cortex-A73", 0xd0a: "Cortex-A75", 0xd0b: "Cortex-A76",
             0xd0c: "Neoverse-N1", 0xd0d: "Cortex-A77", 0xd40: "Neoverse-V1", 0xd41: "Cortex-A78",
             0xd42: "Cortex-A78AE", 0xd44: "Cortex-X1", 0xd46: "Cortex-A510", 0xd47: "Cortex-A710",
             0xd48: "Cortex-X2", 0xd49: "Neoverse-N2", 0xd4b: "Cortex-A78C", 0xd4f: "Neoverse-V2"}


class RunnerError(Exception):
    """A problem the user can fix (missing provider, unreadable model); one line, no traceback."""


# ---------------------------------------------------------------- device facts

def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _file_bytes(path):
    """The model file plus its external weights (`<name>.data`, written for models past 2 GiB)."""
    beside = f"{path}.data"
    return os.path.getsize(path) + (os.path.getsize(beside) if os.path.exists(beside) else 0)


def cpu_name():
    """'Intel(R) Xeon(R) ...' on x86; 'Cortex-A72' on a Raspberry Pi 4 (from the ARM part number)."""
    text = _read("/proc/cpuinfo")
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    if fields.get("model name"):
        return fields["model name"]
    if fields.get("CPU implementer") == "0x41" and "CPU part" in fields:
        try:
            return ARM_PARTS.get(int(fields["CPU part"], 16), "ARM part " + fields["CPU part"])
        except ValueError:
            pass
    if sys.platform == "darwin":
        try:
            out = subprocess.check_output(["sysctl", "-n", "machdep.cpu.brand_string"])
            return out.decode().strip()
        except (OSError, subprocess.CalledProcessError):
            pass
    return fields.get("Hardware") or platform.processor() or "unknown"


def device_facts():
    """What the figures were measured on: CPU, architecture, cores, memory, versions, providers."""
    import numpy as np
    import onnxruntime as ort

    facts = {"hostname": platform.node(), "machine": platform.machine(), "system": platform.system(),
             "os": platform.platform(), "cpu": cpu_name(), "cores": os.cpu_count(),
             "python": platform.python_version(), "numpy": np.__version__,
             "onnxruntime": ort.__version__, "providers": ort.get_available_providers()}
    board = _read("/proc/device-tree/model").strip("\x00\n ")
    if board:
        facts["board"] = board  # "Raspberry Pi 4 Model B Rev 1.4", "NVIDIA Jetson Orin Nano ..."
    tegra = _read("/etc/nv_tegra_release").splitlines()
    if tegra:
        facts["l4t"] = tegra[0].strip("# ")
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            facts["memory_bytes"] = int(line.split()[1]) * 1024
    return facts


# ---------------------------------------------------------------- sessions

def resolve_providers(requested, available, strict):
    """The requested providers that this onnxruntime has, in order; warnings for the rest."""
    requested = list(requested) or ["CPUExecutionProvider"]
    missing = [p for p in requested if p not in available]
    chosen = [p for p in requested if p in available]
    warnings = []
    if missing:
        what = "{} {} not available in this onnxruntime {} (it has: {})".format(
            ", ".join(missing), "is" if len(missing) == 1 else "are", _ort_version(), ", ".join(available))
        if strict:
            raise RunnerError(what + "; install the onnxruntime build that has it "
                              "(e.g. onnxruntime-gpu) or drop --strict")
        if not chosen:
            chosen = ["CPUExecutionProvider"]
        warnings.append(what + "; falling back to " + ", ".join(chosen))
    return chosen, warnings


def _ort_version():
    import onnxruntime as ort

    return ort.__version__


def make_session(path, cfg, providers):
    """An InferenceSession with the config's threads and optimization level; returns (sess, ms)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if cfg.get("threads"):
        so.intra_op_num_threads = int(cfg["threads"])
    if cfg.get("graph_optimization"):
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, GRAPH_OPT[cfg["graph_optimization"]])
    options = cfg.get("provider_options") or {}
    with_opts = [(p, {k: str(v) for k, v in options.get(p, {}).items()}) for p in providers]
    start = time.perf_counter()
    try:
        sess = ort.InferenceSession(path, so, providers=with_opts)
    except Exception as e:  # noqa: BLE001 - ORT raises its own exception types (Fail, InvalidProtobuf, ...)
        raise RunnerError("{}: onnxruntime cannot load it: {}".format(
            path, (str(e).splitlines() or ["?"])[0])) from e
    return sess, 1000.0 * (time.perf_counter() - start)


def make_feed(sess, path, batch, input_shape, seed=0):
    """Random inputs of the model's own dtypes; the batch dimension is `batch`. Returns (feed, batch, notes)."""
    import numpy as np

    rng = np.random.RandomState(seed)  # not default_rng: numpy 1.13 on JetPack 4 lacks it
    feed, notes, used_batch = {}, [], None
    for inp in sess.get_inputs():
        shape = []
        for k, d in enumerate(inp.shape):
            if isinstance(d, int) and d > 0:
                if k == 0 and d != batch:
                    notes.append("{}: input {} has a fixed batch of {}; batch {} ignored".format(
                        path, inp.name, d, batch))
                shape.append(d)
            elif k == 0:
                shape.append(batch)
            elif input_shape and len(input_shape) == len(inp.shape):
                shape.append(int(input_shape[k]))
            else:
                raise RunnerError("{}: input {} has a dynamic dimension {} ({}); pass --input-shape "
                                  "(e.g. 1,3,224,224)".format(path, inp.name, k, d))
        dtype = DTYPES.get(inp.type)
        if dtype is None:
            raise RunnerError("{}: input {} has type {}, which bench cannot fill".format(path, inp.name, inp.type))
        if dtype.startswith("float"):
            feed[inp.name] = rng.standard_normal(shape).astype(dtype)
        else:
            feed[inp.name] = np.zeros(shape, dtype=dtype)
        if used_batch is None:
            used_batch = shape[0] if shape else 1
    return feed, used_batch or 1, notes


# ---------------------------------------------------------------- the timed loop

@contextmanager
def gc_paused():
    """No garbage collection inside the timed loop (as timeit does); restored on exit."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def interleave(calls, runs=None, seconds=None, block=INTERLEAVE_BLOCK, progress=None):
    """Time every (run, feed) pair in rounds; return the seconds of each timed call, per pair.

    `calls[i]` is `(run, feed)` with `run(None, feed)` one inference (InferenceSession.run). Each
    round gives every model `block` consecutive timed runs, preceded (when there are several
    models) by one untimed run that brings its weights back into the caches; who goes first
    rotates from round to round. Stops after `runs` timed runs per model, or at the end of the
    first round that finishes after `seconds` (and never beyond MAX_RUNS).
    """
    n = len(calls)
    rewarm = n > 1
    orders = [list(range(k, n)) + list(range(k)) for k in range(n)]
    times = [[] for _ in calls]
    pc = time.perf_counter
    limit = min(runs, MAX_RUNS) if runs is not None else MAX_RUNS
    deadline = pc() + seconds if seconds else None
    done = r = 0
    with gc_paused():
        while done < limit:
            k = min(block, limit - done)
            for i in orders[r % n]:
                run, feed = calls[i]
                out = times[i]
                if rewarm:
                    run(None, feed)
                for _ in range(k):
                    t0 = pc()
                    run(None, feed)
                    out.append(pc() - t0)
            done += k
            r += 1
            if progress is not None:
                progress(k)
            if deadline is not None and pc() >= deadline:
                break
    return times


def measure(cfg, progress=None):
    """Create every session, time first inference, warm up and time all models interleaved.

    Returns {"runner", "device", "providers", "block", "warnings", "runs", "loop_seconds", "models": [{path, bytes,
    session_ms, first_ms, batch, providers, inputs, latencies_ms, memory}]}.
    """
    import onnxruntime as ort

    if not cfg.get("models"):
        raise RunnerError("no models to measure")
    providers, warnings = resolve_providers(cfg.get("providers") or [], ort.get_available_providers(),
                                            cfg.get("strict", False))
    models, calls = [], []
    for spec in cfg["models"]:
        path = spec["path"]
        if not os.path.isfile(path):
            raise RunnerError("{}: no such file".format(path))
        sess, session_ms = make_session(path, cfg, providers)
        used = sess.get_providers()
        if providers[0] not in used:
            what = "{}: onnxruntime could not use {} for this model (it runs on {})".format(
                path, providers[0], ", ".join(used))
            if cfg.get("strict"):
                raise RunnerError(what + "; drop --strict to accept the fallback")
            warnings.append(what)
        feed, batch, notes = make_feed(sess, path, cfg.get("batch", 1), cfg.get("input_shape"))
        warnings.extend(notes)
        start = time.perf_counter()
        sess.run(None, feed)
        first_ms = 1000.0 * (time.perf_counter() - start)
        models.append({"path": path, "bytes": _file_bytes(path), "session_ms": session_ms,
                       "first_ms": first_ms, "batch": batch, "providers": used,
                       "inputs": [{"name": k, "shape": list(v.shape), "dtype": str(v.dtype)}
                                  for k, v in feed.items()]})
        calls.append((sess.run, feed))
    block = int(cfg.get("block") or INTERLEAVE_BLOCK)
    load_before = _load()
    if cfg.get("warmup", 0):
        interleave(calls, runs=cfg["warmup"], block=block)
    start = time.perf_counter()
    times = interleave(calls, runs=None if cfg.get("seconds") else cfg.get("runs", 200),
                       seconds=cfg.get("seconds"), block=block, progress=progress)
    loop_s = time.perf_counter() - start
    load_after = _load()
    del calls, sess  # free the parent's sessions before the memory children start (small devices)
    gc.collect()
    for m, t in zip(models, times):  # noqa: B905 - the runner also runs on Python 3.6
        m["latencies_ms"] = [1000.0 * s for s in t]
    if cfg.get("memory", True):
        for i, m in enumerate(models):
            m["memory"] = memory_probe(cfg, i)
    return {"runner": RUNNER_VERSION, "device": device_facts(), "providers": providers, "block": block,
            "warnings": warnings, "runs": len(times[0]), "loop_seconds": loop_s, "models": models,
            "load_before": load_before, "load_after": load_after}


def _load():
    """The 1-minute load average, or None where the OS has none."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


# ---------------------------------------------------------------- peak memory, in a child process

def _status_bytes(field):
    for line in _read("/proc/self/status").splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return None


def _maxrss_bytes():
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _reset_peak():
    """Linux >= 4.0: writing 5 to clear_refs resets VmHWM to the current RSS."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def memory_child(cfg, index):
    """Inside a fresh process: baseline after imports, then session + inferences; the peak above it."""
    import numpy  # noqa: F401 - part of the baseline
    import onnxruntime as ort

    providers, _ = resolve_providers(cfg.get("providers") or [], ort.get_available_providers(), False)
    path = cfg["models"][index]["path"]
    gc.collect()
    if _status_bytes("VmHWM") is not None:
        reset = _reset_peak()
        baseline = _status_bytes("VmRSS" if reset else "VmHWM")
        method = ("VmHWM minus VmRSS after imports (peak reset through /proc/self/clear_refs)" if reset
                  else "VmHWM minus VmHWM after imports")
        read_peak = functools.partial(_status_bytes, "VmHWM")
    else:
        method, baseline, read_peak = "ru_maxrss minus ru_maxrss after imports", _maxrss_bytes(), _maxrss_bytes
    sess, _ = make_session(path, cfg, providers)
    feed, _, _ = make_feed(sess, path, cfg.get("batch", 1), cfg.get("input_shape"))
    for _ in range(1 + MEMORY_PROBE_RUNS):
        sess.run(None, feed)
    peak = read_peak()
    return {"peak_mem_bytes": max(0, peak - baseline), "peak_rss_bytes": peak,
            "baseline_rss_bytes": baseline, "method": method}


def memory_probe(cfg, index):
    """Run memory_child for one model in a fresh interpreter (this very file) and read its answer."""
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--memory", str(index)],
                          input=json.dumps(cfg).encode(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    result = _parse(proc.stdout.decode("utf-8", "replace"))
    if proc.returncode != 0 or result is None or "error" in result:
        why = (result or {}).get("error") or (proc.stderr.decode("utf-8", "replace").strip().splitlines()
                                              or ["exit {}".format(proc.returncode)])[-1]
        raise RunnerError("memory measurement of {} failed: {}".format(cfg["models"][index]["path"], why))
    return result


def model_outputs(cfg, index):
    """One model's outputs on make_feed's seeded inputs, as nested lists: the same inputs wherever
    this runs, so an emulated or remote device's outputs can be compared with this machine's."""
    import onnxruntime as ort

    providers, _ = resolve_providers(cfg.get("providers") or [], ort.get_available_providers(), False)
    path = cfg["models"][index]["path"]
    sess, _ = make_session(path, cfg, providers)
    feed, _, _ = make_feed(sess, path, cfg.get("batch", 1), cfg.get("input_shape"))
    try:
        outputs = sess.run(None, feed)
    except Exception as e:  # noqa: BLE001 - ORT's own exception types (a kernel missing at run time)
        raise RunnerError("{}: onnxruntime cannot run it: {}".format(path, (str(e).splitlines() or ["?"])[0])) from e
    return [o.tolist() for o in outputs]


def _parse(stdout):
    for line in reversed(stdout.splitlines()):
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    return None


def main(argv):
    try:
        if len(argv) == 2 and argv[0] == "--memory":
            result = memory_child(json.loads(sys.stdin.read()), int(argv[1]))
        elif len(argv) == 3 and argv[0] == "--outputs":
            with open(argv[2]) as f:
                result = {"outputs": model_outputs(json.load(f), int(argv[1])), "device": device_facts()}
        elif len(argv) == 1:
            with open(argv[0]) as f:
                result = measure(json.load(f))
        else:
            sys.stderr.write(__doc__)
            return 2
    except RunnerError as e:
        sys.stdout.write(MARK + json.dumps({"error": str(e)}) + "\n")
        return 1
    sys.stdout.write(MARK + json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
