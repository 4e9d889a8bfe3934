"""ROAD / noisy linear imputation and IROF: analytic values, solver agreement, parity with
Quantus 0.6.0 on single-channel input, Quantus's RGB defects, invariances, bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from gmxai_eval.errors import ConfigError, ShapeError
from gmxai_eval.evaluators import EvalBatch, create_evaluator
from gmxai_eval.functional.baselines import make_baseline, order_pixels
from gmxai_eval.functional.road import NLI_SOLVERS, linear_impute, noisy_linear_impute, road_masks
from gmxai_eval.functional.superpixels import irof_aoc
from gmxai_eval.models import MODELS
from gmxai_eval.utils import rng_for

quantus = pytest.importorskip("quantus")
from quantus.functions.perturb_func import noisy_linear_imputation  # noqa: E402

PCT = (0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9)


def _blob_map(b: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Smooth maps (one big connected hole under MoRF) with a little noise to avoid ties."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    cy = torch.randint(0, h, (b, 1, 1), generator=g)
    cx = torch.randint(0, w, (b, 1, 1), generator=g)
    return -((yy - cy) ** 2 + (xx - cx) ** 2).float() + torch.rand(b, h, w, generator=g)


def _removal(maps: torch.Tensor, p: float) -> torch.Tensor:
    return road_masks(order_pixels(maps, "morf"), [p], "morf", tuple(maps.shape[1:]))[:, 0]


# ------------------------------------------------------------------------------------------
# noisy linear imputation
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("solver", ["direct", "cg"])
def test_nli_reproduces_linear_ramp_in_interior(solver):
    h, w = 24, 20
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    ramp = torch.stack([0.02 * yy + 0.01 * xx + 0.1, 0.5 - 0.015 * xx + 0.005 * yy, 0.03 * yy]).unsqueeze(0)
    remove = torch.rand(1, h, w, generator=torch.Generator().manual_seed(0)) < 0.7
    remove[:, [0, -1], :] = False  # border pixels have one-sided neighbourhoods: keep them
    remove[:, :, [0, -1]] = False
    remove[:, 5:15, 4:16] = True  # plus one big hole
    out = linear_impute(ramp, remove, solver=solver, tol=1e-12)
    torch.testing.assert_close(out, ramp, atol=1e-9, rtol=0)


def _pixel_by_pixel_system(img: np.ndarray, rm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The NLI system straight from its definition, one pixel at a time: dense ``A``, ``rhs``
    and the unknowns' flat indices (sums taken in the order of ``NEIGHBOURS``)."""
    from gmxai_eval.functional.road import NEIGHBOURS

    c, h, w = img.shape
    idx = [y * w + x for y in range(h) for x in range(w) if rm[y, x]]
    var = {p: k for k, p in enumerate(idx)}
    a, rhs = np.zeros((len(idx), len(idx))), np.zeros((len(idx), c))
    for k, p in enumerate(idx):
        y, x = divmod(p, w)
        for dy, dx, wt in NEIGHBOURS:
            if 0 <= y + dy < h and 0 <= x + dx < w:
                a[k, k] += wt
                q = (y + dy) * w + x + dx
                if rm[y + dy, x + dx]:
                    a[k, var[q]] = -wt
                else:
                    rhs[k] += wt * img[:, y + dy, x + dx]
    return a, rhs, np.array(idx, dtype=np.int64)


@pytest.mark.parametrize("shape", [(1, 1), (1, 6), (6, 1), (3, 7), (17, 12), (40, 40)])
def test_nli_assembly_is_the_definition_bitwise(shape):
    """The grid-sliced assembly (banded for the direct solver, sparse for SuperLU) against the
    system written down pixel by pixel: the same matrix and right-hand side to the bit, on
    random, blob and whole-row masks; a removed pixel's value (NaN here) is never read."""
    from gmxai_eval.functional.road import nli_banded, nli_system

    h, w = shape
    rng = np.random.default_rng(h * 100 + w)
    yy, xx = np.mgrid[:h, :w]
    for p in (0.05, 0.5, 0.95):
        rows = np.zeros((h, w), dtype=bool)
        rows[: int(p * h)] = True
        for rm in (rng.random((h, w)) < p, (yy - h / 2) ** 2 + (xx - w / 3) ** 2 < p * h * w / 3, rows):
            rm = rm.copy()
            rm.flat[-1] = rm.all() ^ rm.flat[-1]  # keep at least one pixel
            img = rng.random((3, h, w))
            img[:, rm] = np.nan
            a_ref, rhs_ref, idx_ref = _pixel_by_pixel_system(img, rm)
            mat, rhs, idx = nli_system(img, rm)
            assert np.array_equal(idx, idx_ref) and np.array_equal(rhs, rhs_ref)
            assert np.array_equal(mat.toarray(), a_ref)
            ab, rhs, idx = nli_banded(img, rm)
            assert np.array_equal(idx, idx_ref) and np.array_equal(rhs, rhs_ref)
            u, n = ab.shape[0] - 1, ab.shape[1]
            dense = np.zeros((n, n))
            for k in range(u + 1):  # upper band: ab[u + i - j, j] = A[i, j]
                j = np.arange(u - k, n)
                dense[j - (u - k), j] = ab[k, u - k:]
            assert ab.flags.f_contiguous and np.array_equal(dense, np.triu(a_ref))


