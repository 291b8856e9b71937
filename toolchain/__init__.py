"""compress: make a PyTorch model small and fast on an edge device, and prove it.

The Python API is the stages' own `run` functions, the ones the CLI calls (docs/api.md):

    import toolchain as compress
    compress.analyze.run("model.pt", Path("analysis.json"), compress.AnalyzeOptions(ratio=0.5))

Every stage module and its options are reachable from here. They load on first use, so importing
the package (and `compress --help`) does not import torch.
"""

import importlib

__version__ = "0.1.0"

STAGES = ("train", "analyze", "profile", "prune", "quantize", "export", "bench", "check", "report", "pipeline")
_NAMES = {"TrainOptions": "train", "AnalyzeOptions": "analyze", "ProfileOptions": "profile",
          "PruneOptions": "prune", "Order": "prune", "Plan": "prune", "QuantizeOptions": "quantize",
          "Scope": "quantize", "ExportOptions": "export", "BenchOptions": "bench", "Runtime": "bench",
          "Artifact": "artifact", "CompressError": "errors", "load_target": "target"}

__all__ = ["__version__", *STAGES, *_NAMES]


def __getattr__(name: str):
    if name in STAGES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _NAMES:
        return getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
