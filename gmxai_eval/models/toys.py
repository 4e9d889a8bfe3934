"""Tiny architectures for tests, examples and analytic oracles.

* ``toy_cnn``: conv-ReLU-conv-ReLU, global average pool, linear head (so CAM = Grad-CAM =
  HiResCAM at ``backbone.features.3``). Every ReLU is its own non-in-place module.
* ``linear``: flatten + linear (logit_k = w_k . x + b_k), the analytic oracle of many tests.
"""

from __future__ import annotations

import torch
from torch import nn

from gmxai_eval.models.base import MODELS, ClassifierHead, GMXModel, Preprocess
from gmxai_eval.types import ModelCard


class ToyCNNBackbone(nn.Module):
    def __init__(self, in_channels: int = 3, width: int = 8) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.flatten(self.pool(self.features(x)))


@MODELS.register(name="toy_cnn", card=ModelCard(
    name="toy_cnn", input_channels=3, input_size=(32, 32), embedding_dim=16,
    cam_layer="backbone.features.3", description="two-conv test network with GAP + linear head"))
def toy_cnn(num_classes: int = 4, in_channels: int = 3, width: int = 8, seed: int | None = 0) -> GMXModel:
    if seed is not None:
        torch.manual_seed(seed)
    backbone = ToyCNNBackbone(in_channels, width)
    head = ClassifierHead(2 * width, num_classes)
    pre = Preprocess(mean=(0.0,) * in_channels, std=(1.0,) * in_channels)
    return GMXModel(backbone, head, pre, cam_layer="backbone.features.3", arch="toy_cnn").eval()


@MODELS.register(name="linear", card=ModelCard(
    name="linear", input_channels=3, input_size=(32, 32), embedding_dim=3 * 32 * 32,
    cam_layer="preprocess", description="flatten + linear: logit_k = w_k . x + b_k"))
def linear(num_classes: int = 4, in_channels: int = 3, size: int = 32, seed: int | None = 0) -> GMXModel:
    if seed is not None:
        torch.manual_seed(seed)
    d = in_channels * size * size
    pre = Preprocess(mean=(0.0,) * in_channels, std=(1.0,) * in_channels)
    return GMXModel(nn.Flatten(), ClassifierHead(d, num_classes), pre, cam_layer="preprocess",
                    arch="linear").eval()
