import copy

import pytest
import torch
from torch import nn

from toolchain import importance, models, surgery
from toolchain.errors import CompressError


def test_every_criterion_resolves_and_scores_a_group():
    built = models.build("zoo:vgg16", (1, 32, 32), 10)
    for name in importance.CRITERIA:
        clone = surgery.pruned_copy(built.model, "features.0", 32, name, (1, 32, 32))
        assert clone.features[0].out_channels == 32 and clone.features[1].num_features == 32
        assert clone(torch.zeros(1, 1, 32, 32)).shape == (1, 10)
    with pytest.raises(CompressError, match="l1"):
        importance.get_criterion("nope")


def test_prunable_layers_skip_outputs_and_coupled_groups():
    built = models.build("torchvision:resnet18?size=32", (3, 32, 32), 10)
    layers = surgery.prunable_layers(built.model, (3, 32, 32), include_linear=True)
    reasons = {l.name: l.skip for l in layers}
    assert "output layer" in reasons["fc"]
    assert reasons["layer1.0.conv1"] is None
    assert "same dependency group" in reasons["layer1.0.conv2"]  # tied to the residual add


def test_a_classifier_convolution_pooled_into_the_logits_is_an_output_layer():
    """SqueezeNet ends in Conv2d(512, classes) -> ReLU -> global pool -> flatten: the conv's output is
    not the model's output tensor, but its channels are the classes, and no layer reads them."""
    built = models.build("torchvision:squeezenet1_1?size=32", (3, 32, 32), 10)
    reasons = {l.name: l.skip for l in surgery.prunable_layers(built.model, (3, 32, 32), include_linear=True)}
    assert "output layer" in reasons["classifier.1"]
    assert reasons["features.3.squeeze"] is None


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


class Mixed(nn.Module):
    """Residual add, grouped (groups=4) and depthwise convs, a concatenation into a grouped conv,
    and a two-layer FC head: the user's own network of issue 14."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        def block(cin, cout, k=3, groups=1):
            conv = nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups)
            return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.ReLU())
        self.stem, self.res = block(3, 32), block(32, 32)
        self.grouped, self.dw, self.pw = block(32, 64, groups=4), block(64, 64, groups=64), block(64, 48, 1)
        self.side, self.g2 = block(32, 16, 1), block(64, 64, groups=4)
        self.g3 = block(64, 64, groups=8)
        self.fc = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, num_classes))

    def forward(self, x):
        x = self.stem(x)
        x = x + self.res(x)
        z = self.g2(torch.cat([self.pw(self.dw(self.grouped(x))), self.side(x)], 1))
        return self.fc(self.g3(z).mean((2, 3)))


def _tiny(name: str) -> nn.Module:
    import torchvision.models as tvm
    from torchvision.models.resnet import Bottleneck, ResNet

    if name == "mixed":
        return Mixed()
    if name == "resnext_tiny":  # ResNeXt's block (32 groups of 4 channels), one block per stage
        return ResNet(Bottleneck, [1, 1, 1, 1], groups=32, width_per_group=4, num_classes=10)
    if name == "vit_tiny":
        return tvm.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32,
                                     mlp_dim=64, num_classes=10)
    return tvm.get_model(name, weights=None, num_classes=10)


def _randomize(model: nn.Module) -> nn.Module:
    """BatchNorm statistics away from (0, 1), so that a wrong cut shows in the outputs."""
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.2, 0.2)
    return model.eval()


@pytest.mark.parametrize("name", ["mixed", "resnext_tiny", "regnet_x_400mf", "shufflenet_v2_x0_5", "vit_tiny"])
def test_every_prunable_layer_cuts_exactly_what_masking_would(name):
    """Grouped convs, channel shuffles, concatenations and attention: every layer `prunable_layers`
    offers is cut physically, runs, and computes what the unpruned network computes with those
    channels masked at their readers. Layers that cannot be cut say why."""
    shape = (3, 32, 32)
    model = _randomize(_tiny(name))
    layers = surgery.prunable_layers(model, shape, include_linear=True)
    offered = [l for l in layers if l.skip is None]
    assert offered, [l.skip for l in layers]
    x = torch.randn(2, *shape)
    step = max(1, len(offered) // 6)  # a spread of layers: the suite stays fast
    for layer in offered[::step]:
        clone = copy.deepcopy(model)
        keep = surgery.keep_count(layer.channels, 0.5, layer.multiple)
        lost = surgery.prune_layer(clone, layer.name, keep, "l1", shape)
        assert lost, layer.name
        with torch.no_grad(), surgery.mask_inputs(model, lost):
            assert torch.allclose(clone.eval()(x), model(x), atol=1e-4), layer.name
        for m in clone.modules():
            if isinstance(m, nn.Conv2d):
                assert m.in_channels % m.groups == 0 and m.out_channels % m.groups == 0
    if name in ("mixed", "resnext_tiny", "regnet_x_400mf"):
        assert any(l.multiple > 1 for l in offered)  # grouped convs are pruned, a whole group position at a time
    if name == "mixed":
        reasons = {l.name: l.skip for l in layers}
        assert reasons["grouped.0"] is None and reasons["g2.0"] is None and reasons["stem.0"] is None
        assert "out of step with its groups" in reasons["pw.0"]  # concatenated into g2's groups off their edges
    if name == "shufflenet_v2_x0_5":
        reasons = [l.skip for l in layers if l.skip]
        assert any("channel shuffle" in r for r in reasons)
        assert sum(1 for l in offered if l.name.endswith("branch2.0")) >= 10  # each block's inner width


def test_prune_layer_refuses_a_cut_that_splits_groups():
    model = Mixed()
    with pytest.raises(CompressError, match="multiple of 4"):
        surgery.prune_layer(model, "grouped.0", 63, "l1", (3, 32, 32))
    with pytest.raises(CompressError, match="out of step"):
        surgery.prune_layer(model, "pw.0", 24, "l1", (3, 32, 32))


@pytest.mark.parametrize("name", ["mixed", "resnext_tiny", "squeezenet1_1", "mobilenet_v3_small", "densenet121",
                                  "vit_tiny", "convnext_tiny"])
def test_a_masked_cut_equals_the_physical_one_in_outputs_and_counts(name):
    """What analyze measures on the network itself (MaskedCuts) is what it would measure on a pruned
    copy: the same outputs, the same parameters and MACs removed as counting the copy, and the
    network itself unchanged after. A cut through LayerNorm (ConvNeXt) is left to the copy."""
    from toolchain import artifact

    shape = (3, 32, 32)
    model = _randomize(_tiny(name))
    base, x = artifact.count(model, shape), torch.randn(2, *shape)
    with torch.no_grad():
        before = model(x)
    cuts = surgery.MaskedCuts(model, shape)
    offered = [l for l in surgery.prunable_layers(model, shape, include_linear=True) if l.skip is None]
    masked = 0
    for layer in offered[::max(1, len(offered) // 8)]:
        keep = surgery.keep_count(layer.channels, 0.5, layer.multiple)
        clone = surgery.pruned_copy(model, layer.name, keep, "l1", shape)
        counts = artifact.count(clone, shape, throwaway=True)
        with cuts.cut(layer.name, keep, "l1") as removed, torch.no_grad():
            if removed is None:
                continue
            masked += 1
            assert removed == (base["params"] - counts["params"], base["macs"] - counts["macs"]), layer.name
            assert torch.allclose(clone(x), model(x), atol=1e-4), layer.name
    with torch.no_grad():
        assert torch.equal(model(x), before)
    assert masked >= (1 if name == "convnext_tiny" else len(offered[::max(1, len(offered) // 8)]))


class _FunctionalNorm(nn.Module):
    """conv -> a norm over the channels written as a function (no module the graph could show) -> conv."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2, self.fc = nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3), nn.Linear(8, 10)

    def forward(self, x):
        x = torch.nn.functional.normalize(torch.relu(self.conv1(x)), dim=1)
        return self.fc(torch.relu(self.conv2(x)).mean((2, 3)))


