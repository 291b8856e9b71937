"""Shared by the benchmark scripts: trained models cached outside the repo, results written as JSON."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from toolchain import __version__, artifact, data, train  # noqa: E402
from toolchain.measure import load, paired_verdict, settle, summary  # noqa: E402,F401 - the statistics every figure uses

RESULTS = ROOT / "benchmarks" / "results"


SHARED_BASELINES = Path(os.environ.get("COMPRESS_BASELINES") or ROOT.parent / "shared" / "baselines")


sha256 = artifact.sha256_of  # a file's sha256 (the one the sidecars record)


def _recipe(opts: train.TrainOptions, data_spec: str) -> dict:
    return dataclasses.asdict(dataclasses.replace(opts, device="cpu", data=data_spec))


def shared_baseline(spec: str, data_spec: str, opts: train.TrainOptions) -> Path | None:
    """The model in ../shared/baselines (MANIFEST.json) trained from `spec` on `data_spec` with this very
    recipe and validation split, its sha256 checked; None when there is none. Matched on what was
    trained, not on a cache file name: an option the manifest does not name counts at its default, so
    one added to TrainOptions later still matches."""
    manifest = SHARED_BASELINES / "MANIFEST.json"
    if not manifest.exists():
        return None
    split = {"seed": data.VAL_SEED, "fraction": data.VAL_FRACTION, "max": data.VAL_MAX}
    want, defaults = _recipe(opts, data_spec), _recipe(train.TrainOptions(), data_spec)
    for name, entry in json.loads(manifest.read_text()).get("models", {}).items():
        val = entry.get("validation_split", {})
        if (entry.get("model_spec"), entry.get("data")) != (spec, data_spec) or \
                {k: val.get(k) for k in split} != split or want != defaults | entry.get("recipe", {}):
            continue
        path = SHARED_BASELINES / entry["file"]
        if path.exists() and sha256(path) == entry["sha256"]:
            return path
        print(f"shared baseline {name}: {path} is missing or its sha256 is not the manifest's; not used", flush=True)
    return None


def trained(spec: str, data_spec: str, opts: train.TrainOptions, device: str = "cpu") -> Path:
    """A model trained with `opts`: the shared baseline when ../shared/baselines holds this one, else
    cached under the compress cache (reused when the recipe matches), else trained now (and said so).

    The key holds the recipe and the validation split (a model trained before the split was carved
    out of the training data is never reused), not the device: a GPU-trained model serves a CPU run."""
    import hashlib

    shared = shared_baseline(spec, data_spec, opts)
    if shared is not None:
        return shared
    fields = dataclasses.asdict(dataclasses.replace(opts, device="cpu"))
    later = {k: fields.pop(k) for k in ("distill", "temperature")}  # fields added after models were cached
    recipe = "TrainOptions(" + ", ".join(f"{k}={v!r}" for k, v in fields.items()) + ")"
    if later != {"distill": 0.0, "temperature": 4.0}:
        recipe += repr(later)
    split = [data.VAL_SEED, data.VAL_FRACTION, data.VAL_MAX]
    key = hashlib.sha256(json.dumps([spec, data_spec, recipe, split]).encode()).hexdigest()[:12]
    stem = re.sub(r"[^A-Za-z0-9.-]+", "_", f"{Path(spec).name if spec.endswith('.pt') else spec}-{data_spec}")
    path = data.CACHE_DIR / "bench-models" / f"{stem}-{key}.pt"
    if not path.exists():
        print(f"training {spec} on {data_spec} ({opts}) -> {path} (no shared or cached model of this recipe)",
              flush=True)
        train.run(spec, path, dataclasses.replace(opts, device=device, data=data_spec), force=True)
    return path


def git_state() -> dict:
    """The commit the figures were made at, and whether the tree held uncommitted changes then."""
    import subprocess

    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "toolchain", "benchmarks/*.py")
    return {"commit": git("rev-parse", "--short=12", "HEAD") or None, "dirty": bool(dirty)}


def provenance(seeds: list[int] | None = None, recipe: dict | None = None, baselines: dict | None = None,
               parts: dict | None = None) -> dict:
    """The `provenance` object EVALUATION.md section 6 asks of every results JSON: the commit (and
    whether the code was dirty), date, host, seeds, the full recipe, the sha256 of every baseline it
    starts from, and per part its minutes and the load average before and after it."""
    return {**git_state(), "date": artifact.now(), "host": host(), "seeds": seeds, "recipe": recipe,
            "baselines": baselines or {}, "parts": parts or {}}


def host() -> dict:
    from toolchain.bench_runner import cpu_name

    return {"cpu": cpu_name(), "cores": os.cpu_count(), "machine": platform.machine(),
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),
            "python": platform.python_version(), "compress": __version__}


def write(name: str, result: dict) -> Path:
    """benchmarks/results/NAME.json, with the provenance object every results file carries (the
    script's own seeds, recipe, baselines and parts, where it gives them, over the commit and host)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    prov = provenance() | result.get("provenance", {})
    artifact.write_json(result | {"host": host(), "created": artifact.now(), "provenance": prov}, path)
    print(f"wrote {path}")
    return path


