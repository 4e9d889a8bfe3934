"""GestaltMatcher v1 (FaceRecogNet): released key set, shapes, strict loading, shared pooling, TTA."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from gmxai_eval.errors import CheckpointError, ModelStateError, ShapeError
from gmxai_eval.models import MODELS, check_no_reused_modules
from gmxai_eval.models.gestaltmatcher import (
    FaceRecogNet,
    load_released,
    load_state_dict_file,
    tta_merge_maps,
    tta_views,
    to_face_recog_net,
    unflip_maps,
    unshare_pooling,
)
from gmxai_eval.utils import hooks

# Key list written out from the reference table (not derived from the implementation).
CNA = (0, 1, 3, 4, 6, 7, 9, 10, 12)
CHANNELS = {0: (1, 32), 1: (32, 64), 3: (64, 64), 4: (64, 128), 6: (128, 96), 7: (96, 192),
            9: (192, 128), 10: (128, 256), 12: (256, 160)}
RELEASED_KEYS = (
    {f"base.{i}.conv.{p}" for i in CNA for p in ("weight", "bias")}
    | {f"base.{i}.norm.{p}" for i in CNA
       for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
    | {"base.13.weight", "base.13.bias", "classifier.0.weight", "classifier.0.bias"}
)
#: base index -> output (C, H) for a 100x100 input
OUT_SHAPES = {0: (32, 100), 1: (64, 100), 2: (64, 50), 3: (64, 50), 4: (128, 50), 5: (128, 25),
              6: (96, 25), 7: (192, 25), 8: (192, 13), 9: (128, 13), 10: (256, 13), 11: (256, 7),
              12: (160, 7), 13: (320, 7), 14: (320, 1)}


def _randomised_net(num_classes: int = 7, seed: int = 0) -> FaceRecogNet:
    torch.manual_seed(seed)
    net = FaceRecogNet(num_classes)
    with torch.no_grad():  # non-trivial BN statistics, so a mix-up of keys would show
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    return net.eval()


def test_released_key_set_and_shapes() -> None:
    net = FaceRecogNet(204)
    sd = net.state_dict()
    assert set(sd) == RELEASED_KEYS
    for i, (cin, cout) in CHANNELS.items():
        assert sd[f"base.{i}.conv.weight"].shape == (cout, cin, 3, 3)
    assert sd["base.13.weight"].shape == (320, 160, 3, 3)
    assert sd["classifier.0.weight"].shape == (204, 320)
    pools = [net.base[i] for i in (2, 5, 8, 11)]
    assert all(p is pools[0] for p in pools)  # one shared module, as released
    assert (pools[0].kernel_size, pools[0].stride, pools[0].ceil_mode) == (2, 2, True)


def test_wrapped_model_keys_and_feature_map_sizes() -> None:
    m = MODELS.create("gestaltmatcher_v1", num_classes=5)
    assert set(m.backbone.state_dict()) == RELEASED_KEYS - {"classifier.0.weight", "classifier.0.bias"}
    assert set(m.head.state_dict()) == {"fc.weight", "fc.bias"}
    x = m.preprocess(torch.rand(1, 3, 64, 80))
    assert x.shape == (1, 1, 100, 100)
    with torch.no_grad():
        for i, layer in enumerate(m.backbone.base):
            x = layer(x)
            c, h = OUT_SHAPES[i]
            assert x.shape == (1, c, h, h), i
    assert x.flatten(1).shape == (1, 320)  # the embedding is the flattened base.14 output
    assert m.cam_layer == "backbone.base.13" == MODELS.card("gestaltmatcher_v1").cam_layer


def test_preprocess_is_grayscale_without_normalisation() -> None:
    m = MODELS.create("gestaltmatcher_v1")
    x = torch.rand(1, 3, 100, 100)
    want = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    assert torch.allclose(m.preprocess(x)[:, 0], want, atol=1e-6)


def test_strict_roundtrip_and_logits_equal_released(tmp_path: Path) -> None:
    net = _randomised_net(7)
    path = tmp_path / "gm_v1.pth"
    torch.save(net.state_dict(), path)
    assert set(torch.load(path, weights_only=True)) == RELEASED_KEYS
    m = load_released(path)
    assert m.num_classes == 7
    x = torch.rand(2, 3, 100, 100)
    with torch.no_grad():
        logits, emb = net(m.preprocess(x))
        z = m.embed(x)
        assert torch.equal(z, emb)
        assert torch.equal(m.head(z), logits)  # m(x) is head(embed(x)) by contract
        back = to_face_recog_net(m)
        for k, v in net.state_dict().items():
            assert torch.equal(back.state_dict()[k], v), k
    with pytest.raises(ModelStateError, match="expected 3 classes"):
        load_released(path, num_classes=3)


def test_loading_errors_list_keys(tmp_path: Path) -> None:
    sd = _randomised_net(7).state_dict()
    p = tmp_path / "w.pth"
    torch.save({"module." + k: v for k, v in sd.items()}, p)
    with pytest.raises(CheckpointError, match="strip_prefix='module.'"):
        load_released(p)
    assert load_released(p, strip_prefix="module.").num_classes == 7
    partial = {k: v for k, v in sd.items() if k != "base.13.bias"}
    partial["extra.weight"] = torch.zeros(1)
    torch.save(partial, p)
    with pytest.raises(CheckpointError) as e:
        load_state_dict_file(FaceRecogNet(7), p)
    assert "missing keys [base.13.bias]" in str(e.value) and "unexpected keys [extra.weight]" in str(e.value)
    torch.save(sd, p)
    with pytest.raises(CheckpointError, match=r"classifier.0.weight: expected \(5, 320\), got \(7, 320\)"):
        load_state_dict_file(FaceRecogNet(5), p)
    torch.save({"state_dict": sd}, p)  # a checkpoint dict is unwrapped
    assert isinstance(load_state_dict_file(FaceRecogNet(7), p), FaceRecogNet)
    torch.save(nn.Linear(2, 2), p)  # a whole pickled module is refused (weights_only)
    with pytest.raises(CheckpointError, match="weights-only"):
        load_state_dict_file(FaceRecogNet(7), p)


def test_shared_pool_fires_four_times_and_unsharing_is_exact() -> None:
    m = MODELS.create("gestaltmatcher_v1", num_classes=4)
    x = torch.rand(1, 1, 100, 100)
    calls = []
    with hooks() as hs:
        hs.append(m.backbone.base[2].register_forward_hook(lambda *a: calls.append(1)))
        with torch.no_grad():
            before = m(x)
    assert len(calls) == 4  # the hazard: one module, four call sites
    with pytest.raises(ModelStateError, match="backbone.base.2"):
        check_no_reused_modules(m)
    keys = set(m.state_dict())
    unshare_pooling(m)
    check_no_reused_modules(m)
    assert len({id(m.backbone.base[i]) for i in (2, 5, 8, 11)}) == 4
    calls.clear()
    with hooks() as hs:
        hs.append(m.backbone.base[2].register_forward_hook(lambda *a: calls.append(1)))
        with torch.no_grad():
            after = m(x)
    assert len(calls) == 1
    assert torch.equal(before, after) and set(m.state_dict()) == keys
    u = MODELS.create("gestaltmatcher_v1", num_classes=4, share_pool=False)
    check_no_reused_modules(u)  # built unshared: same seed, same weights as the unshared m
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in u.state_dict().items())
    assert [type(u.backbone.base[i]) for i in range(15)] == [type(b) for b in m.backbone.base]


def test_tta_views_and_unflip() -> None:
    x = torch.rand(2, 3, 6, 8)
    v = tta_views(x)
    assert len(v) == 4 and torch.equal(v[0], x) and torch.equal(v[1], x.flip(-1))
    luma = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    for c in range(3):
        assert torch.allclose(v[2][:, c], luma) and torch.allclose(v[3][:, c], luma.flip(-1))

    raw = [t.sum(1) * torch.linspace(0, 1, 8) for t in v]  # not flip-invariant maps
    merged = tta_merge_maps(raw)
    oracle = (raw[0] + raw[1].flip(-1) + raw[2] + raw[3].flip(-1)) / 4
    assert torch.allclose(merged, oracle)
    assert torch.equal(unflip_maps(raw[1], True), raw[1].flip(-1))
    assert torch.equal(unflip_maps(raw[2], False), raw[2])
    with pytest.raises(ShapeError):
        tta_merge_maps(raw[:3])
    with pytest.raises(ShapeError):
        unflip_maps(torch.zeros(2, 1, 6, 8), True)
