"""Model specs: `zoo:NAME[?k=v&...]`, `torchvision:NAME[?size=S]`, `path/file.py:factory`, `model.pt`.

A spec plus the data's shape and class count is everything needed to rebuild a network; a
pruned network additionally carries its per-layer shapes (`structure`), so that a saved file
never needs pickled code to load.
"""

from __future__ import annotations

import importlib.util
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl

import torch
from torch import nn

from ..errors import CompressError
from . import zoo


@dataclass
class Built:
    """A network and the input it expects: (C,H,W) for images or (F,) for vectors."""

    model: nn.Module
    spec: str
    input_shape: tuple[int, ...]


def _image_model(cls: type[nn.Module]) -> Callable[..., Built]:
    def build(data_shape: tuple[int, ...], num_classes: int, **kw) -> tuple[nn.Module, tuple[int, ...]]:
        channels = data_shape[0] if len(data_shape) == 3 else 1
        size = int(kw.pop("size", cls.input_size))
        return cls(in_channels=channels, num_classes=num_classes, **kw), (channels, size, size)
    return build


def _widths(value, name: str, count: int | None = None) -> list[int]:
    """A comma-separated list of positive widths from a spec query (`fc=1024,1024`)."""
    widths = [int(w) for w in str(value).replace("-", ",").split(",") if w.strip()]
    if not widths or any(w < 1 for w in widths) or (count is not None and len(widths) != count):
        raise ValueError(f"{name} must be {count or 'one or more'} comma-separated widths >= 1, not {value!r}")
    return widths


def _lenet5(data_shape: tuple[int, ...], num_classes: int, **kw) -> tuple[nn.Module, tuple[int, ...]]:
    if "channels" in kw:
        kw["channels"] = _widths(kw["channels"], "channels", 2)
    if "fc" in kw:
        kw["fc"] = _widths(kw["fc"], "fc")
    return _image_model(zoo.LeNet5)(data_shape, num_classes, **kw)


def _a2e(data_shape: tuple[int, ...], num_classes: int, **kw) -> tuple[nn.Module, tuple[int, ...]]:
    features = math.prod(data_shape)
    widths = kw.pop("widths", None)
    if widths is not None:
        kw["widths"] = [int(w) for w in str(widths).replace("-", ",").split(",") if w]
    return zoo.AccordionAE(features, num_classes, **kw), (features,)


ZOO: dict[str, Callable] = {
    "lenet5": _lenet5,
    "alexnet": _image_model(zoo.AlexNet32),
    "vgg16": _image_model(zoo.VGG16BN),
    "a2e": _a2e,
}


def _parse_query(text: str) -> tuple[str, dict[str, str]]:
    name, _, query = text.partition("?")
    return name, dict(parse_qsl(query, keep_blank_values=False))


def _coerce(kw: dict[str, str]) -> dict:
    out = {}
    for k, v in kw.items():
        try:
            out[k] = int(v)
        except ValueError:
            try:
                out[k] = float(v)
            except ValueError:
                out[k] = v
    return out


def _torchvision(name: str, data_shape, num_classes: int, **kw):
    import torchvision

    known = torchvision.models.list_models(module=torchvision.models)
    if name not in known:
        raise CompressError(f"unknown torchvision model {name!r}; known: {', '.join(sorted(known))}")
    size = int(kw.pop("size", 224))
    extra = {"aux_logits": False, "init_weights": True} if name in ("googlenet", "inception_v3") else {}
    model = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **extra, **kw)
    return model, (3, size, size)


def _timm(name: str, data_shape, num_classes: int, **kw):
    """A timm (PyTorch Image Models) architecture with random weights: no hub is reached. `size` sets
    the square input (and, for models whose position embeddings fix it, their `img_size`)."""
    try:
        import timm
    except ImportError as e:
        raise CompressError("timm: models need the timm package: pip install 'compress[timm]'") from e
    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('_')[0]}*")[:8]
        raise CompressError(f"unknown timm model {name!r}" + (f"; close: {', '.join(close)}" if close else ""))
    size = int(kw.pop("size", 224))
    try:
        model = timm.create_model(name, pretrained=False, num_classes=num_classes, img_size=size, **kw)
    except TypeError:  # a convolutional network takes any size and no img_size
        model = timm.create_model(name, pretrained=False, num_classes=num_classes, **kw)
    return model, (3, size, size)


