"""Ray against local for the VGG16 single-ratio analysis (13 layers at 0.5, 1000 validation images).

On the 2 cores of this machine: the local executor with 2 forked workers against a 2-CPU Ray
cluster (started here, one thread per task), run alternately; the overhead is the median Ray wall
time over the median local one (goal: at most 10%). Then a Ray run in which one worker is killed
with SIGKILL mid-task: its unit is retried elsewhere and the analysis must equal the local one.
Weights are untrained (a timing and identity check: the accuracies are those of random weights).

Speed-up with more workers needs a bigger machine; here it is a SIMULATION: the measured unit times
scheduled longest-first on N workers, plus the per-task overhead measured on Ray.

    python benchmarks/ray_overhead.py [--repeats 2] [--eval-samples 1000]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from common import write

from toolchain import analyze

MODEL, DATA = "zoo:vgg16", "fashion-mnist"


def _analysis(executor: str, cache: Path, out: Path, eval_samples: int) -> tuple[dict, float]:
    opts = analyze.AnalyzeOptions(data=DATA, ratio=0.5, eval_samples=eval_samples, plots=False, cache_dir=cache,
                                  workers=2 if executor == "local" else 1, executor=executor)
    start = time.perf_counter()
    result = analyze.run(MODEL, out, opts, force=True).meta
    return result, time.perf_counter() - start


def _measured(result: dict) -> dict:
    return {"layers": [{k: v for k, v in r.items() if k != "seconds"} for r in result["layers"]],
            "priority": result["priority"], "baseline": result["baseline"]}


def _kill_one_running_unit(killed: list) -> None:
    deadline = time.monotonic() + 600
    while not killed and time.monotonic() < deadline:
        found = subprocess.run(["pgrep", "-f", "ray::_ray_unit"], capture_output=True, text=True).stdout.split()
        if found:
            os.kill(int(found[0]), signal.SIGKILL)
            killed.append(int(found[0]))
        time.sleep(0.2)


def _simulate(unit_s: list[float], per_task_s: float, workers: int) -> float:
    """Longest-first list scheduling of the units on `workers`: the makespan."""
    loads = [0.0] * workers
    for t in sorted(unit_s, reverse=True):
        loads[loads.index(min(loads))] += t + per_task_s
    return max(loads)


def main() -> None:
    import ray

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--eval-samples", type=int, default=1000)
    args = ap.parse_args()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    times: dict[str, list[float]] = {"local": [], "ray": []}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for i in range(args.repeats):
            for kind in ("local", "ray"):  # alternated: the machine's load drifts
                results[kind], seconds = _analysis(kind, tmp / f"{kind}{i}", tmp / f"{kind}{i}.json",
                                                   args.eval_samples)
                times[kind].append(seconds)
                print(f"{kind} run {i}: {seconds:.1f} s", flush=True)
        killed: list[int] = []
        killer = threading.Thread(target=_kill_one_running_unit, args=(killed,))
        killer.start()
        survived, killed_s = _analysis("ray", tmp / "killed", tmp / "killed.json", args.eval_samples)
        killer.join()
    identical = _measured(results["ray"]) == _measured(results["local"])
    worker_killed_ok = bool(killed) and _measured(survived) == _measured(results["local"])
    local, on_ray = statistics.median(times["local"]), statistics.median(times["ray"])
    unit_s = [r["seconds"] for r in results["ray"]["layers"]]
    per_task = max(0.0, on_ray - local) / (len(unit_s) / 2)  # Ray's extra time per task, per worker
    setup = max(0.0, local - _simulate(unit_s, 0.0, 2))  # model, data and baseline: not spread over workers
    wall = {n: setup + _simulate(unit_s, per_task, n) for n in (1, 2, 4, 8, 16)}
    simulated = {n: round(wall[1] / w, 2) for n, w in wall.items()}
    write("ray", {
        "model": f"{MODEL} (untrained weights)", "data": DATA, "ratio": 0.5, "eval_samples": args.eval_samples,
        "units": len(unit_s), "cores": os.cpu_count(), "repeats": args.repeats,
        "local_s": [round(t, 2) for t in times["local"]], "ray_s": [round(t, 2) for t in times["ray"]],
        "overhead_pct": round(100 * (on_ray - local) / local, 1), "goal_overhead_pct": 10,
        "identical": identical, "worker_killed_ok": worker_killed_ok, "killed_pid": killed[0] if killed else None,
        "killed_run_s": round(killed_s, 2),
        "speedup_simulated": simulated, "simulation": "SIMULATED, not measured: the measured unit times scheduled "
        "longest-first on N workers plus the per-task overhead measured here; no machine with more cores was lent",
        "per_task_overhead_s": round(per_task, 3),
        "note": "identical compares every measured figure of the analysis except each unit's wall time"})
    ray.shutdown()


if __name__ == "__main__":
    main()