def test_a_cut_whose_channels_something_unseen_mixes_is_left_to_a_copy():
    """Masking is not pruning when a function mixes the channels before their reader: the NaN pass
    sees it reach the outputs and the cut goes to a pruned copy instead."""
    model, shape = _FunctionalNorm().eval(), (3, 16, 16)
    with surgery.MaskedCuts(model, shape).cut("conv1", 4, "l1") as removed:
        assert removed is None
    with surgery.MaskedCuts(model, shape).cut("conv2", 4, "l1") as removed:
        assert removed is not None  # its channels meet nothing but their reader


def test_index_maps_are_rebuilt_only_after_a_cut_changes_a_width(monkeypatch):
    """torch-pruning remaps every concatenation before each group lookup (quadratic in its inputs:
    most of DenseNet-201's analysis); the maps follow from the layers' widths alone."""
    from torch_pruning.dependency import index_mapping

    net, shape = _randomize(Mixed()), (3, 32, 32)
    layers = [l for l in surgery.prunable_layers(net, shape) if l.skip is None]  # installs the wrappers
    remaps, concat = [], index_mapping.update_concat_index_mapping
    monkeypatch.setattr(index_mapping, "update_concat_index_mapping", lambda g, n: (remaps.append(n), concat(g, n)))
    dg = surgery.graph(net, shape)
    assert len(remaps) == 1  # built: the one concatenation mapped
    first, second = layers[0], layers[-1]
    for layer in (first, second, first):
        surgery._chosen_group(dg, net, layer.name, surgery.keep_count(layer.channels, 0.5, layer.multiple), "l1")
    assert len(remaps) == 1  # lookups on unchanged widths keep the maps
    surgery.prune_layer(net, first.name, surgery.keep_count(first.channels, 0.5, first.multiple), "l1", shape, dg=dg)
    surgery._chosen_group(dg, net, second.name, surgery.keep_count(second.channels, 0.5, second.multiple), "l1")
    assert len(remaps) == 2  # the cut changed widths: mapped again, once
    assert net(torch.zeros(1, *shape)).shape == (1, 10)
