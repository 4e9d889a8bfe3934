"""insightface iResNet (ArcFace) backbones with insightface's module names.

Structure (state-dict keys match insightface ``iresnet50`` / ``iresnet100`` checkpoints, e.g.
the Glint360K ArcFace models GestaltMatcher-Arc starts from)::

    conv1 (3->64, 3x3, no bias) - bn1 - prelu
    layer1..layer4: IBasicBlock x [3, 4, 14, 3] (r50) / [3, 13, 30, 3] (r100),
                    64/128/256/512 channels, each stage's first block has stride 2
    bn2 (BatchNorm2d 512) - dropout - flatten - fc (512*7*7 -> 512) - features (BatchNorm1d 512)

``IBasicBlock``: ``bn1 -> conv1 -> bn2 -> prelu -> conv2 (stride) -> bn3`` plus the shortcut
``downsample.0`` (1x1 conv, stride) / ``downsample.1`` (BN) on each stage's first block.
Feature maps for a 112x112 input: 112 (stem) -> 56 -> 28 -> 14 -> 7.

Differences from insightface that change no numbers: every PReLU is its own module (as there),
the residual sum and dropout are not in place (so forward hooks see unmodified tensors and
:func:`gmxai_eval.models.base.check_no_reused_modules` passes), no fp16 autocast, and the
``features`` BN weight is left trainable (insightface freezes it at 1 during training).

The embedding is affine in the final ``bn2`` map (``bn2 -> flatten -> fc -> features`` in eval
mode), so HiResCAM at ``backbone.bn2`` is exact for targets linear in the embedding.
"""

from __future__ import annotations

import torch
from torch import nn

from gmxai_eval.models.base import MODELS, ClassifierHead, GMXModel, Preprocess
from gmxai_eval.types import ModelCard

IRESNET_LAYERS: dict[str, tuple[int, int, int, int]] = {
    "iresnet18": (2, 2, 2, 2),
    "iresnet50": (3, 4, 14, 3),
    "iresnet100": (3, 13, 30, 3),
}
_BN_EPS = 1e-5


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class IBasicBlock(nn.Module):
    """``bn1 -> conv1 -> bn2 -> prelu -> conv2(stride) -> bn3`` + shortcut: ``(B, Cin, H, W) ->
    (B, C, H/stride, W/stride)``."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=_BN_EPS)
        self.conv1 = _conv3x3(inplanes, planes)
        self.bn2 = nn.BatchNorm2d(planes, eps=_BN_EPS)
        self.prelu = nn.PReLU(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes, eps=_BN_EPS)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        identity = x if self.downsample is None else self.downsample(x)
        return out + identity


class IResNet(nn.Module):
    """iResNet backbone: ``(B, 3, 112, 112)`` normalised to ``[-1, 1]`` -> embedding ``(B, 512)``.

    Args:
        layers: blocks per stage, e.g. :data:`IRESNET_LAYERS` ``["iresnet100"]``.
        num_features: embedding size ``D``.
        dropout: dropout probability before ``fc`` (insightface default 0).
        fc_scale: spatial positions of the last map (``7 * 7`` for 112x112 input).
        width: channel multiplier of every stage (``64 * width`` ... ``512 * width``, at least 4
            channels); 1 is insightface's network (state dicts of released weights load only then).
    """

    def __init__(self, layers: tuple[int, ...] = IRESNET_LAYERS["iresnet100"], num_features: int = 512,
                 dropout: float = 0.0, fc_scale: int = 7 * 7, width: float = 1.0) -> None:
        super().__init__()
        c = [max(4, int(round(k * width))) for k in (64, 128, 256, 512)]
        self.inplanes = c[0]
        self.conv1 = nn.Conv2d(3, c[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c[0], eps=_BN_EPS)
        self.prelu = nn.PReLU(c[0])
        self.layer1 = self._make_layer(c[0], layers[0], stride=2)
        self.layer2 = self._make_layer(c[1], layers[1], stride=2)
        self.layer3 = self._make_layer(c[2], layers[2], stride=2)
        self.layer4 = self._make_layer(c[3], layers[3], stride=2)
        self.bn2 = nn.BatchNorm2d(c[3], eps=_BN_EPS)
        self.dropout = nn.Dropout(p=dropout, inplace=False)
        self.fc = nn.Linear(c[3] * fc_scale, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=_BN_EPS)
        nn.init.constant_(self.features.weight, 1.0)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0, 0.1)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes, eps=_BN_EPS))
        mods = [IBasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        mods += [IBasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*mods)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, 112, 112) -> (B, 512, 7, 7)``: the output of ``bn2``."""
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.bn2(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.dropout(self.feature_map(x)), 1)
        return self.features(self.fc(x))


def arcface_preprocess() -> Preprocess:
    """Pixel space ``[0, 1]`` RGB -> 112x112 in ``[-1, 1]`` (``(x - 0.5) / 0.5``)."""
    return Preprocess(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), grayscale=False, size=(112, 112))


def build_iresnet(arch: str, num_classes: int, *, num_features: int = 512, dropout: float = 0.0,
                  seed: int | None = 0, width: float = 1.0) -> GMXModel:
    """``arch`` in :data:`IRESNET_LAYERS`; head ``ClassifierHead(num_features, num_classes)``."""
    if seed is not None:
        torch.manual_seed(seed)
    backbone = IResNet(IRESNET_LAYERS[arch], num_features=num_features, dropout=dropout, width=width)
    return GMXModel(backbone, ClassifierHead(num_features, num_classes), arcface_preprocess(),
                    cam_layer="backbone.bn2", arch=arch).eval()


def _card(name: str, desc: str) -> ModelCard:
    return ModelCard(name=name, input_channels=3, input_size=(112, 112), embedding_dim=512,
                     cam_layer="backbone.bn2",
                     paper="Deng et al., ArcFace, CVPR 2019; Duta et al., Improved residual "
                           "networks, ICPR 2020 (insightface iResNet)",
                     description=desc)


@MODELS.register(name="iresnet18",
                 card=_card("iresnet18", "insightface iResNet-18 (blocks 2-2-2-2), 512-d embedding + linear "
                                         "head; width scales every stage (a CPU-sized GestaltMatcher-Arc)"))
def iresnet18(num_classes: int = 204, num_features: int = 512, dropout: float = 0.0,
              seed: int | None = 0, width: float = 1.0) -> GMXModel:
    return build_iresnet("iresnet18", num_classes, num_features=num_features, dropout=dropout, seed=seed,
                         width=width)


@MODELS.register(name="iresnet50",
                 card=_card("iresnet50", "insightface iResNet-50, 512-d embedding + linear head"))
def iresnet50(num_classes: int = 204, num_features: int = 512, dropout: float = 0.0,
              seed: int | None = 0) -> GMXModel:
    return build_iresnet("iresnet50", num_classes, num_features=num_features, dropout=dropout, seed=seed)


@MODELS.register(name="iresnet100",
                 card=_card("iresnet100", "insightface iResNet-100, 512-d embedding + linear head"))
def iresnet100(num_classes: int = 204, num_features: int = 512, dropout: float = 0.0,
               seed: int | None = 0) -> GMXModel:
    return build_iresnet("iresnet100", num_classes, num_features=num_features, dropout=dropout, seed=seed)
