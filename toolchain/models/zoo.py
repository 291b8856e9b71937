"""The built-in model zoo: the paper's networks sized for small inputs, and the accordion autoencoder.

Every factory takes `in_channels`/`in_features` and `num_classes` so that one definition serves
MNIST, Fashion-MNIST, CIFAR-10 and tabular data alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class LeNet5(nn.Module):
    """LeCun et al. 1998 for 32x32 inputs (MNIST is zero-padded or resized from 28x28).

    `channels` (the two convolutions, 6 and 16) and `fc` (the hidden fully-connected widths, 120
    and 84) are LeNet-5's own by default; `zoo:lenet5?fc=1024,1024` is the same network with a wide
    head, where, as in the paper's AlexNet, nearly all the weights sit in the fully-connected layers."""

    input_size = 32

    def __init__(self, in_channels: int = 1, num_classes: int = 10, channels: Sequence[int] = (6, 16),
                 fc: Sequence[int] = (120, 84)):
        super().__init__()
        c1, c2 = (int(c) for c in channels)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )
        head: list[nn.Module] = [nn.Flatten()]
        cin = c2 * 5 * 5
        for width in fc:
            head += [nn.Linear(cin, int(width)), nn.ReLU(inplace=True)]
            cin = int(width)
        self.classifier = nn.Sequential(*head, nn.Linear(cin, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


def _conv_bn(cin: int, cout: int, kernel: int = 3, stride: int = 1, padding: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, stride, padding, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True)]


class AlexNet32(nn.Module):
    """AlexNet (Krizhevsky 2012) for 32x32 inputs: five 3x3 convolutions (64-192-384-256-256)
    with BatchNorm, then the original 4096-4096 fully-connected head, which holds most of the
    parameters, as in the paper's AlexNet."""

    input_size = 32

    def __init__(self, in_channels: int = 3, num_classes: int = 10, fc_width: int = 4096):
        super().__init__()
        self.features = nn.Sequential(
            *_conv_bn(in_channels, 64), nn.MaxPool2d(2),
            *_conv_bn(64, 192), nn.MaxPool2d(2),
            *_conv_bn(192, 384),
            *_conv_bn(384, 256),
            *_conv_bn(256, 256), nn.MaxPool2d(2),
        )
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(0.5),
            nn.Linear(256 * 2 * 2, fc_width), nn.ReLU(inplace=True), nn.Dropout(0.5),
            nn.Linear(fc_width, fc_width), nn.ReLU(inplace=True),
            nn.Linear(fc_width, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)))


VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG16BN(nn.Module):
    """VGG16 with BatchNorm (Simonyan & Zisserman 2015) for 32x32 inputs: 13 convolutions and a
    512-512 fully-connected head. Larger inputs (`?size=64`) are averaged to 1x1 before the head,
    so the head, and the parameter count, stay those of the 32x32 network."""

    input_size = 32

    def __init__(self, in_channels: int = 3, num_classes: int = 10, fc_width: int = 512):
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for v in VGG16_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += _conv_bn(cin, int(v))
                cin = int(v)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(512, fc_width), nn.ReLU(inplace=True), nn.Dropout(0.3),
            nn.Linear(fc_width, fc_width), nn.ReLU(inplace=True),
            nn.Linear(fc_width, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)))


class AccordionAE(nn.Module):
    """The accordion autoencoder (A2E) family: an MLP whose hidden widths contract and expand
    like an accordion (e.g. 128-32-128-32), with a classifier head (fraud, MNIST classes) or a
    reconstruction head (anomaly score). Hidden layers are whole blocks so that out-of-order
    layer pruning can shrink or drop any of them (`widths=128,0,128,32`: the second is dropped)."""

    def __init__(self, in_features: int, num_classes: int = 2, widths: Sequence[int] = (128, 32, 128, 32),
                 head: str = "classifier"):
        super().__init__()
        if head not in ("classifier", "reconstruction"):
            raise ValueError(f"head must be classifier or reconstruction, not {head!r}")
        self.widths = tuple(int(w) for w in widths)
        self.head_kind = head
        blocks, cin = [], in_features
        for w in self.widths:  # a width of 0 is a removed layer: an Identity keeps the names stable
            if w == 0:
                blocks.append(nn.Identity())
                continue
            blocks.append(nn.Sequential(nn.Linear(cin, w), nn.BatchNorm1d(w), nn.ReLU(inplace=True)))
            cin = w
        self.hidden = nn.Sequential(*blocks)
        self.head = nn.Linear(cin, num_classes if head == "classifier" else in_features)

    def forward(self, x):
        return self.head(self.hidden(x.flatten(1)))

    def removable_layers(self) -> list[str]:
        """Its hidden blocks, by Linear name (surgery.RemovableLayers)."""
        return [f"hidden.{i}.0" for i, b in enumerate(self.hidden) if not isinstance(b, nn.Identity)]

    def without_layer(self, name: str, spec: str) -> tuple[nn.Module, str]:
        """A copy without hidden block `name`, and its spec (that block's width set to 0).

        The next layer, which now reads the previous layer's output, starts from the product of the
        two linear maps (the removed layer's eval-mode BatchNorm folded in, its ReLU taken as
        identity): a warm start that fine-tuning then corrects."""
        from urllib.parse import parse_qsl, urlencode

        from . import build

        idx = int(name.split(".")[1])
        widths = [0 if isinstance(b, nn.Identity) else b[0].out_features for b in self.hidden]  # as pruned now
        widths[idx] = 0
        base, _, query = spec.partition("?")
        new_spec = f"{base}?{urlencode(dict(parse_qsl(query)) | {'widths': ','.join(map(str, widths))}, safe=',')}"
        in_features = next(b[0].in_features for b in self.hidden if not isinstance(b, nn.Identity))
        new = build(new_spec, (in_features,), self.head.out_features if self.head_kind == "classifier" else 0).model
        lin, bn = self.hidden[idx][0], self.hidden[idx][1]
        scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach()
        w_eff = scale[:, None] * lin.weight.detach()
        b_eff = scale * (lin.bias.detach() - bn.running_mean) + bn.bias.detach()
        nxt = next((f"hidden.{j}.0" for j in range(idx + 1, len(widths)) if widths[j]), "head")
        old_state, new_state = self.state_dict(), new.state_dict()
        for key in new_state:
            if not key.startswith(nxt + ".") and key in old_state and old_state[key].shape == new_state[key].shape:
                new_state[key] = old_state[key]
        w_next, b_next = old_state[nxt + ".weight"], old_state[nxt + ".bias"]
        new_state[nxt + ".weight"] = w_next @ w_eff
        new_state[nxt + ".bias"] = b_next + w_next @ b_eff
        new.load_state_dict(new_state)
        return new.eval(), new_spec
