import pytest
import torch

from toolchain import models
from toolchain.errors import CompressError


@pytest.mark.parametrize("spec,shape,expected", [
    ("zoo:lenet5", (1, 28, 28), (1, 32, 32)),
    ("zoo:alexnet", (3, 32, 32), (3, 32, 32)),
    ("zoo:vgg16", (1, 28, 28), (1, 32, 32)),
    ("zoo:vgg16?size=64", (1, 28, 28), (1, 64, 64)),
    ("zoo:a2e", (30,), (30,)),
    ("zoo:a2e?widths=32,8,32&head=reconstruction", (1, 28, 28), (784,)),
    ("torchvision:resnet18?size=64", (1, 28, 28), (3, 64, 64)),
])
def test_every_zoo_model_builds_and_runs(spec, shape, expected):
    built = models.build(spec, shape, 10)
    assert built.input_shape == expected
    out = built.model.eval()(torch.zeros(2, *expected))
    if "reconstruction" in spec:
        assert out.shape == (2, 784)
    else:
        assert out.shape == (2, 10)


def test_a_larger_vgg16_input_keeps_the_32_px_head():
    """Averaged to 1x1 before the head: the same parameters, four times the convolutions' MACs."""
    small, large = (models.build(f"zoo:vgg16?size={n}", (1, 28, 28), 10).model for n in (32, 64))
    assert sum(p.numel() for p in small.parameters()) == sum(p.numel() for p in large.parameters())


def test_a2e_widths_are_configurable():
    m = models.build("zoo:a2e?widths=20,5,20", (30,), 2).model
    assert m.widths == (20, 5, 20)
    assert [b[0].out_features for b in m.hidden] == [20, 5, 20]


def test_lenet5_head_and_channels_are_configurable():
    """`zoo:lenet5?fc=1024,1024` (the demo's wide head) and `channels=`; the default is LeNet-5's own."""
    default = models.build("zoo:lenet5", (1, 28, 28), 10).model
    assert [m.out_features for m in default.classifier if isinstance(m, torch.nn.Linear)] == [120, 84, 10]
    wide = models.build("zoo:lenet5?fc=1024,1024&channels=8,16", (1, 28, 28), 10).model
    assert [m.out_features for m in wide.classifier if isinstance(m, torch.nn.Linear)] == [1024, 1024, 10]
    assert wide.features[3].out_channels == 16 and wide(torch.zeros(2, 1, 32, 32)).shape == (2, 10)
    for bad in ("zoo:lenet5?fc=0", "zoo:lenet5?fc=abc", "zoo:lenet5?channels=8"):
        with pytest.raises(CompressError, match="bad model parameter"):
            models.build(bad, (1, 28, 28), 10)


def test_unknown_specs_list_the_known_names():
    with pytest.raises(CompressError, match="zoo:lenet5"):
        models.build("zoo:nope", (1, 28, 28), 10)
    with pytest.raises(CompressError, match="known"):
        models.build("banana", (1, 28, 28), 10)
    with pytest.raises(CompressError, match="resnet18"):
        models.build("torchvision:resnet999", (3, 32, 32), 10)


def test_bad_zoo_option_is_a_clear_error():
    with pytest.raises(CompressError, match="bad model parameter"):
        models.build("zoo:lenet5?banana=3", (1, 28, 28), 10)


def test_user_file_factory(tmp_path):
    f = tmp_path / "net.py"
    f.write_text("from torch import nn\n"
                 "def make(num_classes):\n"
                 "    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(),\n"
                 "                         nn.Linear(4*6*6, num_classes))\n")
    built = models.build(f"{f}:make", (1, 8, 8), 3)
    assert built.model(torch.zeros(1, 1, 8, 8)).shape == (1, 3)
    with pytest.raises(CompressError, match="no callable"):
        models.build(f"{f}:missing", (1, 8, 8), 3)


def test_structure_round_trip_rebuilds_a_pruned_model():
    from toolchain import surgery

    built = models.build("zoo:lenet5", (1, 32, 32), 10)
    surgery.prune_layer(built.model, "features.0", 3, "l1", (1, 32, 32))
    shapes = models.structure(built.model)
    assert shapes["features.0"]["out_channels"] == 3
    fresh = models.build("zoo:lenet5", (1, 32, 32), 10).model
    models.apply_structure(fresh, shapes, built.model.state_dict())
    fresh.load_state_dict(built.model.state_dict())
    x = torch.randn(2, 1, 32, 32)
    assert torch.allclose(fresh.eval()(x), built.model.eval()(x))


def test_structure_round_trip_keeps_layer_norm_subclasses():
    """ConvNeXt's LayerNorm2d subclasses nn.LayerNorm: its pruned normalized_shape must be saved too."""
    from toolchain import surgery

    spec, shape = "torchvision:convnext_tiny?size=32", (3, 32, 32)
    built = models.build(spec, shape, 10)
    layer = next(l for l in surgery.prunable_layers(built.model, shape) if l.skip is None)
    surgery.prune_layer(built.model, layer.name, layer.channels // 2, "l1", shape)
    fresh = models.build(spec, shape, 10).model
    models.apply_structure(fresh, models.structure(built.model), built.model.state_dict())
    fresh.load_state_dict(built.model.state_dict())
    x = torch.randn(2, *shape)
    assert torch.allclose(fresh.eval()(x), built.model.eval()(x), atol=1e-5)


def test_a_saved_model_loads_where_modules_check_their_state_version(tmp_path):
    """MNASNet refuses a state_dict without its version metadata; a saved file has none of its own."""
    from toolchain import artifact

    built = models.build("torchvision:mnasnet0_5?size=32", (3, 32, 32), 10)
    meta = artifact.new_meta("train", {}, parent=None, spec=built.spec, data=None, input_shape=built.input_shape,
                             num_classes=10, metrics={})
    artifact.save(built.model, tmp_path / "m.pt", meta)
    model, _ = artifact.load_model(tmp_path / "m.pt")
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(model(x), built.model.eval()(x))