def test_direct_splu_and_cg_solvers_agree_on_rgb():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 3, 24, 30, generator=g, dtype=torch.float64)  # wider than tall: transposed band
    maps = _blob_map(3, 24, 30)
    for p in (0.3, 0.9):
        rm = _removal(maps, p)
        d = linear_impute(x, rm, solver="direct")
        c = linear_impute(x, rm, solver="cg", tol=1e-10)
        torch.testing.assert_close(c, d, atol=1e-7, rtol=0)
        torch.testing.assert_close(linear_impute(x, rm, solver="splu"), d, atol=1e-12, rtol=0)
        # the GPU default precision: float32 CG with its dtype-limited tolerance
        c32 = NLI_SOLVERS["cg"](x.float(), rm, tol=1e-8, dtype=torch.float32)
        torch.testing.assert_close(c32.double(), d, atol=2e-4, rtol=0)
        assert torch.equal(d[~rm.unsqueeze(1).expand_as(d)], x[~rm.unsqueeze(1).expand_as(x)])


def test_nli_matches_quantus_perturb_func_on_rgb():
    """Quantus's imputation function itself handles channels; only its ROAD metric breaks on RGB."""
    g = torch.Generator().manual_seed(2)
    x = torch.rand(2, 3, 16, 18, generator=g, dtype=torch.float64)
    maps = torch.rand(2, 16, 18, generator=g)
    order = order_pixels(maps, "morf")
    k = 150
    rm = torch.zeros(2, 16 * 18, dtype=torch.bool).scatter_(1, order[:, :k], True).view(2, 16, 18)
    ours = linear_impute(x, rm, solver="direct")
    ref = np.stack([noisy_linear_imputation(x[i].numpy(), order[i, :k].numpy(), noise=0.0) for i in range(2)])
    torch.testing.assert_close(ours, torch.from_numpy(ref), atol=1e-12, rtol=0)


def test_nli_noise_statistics_and_determinism():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 1, 40, 40, generator=g, dtype=torch.float64)
    rm = _removal(_blob_map(2, 40, 40), 0.5)
    clean = linear_impute(x, rm)
    gens = lambda: [rng_for(0, "t", i) for i in ("a", "b")]  # noqa: E731
    noisy = noisy_linear_impute(x, rm, noise=0.05, generators=gens())
    diff = (noisy - clean)[rm.unsqueeze(1)]
    assert abs(float(diff.std()) / 0.05 - 1) < 0.1 and abs(float(diff.mean())) < 0.01  # 1600 draws
    assert torch.equal(noisy[~rm.unsqueeze(1)], x[~rm.unsqueeze(1)])
    assert torch.equal(noisy, noisy_linear_impute(x, rm, noise=0.05, generators=gens()))


def test_nli_bad_input():
    x = torch.rand(1, 1, 8, 8)
    with pytest.raises(ShapeError, match="kept pixel"):
        linear_impute(x, torch.ones(1, 8, 8, dtype=torch.bool))
    with pytest.raises(ShapeError):
        linear_impute(x, torch.zeros(1, 8, 7, dtype=torch.bool))
    with pytest.raises(ConfigError):
        linear_impute(x, torch.zeros(1, 8, 8, dtype=torch.bool), solver="lu")
    with pytest.raises(ConfigError):
        noisy_linear_impute(x, torch.zeros(1, 8, 8, dtype=torch.bool), noise=0.01)  # no generators


