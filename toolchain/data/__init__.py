"""Data sets for compress: one spec string in, train/test tensors shaped for the model out.

    ds = load("mnist", input_shape=(1, 32, 32), train_limit=2000)
    ds.train, ds.val    # TensorDatasets of (x float32, y int64), normalized
    ds.test             # the test split: read only to report a finished model (see `deciding`)

Specs: digits, mnist, mnist-5k, fashion-mnist, fraud, cifar10[:folder],
synthetic:CxHxW:K, synthetic:F:K, path/to/file.npz, path/to/image_folder/.
Where each comes from offline: docs/data.md (readers in `toolchain.data.sources`).

Rules kept here, in one place:
- Splits that a source lacks are a stratified 80/20 split with a fixed seed (SPLIT_SEED), never
  the caller's seed, so a test sample can never leak into training across runs.
- The validation split is carved out of the training data (class-stratified, VAL_FRACTION of it,
  at most VAL_MAX samples, seed VAL_SEED) before any limit applies, so it never overlaps the
  training samples of any run; `ds.val_info` (seed, size, indices hash) goes into every sidecar.
  Every decision (analysis, plans, accept / roll-back, adaptive BatchNorm, recipes) reads it.
- The test split is read only to report a finished model: inside `with deciding(stage):`
  reading `ds.test` raises, so a stage that decides on test data fails loudly (and its test fails).
- `seed` only picks the stratified train_limit / test_limit subsets.
- Normalization statistics never depend on the limits or the seed, so every load of one spec at
  one input shape normalizes identically: tabular data uses the whole train split; images use a
  fixed stratified sample of it after conversion (up to STATS_SAMPLES images, fewer when they
  are large), which keeps a limited load cheap when the conversion is a large resize.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from toolchain.data import sources
from toolchain.errors import CompressError

logger = logging.getLogger(__name__)

CACHE_DIR = Path(os.environ.get("COMPRESS_CACHE") or Path.home() / ".cache/compress").expanduser()
SPLIT_SEED = 0
TEST_FRACTION = 0.2
VAL_SEED = 0
VAL_FRACTION = 0.1  # of the training data, class-stratified ...
VAL_MAX = 5000  # ... and at most this many images (Fashion-MNIST: 55,000 train / 5,000 validation); tabular
# data keeps the whole 10% (fraud: 22,785 transactions, about 39 frauds, enough to rank layers by)
STATS_SAMPLES = 10_000  # at most this many train images for the normalization statistics ...
STATS_VALUES = 1 << 25  # ... and fewer when they are large (never under 256 images)
_LUMINANCE = (0.299, 0.587, 0.114)  # ITU-R BT.601, as torchvision's rgb_to_grayscale
_BATCH_VALUES = 1 << 24  # values per conversion batch (64 MB of float32)

__all__ = ["CACHE_DIR", "Dataset", "TestSplitInDecision", "deciding", "load", "native_shape", "num_classes",
           "stratified_indices"]

_DECIDING: list[str] = []  # the stages now deciding (nested)


class TestSplitInDecision(RuntimeError):
    """A deciding stage read the test split: a bug in compress, never a user mistake."""


@contextlib.contextmanager
def deciding(stage: str):
    """Inside this block, reading any data set's test split raises TestSplitInDecision."""
    _DECIDING.append(stage)
    try:
        yield
    finally:
        _DECIDING.pop()


@dataclass(frozen=True)
class Dataset:
    name: str  # canonical spec
    source: str  # where the data came from, in words
    synthetic: bool
    kind: str  # "image" or "tabular"
    num_classes: int
    input_shape: tuple[int, ...]  # one sample as delivered: (C, H, W) or (F,)
    train: TensorDataset  # (x float32, y int64), the validation samples left out
    held_out_test: TensorDataset = field(repr=False)  # read it through `.test`
    classes: tuple[str, ...] = ()
    val: TensorDataset | None = None  # carved from the training data; decisions read this one
    val_info: dict = field(default_factory=dict)  # seed, fraction, size, indices hash

    @property
    def test(self) -> TensorDataset:
        """The test split, to report a finished model. Raises inside `deciding(...)`."""
        if _DECIDING:
            raise TestSplitInDecision(f"{_DECIDING[-1]} read the test split of {self.name} while deciding; "
                                      f"decisions use ds.val")
        return self.held_out_test


def native_shape(spec: str) -> tuple[int, ...]:
    """Shape of one sample in the data set's own form, read without loading the data where cheap."""
    return sources.native_shape(sources.parse_spec(spec))


def num_classes(spec: str) -> int:
    return sources.num_classes(sources.parse_spec(spec))


