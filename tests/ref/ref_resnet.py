"""ref_resnet.py — independent PyTorch reference of torchvision's ResNet-50.

Written from the architecture facts (docs/design.md §Models; torchvision v1.5:
the stride of a Bottleneck sits on its 3×3 conv), not imported from
torchvision, as the oracle for worker/models/resnet50.c.  The state_dict keys
are torchvision's (conv1.weight, layer2.0.downsample.1.running_var, fc.bias),
so a state_dict saved from this module is what `drq model run --arch resnet50`
loads.  The model takes images in [0,1] and normalises them with ImageNet's
mean and std inside (as RobustBench's wrapped "Standard_R50"); the constants
are not parameters and not in the state_dict.

Config: a dict with num_classes and optionally layers (default [3, 4, 6, 3])
and width (default 64), as drq's --config.

Running this file checks the ImageNet parameter count (25,557,032).
Use /usr/bin/python3 (the interpreter with torch).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

IMAGENET_RESNET50 = dict(num_classes=1000)
IMAGENET_RESNET50_PARAMS = 25_557_032
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
EXPANSION = 4


class Bottleneck(nn.Module):
    def __init__(self, cin, width, stride):
        super().__init__()
        cout = width * EXPANSION
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.bn2(self.conv2(h)))
        h = self.bn3(self.conv3(h))
        s = x if self.downsample is None else self.downsample(x)
        return F.relu(h + s)


class ResNet50(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        layers, width = cfg.get("layers", [3, 4, 6, 3]), cfg.get("width", 64)
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        cin = width
        for i, n in enumerate(layers):
            blocks = []
            for j in range(n):
                blocks.append(Bottleneck(cin, width << i, 2 if (j == 0 and i > 0) else 1))
                cin = (width << i) * EXPANSION
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(cin, cfg["num_classes"])

    def forward(self, x):
        mean = torch.tensor(MEAN, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(STD, dtype=x.dtype).view(1, 3, 1, 1)
        h = F.relu(self.bn1(self.conv1((x - mean) / std)))
        h = F.max_pool2d(h, 3, stride=2, padding=1)
        for i in range(4):
            h = getattr(self, f"layer{i + 1}")(h)
        return self.fc(h.mean(dim=(2, 3)))


def _check():
    m = ResNet50(IMAGENET_RESNET50)
    n = sum(p.numel() for p in m.parameters())
    print(f"ResNet-50 ImageNet: {n:,} parameters (expected {IMAGENET_RESNET50_PARAMS:,})")
    assert n == IMAGENET_RESNET50_PARAMS, n
    k = set(m.state_dict())
    for key in ("conv1.weight", "bn1.running_var", "layer1.0.downsample.0.weight", "layer2.0.downsample.1.bias",
                "layer3.5.conv3.weight", "layer4.2.bn3.running_mean", "fc.weight", "fc.bias"):
        assert key in k, key
    assert "layer1.1.downsample.0.weight" not in k


if __name__ == "__main__":
    _check()
    print("ok")