def test_road_masks_semantics():
    maps = torch.arange(100.0).view(1, 10, 10)  # pixel 99 most relevant
    m = road_masks(order_pixels(maps, "morf"), [0.1, 0.7], "morf", (10, 10))
    assert m[0, 0].sum() == 10 and m[0, 0].flatten()[90:].all()
    assert m[0, 1].sum() == 70  # 0.7 * 100 is 70, not 69 (float tolerance)
    l_ = road_masks(order_pixels(maps, "morf"), [0.1], "lerf", (10, 10))
    assert l_[0, 0].sum() == 90 and not l_[0, 0].flatten()[90:].any()  # the top 10% are kept


# ------------------------------------------------------------------------------------------
# ROAD evaluators vs Quantus
# ------------------------------------------------------------------------------------------
@pytest.fixture
def gray():
    model = MODELS.create("linear", num_classes=4, in_channels=1, size=20, seed=0)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 1, 20, 20, generator=g)
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y, torch.rand(16, 20, 20, generator=g)


def _quantus_road(model, x, y, a, percents, batch_size):
    q = quantus.ROAD(percentages=list(percents), noise=0.0, abs=False, normalise=False,
                     return_aggregate=False, disable_warnings=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = q(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a[:, None].numpy(),
                device="cpu", batch_size=batch_size, softmax=True)
    return torch.tensor([out[p] for p in percents], dtype=torch.float64)


def test_road_morf_parity_with_quantus(gray):
    """Noise 0 on both sides (Quantus ``noise=0.0``): identical imputations, identical accuracies."""
    model, x, y, a = gray
    ours = create_evaluator("road_morf", noise=0.0, percentages=PCT)(model, x, y, a)
    ref = _quantus_road(model, x, y, a, [10, 20, 30, 40, 50, 70, 90], batch_size=64)
    torch.testing.assert_close(ours.curves.mean(0), ref)
    assert ours.curves.mean(0).min() < 1  # the check is not vacuous: accuracy does drop
    torch.testing.assert_close(ours.scores, ours.curves.mean(1))


def test_road_lerf_parity_with_quantus(gray):
    """LeRF keeps the top p: Quantus removes the (100 - p)% most relevant of the reversed map."""
    model, x, y, a = gray
    ours = create_evaluator("road_lerf", noise=0.0, percentages=PCT)(model, x, y, a)
    ref = _quantus_road(model, x, y, 1.0 - a, [90, 80, 70, 60, 50, 30, 10], batch_size=64)
    torch.testing.assert_close(ours.curves.mean(0), ref)
    assert ours.curves.mean(0).min() < 1


def test_quantus_road_fails_on_rgb_ours_works():
    model = MODELS.create("linear", num_classes=4, in_channels=3, size=12, seed=0)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 12, 12, generator=g)
    y = torch.tensor([0, 1])
    a = torch.rand(2, 12, 12, generator=g)
    with pytest.raises(IndexError):
        _quantus_road(model, x, y, a, [10, 50], batch_size=64)
    # ours on RGB equals imputing every channel with the same pixel set
    ev = create_evaluator("road_morf", noise=0.0, percentages=(0.5,), output="probability")
    r = ev(model, x, y, a)
    xp = linear_impute(x, _removal(a, 0.5))
    with torch.no_grad():
        ref = torch.softmax(model(xp).double(), 1)[torch.arange(2), y]
    torch.testing.assert_close(r.scores, ref)


def test_quantus_road_uses_only_first_minibatch(gray):
    model, x, y, a = gray
    q_small = _quantus_road(model, x, y, a, [90], batch_size=4)
    ours = create_evaluator("road_morf", noise=0.0, percentages=(0.9,))(model, x, y, a).curves[:, 0]
    assert float(q_small) == float(ours[:4].mean()) != float(ours.mean())


def test_road_invariant_to_batch_order_chunking_and_noise_keyed_per_sample(gray):
    model, x, y, a = gray
    ev = create_evaluator("road_morf", output="probability", noise=0.02, forward_batch=5)
    ids = [f"s{i}" for i in range(16)]
    full = ev.evaluate(EvalBatch(model, x, y, {"m": a}, ids, seed=7))["m"]
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(1))
    parts = [ev.evaluate(EvalBatch(model, x[perm][i:i + 6], y[perm][i:i + 6], {"m": a[perm][i:i + 6]},
                                   [ids[j] for j in perm[i:i + 6].tolist()], seed=7))["m"] for i in (0, 6, 12)]
    got = torch.cat([p.curves for p in parts])
    torch.testing.assert_close(got, full.curves[perm], atol=1e-10, rtol=0)
    other_seed = ev.evaluate(EvalBatch(model, x, y, {"m": a}, ids, seed=8))["m"]
    assert not torch.equal(other_seed.curves, full.curves)


