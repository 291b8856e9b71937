"""The file pair that flows between stages: a model file and a JSON sidecar named after it.

`vgg16.pruned.pt` + `vgg16.pruned.pt.json`. The sidecar carries the lineage (every stage so far,
its options, tool version and time), the model and data specs, the input shape and the
measured figures of this stage. Writes are atomic; loading never runs pickled code unless the
user says `--trust-model`.
"""

from __future__ import annotations

import copy
import logging
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from . import __version__
from .errors import CompressError
from .fileio import Artifact, atomic_path, check_outputs, now, read_json, sha256_of, sidecar_of, write_json, write_text  # noqa: F401 - re-exported: stages use artifact.*
from .models import apply_structure, build, structure

logger = logging.getLogger(__name__)

MODEL_FORMAT = "compress-model/1"
SIDECAR_FORMAT = "compress-artifact/1"
ANALYSIS_SCHEMA = 1  # the analysis file (`compress analyze`) that prune reads


def check_output(dst: Path, force: bool, *also: Path) -> None:
    """Refuse to overwrite an existing output (its sidecar, or the files in `also` written beside it,
    such as plots) unless forced, and refuse an output that cannot be written at all."""
    check_outputs(force, dst, sidecar_of(dst), *also)


# --- model files ---------------------------------------------------------------------------

def _payload(model: nn.Module, spec: str | None, input_shape, num_classes: int) -> dict:
    if spec is None or spec.startswith("pickled:"):
        return {"format": MODEL_FORMAT, "spec": spec, "input_shape": list(input_shape),
                "num_classes": num_classes, "module": model}
    return {"format": MODEL_FORMAT, "spec": spec, "input_shape": list(input_shape),
            "num_classes": num_classes, "structure": structure(model),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}


def save(model: nn.Module, dst: Path, meta: dict, *, force: bool = False,
         extra: dict[str, torch.Tensor] | None = None) -> Artifact:
    """Write `dst` (.pt) and its sidecar atomically. `meta` must hold model.spec, input_shape,
    num_classes; file size and hash are filled in here. `extra` tensors (a calibration set)
    travel inside the model file and come back through `load_extra`."""
    dst = Path(dst)
    check_output(dst, force)
    payload = _payload(model, meta["model"]["spec"], meta["input_shape"], meta["num_classes"])
    payload["extra"] = dict(extra or {})
    with atomic_path(dst) as tmp:
        torch.save(payload, tmp)
        meta = copy.deepcopy(meta)
        meta["model"].update(file=dst.name, kind="torch", sha256=sha256_of(tmp),
                             pickled="module" in payload)
        meta.setdefault("metrics", {})["bytes"] = tmp.stat().st_size
        write_json(meta, sidecar_of(dst))
    return Artifact(dst, meta)


def load_model(path: str | Path, *, trust: bool = False) -> tuple[nn.Module, Artifact]:
    """Load a compress model file (or, with `trust`, any pickled nn.Module) in eval mode."""
    art = Artifact.open(path)
    try:
        payload = torch.load(art.path, map_location="cpu", weights_only=not trust)
    except Exception as e:  # noqa: BLE001 - torch raises many types for a bad file
        text = str(e).splitlines()[0] if str(e) else type(e).__name__
        if not trust and "Unsupported global" in str(e):
            raise CompressError(f"{art.path} holds pickled code; if you trust it, pass --trust-model") from e
        reason = next((ln.strip() for ln in str(e).splitlines() if "Unsupported" in ln), text)
        raise CompressError(f"{art.path}: not a readable PyTorch file ({reason})") from e
    if isinstance(payload, nn.Module):
        model = payload
        shape = art.input_shape or tuple(getattr(model, "input_shape", ()) or ())
        art.meta.setdefault("model", {"spec": f"pickled:{art.path.name}"})
        art.meta.setdefault("input_shape", list(shape) if shape else None)
    elif isinstance(payload, dict) and payload.get("format") == MODEL_FORMAT:
        if "module" in payload:
            model = payload["module"]
        else:
            built = build(payload["spec"], tuple(payload["input_shape"]), payload["num_classes"])
            model = built.model
            apply_structure(model, payload["structure"], payload["state_dict"])
            state = OrderedDict(payload["state_dict"])
            state._metadata = model.state_dict()._metadata  # module versions (MNASNet refuses a state without)
            try:
                model.load_state_dict(state)
            except RuntimeError as e:
                raise CompressError(f"{art.path}: weights do not fit {payload['spec']}: "
                                    f"{str(e).splitlines()[0]}") from e
        art.meta.setdefault("model", {}).setdefault("spec", payload["spec"])
        art.meta.setdefault("input_shape", payload["input_shape"])
        art.meta.setdefault("num_classes", payload["num_classes"])
    elif isinstance(payload, dict):
        raise CompressError(f"{art.path} is a bare state_dict; its architecture is unknown. Save it "
                            "with `compress train`, or as a full module and pass --trust-model")
    else:
        raise CompressError(f"{art.path}: unexpected content ({type(payload).__name__})")
    return model.eval(), art


