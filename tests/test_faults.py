"""Faults of the machine, not of the input (issue 39): a full disk at every stage's output, a cache
that cannot be written, cache entries of binary garbage or with a sha256 that does not match, and a
stage killed at random points.

The faults come from a fake file system (`faults`): under a chosen folder, creating a file or a
folder fails as a read-only or forbidden place fails (EROFS, EACCES), or a write fails as on a full
disk (ENOSPC; torch.save with the RuntimeError its C++ writer raises there). No root needed; where
the tests run as root and tmpfs can be mounted, a real full tmpfs is tried as well.
"""

from __future__ import annotations

import builtins
import errno
import fnmatch
import io
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from toolchain import analyze, cache, data, fileio, pipeline, profile, train
from toolchain.cli import main
from toolchain.data import sources

SPACE = (errno.ENOSPC, errno.EDQUOT)  # the file is made, its bytes are refused


class _FullFile:
    """A file on a full disk: half of the first write lands, then ENOSPC."""

    def __init__(self, f, path, code):
        self._f, self._path, self._code = f, path, code

    def write(self, data):
        self._f.write(data[: len(data) // 2])
        raise OSError(self._code, os.strerror(self._code), str(self._path))

    writelines = write

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


@pytest.fixture
def faults(monkeypatch):
    """`faults(folder, code, match="*")`: from now on, writes under `folder` whose file name matches
    `match` fail with errno `code`, as the kernel would report them."""
    rules: list[tuple[Path, int, str]] = []
    real_open, real_os_open, real_mkdir, real_save = builtins.open, os.open, os.mkdir, torch.save

    def hit(path) -> int | None:
        if isinstance(path, int):  # os.fdopen(os.open(...)), as onnx writes external data
            fd_path = Path(f"/proc/self/fd/{path}")
            path = os.readlink(fd_path) if fd_path.exists() else None
            if path is None:
                return None
        p = Path(os.path.abspath(os.fspath(path)))
        for folder, code, match in rules:
            if (p == folder or folder in p.parents) and fnmatch.fnmatch(p.name, match):
                return code
        return None

    def refuse(code, path):
        raise OSError(code, os.strerror(code), str(path))

    def fake_open(file, mode="r", *args, **kwargs):
        code = hit(file) if any(c in mode for c in "wax+") else None
        if code is None:
            return real_open(file, mode, *args, **kwargs)
        if code not in SPACE:
            refuse(code, file)
        return _FullFile(real_open(file, mode, *args, **kwargs), file, code)

    def fake_os_open(path, flags, mode=0o777, *, dir_fd=None):
        code = hit(path) if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) else None
        if code is not None and code not in SPACE:
            refuse(code, path)
        return real_os_open(path, flags, mode, dir_fd=dir_fd)

    def fake_mkdir(path, mode=0o777, *, dir_fd=None):
        code = hit(path)
        if code is not None and code not in SPACE:
            refuse(code, path)
        return real_mkdir(path, mode, dir_fd=dir_fd)

    def fake_save(obj, f, *args, **kwargs):
        if isinstance(f, (str, os.PathLike)) and hit(f) in SPACE:
            with real_open(f, "wb") as h:
                h.write(b"PK\x03\x04" + bytes(60))
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")
        if isinstance(f, (str, os.PathLike)) and hit(f) is not None:
            raise RuntimeError(f"File {f} cannot be opened.")
        return real_save(obj, f, *args, **kwargs)

    for owner, name, fake in ((builtins, "open", fake_open), (io, "open", fake_open), (os, "open", fake_os_open),
                              (os, "mkdir", fake_mkdir), (torch, "save", fake_save)):
        monkeypatch.setattr(owner, name, fake)

    def add(folder: Path, code: int, match: str = "*") -> Path:
        rules.append((Path(os.path.abspath(folder)), code, match))
        return folder

    return add


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """A fresh compress cache for the test, and a fresh memory of which caches were warned about."""
    monkeypatch.setattr(data, "CACHE_DIR", tmp_path / "cache")
    monkeypatch.setattr(cache, "_warned", set())
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def onnx_lenet(trained_lenet, tmp_path_factory):
    from toolchain import export

    dst = tmp_path_factory.mktemp("faults") / "lenet.onnx"
    export.run(str(trained_lenet), dst, export.ExportOptions(eval_samples=50))
    return dst


ANALYSIS = analyze.AnalyzeOptions(eval_samples=60, ratios=(0.25,), plots=False)


@pytest.fixture(scope="module")
def reference_analysis(trained_lenet, tmp_path_factory):
    """An analysis never faulted nor interrupted (every cut masked, its own cache): its result and its
    cache journal."""
    d = tmp_path_factory.mktemp("reference-analysis")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(analyze, "_copy_seconds", lambda model, shape: float("inf"))
        mp.setattr(data, "CACHE_DIR", d / "cache")
        meta = analyze.run(str(trained_lenet), d / "a.json", ANALYSIS).meta
    [journal] = (d / "cache" / "analysis").glob("*.jsonl")
    return meta, journal


def _one_line(result, path) -> str:
    """The fault's contract: exit 2, one line on stderr naming the path, no traceback."""
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: cannot write"), result.stderr
    assert str(path) in lines[0] and "Traceback" not in result.output, lines[0]
    return lines[0]


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# --- a full disk at each stage's output ----------------------------------------------------------

STAGES = {  # {L}: a trained model, {O}: its ONNX, {F}: the full folder
    "train": ["train", "zoo:lenet5", "--data", "digits", "--epochs", "0.02", "--train-limit", "64",
              "--eval-samples", "20", "-o", "{F}/m.pt"],
    "analyze": ["analyze", "{L}", "--eval-samples", "20", "--no-plots", "-o", "{F}/a.json"],
    "prune": ["prune", "{L}", "--plan", "uniform", "--order", "sequential", "--target-params", "0.8",
              "--finetune-epochs", "0", "--final-epochs", "0", "--val-samples", "50", "-o", "{F}/p.pt"],
    "quantize": ["quantize", "{L}", "--samples", "16", "--eval-samples", "50", "--allow-slower", "-o", "{F}/q.pt"],
    "export": ["export", "{L}", "--eval-samples", "50", "-o", "{F}/m.onnx"],
    "profile": ["profile", "{L}", "--widths", "0.5", "--runs", "5", "-o", "{F}/lat.json"],
    "bench --json": ["bench", "{O}", "--runs", "3", "--warmup", "1", "--no-memory", "--json", "{F}/b.json"],
    "calibrate": ["calibrate", "--data", "digits", "--samples", "16", "--input-shape", "1,1,32,32", "-o", "{F}/c.npz"],
    "run": ["run", "{C}", "-o", "{F}/run"],
}


@pytest.mark.parametrize("stage", list(STAGES))
def test_a_full_disk_at_a_stage_output_is_one_line_and_leaves_nothing(stage, trained_lenet, onnx_lenet, faults,
                                                                     cache_dir, tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    cfg = tmp_path / "run.toml"
    cfg.write_text('[model]\nspec = "zoo:lenet5"\n[data]\nspec = "digits"\n')
    args = [a.format(L=trained_lenet, O=onnx_lenet, F=full, C=cfg) for a in STAGES[stage]]
    faults(full, errno.ENOSPC)
    line = _one_line(CliRunner().invoke(main, args), full)
    assert "no space left" in line and "write elsewhere" in line
    assert _files(full) == [], "a partial or temporary file was left"


def test_a_full_disk_under_onnx_external_data_leaves_neither_file(trained_lenet, faults, cache_dir, tmp_path,
                                                                  monkeypatch):
    monkeypatch.setattr("toolchain.onnxio.PROTOBUF_LIMIT", 0)  # weights beside the model, as past 2 GiB
    full = tmp_path / "full"
    faults(full, errno.ENOSPC, "*.data")
    _one_line(CliRunner().invoke(main, ["export", str(trained_lenet), "-o", str(full / "m.onnx")]), full / "m.onnx")
    assert _files(full) == []


@pytest.mark.parametrize("what", ["plot", "json"])
def test_a_full_disk_at_bench_plot_or_json(what, onnx_lenet, faults, tmp_path):
    out = tmp_path / ("b.png" if what == "plot" else "b.json")
    faults(tmp_path, errno.ENOSPC, "*" + out.name + "*")
    flag = "--plot" if what == "plot" else "--json"
    _one_line(CliRunner().invoke(main, ["bench", str(onnx_lenet), "--runs", "3", "--warmup", "1", "--no-memory",
                                        flag, str(out)]), out)
    assert not out.exists() and not list(tmp_path.glob(f".{out.name}*"))


def test_a_full_disk_at_the_analysis_plots(trained_lenet, faults, cache_dir, tmp_path):
    faults(tmp_path, errno.ENOSPC, "*.png*")
    line = _one_line(CliRunner().invoke(main, ["analyze", str(trained_lenet), "--eval-samples", "20", "-o",
                                               str(tmp_path / "a.json")]), tmp_path)
    assert ".png" in line and not list(tmp_path.glob("*.png*")) and not list(tmp_path.glob(".*tmp"))


def test_a_full_disk_at_report_and_check_outputs(real_run, faults, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(real_run, run)
    faults(run, errno.ENOSPC, "*report*")
    _one_line(CliRunner().invoke(main, ["report", str(run)]), run / "report.")
    assert not list(run.glob("*report*"))
    full = tmp_path / "full"
    faults(full, errno.EDQUOT)
    line = _one_line(CliRunner().invoke(main, ["check", str(run), "-b", str(full / "base.toml"),
                                               "--update-baseline"]), full / "base.toml")
    assert "quota" in line and _files(full) == []


@pytest.mark.parametrize("code, words", [(errno.EROFS, "read-only"), (errno.EACCES, "permission denied"),
                                         (errno.EPERM, "not permitted")])
def test_an_unwritable_output_place_is_one_line(code, words, trained_lenet, faults, cache_dir, tmp_path, monkeypatch):
    """The default output (a fresh runs/ folder) on a place that refuses: refused before any work."""
    monkeypatch.chdir(tmp_path)
    faults(tmp_path / "runs", code)
    line = _one_line(CliRunner().invoke(main, ["export", str(trained_lenet)]), "runs")
    assert words in line and not (tmp_path / "runs").exists()


def test_a_real_full_tmpfs(trained_lenet, onnx_lenet, tmp_path):
    """The same on a real full file system, where this machine lets us mount one."""
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs root and tmpfs")
    try:
        with open(mnt / "filler", "wb", buffering=0) as f, pytest.raises(OSError):
            while True:  # to the last byte
                f.write(b"\0" * 1024)
        for args, out in ((["export", str(trained_lenet), "--eval-samples", "20", "-o"], mnt / "m.onnx"),
                          (["train", str(trained_lenet), "--epochs", "0.01", "--eval-samples", "20", "-o"],
                           mnt / "m.pt"),
                          (["bench", str(onnx_lenet), "--runs", "2", "--warmup", "1", "--no-memory", "--json"],
                           mnt / "b.json")):
            line = _one_line(CliRunner().invoke(main, [*args, str(out)]), out)
            assert "no space left" in line
            assert _files(mnt) == ["filler"]
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_torch_save_on_a_full_disk_maps_like_an_oserror():
    assert "no space left" in fileio.write_fault(OSError(errno.ENOSPC, "No space left on device"))
    for text in ("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534",
                 "basic_ios::clear: iostream error"):
        assert "no space left" in fileio.write_fault(RuntimeError(text))
    assert fileio.write_fault(RuntimeError("mat1 and mat2 shapes cannot be multiplied")) is None  # a bug rises
    assert fileio.write_fault(OSError(errno.ENOENT, "No such file")) is None


# --- a cache that cannot be written: warned once, the stage runs without it -------------------------

def _warnings(caplog, words: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and words in r.getMessage()]


@pytest.mark.parametrize("code", [errno.EROFS, errno.ENOSPC])
def test_analyze_runs_without_a_cache_it_cannot_write(code, trained_lenet, reference_analysis, faults, cache_dir,
                                                      tmp_path, caplog, masked_always):
    faults(cache_dir, code)
    got = analyze.run(str(trained_lenet), tmp_path / "got.json", ANALYSIS).meta
    assert _figures(got) == _figures(reference_analysis[0]) and got["reused_results"] == 0
    assert len(_warnings(caplog, "cannot be written")) == 1  # once, not once per (layer, ratio)
    assert _files(cache_dir) == [] if code == errno.EROFS else True  # full: half a line, dropped by the next run


def test_training_checkpoints_and_teacher_logits_without_a_writable_cache(cache_dir, faults, caplog, monkeypatch):
    monkeypatch.setattr(train, "CHECKPOINT_EVERY_S", 0.0)  # a checkpoint after every step
    faults(cache_dir, errno.EROFS)
    torch.manual_seed(0)
    net, x = torch.nn.Linear(8, 3), torch.randn(64, 8)
    ds = torch.utils.data.TensorDataset(x, torch.randint(0, 3, (64,)))
    stats = train.fit(net, ds, train.TrainOptions(epochs=2, batch_size=16), checkpoint=cache_dir / "ck" / "c.pt")
    assert stats["steps"] == 8
    assert torch.equal(train.teacher_logits(net, x, cache_key="k"), train.logits(net, x))
    assert len(_warnings(caplog, "cannot be written")) == 2  # the checkpoint folder and the teacher folder, once each
    assert _files(cache_dir) == []


def test_the_pipeline_trains_without_a_model_cache_it_cannot_write(cache_dir, faults, tmp_path, caplog):
    cfg = {"model": {"spec": "zoo:lenet5"}, "data": {"spec": "digits"}}
    opts = train.TrainOptions(data="digits", epochs=0.02, train_limit=64, eval_samples=20)
    faults(cache_dir, errno.EACCES)
    (tmp_path / "run").mkdir()
    path, reused = pipeline._trained(cfg, tmp_path / "run", opts)
    assert path == tmp_path / "run" / "trained.pt" and path.is_file() and not reused
    assert _warnings(caplog, "cannot be written") and _files(cache_dir) == []


def test_data_and_latency_caches_that_cannot_be_written(cache_dir, faults, monkeypatch, trained_lenet, tmp_path):
    faults(cache_dir, errno.EROFS)
    raw = sources._from_cache(cache_dir, "toy.npz", _toy, "image", 2, ("a", "b"))
    assert raw.x_train.shape == (4, 1, 2, 2) and "not cached" in raw.source
    calls = _fake_measure(monkeypatch)
    profile.run(str(trained_lenet), tmp_path / "lat.json", profile.ProfileOptions(widths=(0.5,), runs=5))
    assert calls == [1] and (tmp_path / "lat.json").is_file() and _files(cache_dir) == []


# --- damaged entries: binary garbage, a hash that does not match ------------------------------------

GARBAGE = b"\xff\xfe\x00\x81garbage\x00\xc3" * 8


def test_garbage_lines_in_the_analysis_cache_are_dropped_and_measured_again(
        trained_lenet, reference_analysis, cache_dir, tmp_path, caplog, masked_always):
    want, reference_journal = reference_analysis
    journal = cache_dir / "analysis" / reference_journal.name
    journal.parent.mkdir(parents=True)
    lines = reference_journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(GARBAGE + b"\n" + b"".join(lines[1:-1]) + lines[-1][:20])  # a disk error, a killed write
    got = analyze.run(str(trained_lenet), tmp_path / "got.json", ANALYSIS).meta
    assert _figures(got) == _figures(want) and got["reused_results"] == len(lines) - 2
    assert _warnings(caplog, "dropping 2 unreadable line(s)")
    assert len(journal.read_bytes().splitlines()) == len(lines)  # cleaned, then the two measured again appended
    assert all(json.loads(line) for line in journal.read_bytes().splitlines())


@pytest.mark.parametrize("damage", ["garbage", "another tensor"])
def test_damaged_teacher_logits_are_dropped_and_computed_again(damage, cache_dir, caplog):
    net, x = torch.nn.Linear(8, 3), torch.randn(32, 8)
    want = train.teacher_logits(net, x, cache_key="k")
    [entry] = (cache_dir / "teacher").glob("*.pt")
    if damage == "garbage":
        entry.write_bytes(GARBAGE)
    else:  # a valid file, but not the bytes recorded: a copy from elsewhere, a stale entry
        torch.save(torch.zeros_like(want), entry)
    assert torch.equal(train.teacher_logits(net, x, cache_key="k"), want)
    assert _warnings(caplog, "dropping the cache entry")
    assert torch.equal(torch.load(entry, weights_only=True), want)  # stored again


def test_a_garbage_checkpoint_is_ignored(cache_dir, caplog):
    path = cache_dir / "checkpoints" / "c.pt"
    path.parent.mkdir(parents=True)
    path.write_bytes(GARBAGE)
    assert train._load_checkpoint(path, 10) is None and not path.exists()
    assert _warnings(caplog, "dropping the cache entry")


@pytest.mark.parametrize("damage", ["garbage", "another model"])
def test_a_damaged_cached_model_is_trained_again(damage, cache_dir, tmp_path, trained_lenet, caplog):
    cfg = {"model": {"spec": "zoo:lenet5"}, "data": {"spec": "digits"}}
    opts = train.TrainOptions(data="digits", epochs=0.02, train_limit=64, eval_samples=20)
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
    _, reused = pipeline._trained(cfg, tmp_path / "a", opts)
    [cached] = (cache_dir / "models").glob("*.pt")
    assert not reused and pipeline._trained(cfg, tmp_path / "b", opts)[1]  # cached and reused
    if damage == "garbage":
        cached.write_bytes(GARBAGE)
    else:
        shutil.copyfile(trained_lenet, cached)
    path, reused = pipeline._trained(cfg, tmp_path / "c", opts)
    assert not reused and _warnings(caplog, "dropping the cache entry")
    assert fileio.sha256_of(path) == json.loads(fileio.sidecar_of(path).read_text())["model"]["sha256"]


@pytest.mark.parametrize("damage", ["garbage", "another table"])
def test_a_damaged_latency_table_is_measured_again(damage, cache_dir, monkeypatch, trained_lenet, tmp_path, caplog):
    calls = _fake_measure(monkeypatch)
    opts = profile.ProfileOptions(widths=(0.5,), runs=5)
    first = profile.run(str(trained_lenet), tmp_path / "a.json", opts).meta
    [entry] = (cache_dir / "latency").glob("*.json")
    if damage == "garbage":
        entry.write_bytes(GARBAGE)
    else:
        entry.write_text(json.dumps(json.loads(entry.read_text()) | {"base_ms": 99.0}))
    again = profile.run(str(trained_lenet), tmp_path / "b.json", opts).meta
    assert calls == [1, 2] and again["base_ms"] == first["base_ms"] and _warnings(caplog, "dropping the cache entry")


@pytest.mark.parametrize("damage", ["garbage", "another archive"])
def test_a_damaged_data_cache_is_built_again(damage, cache_dir, caplog):
    sources._from_cache(cache_dir, "toy.npz", _toy, "image", 2, ("a", "b"))
    entry = cache_dir / "data" / "toy.npz"
    if damage == "garbage":
        entry.write_bytes(GARBAGE)
    else:
        import numpy as np
        with open(entry, "wb") as f:
            np.savez(f, **_toy() | {"y": np.array([1, 1, 1, 1])})
    raw = sources._from_cache(cache_dir, "toy.npz", _toy, "image", 2, ("a", "b"))
    assert raw.y_train.tolist() == [0, 1, 0, 1] and _warnings(caplog, "dropping the cache entry")


def test_damaged_markers_are_not_trusted(cache_dir, tmp_path, caplog):
    from toolchain import emulate

    emulate.root_dir().mkdir(parents=True)
    (emulate.root_dir() / ".ready").write_bytes(GARBAGE)
    assert emulate.root_facts() == {} and emulate._ready(emulate.root_dir()) is None  # built again, not used
    (tmp_path / "progress.json").write_bytes(GARBAGE)
    assert pipeline._finished(tmp_path / "progress.json") == {}  # every stage of a resumed run again
    assert _warnings(caplog, "marker") and _warnings(caplog, "progress.json")


# --- killed at random points, then run again -------------------------------------------------------

KILLABLE_ANALYZE = ("import sys; from toolchain import analyze; analyze._copy_seconds = lambda m, s: float('inf'); "
                    "from toolchain.cli import main; sys.argv[0] = 'compress'; main()")


def test_an_analysis_killed_at_random_points_then_rerun_equals_an_uninterrupted_one(
        trained_lenet, reference_analysis, cache_dir, tmp_path, masked_always):
    """SIGKILL at random moments of the measuring (a journal line may be cut short), then a rerun:
    the same figures as a run never interrupted, from the cuts that were kept."""
    import random
    import signal
    import time

    env = os.environ | {"COMPRESS_CACHE": str(cache_dir), "COMPRESS_PROGRESS": "0"}
    args = [sys.executable, "-c", KILLABLE_ANALYZE, "analyze", str(trained_lenet), "--eval-samples", "60",
            "--ratios", "0.25", "--no-plots", "-o", str(tmp_path / "killed.json")]
    rng = random.Random(39)
    for _ in range(2):
        child = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while not (cache_dir / "analysis").exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)  # the measuring has begun
        time.sleep(rng.uniform(0, 0.3))
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert not (tmp_path / "killed.json").exists() or json.loads((tmp_path / "killed.json").read_text())
    got = analyze.run(str(trained_lenet), tmp_path / "got.json", ANALYSIS).meta
    want = reference_analysis[0]
    assert _figures(got) == _figures(want) and got["priority"] == want["priority"]


# --- helpers ---------------------------------------------------------------------------------------

def _figures(analysis: dict) -> list[dict]:
    """An analysis's measured figures (not how long each cut took)."""
    return [{k: v for k, v in layer.items() if k != "seconds"} for layer in analysis["layers"]]


def _toy():
    import numpy as np

    return {"x_train": np.zeros((4, 1, 2, 2), np.float32), "y_train": np.array([0, 1, 0, 1]),
            "x_test": np.zeros((2, 1, 2, 2), np.float32), "y_test": np.array([0, 1]), "source": np.array("toy")}


def _fake_measure(monkeypatch) -> list[int]:
    """profile's timing replaced by a fixed table (the caches are under test, not the clock)."""
    calls: list[int] = []

    def measure(model, shape, opts):
        from toolchain import surgery

        calls.append(len(calls) + 1)
        layers = [l for l in surgery.prunable_layers(model, shape, False) if l.skip is None]
        return {"base_ms": 1.0, "measured_on": "fake", "host": "fake",
                "layers": {l.name: {"channels": l.channels, "kind": l.kind,
                                    "ms": {str(l.channels): 1.0, str(l.channels // 2): 0.5 + 0.1 * i}}
                           for i, l in enumerate(layers)}}

    monkeypatch.setattr(profile, "_measure", measure)
    return calls
