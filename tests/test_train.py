import json

import pytest

from toolchain import train
from toolchain.errors import CompressError


def test_training_learns_real_digits(trained_lenet):
    side = json.loads(trained_lenet.with_name(trained_lenet.name + ".json").read_text())
    assert side["stage"] == "train"
    assert side["data"]["spec"] == "digits" and not side["data"]["synthetic"]
    assert side["metrics"]["accuracy"] > 80  # chance is 10%
    assert side["metrics"]["eval_samples"] == side["data"]["test_samples"]
    assert side["metrics"]["params"] == 61706 and side["metrics"]["macs"] > 0


def test_options_are_validated():
    for bad in (train.TrainOptions(epochs=0), train.TrainOptions(lr=-1), train.TrainOptions(batch_size=0)):
        with pytest.raises(CompressError):
            bad.validate()


def test_model_that_does_not_fit_the_data_is_a_clear_error(tmp_path):
    f = tmp_path / "net.py"
    f.write_text("from torch import nn\n"
                 "def make():\n    return nn.Sequential(nn.Flatten(), nn.Linear(999, 10))\n")
    with pytest.raises(CompressError, match="does not run on inputs"):
        train.prepare(f"{f}:make", "digits")


def test_prepare_reads_the_data_spec_from_the_sidecar(trained_lenet):
    prep = train.prepare(str(trained_lenet), None, test_limit=50)
    assert prep.dataset.name == "digits" and prep.input_shape == (1, 32, 32)
    assert train.evaluate(prep.model, prep.dataset.test) > 60
