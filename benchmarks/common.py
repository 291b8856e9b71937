"""Shared by the benchmark scripts: trained models cached outside the repo, results written as JSON."""

from __future__ import annotations

import json
import platform
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from toolchain import __version__, artifact, data, train  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def trained(spec: str, data_spec: str, opts: train.TrainOptions) -> Path:
    """A model trained with `opts`, cached under the compress cache (reused when the recipe matches)."""
    import hashlib

    key = hashlib.sha256(json.dumps([spec, data_spec, repr(opts)]).encode()).hexdigest()[:12]
    stem = re.sub(r"[^A-Za-z0-9.-]+", "_", f"{spec}-{data_spec}")
    path = data.CACHE_DIR / "bench-models" / f"{stem}-{key}.pt"
    if not path.exists():
        print(f"training {spec} on {data_spec} ({opts}) -> {path}", flush=True)
        train.run(spec, data_spec, path, opts, force=True)
    return path


def host() -> dict:
    import os

    from toolchain.bench_runner import cpu_name

    return {"cpu": cpu_name(), "cores": os.cpu_count(), "machine": platform.machine(),
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),
            "python": platform.python_version(), "compress": __version__}


def write(name: str, result: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    artifact.write_json(result | {"host": host(), "created": artifact.now()}, path)
    print(f"wrote {path}")
    return path
