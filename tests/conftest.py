"""Shared fixtures: tiny real models on real (digits) data, written to tmp paths."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("COMPRESS_PROGRESS", "0")
torch.set_num_threads(2)


@pytest.fixture(scope="session")
def trained_lenet(tmp_path_factory):
    """LeNet-5 trained briefly on the real 8x8 digits (upsampled to 32x32): a model file + sidecar."""
    from toolchain import train

    path = tmp_path_factory.mktemp("models") / "lenet.pt"
    train.run("zoo:lenet5", path, train.TrainOptions(epochs=15, lr=0.05, data="digits"))
    return path


@pytest.fixture(scope="session")
def trained_a2e(tmp_path_factory):
    from toolchain import train

    path = tmp_path_factory.mktemp("models") / "a2e.pt"
    train.run("zoo:a2e?widths=64,16,64", path, train.TrainOptions(epochs=15, lr=0.05, data="digits"))
    return path


DIGITS_RUN = """
[model]
spec = "zoo:lenet5"
[data]
spec = "digits"
[train]
epochs = 10
[analyze]
eval_samples = 150
[prune]
target_params = 0.4
max_drop = 50.0
finetune_epochs = 0.1
final_epochs = 0.5
val_samples = 100
[quantize]
allow_slower = true   # exercise the int8 path even where int8 is slower on the test machine
[bench]
runs = 20
warmup = 2
"""


@pytest.fixture(scope="session")
def real_run(tmp_path_factory):
    """One real `compress run` on digits (~15 s), shared by the pipeline, check and report tests.
    Its own cache folder (basetemp/real-run-cache) shows whether the trained model was cached."""
    from toolchain import pipeline

    out = tmp_path_factory.getbasetemp() / "real-digits-run"
    if not (out / "summary.json").exists():
        cfg = tmp_path_factory.getbasetemp() / "real-digits.toml"
        cfg.write_text(DIGITS_RUN)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr("toolchain.data.CACHE_DIR", tmp_path_factory.getbasetemp() / "real-run-cache")
            pipeline.run(pipeline.load_config(cfg), out, force=True)
    return out


@pytest.fixture
def masked_always(monkeypatch):
    """Every cut of an analysis measured masked. Whether a cut is masked or made on a copy follows how
    long a copy takes against an evaluation, timed in each run, and the two paths differ in the last
    digits of the confidence and the temperature: two runs compared digit for digit take one path."""
    from toolchain import analyze

    monkeypatch.setattr(analyze, "_copy_seconds", lambda model, shape: float("inf"))


# The optional system packages (.ci/run installs them all; a test that needs a missing one skips, saying which).
SYSTEM_PACKAGES = "openssh-server openssh-client chromium dataset-fashion-mnist qemu-user-static debootstrap"


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter):
    """After the skip reasons (-rs), one line on how to run the system-package tests skipped here too."""
    yield

    def reason(report) -> str:
        longrepr = report.longrepr
        return str(longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else longrepr)

    wanting = [r for r in terminalreporter.stats.get("skipped", []) if "apt-get install" in reason(r)]
    if wanting:
        terminalreporter.write_sep("-", "full coverage")
        terminalreporter.write_line(
            f"{len(wanting)} test(s) skipped for optional system packages this machine lacks (the reasons above). "
            f"For full coverage, as CI has it (.ci/run): sudo apt-get update && sudo apt-get install -y "
            f"--no-install-recommends {SYSTEM_PACKAGES}; then make test")
