import json

import pytest
import torch
from torch import nn

from toolchain import artifact, models
from toolchain.errors import CompressError


def _meta(spec="zoo:lenet5", shape=(1, 32, 32)):
    return artifact.new_meta("train", {"epochs": 1}, parent=None, spec=spec, data={"spec": "digits"},
                             input_shape=shape, num_classes=10, metrics={"accuracy": 50.0})


def test_save_writes_model_and_sidecar_and_loads_back(tmp_path):
    net = models.build("zoo:lenet5", (1, 32, 32), 10).model
    art = artifact.save(net, tmp_path / "m.pt", _meta())
    side = json.loads((tmp_path / "m.pt.json").read_text())
    assert side["stage"] == "train" and side["model"]["sha256"] == artifact.sha256_of(tmp_path / "m.pt")
    assert side["metrics"]["bytes"] == (tmp_path / "m.pt").stat().st_size
    assert side["lineage"][0]["stage"] == "train" and side["lineage"][0]["tool_version"]
    loaded, art2 = artifact.load_model(art.path)
    x = torch.randn(1, 1, 32, 32)
    assert torch.allclose(loaded(x), net.eval()(x))
    assert art2.data_spec == "digits"


def test_no_overwrite_without_force(tmp_path):
    net = models.build("zoo:lenet5", (1, 32, 32), 10).model
    artifact.save(net, tmp_path / "m.pt", _meta())
    with pytest.raises(CompressError, match="--force"):
        artifact.save(net, tmp_path / "m.pt", _meta())
    artifact.save(net, tmp_path / "m.pt", _meta(), force=True)


def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    net = models.build("zoo:lenet5", (1, 32, 32), 10).model

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(artifact, "write_json", boom)
    with pytest.raises(OSError):
        artifact.save(net, tmp_path / "m.pt", _meta())
    assert list(tmp_path.iterdir()) == []


def test_pickled_module_needs_trust(tmp_path):
    net = nn.Sequential(nn.Linear(4, 2))
    torch.save(net, tmp_path / "full.pt")
    with pytest.raises(CompressError, match="--trust-model"):
        artifact.load_model(tmp_path / "full.pt")
    loaded, _ = artifact.load_model(tmp_path / "full.pt", trust=True)
    assert isinstance(loaded, nn.Sequential)


def test_corrupt_and_bare_files_are_clear_errors(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"not a model")
    with pytest.raises(CompressError, match="not a readable"):
        artifact.load_model(tmp_path / "bad.pt")
    torch.save({"w": torch.zeros(2)}, tmp_path / "sd.pt")
    with pytest.raises(CompressError, match="bare state_dict"):
        artifact.load_model(tmp_path / "sd.pt")
    with pytest.raises(CompressError, match="no such file"):
        artifact.load_model(tmp_path / "missing.pt")


def test_count_matches_torch_and_does_not_mutate():
    net = models.build("zoo:lenet5", (1, 32, 32), 10).model
    before = {k: v.clone() for k, v in net.state_dict().items()}
    c = artifact.count(net, (1, 32, 32))
    assert c["params"] == sum(p.numel() for p in net.parameters())
    assert c["param_bytes"] == 4 * c["params"] and c["macs"] > 0
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_extra_tensors_travel_with_the_model(tmp_path):
    net = models.build("zoo:lenet5", (1, 32, 32), 10).model
    calib = torch.randn(5, 1, 32, 32)
    artifact.save(net, tmp_path / "q.pt", _meta(), extra={"calibration": calib})
    assert torch.equal(artifact.load_extra(tmp_path / "q.pt", "calibration"), calib)
