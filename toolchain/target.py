"""Device targets: a profile (`targets/rpi4.toml`, or any .toml file) says what a device runs and how
to reach it: execution providers, threads, input shape, the int8 recipe it prefers, the channel
multiple its kernels like, SSH defaults and, where there is no device, how to emulate it.

Torch-free and stage-free: every stage that takes `--target` reads it through `load_target` here.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from enum import Enum
from importlib import resources
from pathlib import Path

from .errors import CompressError
from .options import from_table, unknown_keys
from .remote import SSHDefaults

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


def arch(machine: str) -> str:
    """The canonical name of a CPU architecture (`arm64` and `aarch64` are one)."""
    return ARCH_ALIASES.get(machine.lower(), machine.lower())
