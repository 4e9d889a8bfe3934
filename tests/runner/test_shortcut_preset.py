"""The ``shortcut`` preset: sticker data whose re-rendering without the sticker changes only
the sticker's pixels, a ``"sticker"`` region plane the localisation evaluators score against,
and a model that demonstrably uses the sticker (removing it drops the class score)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gmxai_eval.data import synth
from gmxai_eval.data.base import collate
from gmxai_eval.evaluators import EVALUATORS, EvalBatch
from gmxai_eval.models import MODELS
from gmxai_eval.models.default import PRESETS, unstickered_images
from gmxai_eval.runner.spec import preset_spec

#: smallest drop in p(class 1) and in the share predicted as class 1 when the sticker is removed
#: (measured: 0.51 -> 0.21 and 0.60 -> 0.18 on the 87 stickered class-1 test photos)
MIN_DROP = 0.2

SMALL = synth.SynthConfig(num_images=120, num_syndromes=2, imbalance=1.5, shortcut=True, shortcut_class=1,
                          shortcut_noise_rate=0.2)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    torch.set_num_threads(1)
    return synth.load(SMALL, root=tmp_path_factory.mktemp("shortcut"), progress=False)


def test_shortcut_data_carries_a_sticker_region_plane(small):
    assert small.region_names[-1] == "sticker"
    with_sticker = 0
    for i in range(len(small)):
        s = small[i]
        assert s.region_masks.shape[0] == len(small.region_names)
        assert torch.equal(s.region_masks[-1], small.sticker_mask(i))
        with_sticker += int(s.region_masks[-1].any())
    assert with_sticker > 0
    # a sticker is a 12x12 label
    s = next(small[i] for i in range(len(small)) if small.sticker_mask(i).any())
    assert int(s.region_masks[-1].sum()) == 144


def test_data_without_shortcut_has_no_sticker_plane(tmp_path):
    ds = synth.load(synth.SynthConfig(num_images=60, num_syndromes=2), root=tmp_path, progress=False)
    assert "sticker" not in ds.region_names and ds[0].region_masks.shape[0] == len(ds.region_names)


def test_re_rendering_without_the_sticker_changes_only_the_stickers_pixels(small):
    """Photos without a sticker are bit-identical; with one, only pixels within the photo blur's
    reach of the sticker change."""
    clean = unstickered_images(SMALL)
    orig = small.images().mul(255).round().to(torch.uint8)
    assert clean.shape == orig.shape
    st = torch.stack([small.sticker_mask(i) for i in range(len(small))])  # small is split=None: rows = dataset rows
    has = st.flatten(1).any(1)
    assert has.any() and (~has).any()
    assert torch.equal(clean[~has], orig[~has])
    near = F.max_pool2d(st[has].float().unsqueeze(1), 9, stride=1, padding=4)[:, 0].bool()  # sticker + 4 px
    diff = (clean[has].int() - orig[has].int()).abs().amax(1)
    assert int(diff[~near].max()) == 0
    assert (diff.flatten(1).amax(1) > 20).all()  # the sticker itself is gone


def test_localisation_scores_against_the_sticker_plane(small):
    rows = [i for i in range(len(small)) if small.sticker_mask(i).any()][:4]
    fb = collate([small[i] for i in rows])
    model = MODELS.create("toy_cnn", num_classes=3, seed=0)
    sticker = fb.region_masks[:, -1].float()
    maps = {"sticker": sticker, "elsewhere": 1.0 - sticker}
    batch = EvalBatch(model, fb.images, torch.ones(4, dtype=torch.int64),
                      maps, fb.image_ids, masks=fb.evidence, region_masks=fb.region_masks,
                      region_names=fb.region_names)
    r = EVALUATORS.create("relevance_mass_accuracy", mask="sticker").evaluate(batch)
    assert torch.equal(r["sticker"].scores, torch.ones(4, dtype=torch.float64))
    assert torch.equal(r["elsewhere"].scores, torch.zeros(4, dtype=torch.float64))


def test_the_preset_spec_scores_localisation_against_the_sticker():
    spec = preset_spec("shortcut")
    assert spec.model["config"]["preset"] == "shortcut" and "shortcut" in PRESETS
    assert PRESETS["shortcut"].data.shortcut
    loc = [e for e in spec.evaluators if EVALUATORS.card(e.name).category == "localisation"]
    assert loc and len(loc) == len(spec.evaluators)
    assert all(e.config["mask"] == "sticker" and e.config["on_empty"] == "nan" for e in loc)


@pytest.mark.slow
def test_the_shortcut_model_uses_the_sticker():
    """Re-rendering the stickered test photos of class 1 without the sticker drops the model's
    class-1 probability (the card records the same check, made at training time)."""
    from gmxai_eval.models.default import load_default, sticker_removal

    torch.set_num_threads(1)
    model, bundle, card = load_default(preset="shortcut", progress=False)
    chk = sticker_removal(model, bundle, PRESETS["shortcut"].data)
    for k, v in card["sticker_removal"].items():
        assert chk[k] == (pytest.approx(v, abs=1e-6) if isinstance(v, float) else v)
    assert chk["p_class_with_sticker"] - chk["p_class_without_sticker"] > MIN_DROP
    assert chk["predicted_with_sticker"] - chk["predicted_without_sticker"] > MIN_DROP


@pytest.mark.slow
def test_the_preset_run_exposes_the_sticker(tmp_path):
    """Maps of the true class put several times the random control's mass on the sticker for
    Guided Grad-CAM, Grad-CAM and occlusion (measured at 48 images: 0.26, 0.066, 0.056 against
    0.011, the sticker's share of the image); images without a sticker score NaN."""
    from gmxai_eval.runner.run import run_benchmark

    spec = preset_spec("shortcut")
    keep = {"guided_grad_cam", "grad_cam", "occlusion", "random"}
    spec = spec.replace(n_images=16, methods=[e for e in spec.methods if e.label in keep],
                        evaluators=[e for e in spec.evaluators if e.name == "relevance_mass_accuracy"])
    res = run_benchmark(spec, output=tmp_path, progress=False, verbose=False, write=False)
    scored = res.table[res.table["score"].notna()]
    assert scored["sample_id"].nunique() >= 2
    mean = scored.groupby("method")["score"].mean()
    assert mean["random"] == pytest.approx(144 / 112**2, rel=0.1)  # a 12x12 sticker: its area share
    for m in ("guided_grad_cam", "grad_cam", "occlusion"):
        assert mean[m] > 2 * mean["random"], m
