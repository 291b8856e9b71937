import pytest
import torch

from toolchain import models, surgery
from toolchain.errors import CompressError


def test_every_criterion_resolves_and_scores_a_group():
    built = models.build("zoo:vgg16", (1, 32, 32), 10)
    for name in surgery.CRITERIA:
        clone = surgery.pruned_copy(built.model, "features.0", 32, name, (1, 32, 32))
        assert clone.features[0].out_channels == 32 and clone.features[1].num_features == 32
        assert clone(torch.zeros(1, 1, 32, 32)).shape == (1, 10)
    with pytest.raises(CompressError, match="l1"):
        surgery.get_criterion("nope")


def test_prunable_layers_skip_outputs_and_coupled_groups():
    built = models.build("torchvision:resnet18?size=32", (3, 32, 32), 10)
    layers = surgery.prunable_layers(built.model, (3, 32, 32), include_linear=True)
    reasons = {l.name: l.skip for l in layers}
    assert "output layer" in reasons["fc"]
    assert reasons["layer1.0.conv1"] is None
    assert "same dependency group" in reasons["layer1.0.conv2"]  # tied to the residual add


def test_residual_pruning_keeps_the_network_consistent():
    built = models.build("torchvision:resnet18?size=32", (3, 32, 32), 10)
    surgery.prune_layer(built.model, "conv1", 32, "l1", (3, 32, 32))
    assert built.model.layer1[0].conv2.out_channels == 32  # the whole residual group shrank
    assert built.model(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_l1_removes_the_smallest_filters():
    built = models.build("zoo:lenet5", (1, 32, 32), 10)
    conv = built.model.features[0]
    with torch.no_grad():
        for i in range(6):
            conv.weight[i].fill_(float(i + 1))
    surgery.prune_layer(built.model, "features.0", 2, "l1", (1, 32, 32))
    kept = built.model.features[0].weight[:, 0, 0, 0].tolist()
    assert kept == [5.0, 6.0]


def test_keep_count_rounding():
    assert surgery.keep_count(64, 0.5) == 32
    assert surgery.keep_count(64, 0.6, round_to=8) == 24
    assert surgery.keep_count(3, 0.99) == 1
    assert surgery.keep_count(10, 0.1, round_to=8) == 8


def test_unknown_layer_name():
    built = models.build("zoo:lenet5", (1, 32, 32), 10)
    with pytest.raises(CompressError, match="no convolution"):
        surgery.prune_layer(built.model, "features.99", 2, "l1", (1, 32, 32))


@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3_small", "densenet121", "googlenet", "efficientnet_b0"])
def test_torchvision_families_prune_and_run(name):
    built = models.build(f"torchvision:{name}?size=32", (3, 32, 32), 10)
    layers = [l for l in surgery.prunable_layers(built.model, (3, 32, 32)) if l.skip is None]
    assert len(layers) > 5
    for layer in (layers[0], layers[len(layers) // 2], layers[-1]):
        clone = surgery.pruned_copy(built.model, layer.name, surgery.keep_count(layer.channels, 0.5), "l1", (3, 32, 32))
        assert clone.eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_untraceable_models_are_a_clear_error():
    built = models.build("torchvision:shufflenet_v2_x0_5?size=32", (3, 32, 32), 10)
    with pytest.raises(CompressError, match="cannot trace"):
        surgery.prunable_layers(built.model, (3, 32, 32))
