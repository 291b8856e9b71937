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
    train.run("zoo:lenet5", "digits", path, train.TrainOptions(epochs=15, lr=0.05))
    return path


@pytest.fixture(scope="session")
def trained_a2e(tmp_path_factory):
    from toolchain import train

    path = tmp_path_factory.mktemp("models") / "a2e.pt"
    train.run("zoo:a2e?widths=64,16,64", "digits", path, train.TrainOptions(epochs=15, lr=0.05))
    return path
