"""Occlusion against a naive loop and Captum; controls against independent references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import Occlusion as CaptumOcclusion
from scipy import ndimage

from gmxai_eval.errors import ConfigError, ShapeError
from gmxai_eval.methods import create_method


def naive_occlusion(model, x, t, patch, stride, value=0.0):
    """One forward per window; windows as Captum places them (last one clipped)."""
    b, c, h, w = x.shape
    total = torch.zeros(b, h, w)
    count = torch.zeros(h, w)
    with torch.no_grad():
        full = model(x).gather(1, t.view(-1, 1)).squeeze(1)
        rows = [i * stride for i in range(-(-(h - patch) // stride) + 1)]
        cols = [i * stride for i in range(-(-(w - patch) // stride) + 1)]
        for r in rows:
            for q in cols:
                xo = x.clone()
                xo[:, :, r:r + patch, q:q + patch] = value
                drop = full - model(xo).gather(1, t.view(-1, 1)).squeeze(1)
                total[:, r:r + patch, q:q + patch] += drop.view(-1, 1, 1)
                count[r:r + patch, q:q + patch] += 1
    return total / count


@pytest.mark.parametrize("patch,stride", [(10, 5), (8, 8), (7, 3)])
def test_occlusion_equals_naive_loop_and_captum(toy_model, toy_batch, patch, stride):
    x, t, _ = toy_batch
    x, t = x[:3, :, :24, :20], t[:3]
    ours = create_method("occlusion", patch=patch, stride=stride)(toy_model, x, t)
    torch.testing.assert_close(ours, naive_occlusion(toy_model, x, t, patch, stride), rtol=1e-4, atol=1e-7)
    cap = CaptumOcclusion(toy_model).attribute(x, sliding_window_shapes=(3, patch, patch),
                                               strides=(3, stride, stride), baselines=0.0, target=t)
    torch.testing.assert_close(ours, cap[:, 0], rtol=1e-4, atol=1e-7)   # same value on every channel


def test_occlusion_batching_does_not_change_results(toy_model, toy_batch):
    x, t, _ = toy_batch
    x = x[:, :, :16, :16]
    ref = create_method("occlusion", patch=6, stride=4)(toy_model, x, t)
    for kw in ({"max_batch": 3}, {"max_batch": 13}, {"chunk_size": 1}, {"chunk_size": 4, "max_batch": 50}):
        torch.testing.assert_close(create_method("occlusion", patch=6, stride=4, **kw)(toy_model, x, t), ref,
                                   rtol=1e-5, atol=1e-7)


def test_occlusion_baseline_value_and_bad_config(toy_model, toy_batch):
    x, t, _ = toy_batch
    x = x[:, :, :16, :16]
    ours = create_method("occlusion", patch=(8, 4), stride=(8, 4), baseline=0.5)(toy_model, x[:2], t[:2])
    cap = CaptumOcclusion(toy_model).attribute(x[:2], sliding_window_shapes=(3, 8, 4), strides=(3, 8, 4),
                                               baselines=0.5, target=t[:2])
    torch.testing.assert_close(ours, cap[:, 0], rtol=1e-4, atol=1e-7)
    with pytest.raises(ConfigError, match="stride <= patch"):
        create_method("occlusion", patch=4, stride=6)(toy_model, x, t)
    with pytest.raises(ConfigError, match="positive int"):
        create_method("occlusion", patch=0)


def test_random_control_is_seeded_per_image(toy_model, toy_batch):
    x, t, _ = toy_batch
    a = create_method("random", seed=3)(toy_model, x, t)
    # keyed on the image, not on its position: a permuted batch gives permuted maps
    torch.testing.assert_close(create_method("random", seed=3)(toy_model, x.flip(0), t), a.flip(0))
    assert not torch.equal(create_method("random", seed=4)(toy_model, x, t), a)
    # uniform on [0, 1): mean 1/2, variance 1/12 (6144 draws)
    assert abs(a.mean().item() - 0.5) < 0.02 and abs(a.var().item() - 1 / 12) < 0.005
    n = create_method("random", distribution="normal")(toy_model, x, t)
    assert abs(n.mean().item()) < 0.05 and abs(n.std().item() - 1) < 0.05
    with pytest.raises(ConfigError, match="distribution"):
        create_method("random", distribution="cauchy")


def test_sobel_equals_scipy(toy_model, toy_batch):
    x, t, _ = toy_batch
    gray = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1).numpy().astype(np.float64)
    ref = np.stack([np.hypot(ndimage.sobel(g, axis=0, mode="nearest"), ndimage.sobel(g, axis=1, mode="nearest"))
                    for g in gray])
    torch.testing.assert_close(create_method("sobel")(toy_model, x, t), torch.from_numpy(ref).float(),
                               rtol=1e-5, atol=1e-4)


def test_centre_bias_is_a_centred_gaussian(toy_model, toy_batch):
    x, t, _ = toy_batch
    a = create_method("centre_bias", sigma=0.25)(toy_model, x[:, :, :, :20], t)   # 32 x 20
    m = a[0]
    yy, xx = torch.meshgrid(torch.arange(32.0) - 15.5, torch.arange(20.0) - 9.5, indexing="ij")
    torch.testing.assert_close(m, torch.exp(-(yy ** 2 + xx ** 2) / (2 * 5.0 ** 2)))
    torch.testing.assert_close(a, m.expand_as(a))
    torch.testing.assert_close(m, m.flip(0).flip(1))


def test_oracle_returns_the_masks_and_needs_them(toy_model, toy_batch):
    x, t, _ = toy_batch
    masks = torch.zeros(6, 32, 32, dtype=torch.bool)
    masks[:, 8:16, 4:20] = True
    masks[3] = False
    oracle = create_method("oracle", chunk_size=4)
    torch.testing.assert_close(oracle(toy_model, x, t, masks=masks), masks.float())
    torch.testing.assert_close(oracle.with_masks(masks)(toy_model, x, t), masks.float())
    torch.testing.assert_close(oracle(toy_model, x, t, masks=masks[:, None]), masks.float())
    assert oracle.needs_masks
    with pytest.raises(ConfigError, match="expected evidence masks"):
        oracle(toy_model, x, t)
    with pytest.raises(ShapeError, match="expected masks of shape"):
        oracle(toy_model, x, t, masks=masks[:5])


def test_forward_chunks_by_device_and_bad_chunks(toy_model, toy_batch):
    """``max_batch=None`` (the default of occlusion, Score-CAM and the evaluators that re-run
    the model) takes the device's chunk; a bad chunk is a one-line ConfigError."""
    from gmxai_eval.errors import ConfigError
    from gmxai_eval.utils import ACCELERATOR_CHUNK, CPU_CHUNK, device_chunk

    assert device_chunk("cpu") == CPU_CHUNK and device_chunk(torch.device("cuda", 0)) == ACCELERATOR_CHUNK
    assert device_chunk("cpu", 7) == 7
    x, t, _ = toy_batch
    x = x[:, :, :16, :16]
    for name, cfg in (("occlusion", {"patch": 6, "stride": 4}), ("score_cam", {"layer": "backbone.features.1"})):
        assert create_method(name).config["max_batch"] is None
        torch.testing.assert_close(create_method(name, **cfg)(toy_model, x, t),
                                   create_method(name, max_batch=5, **cfg)(toy_model, x, t), rtol=1e-5, atol=1e-7)
        for bad in (0, -3, 2.5, True, "16"):
            with pytest.raises(ConfigError, match=f"method '{name}': expected max_batch as a positive int or None"):
                create_method(name, max_batch=bad, **cfg)
