"""simclr_lite.models: the CIFAR stem (B.9), widths (Fig. 7), heads (Fig. 8), (h, z) outputs."""
from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from simclr_lite.errors import ConfigError
from simclr_lite.models import Encoder, ResNet, SimCLR, build_simclr, count_parameters, projection_head


def test_cifar_stem_is_3x3_stride1_without_maxpool():
    net = ResNet("resnet18", cifar_stem=True)
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    assert isinstance(net.maxpool, nn.Identity)
    # 32x32 input keeps 32x32 maps through layer1 (no early downsampling)
    x = torch.randn(2, 3, 32, 32)
    y = net.layer1(net.relu(net.bn1(net.conv1(x))))
    assert y.shape[-2:] == (32, 32)


def test_imagenet_stem_matches_torchvision():
    ours = ResNet("resnet50", cifar_stem=False)
    ref = torchvision.models.resnet50()
    ref.fc = nn.Identity()
    assert count_parameters(ours) == count_parameters(ref)
    assert ours.conv1.kernel_size == (7, 7) and isinstance(ours.maxpool, nn.MaxPool2d)


@pytest.mark.parametrize("arch,width,dim", [("resnet18", 1.0, 512), ("resnet18", 2.0, 1024),
                                            ("resnet50", 1.0, 2048), ("resnet50", 0.5, 1024),
                                            ("resnet10", 0.25, 128)])
def test_feature_dim(arch, width, dim):
    enc = Encoder(arch, width)
    h = enc(torch.rand(2, 3, 32, 32))
    assert enc.feat_dim == dim and h.shape == (2, dim)


def test_width_multiplies_channels():
    w1, w2 = ResNet("resnet18", 1.0), ResNet("resnet18", 2.0)
    assert w2.layer4[0].conv1.out_channels == 2 * w1.layer4[0].conv1.out_channels
    assert w2.conv1.out_channels == 128
    # parameters grow about 4x with 2x width (Table 6: R50 24M -> 2x 94M)
    ratio = count_parameters(w2) / count_parameters(w1)
    assert 3.8 < ratio < 4.1


@pytest.mark.parametrize("kind,out", [("none", 512), ("linear", 128), ("nonlinear", 128), ("nonlinear", 32)])
def test_heads(kind, out):
    head = projection_head(kind, 512, out)
    z = head(torch.randn(4, 512))
    assert z.shape == (4, out)
    if kind == "nonlinear":
        assert any(isinstance(m, nn.ReLU) for m in head.modules())
        assert any(isinstance(m, nn.BatchNorm1d) for m in head.modules())
    if kind == "linear":
        assert isinstance(head, nn.Linear)


def test_simclr_returns_h_and_z():
    model = build_simclr("resnet10", 0.25, head="nonlinear", proj_dim=16)
    h, z = model(torch.rand(3, 3, 32, 32))
    assert h.shape == (3, 128) and z.shape == (3, 16)
    assert isinstance(model, SimCLR)
    # z is g(h)
    model.eval()
    h, z = model(torch.rand(3, 3, 32, 32))
    assert torch.allclose(model.head(h), z)


def test_stem_stride_reduces_resolution():
    a, b = ResNet("resnet10", 0.25, stem_stride=1), ResNet("resnet10", 0.25, stem_stride=2)
    x = torch.rand(1, 3, 32, 32)
    assert a.conv1(x).shape[-1] == 32 and b.conv1(x).shape[-1] == 16


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_encoder_standardises_inputs(dtype):
    """The ResNet sees (x - mean) / std per channel: an image of the mean colour arrives as zeros, one of
    mean + std as ones, whatever the dtype; and h is the ResNet of the standardised image."""
    from simclr_lite.models import CIFAR10_MEAN, CIFAR10_STD
    enc = Encoder("resnet10", 0.25).to(dtype).eval()
    seen = []
    enc.net.conv1.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    mean = torch.tensor(CIFAR10_MEAN, dtype=dtype).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD, dtype=dtype).view(1, 3, 1, 1)
    enc(mean.expand(2, 3, 8, 8))
    enc((mean + std).expand(2, 3, 8, 8))
    assert seen[0].dtype == dtype and seen[0].abs().max() < 1e-6
    assert torch.allclose(seen[1], torch.ones_like(seen[1]), atol=1e-6)
    x = torch.rand(2, 3, 16, 16, dtype=dtype)
    assert torch.allclose(enc(x), enc.net((x - mean) / std)) and not torch.allclose(enc(x), enc.net(x))


@pytest.mark.parametrize("bad", [dict(arch="resnet7"), dict(width=0)])
def test_bad_model_config(bad):
    with pytest.raises(ConfigError):
        ResNet(**bad)
    with pytest.raises(ConfigError, match="projection head"):
        projection_head("mlp", 8)
