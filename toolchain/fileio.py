"""Atomic file writes, hashing and the artifact handle, with no heavy imports (the check gate and
bench start without torch)."""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import json
import logging
import os
import shutil
import tempfile
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .errors import CompressError

logger = logging.getLogger(__name__)

_FAULTS = {  # what the machine refused, and what the user can do about it
    errno.ENOSPC: "no space left on the device; free some space there or write elsewhere",
    errno.EDQUOT: "the disk quota is exceeded; free some space there or write elsewhere",
    errno.EROFS: "the file system is read-only; write elsewhere",
    errno.EACCES: "permission denied; write elsewhere or make the folder writable",
    errno.EPERM: "operation not permitted (an immutable file or folder?); write elsewhere",
}
# torch.save writes through its own C++ stream and reports a full disk as a RuntimeError of these
_TORCH_WRITE_FAILED = ("inline_container", "PytorchStreamWriter", "iostream error", "file write failed")


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_fault(e: BaseException) -> str | None:
    """What to tell the user when a write failed for a fault of the machine (a full disk, a read-only
    or unwritable place), or None: any other error is a bug and must rise as it is."""
    if isinstance(e, OSError):
        return _FAULTS.get(e.errno)
    if isinstance(e, RuntimeError) and any(m in str(e) for m in _TORCH_WRITE_FAILED):
        said = " ".join(str(e).split("] ")[-1].split()).strip(". ")[:60]
        return f"no space left on the device, or a disk error (torch: {said}); free some space there or write elsewhere"
    return None


@contextmanager
def writing(dst: Path, advice: str = "") -> Iterator[None]:
    """The one place a fault of the machine met while writing `dst` becomes one CompressError line
    that names the path and what to do (the CLI prints it, exit 2); every other error rises as is."""
    try:
        yield
    except (OSError, RuntimeError) as e:
        why = write_fault(e)
        if why is None:
            raise
        raise CompressError(f"cannot write {dst}: {why}{advice}") from e


@contextmanager
def atomic_path(dst: Path) -> Iterator[Path]:
    """Yield a temp path next to `dst`; move it into place only if the block succeeds, so an
    interrupted or failed write never leaves half a file. Faults of the machine: see `writing`."""
    with writing(dst), atomic_raw(dst) as tmp:
        yield tmp


@contextmanager
def atomic_raw(dst: Path) -> Iterator[Path]:
    """`atomic_path` without the translation of faults, for a cache that goes on without a write."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs are ordinary files
        yield Path(tmp)
        os.replace(tmp, dst)
    finally:
        remove(Path(tmp))


def remove(path: Path) -> None:
    """Delete a file if it is there; a place that refuses (read-only) keeps it, with a warning, since
    a failed clean-up must not hide the error that caused it."""
    try:
        Path(path).unlink(missing_ok=True)
    except OSError as e:
        logger.warning("could not remove %s: %s", path, e.strerror or e)


def copy_file(src: Path, dst: Path) -> None:
    """Copy a file atomically (a killed or failed copy leaves no half file at `dst`)."""
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


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
        return f"cannot write in {folder}: {_FAULTS.get(e.errno) or e.strerror or e}"
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
    write_text(dst, dumps(obj))


def dumps(obj) -> str:
    """JSON as every file of the tool writes it (paths and numpy scalars included)."""
    return json.dumps(obj, indent=2, default=_json_default) + "\n"


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
