"""The CNN family in plain torch: MobileNetV2, ResNet-18 and a small digits CNN.

MobileNetV2 and ResNet-18 follow the published architectures layer for layer (the
same modules, parameter names and counts as torchvision's, so its state_dicts load with
--checkpoint), written out here so that exporting needs no torchvision. Each architecture comes with the preprocessing it expects, which
the exporter records in the bundle so the runtime feeds it correctly.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from reelrt.models.checkpoints import read_checkpoint
from reelrt.runtime.errors import InputError

IMAGENET_PREPROCESSING: dict[str, Any] = {
    "size": [224, 224],          # model input H, W
    "resize": 256,               # shorter side is scaled to this, then the centre size[] is cropped
    "crop": "center",
    "interpolation": "linear",   # area filtering costs more than the model on a 1080p frame
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
    "scale": 255.0,              # pixels are divided by this before mean/std
    "channel_order": "RGB",
    "layout": "NCHW",
}

# sklearn's digits are 8x8 scans; the model sees them as dark ink on light paper, as a
# photo of handwriting would look, stretched (no crop) to 8x8.
DIGITS_PREPROCESSING: dict[str, Any] = {
    "size": [8, 8],
    "resize": None,
    "crop": "none",
    "interpolation": "area",
    "mean": [0.5],
    "std": [0.5],
    "scale": 255.0,
    "channel_order": "GRAY",
    "layout": "NCHW",
}


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: type | None = nn.ReLU6) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(cout)]
    if act is not None:
        layers.append(act(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expansion, 3x3 depthwise, linear 1x1 projection."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        self.use_residual = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(_conv_bn(cin, hidden, 1))
        # the projection's Conv and BatchNorm sit directly in the block, as in torchvision
        layers += [_conv_bn(hidden, hidden, 3, stride, groups=hidden), *_conv_bn(hidden, cout, 1, act=None)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2(nn.Module):
    """Sandler et al. 2018, width 1.0 (3.5 M parameters at 1000 classes)."""

    # expansion t, channels c, repeats n, first stride s
    SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        layers: list[nn.Module] = [_conv_bn(3, 32, 3, 2)]
        cin = 32
        for t, c, n, s in self.SETTINGS:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(_conv_bn(cin, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class ResNet18(nn.Module):
    """He et al. 2016, 18 layers (11.7 M parameters at 1000 classes)."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        stages, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            stages.append(nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = nn.Linear(512, num_classes)
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class DigitsCNN(nn.Module):
    """A small CNN for 8x8 grayscale digits (about 14 k parameters)."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            _conv_bn(1, 16, 3, act=nn.ReLU), _conv_bn(16, 32, 3, act=nn.ReLU), nn.MaxPool2d(2),
            _conv_bn(32, 32, 3, act=nn.ReLU))
        self.fc = nn.Linear(32, num_classes)
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


def _init(model: nn.Module) -> None:
    """torchvision's initialisation, so random-weight models have realistic activation ranges."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


ARCHS: dict[str, tuple[type[nn.Module], int, dict[str, Any]]] = {
    "mobilenetv2": (MobileNetV2, 1000, IMAGENET_PREPROCESSING),
    "resnet18": (ResNet18, 1000, IMAGENET_PREPROCESSING),
    "digits": (DigitsCNN, 10, DIGITS_PREPROCESSING),
}


def build(arch: str, checkpoint: str | None = None, seed: int = 0) -> nn.Module:
    """An architecture in eval mode: weights from a state_dict file (its head of any class count),
    else seeded random init."""
    if arch not in ARCHS:
        raise ValueError(f"unknown CNN architecture {arch!r}; known: {sorted(ARCHS)}")
    cls, num_classes, _ = ARCHS[arch]
    torch.manual_seed(seed)
    if checkpoint is None:
        return cls(num_classes).eval()
    state = read_checkpoint(checkpoint, f"{arch} state_dict", "save one with torch.save(model.state_dict(), PATH)")
    try:
        state = state.get("state_dict", state)
        model = cls(head_classes(state) or num_classes)
        model.load_state_dict(state)
    except (RuntimeError, AttributeError) as e:
        raise InputError(f"checkpoint {checkpoint} is not a {arch} state_dict: {str(e).splitlines()[0]}") from None
    return model.eval()


def head_classes(state: dict) -> int | None:
    """The class count of a classifier's state_dict: the rows of its last 2-D weight (the head)."""
    heads = [v for k, v in state.items() if k.endswith("weight") and getattr(v, "ndim", 0) == 2]
    return int(heads[-1].shape[0]) if heads else None


def preprocessing(arch: str) -> dict[str, Any]:
    return dict(ARCHS[arch][2])


def default_labels(arch: str) -> list[str]:
    """Digit names for the digits model; ImageNet class indices otherwise (the names are not shipped)."""
    if arch == "digits":
        return [str(i) for i in range(10)]
    return [f"imagenet_{i}" for i in range(ARCHS[arch][1])]
