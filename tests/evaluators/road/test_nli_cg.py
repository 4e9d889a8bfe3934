"""The multigrid-preconditioned CG solver of noisy linear imputation: the same system as the
direct solvers (assembled independently), the same solution to 1e-6 on edge-case masks, and
the properties CG needs (symmetric system and preconditioner)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gmxai_eval.errors import ShapeError
from gmxai_eval.evaluators import create_evaluator
from gmxai_eval.functional.road import (NLI_SOLVERS, _apply, _Multigrid, linear_impute, nli_stencil,
                                        nli_system, road_images)
from gmxai_eval.models import MODELS

#: The stated agreement of "cg" with "direct" (pixel units, [0, 1] images, before noise).
AGREEMENT = 1e-5


def _masks(h: int, w: int, seed: int) -> dict[str, torch.Tensor]:
    """Edge-case removal masks of one ``h x w`` image (True = removed)."""
    g = torch.Generator().manual_seed(seed)
    out = {f"random {p}": torch.rand(h, w, generator=g) < p for p in (0.05, 0.5, 0.95)}
    m = torch.zeros(h, w, dtype=torch.bool)
    m[: h // 2 + 1, : w // 2 + 1] = True  # a block in the corner: touches two borders
    out["corner block"] = m
    m = torch.ones(h, w, dtype=torch.bool)
    m[h // 2, w // 2] = False  # one kept pixel: the solution is constant
    out["one kept pixel"] = m
    m = torch.zeros(h, w, dtype=torch.bool)
    m[::3, ::3] = True  # isolated pixels
    out["isolated"] = m
    m = torch.ones(h, w, dtype=torch.bool)
    m[:, 0] = False  # only the first column kept: the longest distance to the data
    out["one kept column"] = m
    out["nothing removed"] = torch.zeros(h, w, dtype=torch.bool)
    for m in out.values():  # on tiny images: keep the last pixel of a mask that removes all
        if bool(m.all()):
            m[-1, -1] = False
    return out


@pytest.mark.parametrize("h, w", [(1, 9), (2, 2), (7, 7), (16, 16), (13, 22), (31, 18)])
def test_cg_matches_direct_on_edge_case_masks(h, w):
    masks = _masks(h, w, seed=h * 100 + w)
    rm = torch.stack(list(masks.values()))
    x = torch.rand(len(masks), 3, h, w, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    d = linear_impute(x, rm, solver="direct")
    c = linear_impute(x, rm, solver="cg")
    for i, name in enumerate(masks):
        err = float((c[i] - d[i]).abs().max())
        assert err <= 1e-6, f"{name}: max abs difference {err:.2e}"
    kept = ~rm.unsqueeze(1).expand_as(x)
    assert torch.equal(c[kept], x[kept])  # kept pixels are never touched
    nothing = list(masks).index("nothing removed")
    assert torch.equal(c[nothing], x[nothing])
    one = list(masks).index("one kept pixel")  # analytic: every pixel takes the kept value
    torch.testing.assert_close(c[one], x[one, :, h // 2, w // 2].view(3, 1, 1).expand(3, h, w), atol=1e-9, rtol=0)


def test_cg_refuses_an_image_with_everything_removed():
    with pytest.raises(ShapeError, match="kept pixel"):
        linear_impute(torch.rand(2, 3, 8, 8), torch.ones(2, 8, 8, dtype=torch.bool), solver="cg")


def test_stencil_is_the_direct_solvers_matrix():
    """The CG operator, assembled on the grid, equals the sparse matrix the direct solvers
    factorise (assembled by an independent code path) on the removed pixels, and is symmetric."""
    g = torch.Generator().manual_seed(1)
    h, w = 9, 12
    rm = torch.rand(h, w, generator=g) < 0.6
    rm[0, :] = True  # a border row too
    mat, _, idx = nli_system(np.zeros((1, h, w)), rm.numpy())
    n = h * w
    dense = torch.stack([_apply(nli_stencil(rm.double().view(1, 1, h, w)), e.view(1, 1, h, w))[0, 0].flatten()
                         for e in torch.eye(n, dtype=torch.float64)], 1)  # column j = A e_j
    sub = dense[torch.as_tensor(idx)][:, torch.as_tensor(idx)]
    torch.testing.assert_close(sub, torch.from_numpy(mat.toarray()), atol=1e-15, rtol=0)
    torch.testing.assert_close(dense, dense.T, atol=1e-15, rtol=0)


def test_multigrid_preconditioner_is_symmetric_positive_definite():
    g = torch.Generator().manual_seed(2)
    h, w = 20, 17  # three levels: 20x17 -> 10x9 -> 5x5
    unk = (torch.rand(1, 1, h, w, generator=g) < 0.7).double()
    mg = _Multigrid(nli_stencil(unk), unk)
    assert len(mg.ops) == 3
    idx = torch.nonzero(unk.flatten()).flatten()
    eye = torch.eye(h * w, dtype=torch.float64)[idx]
    m = torch.stack([mg(e.view(1, 1, h, w))[0, 0].flatten()[idx] for e in eye], 1)
    torch.testing.assert_close(m, m.T, atol=1e-12, rtol=0)
    assert float(torch.linalg.eigvalsh(0.5 * (m + m.T)).min()) > 0


def test_cg_answer_does_not_depend_on_the_batch():
    """A converged system stops moving: solving images together or one by one gives the same
    answer (to rounding), although the batch iterates until its slowest system converges."""
    g = torch.Generator().manual_seed(3)
    x = torch.rand(5, 2, 24, 24, generator=g, dtype=torch.float64)
    rm = torch.rand(5, 24, 24, generator=g) < torch.tensor([0.1, 0.4, 0.7, 0.9, 0.99]).view(-1, 1, 1)
    whole = NLI_SOLVERS["cg"](x, rm, chunk=32)
    one_by_one = NLI_SOLVERS["cg"](x, rm, chunk=1)
    torch.testing.assert_close(whole, one_by_one, atol=1e-13, rtol=0)


def test_road_scores_and_images_identical_within_tolerance_for_cg_and_direct():
    """The evaluators with ``solver = "cg"`` reproduce ``"direct"``: images to the stated
    agreement (float32 images, noise included: the same generators), curves exactly here."""
    g = torch.Generator().manual_seed(5)
    model = MODELS.create("toy_cnn", num_classes=3, in_channels=3, width=8, seed=0).eval()
    x = torch.rand(4, 3, 20, 20, generator=g)
    maps = torch.rand(4, 20, 20, generator=g)
    ids = [f"s{i}" for i in range(4)]
    with torch.no_grad():
        y = model(x).argmax(1)
    for mode in ("morf", "lerf"):
        imgs = {s: road_images(x, maps, percentages=(0.1, 0.5, 0.9), mode=mode, solver=s, sample_ids=ids)
                for s in ("direct", "cg")}
        assert float((imgs["cg"] - imgs["direct"]).abs().max()) <= AGREEMENT
        res = {s: create_evaluator(f"road_{mode}", solver=s, output="probability")(model, x, y, maps)
               for s in ("direct", "cg")}
        torch.testing.assert_close(res["cg"].scores, res["direct"].scores, atol=1e-5, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cg_on_cuda_matches_direct_on_cpu():
    """CPU/GPU agreement of the imputation (run by benchmarks/gpu_check.sh): ``auto`` picks CG on
    the GPU and the banded Cholesky on the CPU; 3x112x112 images, 7 levels, both orders."""
    g = torch.Generator().manual_seed(6)
    x = torch.rand(4, 3, 112, 112, generator=g)
    maps = torch.rand(4, 112, 112, generator=g).cumsum(-1)  # smooth along rows: large holes
    ids = [f"s{i}" for i in range(4)]
    pct = (0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9)
    for mode in ("morf", "lerf"):
        cpu = road_images(x, maps, percentages=pct, mode=mode, solver="auto", noise=0.0, sample_ids=ids)
        gpu = road_images(x.cuda(), maps.cuda(), percentages=pct, mode=mode, solver="auto", noise=0.0,
                          sample_ids=ids)
        assert gpu.is_cuda
        assert float((gpu.cpu() - cpu).abs().max()) <= AGREEMENT
