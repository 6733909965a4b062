"""Image classifier networks: the small CNNs for small images and a CIFAR-stem ResNet-18.

One home for the discriminative networks of the package (the diffusion backbone is `network.py`):

* `pool_cnn` — the benchmark's neural baselines on small images: conv-BN-ReLU twice, 2x2
  max-pool, conv-BN-ReLU, global average pool, linear head (~60k parameters at width 32);
* `StridedCNN` — the evaluator / CAS / condensation classifier on small images: conv-GN-ReLU
  stages with stride 2 after the first, global average pool, linear head, penultimate features
  exposed;
* `ResNet18Cifar` — timm's ResNet-18 with the CIFAR stem (3x3 stride-1 first convolution, no
  max-pool), what the ELR / PRODEN / DIRK papers train on 32x32 images.

The two small CNNs are kept as two: each is bit-for-bit the network its digits numbers were
measured with (BatchNorm + max-pool against GroupNorm + strided convolutions), and merging them
would change those numbers. `classifier_backbone` picks a network by image size: a small CNN
below 32x32, the ResNet-18 from 32x32 on.

Networks that serve as a feature space (`StridedCNN`, `ResNet18Cifar`) share one interface:
`features(x) -> (B, feature_dim)` penultimate activations, `forward(x) -> (B, num_classes)`
logits, and the attributes `feature_dim`, `num_classes`. Inputs are (B, C, H, W) in [-1, 1].

Weights are never downloaded (`pretrained=False`): the machines this runs on have no network, and
the benchmark trains every classifier from the same imprecise labels as the diffusion model.
"""
from __future__ import annotations

import math

import torch
from torch import nn

# Smallest side (pixels) from which `classifier_backbone` uses the ResNet-18: the CIFAR stem is
# designed for 32x32; on 8x8 digits its four stages would shrink the map to 1x1 after two.
RESNET_MIN_SIZE = 32
SMALL_CNNS = ("pool", "strided")


def pool_cnn(in_channels: int, num_classes: int, *, width: int = 32) -> nn.Sequential:
    """The baselines' small CNN for any image size: two 3x3 conv blocks, 2x2 max-pool, one more
    block, global average pool, linear head. ~60k parameters at width 32. (B, C, H, W) -> (B, K)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(2 * width, num_classes),
    )


class StridedCNN(nn.Module):
    """conv-GN-ReLU stages (stride 2 after the first) -> global average pool -> linear head.

    At least two stride-2 stages, more until the smaller side is at most 4 pixels (8x8 digits:
    8 -> 4 -> 2; 32x32: 32 -> 16 -> 8 -> 4). GroupNorm keeps every image's features independent of
    its batch. Channels: width, 2*width, then 4*width; feature_dim is the last stage's channels.
    """

    def __init__(self, in_channels: int, num_classes: int, image_size: int, *, width: int = 32):
        super().__init__()
        downsamples = max(2, math.ceil(math.log2(max(image_size, 1) / 4)))
        chans = [width * min(2**i, 4) for i in range(downsamples + 1)]
        layers: list[nn.Module] = []
        c_in = in_channels
        for i, c in enumerate(chans):
            layers += [nn.Conv2d(c_in, c, 3, stride=1 if i == 0 else 2, padding=1),
                       nn.GroupNorm(min(8, c), c), nn.ReLU(inplace=True)]
            c_in = c
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(c_in, num_classes)
        self.feature_dim = c_in
        self.num_classes = num_classes

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [-1, 1] -> (B, feature_dim) penultimate activations."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> logits (B, K)."""
        return self.head(self.body(x))


class ResNet18Cifar(nn.Module):
    """timm's ResNet-18 (random init) with the CIFAR stem: the 7x7 stride-2 first convolution
    becomes 3x3 stride 1 and the max-pool is removed, so a 32x32 input keeps 32x32 maps in the
    first stage and ends at 4x4 before global pooling. feature_dim = 512."""

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        # timm is imported here, not at the top: its import costs ~2 s, which every `wsl-diff`
        # command would pay through the CLI's imports, and only 32x32+ images need the ResNet.
        import timm

        self.resnet = timm.create_model("resnet18", pretrained=False, num_classes=num_classes,
                                        in_chans=in_channels)
        stem_width = self.resnet.conv1.out_channels
        self.resnet.conv1 = nn.Conv2d(in_channels, stem_width, kernel_size=3, stride=1, padding=1, bias=False)
        # timm initialises every conv this way (ResNet.init_weights); the new stem follows suit.
        nn.init.kaiming_normal_(self.resnet.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.resnet.maxpool = nn.Identity()
        self.feature_dim = int(self.resnet.num_features)
        self.num_classes = num_classes

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [-1, 1] -> (B, 512) globally pooled last-stage activations."""
        return self.resnet.forward_head(self.resnet.forward_features(x), pre_logits=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> logits (B, K)."""
        return self.resnet(x)


def classifier_backbone(image_shape: tuple[int, int, int], num_classes: int, *, small: str, width: int,
                        seed: int) -> nn.Module:
    """A freshly initialised classifier for images of `image_shape` (C, H, W) -> logits (B, K).

    Smaller side below `RESNET_MIN_SIZE` (32): the small CNN named by `small` — "pool"
    (`pool_cnn`, the benchmark baselines') or "strided" (`StridedCNN`, the evaluator's) — with
    `width` channels in its first stage. 32 and above: `ResNet18Cifar` (`width` unused).

    The initial weights depend on `seed` only: module initialisers draw from the global torch
    generator, so they run inside a forked copy of it seeded from `seed`, and the caller's global
    RNG state is left as it was.
    """
    if len(image_shape) != 3 or min(image_shape) < 1:
        raise ValueError(f"`image_shape` must be (C, H, W) with positive sizes, got {tuple(image_shape)}")
    if num_classes < 1:
        raise ValueError(f"`num_classes` must be >= 1, got {num_classes}")
    if small not in SMALL_CNNS:
        raise ValueError(f"`small` must be one of {', '.join(SMALL_CNNS)}, got {small!r}")
    if width < 1:
        raise ValueError(f"`width` must be >= 1, got {width}")
    c, h, w = (int(s) for s in image_shape)
    init = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(2**31 - 1, (1,), generator=init)))
        if min(h, w) >= RESNET_MIN_SIZE:
            return ResNet18Cifar(c, num_classes)
        if small == "pool":
            return pool_cnn(c, num_classes, width=width)
        return StridedCNN(c, num_classes, min(h, w), width=width)
