"""Classifier networks: the CIFAR-stem ResNet-18, the small CNNs, and which one a shape gets."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from wsl_diffusion.model.classifier_nets import ResNet18Cifar, StridedCNN, classifier_backbone


def test_resnet18_cifar_stem_keeps_32x32_resolution_and_outputs_logits():
    net = ResNet18Cifar(3, 10).eval()
    conv1 = net.resnet.conv1
    assert isinstance(conv1, nn.Conv2d)
    assert conv1.kernel_size == (3, 3) and conv1.stride == (1, 1) and conv1.padding == (1, 1)
    assert conv1.in_channels == 3
    assert isinstance(net.resnet.maxpool, nn.Identity)
    assert not any(isinstance(m, nn.MaxPool2d) for m in net.modules())
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert net(x).shape == (2, 10)
        # The stem keeps 32x32; the three stride-2 stages bring it to 4x4 (a 7x7/2 stem + pool: 1x1).
        assert net.resnet.forward_features(x).shape == (2, 512, 4, 4)
        feats = net.features(x)
        assert feats.shape == (2, net.feature_dim) and net.feature_dim == 512
        assert torch.allclose(net.resnet.fc(feats), net(x), atol=1e-5)  # logits = head(features)


def test_resnet18_cifar_takes_other_channel_counts():
    net = ResNet18Cifar(1, 4).eval()
    with torch.no_grad():
        assert net(torch.zeros(2, 1, 32, 32)).shape == (2, 4)


def test_backbone_picks_a_small_cnn_below_32_and_the_resnet_from_32():
    assert isinstance(classifier_backbone((1, 8, 8), 10, small="strided", width=8, seed=0), StridedCNN)
    pool = classifier_backbone((1, 8, 8), 10, small="pool", width=8, seed=0)
    assert isinstance(pool, nn.Sequential) and any(isinstance(m, nn.MaxPool2d) for m in pool)
    assert isinstance(classifier_backbone((3, 31, 40), 10, small="pool", width=8, seed=0), nn.Sequential)
    for small in ("pool", "strided"):
        assert isinstance(classifier_backbone((3, 32, 32), 10, small=small, width=8, seed=0), ResNet18Cifar)


def test_backbone_init_depends_on_the_seed_only_and_leaves_the_global_rng_alone():
    state = torch.random.get_rng_state()
    a, b, c = (classifier_backbone((1, 8, 8), 10, small="pool", width=8, seed=s) for s in (3, 3, 4))
    assert torch.equal(torch.random.get_rng_state(), state)
    pa, pb, pc = (torch.cat([p.flatten() for p in net.parameters()]) for net in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)


@pytest.mark.parametrize("kwargs,needle", [
    (dict(image_shape=(8, 8), num_classes=10, small="pool"), "image_shape"),
    (dict(image_shape=(1, 8, 8), num_classes=0, small="pool"), "num_classes"),
    (dict(image_shape=(1, 8, 8), num_classes=10, small="big"), "small"),
])
def test_backbone_rejects_bad_input(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        classifier_backbone(kwargs["image_shape"], kwargs["num_classes"], small=kwargs["small"], width=8, seed=0)