def load(spec: str, input_shape: tuple[int, ...] | None = None, *, train_limit: int | None = None,
         test_limit: int | None = None, seed: int = 0) -> Dataset:
    """Load a data set, converted to `input_shape` when given, and normalized.

    image -> image: channels 1->3 repeat, 3->1 luminance; H, W zero-padded by 2 each side when the
    target is exactly 4 larger (MNIST 28 -> 32, as LeNet-5), else bilinear resize (antialiased
    when shrinking). image -> (C*H*W,): flattened. tabular: only its own (F,).
    """
    parsed = sources.parse_spec(spec)
    raw = sources.read(parsed, CACHE_DIR)
    x_tr, y_tr, x_te, y_te = raw.x_train, raw.y_train, raw.x_test, raw.y_test
    if x_te is None:
        x_tr, y_tr, x_te, y_te, _ = _hold_out(x_tr, y_tr, max(1, round(TEST_FRACTION * len(y_tr))), SPLIT_SEED)
    native = tuple(x_tr.shape[1:])
    target = _target_shape(parsed.name, raw.kind, native, input_shape)
    stats_x, stats_y = x_tr, y_tr  # normalization statistics: the whole training data, as before the carve
    x_tr, y_tr, x_va, y_va, val_info = _carve_validation(x_tr, y_tr, VAL_MAX if raw.kind == "image" else None)

    splits = ((x_tr, y_tr, _subset(y_tr, train_limit, seed)), (x_va, y_va, None),
              (x_te, y_te, _subset(y_te, test_limit, seed)))
    if raw.kind == "image":
        image = target if len(target) == 3 else native
        mean, std = _image_stats(stats_x, stats_y, image)
        xs = [_images(_take(x, rows), image, mean, std).reshape(-1, *target) for x, _, rows in splits]
    else:
        mean, std = _tabular_stats(stats_x)
        xs = [torch.from_numpy((_take(x, rows).astype(np.float32) - mean) / std) for x, _, rows in splits]
    ys = [torch.from_numpy(_take(y, rows).astype(np.int64)) for _, y, rows in splits]

    ds = Dataset(parsed.name, raw.source, raw.synthetic, raw.kind, raw.num_classes, target,
                 TensorDataset(xs[0], ys[0]), TensorDataset(xs[2], ys[2]), raw.classes,
                 val=TensorDataset(xs[1], ys[1]), val_info=val_info)
    logger.info("data %s: %s; train %d, validation %d, test %d, sample %s%s", ds.name, ds.source, len(ys[0]),
                len(ys[1]), len(ys[2]), target, "" if target == native else f" (converted from {native})")
    return ds


def _carve_validation(x: np.ndarray, y: np.ndarray, cap: int | None):
    """Split the training data into train and a class-stratified validation split (VAL_SEED)."""
    n_val = min(cap or len(y), max(1, round(VAL_FRACTION * len(y)))) if len(y) >= 10 else 1
    x_tr, y_tr, x_va, y_va, idx = _hold_out(x, y, n_val, VAL_SEED)
    info = {"seed": VAL_SEED, "fraction": VAL_FRACTION, "max": cap, "size": int(len(idx)),
            "indices_sha256": hashlib.sha256(idx.astype(np.int64).tobytes()).hexdigest()[:16],
            "carved_from": "train"}
    return x_tr, y_tr, x_va, y_va, info


def _hold_out(x: np.ndarray, y: np.ndarray, n: int, seed: int):
    """(x, y) less a class-stratified sample of n rows, that sample (in index order), its indices."""
    idx = np.sort(stratified_indices(torch.from_numpy(y), n, seed).numpy())
    mask = np.ones(len(y), dtype=bool)
    mask[idx] = False
    return x[mask], y[mask], x[idx], y[idx], idx


