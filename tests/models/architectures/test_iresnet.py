"""insightface iResNet-50/100 and GestaltMatcher-Arc: key sets, map sizes, strict loading."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from gmxai_eval.models import MODELS, check_no_reused_modules
from gmxai_eval.models.gestaltmatcher import load_insightface, load_state_dict_file
from gmxai_eval.errors import CheckpointError
from gmxai_eval.models.base import ClassifierHead, GMXModel, Preprocess
from gmxai_eval.models.iresnet import IResNet
from gmxai_eval.types import ModelCard
from gmxai_eval.utils import hooks, module_by_name

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def insightface_keys(blocks: tuple[int, int, int, int]) -> set[str]:
    """The insightface iResNet state-dict keys, written out from the reference description."""
    keys = {"conv1.weight", "prelu.weight", "fc.weight", "fc.bias"}
    keys |= {f"bn1.{p}" for p in BN} | {f"bn2.{p}" for p in BN} | {f"features.{p}" for p in BN}
    for s, n in enumerate(blocks, start=1):
        for b in range(n):
            pre = f"layer{s}.{b}."
            keys |= {pre + "conv1.weight", pre + "conv2.weight", pre + "prelu.weight"}
            keys |= {f"{pre}{bn}.{p}" for bn in ("bn1", "bn2", "bn3") for p in BN}
            if b == 0:
                keys |= {pre + "downsample.0.weight"} | {f"{pre}downsample.1.{p}" for p in BN}
    return keys


@pytest.fixture(scope="module")
def arc():
    """gestaltmatcher_arc (iResNet-100), built once: it has 65 M parameters."""
    return MODELS.create("gestaltmatcher_arc", num_classes=204)


def test_iresnet100_keys_and_structure(arc) -> None:
    sd = arc.backbone.state_dict()
    assert set(sd) == insightface_keys((3, 13, 30, 3))
    assert sd["conv1.weight"].shape == (64, 3, 3, 3)
    assert sd["fc.weight"].shape == (512, 512 * 7 * 7)
    assert sd["layer3.0.downsample.0.weight"].shape == (256, 128, 1, 1)
    assert sd["layer4.2.prelu.weight"].shape == (512,)
    assert set(arc.head.state_dict()) == {"fc.weight", "fc.bias"}
    assert arc.head.fc.weight.shape == (204, 512)
    n_prelu = sum(isinstance(m, nn.PReLU) for m in arc.modules())
    assert n_prelu == 1 + 3 + 13 + 30 + 3  # each PReLU its own module
    check_no_reused_modules(arc)  # no shared modules, nothing in place
    assert arc.cam_layer == "backbone.bn2" == MODELS.card("gestaltmatcher_arc").cam_layer


def test_iresnet100_map_sizes_and_preprocess(arc) -> None:
    seen: dict[str, tuple[int, ...]] = {}
    names = ["backbone.prelu", "backbone.layer1", "backbone.layer2", "backbone.layer3",
             "backbone.layer4", "backbone.bn2"]
    x = torch.rand(1, 3, 120, 100)  # resized to 112x112 by the model
    with hooks() as hs, torch.no_grad():
        for n in names:
            hs.append(module_by_name(arc, n).register_forward_hook(
                lambda m, i, o, n=n: seen.__setitem__(n, tuple(o.shape))))
        z = arc.embed(x)
    assert [seen[n] for n in names] == [(1, 64, 112, 112), (1, 64, 56, 56), (1, 128, 28, 28),
                                        (1, 256, 14, 14), (1, 512, 7, 7), (1, 512, 7, 7)]
    assert z.shape == (1, 512)
    p = arc.preprocess(torch.full((1, 3, 112, 112), 0.25))
    assert torch.allclose(p, torch.full_like(p, -0.5))  # (x - 0.5) / 0.5


def test_iresnet50_keys() -> None:
    m = MODELS.create("iresnet50", num_classes=3)
    assert set(m.backbone.state_dict()) == insightface_keys((3, 4, 14, 3))
    assert MODELS.card("iresnet50").input_size == (112, 112)


def test_embedding_is_affine_in_bn2_map() -> None:
    """Eval mode: embedding = features(fc(flatten(A))) is affine in the bn2 map A."""
    torch.manual_seed(0)
    net = IResNet((1, 1, 1, 1), num_features=16).eval()  # only its head is run
    with torch.no_grad():
        net.features.running_mean.uniform_(-1, 1)
        head = lambda a: net.features(net.fc(torch.flatten(net.dropout(a), 1)))  # noqa: E731
        a1, a2 = torch.randn(2, 1, 512, 7, 7).unbind(0)
        t = 0.3
        assert torch.allclose(head(t * a1 + (1 - t) * a2), t * head(a1) + (1 - t) * head(a2), atol=1e-4)


def _tiny_backbone() -> IResNet:
    """Same naming, small: stages (1, 2, 1, 1), 32-d embedding, 32x32 input (2x2 last map)."""
    return IResNet((1, 2, 1, 1), num_features=32, fc_scale=2 * 2)


def _tiny(num_classes: int = 2) -> GMXModel:
    pre = Preprocess(mean=(0.5,) * 3, std=(0.5,) * 3, size=(32, 32))
    return GMXModel(_tiny_backbone(), ClassifierHead(32, num_classes), pre,
                    cam_layer="backbone.bn2", arch="_test_iresnet_tiny").eval()


def test_strict_roundtrip_through_torch_save(tmp_path: Path) -> None:
    torch.manual_seed(1)
    src = _tiny_backbone().eval()
    with torch.no_grad():
        for m in src.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "backbone.pth"
    torch.save(src.state_dict(), path)
    assert set(torch.load(path, weights_only=True)) == insightface_keys((1, 2, 1, 1))
    dst = load_state_dict_file(_tiny_backbone(), path, strict=True).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        ref = src((x - 0.5) / 0.5)
        assert torch.equal(dst((x - 0.5) / 0.5), ref)

    # load_insightface goes through the registry: register the small arch for this test only
    name = "_test_iresnet_tiny"
    MODELS.register(_tiny, name=name, card=ModelCard(name, 3, (32, 32), 32, "backbone.bn2"))
    try:
        m = load_insightface(path, arch=name, num_classes=2)
        with torch.no_grad():
            assert torch.equal(m.embed(x), ref)
    finally:
        MODELS.unregister(name)
    with pytest.raises(CheckpointError, match="layer2.1"):  # iResNet-50 lacks nothing, tiny lacks blocks
        load_state_dict_file(_tiny_backbone(), _save(tmp_path, IResNet((1, 1, 1, 1), 32, fc_scale=4)))


def _save(tmp_path: Path, module: nn.Module) -> Path:
    p = tmp_path / "other.pth"
    torch.save(module.state_dict(), p)
    return p
