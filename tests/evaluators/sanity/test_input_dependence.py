"""``input_dependence``: analytic explainers, a naive reference, invariances, and the default
model (deconvolution's maps do not depend on the image; saliency's and the oracle's do)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from gmxai_eval.errors import ConfigError
from gmxai_eval.evaluators import EVALUATORS, EvalBatch
from gmxai_eval.evaluators.sanity import partner_index
from gmxai_eval.methods.base import METHODS, Explainer
from gmxai_eval.models import MODELS
from gmxai_eval.types import MethodCard


class ClassPattern(Explainer):
    """A fixed random pattern per class: a function of the target alone (like deconvolution on a
    network without max-pooling)."""

    card = MethodCard(name="test_class_pattern", family="control", signed=False, paper="test", control=True)

    def _attribute(self, model, x, target):
        pats = torch.rand(16, *x.shape[-2:], generator=torch.Generator().manual_seed(7))
        return pats[target.cpu()].to(x.device)


class Image(Explainer):
    """The image itself (mean over channels)."""

    card = MethodCard(name="test_image", family="control", signed=False, paper="test", control=True)

    def _attribute(self, model, x, target):
        return x.mean(1)


@pytest.fixture
def toy():
    torch.set_num_threads(1)
    model = MODELS.create("toy_cnn", num_classes=4, seed=0)
    x = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        t = model(x).argmax(1)
    return model, x, t, [f"s{i}" for i in range(6)]


def _batch(model, x, t, ids, explainer, **kw):
    return EvalBatch(model, x, t, {"m": explainer(model, x, t)}, ids, {"m": explainer}, **kw)


def test_a_map_of_the_class_alone_fails_with_zero(toy):
    model, x, t, ids = toy
    r = EVALUATORS.create("input_dependence").evaluate(_batch(model, x, t, ids, ClassPattern()))["m"]
    assert torch.equal(r.scores, torch.zeros(6, dtype=torch.float64))
    assert torch.equal(r.extras["between"], torch.zeros(6, dtype=torch.float64))


def test_the_image_as_map_matches_a_naive_reference_and_passes(toy):
    model, x, t, ids = toy
    ev = EVALUATORS.create("input_dependence", n_partners=2, n_noise=3)
    batch = _batch(model, x, t, ids, Image())
    r = ev.evaluate(batch)["m"]
    noisy, kept = ev.noisy_inputs(batch)
    assert kept.all()
    part = partner_index(ids, 0, 2)

    def d(u, v):
        return 1.0 - spearmanr(np.abs(u.flatten().numpy()), np.abs(v.flatten().numpy())).statistic

    img = x.mean(1)
    for i in range(6):
        db = np.mean([d(img[i], img[j]) for j in part[i].tolist()])
        dn = np.mean([d(img[i], noisy[i, n].mean(0)) for n in range(3)])
        assert r.scores[i].item() == pytest.approx(db / (db + dn), abs=1e-9)
    # uniform images, noise sigma 0.01: D_b ~ 1, D_n ~ 1e-3 -> the passing end of the scale
    assert (r.scores > 0.99).all()


def test_noise_keeps_the_prediction_and_is_keyed_on_sample_ids(toy):
    model, x, t, ids = toy
    ev = EVALUATORS.create("input_dependence")
    noisy, kept = ev.noisy_inputs(_batch(model, x, t, ids, Image()))
    assert kept.all() and noisy.shape == (6, 3, 3, 32, 32)
    with torch.no_grad():
        p = model(noisy.reshape(-1, 3, 32, 32)).argmax(1).view(6, 3)
    assert torch.equal(p, t.unsqueeze(1).expand(6, 3))
    assert 0 < float((noisy - x.unsqueeze(1)).abs().max()) < 0.1
    # a permuted batch gives the permuted scores (partners and draws keyed on ids, not positions)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    a = ev.evaluate(_batch(model, x, t, ids, Image()))["m"].scores
    b = EVALUATORS.create("input_dependence").evaluate(
        _batch(model, x[perm], t[perm], [ids[i] for i in perm], Image()))["m"].scores
    assert torch.allclose(b, a[perm], atol=1e-12)


class Brightness(torch.nn.Module):
    """Two classes: darker / brighter than mid-grey."""

    def forward(self, x):
        m = x.mean((1, 2, 3))
        return torch.stack([0.5 - m, m - 0.5], 1)


def test_noise_that_flips_the_prediction_gives_nan(toy):
    _, x, _, ids = toy
    model = Brightness().eval()
    with torch.no_grad():
        t = model(x).argmax(1)
    ev = EVALUATORS.create("input_dependence", noise_sigma=50.0, max_tries=1, n_noise=1)
    r = ev.evaluate(_batch(model, x, t, ids, Image()))["m"]
    flipped = ~r.extras["prediction_kept"]
    # clip(x + N(0, 50^2)) is a random binary image: its class is a coin flip
    assert flipped.any() and not flipped.all()
    assert torch.isnan(r.scores[flipped]).all() and not torch.isnan(r.scores[~flipped]).any()


def test_methods_that_need_masks_get_each_images_own_mask(toy):
    model, x, t, ids = toy
    masks = torch.zeros(6, 32, 32, dtype=torch.bool)
    for i in range(6):
        masks[i, 4 * i:4 * i + 6, 2 * i:2 * i + 9] = True
    oracle = METHODS.create("oracle")
    batch = EvalBatch(model, x, t, {"oracle": oracle(model, x, t, masks=masks)}, ids, {"oracle": oracle}, masks)
    r = EVALUATORS.create("input_dependence").evaluate(batch)["oracle"]
    assert torch.equal(r.scores, torch.ones(6, dtype=torch.float64))  # distinct masks, no noise effect


@pytest.mark.parametrize("bad", [{"n_partners": 0}, {"n_noise": 1.5}, {"noise_sigma": 0}, {"max_tries": True},
                                 {"similarity": "pearsonish"}])
def test_bad_config_raises(bad):
    with pytest.raises(ConfigError):
        EVALUATORS.create("input_dependence", **bad)


def test_card_sits_in_the_randomisation_family_next_to_mprt():
    card = EVALUATORS.card("input_dependence")
    assert card.category == EVALUATORS.card("mprt_cascading").category == "randomisation"
    assert card.higher_is_better and "explainer" in card.needs


@pytest.mark.slow
def test_on_the_default_model_deconvolution_fails_and_saliency_passes():
    """Deconvolution's backward pass never looks at the forward activations of ``gmx_small``
    (no max-pooling), so its map is a function of the explained class: identical for every
    image (score 0). Saliency's maps depend on the image (measured 0.85 on 16 images)."""
    from gmxai_eval.models.default import load_default
    from gmxai_eval.runner.stages.load import select_samples

    torch.set_num_threads(1)
    model, splits, _ = load_default(progress=False)
    ss = select_samples(splits.test, "test", 8, "stratified")
    x = torch.stack([s.image for s in ss])
    with torch.no_grad():
        t = model(x).argmax(1)
    ids = [s.image_id for s in ss]
    ex = {m: METHODS.create(m) for m in ("deconvolution", "saliency")}
    batch = EvalBatch(model, x, t, {m: e(model, x, t) for m, e in ex.items()}, ids, ex)
    r = EVALUATORS.create("input_dependence").evaluate(batch)
    assert torch.equal(r["deconvolution"].scores, torch.zeros(8, dtype=torch.float64))
    assert float(r["saliency"].scores.mean()) > 0.7
    assert (r["saliency"].scores > 0.5).all()


def test_a_batch_of_one_has_no_partner_and_scores_nan(toy):
    model, x, t, ids = toy
    r = EVALUATORS.create("input_dependence").evaluate(_batch(model, x[:1], t[:1], ids[:1], Image()))["m"]
    assert torch.isnan(r.scores).all() and r.extras["noise"].isfinite().all()


def test_partners_are_other_images_independent_of_batch_order():
    ids = [f"s{i}" for i in range(7)]
    p = partner_index(ids, 3, 3)
    assert p.shape == (7, 3) and not (p == torch.arange(7)[:, None]).any()
    assert all(len(set(row)) == 3 for row in p.tolist())
    rev = partner_index(ids[::-1], 3, 3)
    for i in range(len(ids)):
        assert [ids[j] for j in p[i].tolist()] == [ids[::-1][j] for j in rev[6 - i].tolist()]
    assert partner_index(ids[:3], 3, 3).shape == (3, 2)  # at most B - 1 partners