def stratified_indices(y: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """n indices into y, each class taking its proportional share (largest remainder).

    Every class present gets at least one index when n allows it, so rare classes (492 frauds in
    284,807) stay represented in small subsets. Deterministic for a seed; returned in a seeded
    shuffled order. n >= len(y) returns all indices in order; n == 0 none.
    """
    labels = np.asarray(y.detach().cpu() if isinstance(y, torch.Tensor) else y)
    if labels.ndim != 1:
        raise CompressError(f"stratified_indices: labels must be 1-D, got shape {labels.shape}")
    if n < 0:
        raise CompressError(f"a sample count cannot be negative, got {n}")
    if n == 0:
        return torch.zeros(0, dtype=torch.int64)
    if n >= len(labels):
        return torch.arange(len(labels))
    rng = np.random.default_rng(seed)
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    ideal = n * counts / len(labels)
    take = np.floor(ideal).astype(np.int64)
    if n >= len(classes):
        take = np.maximum(take, 1)
    while take.sum() > n:  # undo the minimum-one bumps from the most over-served classes
        over = np.where(take > 1, ideal - take, np.inf)
        take[np.argmin(over)] -= 1
    short = n - take.sum()
    if short:  # largest remainders first; floor(ideal) < count, so +1 always fits
        order = np.argsort(-(ideal - take), kind="stable")
        take[order[:short]] += 1
    picked = [rng.permutation(np.flatnonzero(inverse == c))[:t] for c, t in enumerate(take)]
    return torch.from_numpy(rng.permutation(np.concatenate(picked)))


# --- helpers -------------------------------------------------------------------------------------

def _subset(y: np.ndarray, limit: int | None, seed: int) -> np.ndarray | None:
    """Rows for a limit, or None for all rows."""
    if limit is None:
        return None
    if limit < 1:
        raise CompressError(f"a sample limit must be at least 1, got {limit}")
    if limit >= len(y):
        return None
    return stratified_indices(torch.from_numpy(y), limit, seed).numpy()


def _take(a: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
    return a if rows is None else a[rows]


def _target_shape(name: str, kind: str, native: tuple[int, ...],
                  wanted: tuple[int, ...] | None) -> tuple[int, ...]:
    if wanted is None:
        return native
    target = tuple(int(d) for d in wanted)
    if target == native:
        return target
    cannot = f"data {name}: samples of shape {native} cannot feed a model input of shape {target}"
    if min(target, default=0) < 1:
        raise CompressError(f"{cannot} (sizes must be positive)")
    if kind == "tabular":
        raise CompressError(f"{cannot}; tabular data only feeds a model whose input is {native}")
    if len(target) == 1:
        if target[0] != math.prod(native):
            raise CompressError(f"{cannot}; a flat input needs C*H*W = {math.prod(native)} values")
        return target
    if len(target) != 3:
        raise CompressError(f"{cannot}; expected (C,H,W) or a flat (C*H*W,)")
    if target[0] != native[0] and (native[0], target[0]) not in ((1, 3), (3, 1)):
        raise CompressError(f"{cannot}; channels convert only 1->3 and 3->1")
    return target


def _images(x: np.ndarray, target: tuple[int, int, int], mean: torch.Tensor,
            std: torch.Tensor) -> torch.Tensor:
    """Convert (N,C,H,W) uint8 or [0,1] floats to normalized float32 `target` images, in batches."""
    out = torch.empty((len(x), *target), dtype=torch.float32)
    for i, batch in _batches(x, target):
        out[i:i + len(batch)] = batch
    return out.sub_(mean.view(1, -1, 1, 1)).div_(std.view(1, -1, 1, 1))


def _batches(x: np.ndarray, target: tuple[int, int, int]):
    step = max(1, _BATCH_VALUES // max(math.prod(target), math.prod(x.shape[1:])))
    for i in range(0, len(x), step):
        yield i, _convert(x[i:i + step], target)


def _convert(xb: np.ndarray, target: tuple[int, int, int]) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(xb))
    t = t.float().div_(255) if t.dtype == torch.uint8 else t.float()
    c, h, w = t.shape[1:]
    tc, th, tw = target
    if c == 3 and tc == 1:
        t = (t * torch.tensor(_LUMINANCE).view(1, 3, 1, 1)).sum(1, keepdim=True)
    if (th, tw) == (h + 4, w + 4):
        t = F.pad(t, (2, 2, 2, 2))
    elif (th, tw) != (h, w):
        t = F.interpolate(t, size=(th, tw), mode="bilinear", align_corners=False,
                          antialias=th < h or tw < w)
    if c == 1 and tc == 3:
        t = t.expand(-1, 3, -1, -1)
    return t


def _image_stats(x: np.ndarray, y: np.ndarray,
                 target: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of converted train images (a fixed stratified sample)."""
    if x.shape[1] == 1 and target[0] == 3:  # 1 -> 3 repeats: three equal channels
        mean, std = _image_stats(x, y, (1, *target[1:]))
        return mean.expand(3).contiguous(), std.expand(3).contiguous()
    n = min(STATS_SAMPLES, max(256, STATS_VALUES // math.prod(target)))
    x = _take(x, _subset(y, n, SPLIT_SEED))
    total = torch.zeros(target[0], dtype=torch.float64)
    squares = torch.zeros(target[0], dtype=torch.float64)
    for _, batch in _batches(x, target):
        b = batch.double()
        total += b.sum(dim=(0, 2, 3))
        squares += b.square().sum(dim=(0, 2, 3))
    count = len(x) * target[1] * target[2]
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(0).sqrt()
    return mean.float(), torch.where(std > 1e-6, std, torch.ones_like(std)).float()


def _tabular_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x64 = x.astype(np.float64)
    mean, std = x64.mean(axis=0), x64.std(axis=0)
    return mean.astype(np.float32), np.where(std > 1e-8, std, 1.0).astype(np.float32)