def _from_file(path: str, factory: str, data_shape, num_classes: int, **kw):
    file = Path(path)
    if not file.is_file():
        raise CompressError(f"model file {path} not found")
    spec = importlib.util.spec_from_file_location(f"compress_user_{file.stem}", file)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 - user code: any failure is a user-facing problem
        raise CompressError(f"{path}: importing it failed: {type(e).__name__}: {e}") from e
    fn = getattr(module, factory, None)
    if not callable(fn):
        raise CompressError(f"{path} has no callable {factory!r}")
    params = inspect.signature(fn).parameters
    offered = {"num_classes": num_classes, "in_channels": data_shape[0] if len(data_shape) == 3 else None}
    args = {k: v for k, v in offered.items() if k in params and v is not None}
    model = fn(**args, **kw)
    shape = tuple(getattr(model, "input_shape", data_shape))
    return model, shape


def known_specs() -> list[str]:
    return [f"zoo:{n}" for n in ZOO] + ["torchvision:NAME", "timm:NAME", "path/file.py:factory", "model.pt"]


def build(spec: str, data_shape: tuple[int, ...], num_classes: int) -> Built:
    """Build a fresh (untrained) network from a spec for data of `data_shape` with `num_classes`."""
    try:
        if spec.startswith("zoo:"):
            name, kw = _parse_query(spec[4:])
            if name not in ZOO:
                raise CompressError(f"unknown model {spec!r}; known: {', '.join(known_specs())}")
            model, shape = ZOO[name](tuple(data_shape), num_classes, **_coerce(kw))
        elif spec.startswith("torchvision:"):
            name, kw = _parse_query(spec[len("torchvision:"):])
            model, shape = _torchvision(name, data_shape, num_classes, **_coerce(kw))
        elif spec.startswith("timm:"):
            name, kw = _parse_query(spec[len("timm:"):])
            model, shape = _timm(name, data_shape, num_classes, **_coerce(kw))
        elif ".py:" in spec:
            path, _, rest = spec.rpartition(".py:")
            factory, kw = _parse_query(rest)
            model, shape = _from_file(path + ".py", factory, data_shape, num_classes, **_coerce(kw))
        else:
            raise CompressError(f"unknown model spec {spec!r}; known: {', '.join(known_specs())}")
    except (TypeError, ValueError, AssertionError) as e:  # a spec parameter of the wrong type or value (?size=abc)
        raise CompressError(f"{spec}: bad model parameter: {str(e).splitlines()[0]}") from e
    if any(int(d) < 1 for d in shape):
        raise CompressError(f"{spec}: the input shape {tuple(shape)} has a dimension below 1")
    return Built(model, spec, tuple(int(s) for s in shape))


# --- shapes of a (possibly pruned) network, as plain data -----------------------------------

_SHAPE_ATTRS = {
    nn.Conv2d: ("in_channels", "out_channels", "groups"),
    nn.Conv1d: ("in_channels", "out_channels", "groups"),
    nn.ConvTranspose2d: ("in_channels", "out_channels", "groups"),
    nn.Linear: ("in_features", "out_features"),
    nn.BatchNorm1d: ("num_features",),
    nn.BatchNorm2d: ("num_features",),
    nn.LayerNorm: ("normalized_shape",),
    nn.GroupNorm: ("num_channels", "num_groups"),
}


def structure(model: nn.Module) -> dict[str, dict]:
    """Per-layer shape attributes, enough to rebuild a pruned network from its unpruned spec."""
    out = {}
    for name, m in model.named_modules():  # subclasses too (torchvision's LayerNorm2d in ConvNeXt)
        attrs = next((_SHAPE_ATTRS[t] for t in type(m).__mro__ if t in _SHAPE_ATTRS), None)
        if attrs:
            out[name] = {a: (list(v) if isinstance(v := getattr(m, a), tuple) else v) for a in attrs}
    return out


def apply_structure(model: nn.Module, shapes: dict[str, dict], state: dict[str, torch.Tensor]) -> None:
    """Resize the layers of a freshly built `model` to a saved structure, ready for load_state_dict."""
    modules = dict(model.named_modules())
    for name, attrs in shapes.items():
        m = modules.get(name)
        if m is None:
            raise CompressError(f"saved model has a layer {name!r} that the spec does not build")
        for a, v in attrs.items():
            setattr(m, a, tuple(v) if isinstance(v, list) else v)
    for key, tensor in state.items():
        owner, _, leaf = key.rpartition(".")
        m = modules.get(owner)
        if m is None:
            continue
        current = getattr(m, leaf, None)
        if isinstance(current, torch.Tensor) and current.shape != tensor.shape:
            fresh = torch.empty_like(tensor)
            if isinstance(current, nn.Parameter):
                setattr(m, leaf, nn.Parameter(fresh, requires_grad=current.requires_grad))
            else:
                m.register_buffer(leaf, fresh)
