"""Atomic file writes, hashing and the artifact handle, with no heavy imports (the check gate and
bench start without torch)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import tempfile
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .errors import CompressError


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextmanager
def atomic_path(dst: Path) -> Iterator[Path]:
    """Yield a temp path next to `dst`; move it into place only if the block succeeds, so an
    interrupted write never leaves half a file."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs are ordinary files
    try:
        yield Path(tmp)
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def writable(dst: Path) -> str | None:
    """Why `dst` could not be written, or None: tried in its nearest existing folder (a file created
    and removed there, since permission bits say nothing to root or on a read-only mount), so a
    stage refuses before its work rather than failing at the end."""
    dst = Path(dst).absolute()
    if dst.is_dir():
        return f"{dst} is a folder"
    folder = dst.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        return f"{folder} is a file, not a folder"
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        return f"cannot write in {folder}: {e.strerror or e}"
    return None


def _read(path: Path, what: str) -> str:
    try:
        return Path(path).read_text()
    except FileNotFoundError as e:
        raise CompressError(f"{path}: no such {what} file") from e
    except (OSError, UnicodeDecodeError) as e:
        raise CompressError(f"{path}: cannot read the {what} ({e})") from e


def read_json(path: Path, what: str = "JSON"):
    """A JSON file's content, or one CompressError line naming the file and what was wrong."""
    try:
        return json.loads(_read(path, what))
    except json.JSONDecodeError as e:
        raise CompressError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}); is it complete?") from e


def read_toml(path: Path, what: str = "TOML") -> dict:
    """A TOML file's content, or one CompressError line naming the file and what was wrong."""
    try:
        return tomllib.loads(_read(path, what))
    except tomllib.TOMLDecodeError as e:
        raise CompressError(f"{path}: not valid TOML ({e})") from e


def check_outputs(force: bool, *paths: Path) -> None:
    """Refuse, before any work, to overwrite an existing output unless forced, and to aim at a
    place that cannot be written (one line for the user, nothing written)."""
    for p in paths:
        if Path(p).exists() and not force:
            raise CompressError(f"{p} exists; pass --force to overwrite it or choose another path")
        problem = writable(p)
        if problem:
            raise CompressError(f"cannot write {p}: {problem}")


def write_text(dst: Path, text: str) -> None:
    with atomic_path(dst) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(obj: dict, dst: Path) -> None:
    write_text(dst, json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(o):
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, (set, tuple)):
        return list(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def save_figure(fig, dst: Path, dpi: int = 110) -> Path:
    """A matplotlib figure as PNG, atomically."""
    with atomic_path(dst) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    return Path(dst)


def sidecar_of(path: Path) -> Path:
    """`q.pt` -> `q.pt.json`: the whole file name, so q.pt and q.onnx side by side keep their own."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class Artifact:
    """What a stage made: a model file and its sidecar metadata (a handle: the model loads on
    demand), or a JSON result (an analysis, a latency table, a bench report) and its content."""

    path: Path
    meta: dict = field(default_factory=dict)

    @property
    def stage(self) -> str:
        return self.meta.get("stage", "unknown")

    @property
    def spec(self) -> str | None:
        return self.meta.get("model", {}).get("spec")

    @property
    def data_spec(self) -> str | None:
        return self.meta.get("data", {}).get("spec")

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        shape = self.meta.get("input_shape")
        return tuple(shape) if shape else None

    @property
    def metrics(self) -> dict:
        return self.meta.get("metrics", {})

    @classmethod
    def open(cls, path: str | Path) -> Artifact:
        """Read a model path's sidecar (an empty one when the file came from elsewhere)."""
        path = Path(path)
        if not path.exists():
            raise CompressError(f"{path}: no such file")
        side = sidecar_of(path)
        meta: dict = {}
        if side.exists():
            meta = read_json(side, "sidecar")
        return cls(path, meta)