def test_road_config_errors():
    with pytest.raises(ConfigError):
        create_evaluator("road_morf", percentages=(0.5, 1.0))  # nothing left to impute from
    with pytest.raises(ConfigError):
        create_evaluator("road_lerf", percentages=(0.0, 0.5))  # keeping nothing: same
    create_evaluator("road_lerf", percentages=(0.5, 1.0))  # keeping everything is fine
    with pytest.raises(ConfigError):
        create_evaluator("road_lerf", output="logit")
    with pytest.raises(ConfigError):
        create_evaluator("road_morf", solver="qr")


# ------------------------------------------------------------------------------------------
# IROF
# ------------------------------------------------------------------------------------------
@pytest.fixture
def gray_cnn():
    model = MODELS.create("toy_cnn", num_classes=4, in_channels=1, seed=0)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 1, 24, 24, generator=g)
    return model, x, torch.tensor([0, 1, 2, 3]), torch.rand(4, 24, 24, generator=g)


def _quantus_irof(model, x, y, a, baseline):
    q = quantus.IROF(segmentation_method="slic", abs=False, normalise=False, perturb_baseline=baseline,
                     return_aggregate=False, disable_warnings=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = q(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a[:, None].numpy(),
                device="cpu", batch_size=64, softmax=True)
    return torch.tensor(np.asarray(out, dtype=np.float64))


def test_irof_parity_with_quantus(gray_cnn):
    """Quantus's slic defaults (n_segments 100, compactness 10, sigma 0, 10 iterations) and the
    per-image mean baseline passed as an explicit array; Quantus's AOC rule."""
    model, x, y, a = gray_cnn
    ours = create_evaluator("irof", aoc="quantus", baseline="image_mean")(model, x, y, a)
    ref = _quantus_irof(model, x, y, a, make_baseline("image_mean", x).numpy())
    torch.testing.assert_close(ours.scores, ref, rtol=1e-5, atol=0)


def test_quantus_irof_mean_baseline_depends_on_the_batch(gray_cnn):
    """Quantus's default baseline "mean" averages the whole current batch: the score of an image
    changes with its batch mates. Ours (per-image mean) does not."""
    model, x, y, a = gray_cnn
    x2 = x.clone()
    x2[1:] = x2[1:] * 0.2  # darker batch mates
    q1, q2 = _quantus_irof(model, x, y, a, "mean"), _quantus_irof(model, x2, y, a, "mean")
    assert abs(float(q1[0] - q2[0])) > 1e-3
    ev = create_evaluator("irof")
    torch.testing.assert_close(ev(model, x, y, a).scores[0], ev(model, x2, y, a).scores[0])


def test_quantus_irof_fails_on_rgb_ours_works():
    model = MODELS.create("toy_cnn", num_classes=4, in_channels=3, seed=0)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 16, 16, generator=g)
    y = torch.tensor([0, 1])
    a = torch.rand(2, 16, 16, generator=g)
    with pytest.raises(AssertionError):
        _quantus_irof(model, x, y, a, make_baseline("image_mean", x).numpy())
    r = create_evaluator("irof", n_segments=20)(model, x, y, a)
    assert torch.isfinite(r.scores).all() and r.curves[:, 0].eq(1).all()


def test_irof_aoc_rules_analytic():
    c = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0], dtype=torch.float64)  # S = 4, collapses at once
    torch.testing.assert_close(irof_aoc(c, "normalised"), torch.tensor(1 - 0.5 / 4, dtype=torch.float64))
    torch.testing.assert_close(irof_aoc(c, "quantus"), torch.tensor(4.0, dtype=torch.float64))
    flat = torch.ones(5, dtype=torch.float64)  # nothing changes -> no area over the curve
    assert float(irof_aoc(flat, "normalised")) == 0.0 and float(irof_aoc(flat, "quantus")) == 1.0


def test_irof_superpixels_computed_once_and_invariances(gray_cnn, monkeypatch):
    import gmxai_eval.evaluators.irof as irof_mod

    model, x, y, a = gray_cnn
    calls = []
    real = irof_mod.slic_segments
    monkeypatch.setattr(irof_mod, "slic_segments", lambda *args, **kw: calls.append(1) or real(*args, **kw))
    batch = EvalBatch(model, x, y, {"a": a, "neg": -a})
    ev = create_evaluator("irof", forward_batch=7)
    out = ev.evaluate(batch)
    create_evaluator("irof", aoc="quantus").evaluate(batch)  # a second evaluator reuses them too
    assert len(calls) == 1
    # a faithful-ish sanity: the methods differ, and order / chunking do not matter
    assert not torch.equal(out["a"].scores, out["neg"].scores)
    perm = torch.tensor([2, 0, 3, 1])
    got = create_evaluator("irof", forward_batch=1000).evaluate(EvalBatch(model, x[perm], y[perm], {"a": a[perm]}))["a"]
    torch.testing.assert_close(got.scores, out["a"].scores[perm])


