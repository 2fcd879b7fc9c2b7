"""Encoder f and projection head g (Sec. 2.1, Fig. 2; Appendix B.9).

SimCLR's encoder is a standard ResNet whose output after global average
pooling is the representation h. For CIFAR-10 (Appendix B.9) the first 7x7
stride-2 convolution becomes a 3x3 stride-1 convolution and the first
max-pool is removed. The projection head maps h to z = g(h), on which the
loss is computed; after pretraining g is thrown away (Fig. 8 shows why).

Book: chapter 4 (``book/04_encoder_and_head.ipynb``).
"""
from __future__ import annotations

import torch
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from .errors import ConfigError

ARCHS: dict[str, tuple[type[nn.Module], list[int]]] = {
    "resnet10": (BasicBlock, [1, 1, 1, 1]),
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet34": (BasicBlock, [3, 4, 6, 3]),
    "resnet50": (Bottleneck, [3, 4, 6, 3]),
}

# Per-channel statistics used to standardise [0, 1] inputs inside the encoder.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)



def check_arch(arch: str, width: float) -> None:
    """The one rule for the encoder's architecture and width (used by the encoder and ``Config.validate``)."""
    if arch not in ARCHS:
        raise ConfigError(f"unknown architecture {arch!r}; choose one of {sorted(ARCHS)}")
    if not width > 0:   # also refuses NaN
        raise ConfigError(f"width multiplier must be > 0, got {width}")

class ResNet(torchvision.models.ResNet):
    """torchvision's ResNet with a width multiplier and an optional CIFAR stem.

    ``width`` multiplies every stage's channels (64, 128, 256, 512 at 1x), as
    the paper's ResNet-50 (2x) and (4x) of Fig. 7 and Table 6. The final fc
    is removed: ``forward`` returns h, of size :attr:`feat_dim`.
    """

    def __init__(self, arch: str = "resnet18", width: float = 1.0, cifar_stem: bool = True,
                 stem_stride: int = 1) -> None:
        check_arch(arch, width)
        block, layers = ARCHS[arch]
        self._width = width
        self._first_layer = True
        super().__init__(block, layers)
        stem = max(8, int(64 * width))
        if cifar_stem:  # Appendix B.9: 3x3 stride-1 conv, no max-pool
            self.conv1 = nn.Conv2d(3, stem, kernel_size=3, stride=stem_stride, padding=1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(3, stem, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.feat_dim = max(8, int(512 * width)) * block.expansion
        self.fc = nn.Identity()
        self.arch, self.width, self.cifar_stem, self.stem_stride = arch, width, cifar_stem, stem_stride
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):  # type: ignore[override]
        if self._first_layer:  # the stem's width, before layer1 is built
            self.inplanes = max(8, int(64 * self._width))
            self._first_layer = False
        return super()._make_layer(block, max(8, int(planes * self._width)), blocks, stride, dilate)


class Encoder(nn.Module):
    """f(.): standardise the input, then a ResNet up to global average pooling.

    Takes float images in [0, 1] (what :class:`~simclr_lite.augment.SimCLRAugment`
    returns) and returns h of shape (B, feat_dim).
    """

    def __init__(self, arch: str = "resnet18", width: float = 1.0, cifar_stem: bool = True,
                 stem_stride: int = 1, mean: tuple[float, float, float] = CIFAR10_MEAN,
                 std: tuple[float, float, float] = CIFAR10_STD) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.net = ResNet(arch, width, cifar_stem, stem_stride)
        self.feat_dim = self.net.feat_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean.to(x.dtype)) / self.std.to(x.dtype))


def projection_head(kind: str, in_dim: int, out_dim: int = 128, hidden_dim: int | None = None) -> nn.Module:
    """g(.): ``none`` (identity), ``linear``, or ``nonlinear`` (Fig. 8).

    The nonlinear head is Linear-BN-ReLU-Linear as in the paper's default
    (hidden size = ``in_dim`` unless given). ``none`` ignores ``out_dim``.
    """
    if kind == "none":
        return nn.Identity()
    if kind == "linear":
        return nn.Linear(in_dim, out_dim)
    if kind == "nonlinear":
        hidden = hidden_dim or in_dim
        return nn.Sequential(nn.Linear(in_dim, hidden, bias=False), nn.BatchNorm1d(hidden),
                             nn.ReLU(inplace=True), nn.Linear(hidden, out_dim))
    raise ConfigError(f"unknown projection head {kind!r}; choose none, linear or nonlinear")


class SimCLR(nn.Module):
    """The network of Fig. 2: ``forward(x)`` returns ``(h, z)`` with z = g(h)."""

    def __init__(self, encoder: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return h, self.head(h)


def build_simclr(arch: str = "resnet18", width: float = 1.0, cifar_stem: bool = True,
                 head: str = "nonlinear", proj_dim: int = 128, stem_stride: int = 1,
                 proj_hidden: int = 0) -> SimCLR:
    """Encoder plus head from config values (see :class:`simclr_lite.config.Config`).

    ``proj_hidden``: hidden width of the nonlinear head (0: h's size, the paper's choice).

    Example: a tiny ResNet-10 (1/8 width, so h has 512 / 8 = 64 dimensions) with a
    nonlinear head to 16 dimensions; ``forward`` returns both h and z = g(h):

    >>> import torch
    >>> from simclr_lite.models import build_simclr, count_parameters
    >>> _ = torch.manual_seed(0)
    >>> model = build_simclr("resnet10", width=0.125, proj_dim=16)
    >>> h, z = model(torch.rand(2, 3, 32, 32))   # float images in [0, 1]
    >>> h.shape, z.shape
    (torch.Size([2, 64]), torch.Size([2, 16]))
    >>> count_parameters(model.encoder), count_parameters(model.head)
    (77352, 5264)
    >>> _, z = build_simclr("resnet10", width=0.125, head="none")(torch.rand(2, 3, 32, 32))
    >>> z.shape                                  # no head: z is h
    torch.Size([2, 64])
    """
    enc = Encoder(arch, width, cifar_stem, stem_stride)
    return SimCLR(enc, projection_head(head, enc.feat_dim, proj_dim, proj_hidden or None))


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
