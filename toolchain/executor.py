"""Where independent units of work run: here (forked processes) or on a Ray cluster.

A unit is what the stages already cache one by one: one layer at one ratio (analyze), one grid
cell (the plan x order comparison). `run_units` yields each unit's result as it finishes, in any
order; the caller stores it in its content-addressed cache, so a run cut short (or a driver killed)
resumes, and the results do not depend on where they ran.

Ray is optional (`pip install 'compress[ray]'`) and imported only when asked for. A worker killed
mid-task is Ray's to handle: its task is retried on another worker (`max_retries`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from .errors import CompressError

EXECUTORS = ("local", "ray")
RETRIES = 3  # a task whose worker died is run again this many times


@dataclass(frozen=True)
class Executor:
    kind: str = "local"
    address: str | None = None  # a Ray cluster (ray://host:10001 or host:6379); default $RAY_ADDRESS, else a new one
    workers: int = 1  # local: processes; ray: ignored (the cluster's CPUs decide)

    def validate(self) -> None:
        if self.kind not in EXECUTORS:
            raise CompressError(f"--executor must be one of {', '.join(EXECUTORS)}, not {self.kind!r}")
        if self.address and self.kind != "ray":
            raise CompressError("--address only applies with --executor ray")
        if self.kind == "ray":
            try:
                import ray  # noqa: F401
            except ImportError as e:
                raise CompressError("--executor ray needs Ray: pip install 'compress[ray]'") from e


def run_units(executor: Executor, fn: Callable, shared, units: Iterable, threads: int = 1) -> Iterator:
    """`fn(shared, unit)` for every unit, yielded as each finishes. `shared` (the model and the
    data) is sent once: inherited by forked workers, or put in Ray's object store."""
    units = list(units)
    if executor.kind == "ray":
        yield from _on_ray(executor, fn, shared, units, threads)
    elif executor.workers == 1 or len(units) < 2:
        for unit in units:
            yield fn(shared, unit)
    else:
        yield from _forked(executor.workers, fn, shared, units)


_SHARED: tuple | None = None  # what forked workers inherit


def _forked(workers: int, fn, shared, units) -> Iterator:
    import multiprocessing as mp

    global _SHARED
    _SHARED = (fn, shared, max(1, (os.cpu_count() or 1) // workers))
    with mp.get_context("fork").Pool(workers) as pool:
        yield from pool.imap_unordered(_forked_unit, units)


def _forked_unit(unit):
    import torch

    fn, shared, threads = _SHARED
    torch.set_num_threads(threads)
    return fn(shared, unit)


def _ray_unit(fn, shared, unit, threads):
    import torch

    torch.set_num_threads(threads)
    return fn(shared, unit)


def _on_ray(executor: Executor, fn, shared, units, threads) -> Iterator:
    import ray

    if not ray.is_initialized():
        address = executor.address or os.environ.get("RAY_ADDRESS")
        try:
            ray.init(address=address, log_to_driver=False, include_dashboard=False, configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as e:
            first = next((line for line in str(e).splitlines() if line.strip()), type(e).__name__)
            token = "token" in str(e).lower()
            hint = " (the cluster wants its token: set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN)" if token else ""
            raise CompressError(f"cannot reach the Ray cluster at {address}: {first}{hint}") from e
    task = ray.remote(num_cpus=threads, max_retries=RETRIES, retry_exceptions=False)(_ray_unit)
    shared_ref, fn_ref = ray.put(shared), ray.put(fn)
    pending = [task.remote(fn_ref, shared_ref, unit, threads) for unit in units]
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])
    finally:
        for ref in pending:  # the driver stopped early (an error, Ctrl-C): do not leave work queued
            ray.cancel(ref, force=True)