def test_irof_of_an_input_independent_model_is_zero():
    class Constant(torch.nn.Module):
        def forward(self, x):
            return torch.tensor([[0.3, -1.0, 2.0]]).expand(x.shape[0], 3)

    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    r = create_evaluator("irof", n_segments=10)(Constant().eval(), x, torch.tensor([0, 2]), torch.rand(2, 16, 16))
    torch.testing.assert_close(r.scores, torch.zeros(2, dtype=torch.float64))
    assert r.curves.eq(1).all()
    with pytest.raises(ConfigError):
        create_evaluator("irof", output="accuracy")


def test_registered_cards():
    from gmxai_eval.evaluators import evaluator_card

    expect = {"road_morf": (False, "perturbation"), "road_lerf": (True, "perturbation"),
              "irof": (True, "perturbation"), "occlusion_agreement": (True, "agreement"),
              "relevance_mass_accuracy": (True, "localisation"), "relevance_rank_accuracy": (True, "localisation"),
              "pointing_game": (True, "localisation"), "energy_pointing_game": (True, "localisation"),
              "localisation_auc": (True, "localisation"), "top_k_intersection": (True, "localisation")}
    for name, (hib, cat) in expect.items():
        card = evaluator_card(name)
        assert (card.higher_is_better, card.category) == (hib, cat), name
        assert ("masks" in card.needs) == (cat == "localisation"), name
        with pytest.raises(TypeError):
            card.default_config["x"] = 1  # frozen


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_direct_solver_threads_and_fallback_give_identical_images(threads, monkeypatch):
    """The GIL-free LAPACK path gives bitwise the solveh_banded solution, whatever the number of
    solver threads (images, including one with nothing removed, solved in any order)."""
    from scipy.linalg import solveh_banded

    import gmxai_eval.functional.road as road

    g = torch.Generator().manual_seed(3)
    x = torch.rand(5, 3, 20, 26, generator=g)
    rm = _removal(_blob_map(5, 20, 26), 0.6)
    rm[2] = False  # nothing to impute in one image
    assert road._lapack_pb() is not None
    got = road._solve_banded_all(x, rm, threads=threads)
    xs = x.double().numpy().transpose(0, 1, 3, 2).copy()
    rs = rm.numpy().transpose(0, 2, 1).copy()
    ref = xs.copy()
    for i in range(5):
        if rs[i].any():
            ab, rhs, idx = road.nli_banded(xs[i], rs[i])
            ref[i].reshape(3, -1)[:, idx] = solveh_banded(ab, rhs, lower=False, check_finite=False).T
    assert torch.equal(got, torch.from_numpy(ref).transpose(2, 3).float())
    monkeypatch.setattr(road, "_PB", [None])  # a scipy without the C entry points: one by one
    assert torch.equal(road._solve_banded_all(x, rm, threads=threads), got)


def test_direct_solver_uses_the_run_threads_inside_its_blas_limit(monkeypatch):
    """The BLAS limit of the solve also limits torch's OpenMP threads, so the solver's thread
    count is read before it: with 2 torch threads the images are solved on 2 pool threads."""
    import threading

    import gmxai_eval.functional.road as road

    seen = set()
    solve = road._pb_solve
    lock, calls = threading.Lock(), []
    both = threading.Barrier(2, timeout=30)  # the first two solves must run at the same time

    def spy(ab, rhs):
        with lock:
            calls.append(threading.current_thread().name)
            first_two = len(calls) <= 2
        if first_two:
            both.wait()  # a serial solver never releases it: BrokenBarrierError after 30 s
        seen.add(threading.current_thread().name)
        return solve(ab, rhs)

    monkeypatch.setattr(road, "_pb_solve", spy)
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        x = torch.rand(6, 3, 24, 24, generator=torch.Generator().manual_seed(0))
        linear_impute(x, torch.rand(6, 24, 24, generator=torch.Generator().manual_seed(1)) < 0.5, solver="direct")
    finally:
        torch.set_num_threads(old)
    assert len(seen) == 2 and "MainThread" not in seen
