"""How long the emulated arm64 target takes to build from scratch, and to reuse (issue 16: at most
10 minutes on 2 cores, reused after that). Builds into a fresh, temporary compress cache; the
network fetches (Debian's mirror, PyPI) are part of the figure.

    python benchmarks/emulate_root.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from common import write

from toolchain import data, emulate


def main() -> None:
    if emulate.missing_tools():
        raise SystemExit(f"needs {', '.join(emulate.missing_tools())}")
    with tempfile.TemporaryDirectory() as tmp:
        data.CACHE_DIR = Path(tmp)
        start = time.perf_counter()
        root = emulate.ensure_root()
        built = time.perf_counter() - start
        start = time.perf_counter()
        emulate.ensure_root()
        reused = time.perf_counter() - start
        size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())
        facts = emulate.root_facts()
    write("emulate_root", {"build_s": round(built, 1), "reuse_s": round(reused, 3), "root_bytes": size,
                           "goal_build_s": 600, "suite": facts.get("suite"), "onnxruntime": facts.get("onnxruntime"),
                           "note": "fresh cache; includes downloads from Debian's mirror and PyPI"})
    print(f"built in {built:.0f} s ({size / 1e6:.0f} MB), reused in {reused * 1000:.1f} ms")


if __name__ == "__main__":
    main()