def load_extra(path: str | Path, key: str) -> torch.Tensor | None:
    """A tensor stored with `save(..., extra=...)`, or None."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - a pickled module file holds no extras we can read safely
        return None
    return payload.get("extra", {}).get(key) if isinstance(payload, dict) else None


# --- figures -------------------------------------------------------------------------------

def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def compression_x(fp32_params: int, param_bytes: int, digits: int = 3) -> float:
    """The paper's measure: the original fp32 parameter bytes over the final parameter bytes."""
    return round(4 * fp32_params / param_bytes, digits)


def count(model: nn.Module, input_shape: tuple[int, ...], *, throwaway: bool = False) -> dict:
    """Parameters, MACs and fp32 parameter bytes of a model. The counter leaves attributes and eval
    mode behind, so it runs on a copy unless the caller discards the model anyway (`throwaway`)."""
    import torch_pruning as tp

    model = (model if throwaway else copy.deepcopy(model)).eval()
    example = torch.zeros(1, *input_shape)
    macs, params = tp.utils.count_ops_and_params(model, example)
    return {"params": int(params), "macs": int(macs), "param_bytes": int(params) * 4}


def count_layers(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, dict]:
    """Parameters, parameter bytes and MACs of each convolution and linear layer (on a copy)."""
    import torch_pruning as tp

    model = copy.deepcopy(model).eval()
    _, _, macs, params = tp.utils.count_ops_and_params(model, torch.zeros(1, *input_shape), layer_wise=True)
    # a layer the counter never sees called alone (attention's out_proj) has None, not 0
    return {name: {"params": int(params.get(m) or 0), "macs": int(macs.get(m) or 0),
                   "bytes": sum(p.numel() * p.element_size() for p in m.parameters(recurse=False))}
            for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


def lineage_entry(stage: str, options: dict, parent: Artifact | None) -> dict:
    return {"stage": stage, "options": options, "tool_version": __version__, "time": now(),
            "parent": str(parent.path) if parent else None,
            "parent_sha256": parent.meta.get("model", {}).get("sha256") if parent else None}


def new_meta(stage: str, options: dict, *, parent: Artifact | None, spec: str, data: dict | None,
             input_shape, num_classes: int, metrics: dict, report: dict | None = None) -> dict:
    """A sidecar for a stage's output: the parent's lineage plus this stage."""
    lineage = list(parent.meta.get("lineage", [])) if parent else []
    lineage.append(lineage_entry(stage, options, parent) | {"metrics": metrics})
    return {"format": SIDECAR_FORMAT, "stage": stage, "tool_version": __version__, "created": now(),
            "model": {"spec": spec}, "data": data or (parent.meta.get("data") if parent else None),
            "input_shape": list(input_shape), "num_classes": num_classes,
            "metrics": dict(metrics), "lineage": lineage, "report": report or {}}
