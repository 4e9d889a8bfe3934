"""GestaltMatcher v1 with registered attribution methods: the exact CAM identity of the
reference (embedding = global average pool of ``base.13``, logits linear in it) and the
shared-pool hazard for module-hook methods."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gmxai_eval.errors import ModelStateError
from gmxai_eval.methods import METHODS
from gmxai_eval.models import MODELS
from gmxai_eval.models.gestaltmatcher import unshare_pooling


@pytest.fixture(scope="module")
def gm():
    torch.manual_seed(0)
    return MODELS.create("gestaltmatcher_v1", num_classes=5), torch.rand(2, 3, 100, 100), torch.tensor([1, 3])


def test_cam_equals_grad_cam_equals_hirescam_at_base13(gm) -> None:
    m, x, t = gm
    g = METHODS.create("grad_cam", relu=False)(m, x, t)
    h = METHODS.create("hirescam", relu=False)(m, x, t)
    with torch.no_grad():  # analytic CAM: sum_k w_tk A_k / 49, upsampled (bilinear) to 100x100
        a = m.preprocess(x)
        for layer in list(m.backbone.base)[:14]:
            a = layer(a)
        cam = torch.einsum("bk,bkhw->bhw", m.head.fc.weight[t], a) / 49
        cam = F.interpolate(cam[:, None], size=(100, 100), mode="bilinear", align_corners=False)[:, 0]
    scale = cam.abs().max()
    assert scale > 0
    assert torch.allclose(g, cam, atol=1e-5 * scale, rtol=0)
    assert torch.allclose(h, cam, atol=1e-5 * scale, rtol=0)


def test_hook_methods_refuse_the_shared_pool_until_unshared(gm) -> None:
    m, x, t = gm
    with pytest.raises(ModelStateError, match="backbone.base.2"):
        METHODS.create("deeplift")(m, x[:1], t[:1])
    u = unshare_pooling(MODELS.create("gestaltmatcher_v1", num_classes=5, seed=None))
    u.load_state_dict(m.state_dict())
    maps = METHODS.create("deeplift")(u, x[:1], t[:1])
    assert maps.shape == (1, 100, 100)  # runs once every module is used once
