"""``width`` on the v1 encoder and on iResNet: 1 is the released network (same parameters), other
widths scale the channels and keep the module tree (same state-dict keys), so CPU-sized copies of
the field's architectures train on the synthetic faces."""

from __future__ import annotations

import pytest
import torch

from gmxai_eval.models import MODELS


@pytest.mark.parametrize("arch, kw", [("gestaltmatcher_v1", {"share_pool": False}), ("iresnet18", {})])
def test_width_keeps_the_module_tree_and_scales_the_channels(arch, kw):
    full = MODELS.create(arch, num_classes=5, seed=0, **kw)
    default = MODELS.create(arch, num_classes=5, seed=0, width=1.0, **kw)
    small = MODELS.create(arch, num_classes=5, seed=0, width=0.25, **kw)
    sf, ss = full.state_dict(), small.state_dict()
    assert list(sf) == list(ss) == list(default.state_dict())
    assert all(torch.equal(sf[k], v) for k, v in default.state_dict().items())  # width 1 = today's network
    n_full = sum(p.numel() for p in full.parameters())
    n_small = sum(p.numel() for p in small.parameters())
    assert n_small < n_full / 4  # conv weights scale with width squared
    x = torch.rand(2, 3, 112, 112)
    with torch.no_grad():
        assert small(x).shape == (2, 5) and small.embed(x).ndim == 2


def test_v1_width_keeps_max_pooling_and_the_cam_layer():
    m = MODELS.create("gestaltmatcher_v1", num_classes=3, width=0.5, share_pool=False)
    pools = [type(b).__name__ for b in m.backbone.base if "Pool" in type(b).__name__]
    assert pools == ["MaxPool2d"] * 4 + ["AvgPool2d"]
    assert dict(m.named_modules())["backbone.base.13"].out_channels == 160  # 320 * 0.5
