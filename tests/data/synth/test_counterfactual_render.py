"""Counterfactual re-rendering: only the switched-off traits' pixels change, all-off is the
generator's unaffected twin, nothing-off is the stored image."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from gmxai_eval.data import synth
from gmxai_eval.data.regions import REGION_NAMES
from gmxai_eval.errors import ConfigError, DataError, ShapeError

SMALL = synth.SynthConfig(num_images=72, num_syndromes=3, imbalance=3.0, effect=3.0, seed=5)
SHORTCUT = synth.SynthConfig(**{**SMALL.to_json(), "shortcut": True, "shortcut_class": 1,
                                "shortcut_noise_rate": 0.2})


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    root = tmp_path_factory.mktemp("cf")
    return synth.SyntheticFaces(synth.generate(SMALL, name="small", root=root, progress=False))


@pytest.fixture(scope="module")
def renderer(ds):
    return ds.counterfactual_renderer()


def _affected(ds):
    return [s.image_id for s in (ds[i] for i in range(len(ds))) if s.label > 0]


def test_traits_are_the_class_phenotypes_and_masks_tile_the_evidence(ds, renderer):
    details = ds.card["class_details"]
    for i in range(0, len(ds), 5):
        s = ds[i]
        names = renderer.traits(s.image_id)
        assert names == tuple(details[s.label]["phenotypes"])
        m = renderer.trait_masks(s.image_id)
        assert m.dtype == torch.bool and tuple(m.shape) == (len(names), 112, 112)
        assert torch.equal(m.any(0), s.evidence)
        for t, mt in zip(names, m):
            regs = [REGION_NAMES.index(r) for r in synth.PHENOTYPES[t].regions]
            assert torch.equal(mt, s.region_masks[regs].any(0)), (s.image_id, t)


def test_nothing_off_reproduces_the_stored_images_bitwise(ds, renderer):
    ids = [ds[i].image_id for i in range(len(ds))]
    x = renderer.render(ids, [()] * len(ids))
    assert x.dtype == torch.float32 and torch.equal(x, ds.images())


def test_the_generator_is_reproduced_inside_the_evidence(ds, renderer):
    # the re-rendering with every shift still on must give the stored pixels where the
    # phenotypes act (this pins the photo draws and parameters to the generator's)
    ids = _affected(ds)
    rows = [renderer._row(s) for s in ids]
    again = renderer._rerender(rows, [set() for _ in rows])
    stored = torch.from_numpy(np.ascontiguousarray(np.load(ds.folder / "images.npy")[rows]))
    ev = torch.stack([ds[int(np.nonzero(ds.indices == j)[0][0])].evidence for j in rows])
    ev = ev.unsqueeze(1).expand_as(stored)
    assert torch.equal(again[ev], stored[ev])


def test_all_traits_off_is_the_unaffected_twin(ds, renderer):
    twin = synth.render_arrays(SMALL, phenotypes_on=False)["images"]
    ids = [ds[i].image_id for i in range(len(ds))]
    x = renderer.render(ids, [renderer.traits(s) for s in ids])
    want = torch.from_numpy(twin[ds.indices]).float() / 255
    assert torch.equal(x, want)
    assert not torch.equal(x, ds.images())  # the affected faces did change


def test_one_trait_off_changes_only_its_mask(ds, renderer):
    ids = _affected(ds)
    changed_somewhere = 0
    pairs = [(s, t) for s in ids for t in renderer.traits(s)]
    x0 = renderer.render([s for s, _ in pairs], [()] * len(pairs))
    x1 = renderer.render([s for s, _ in pairs], [(t,) for _, t in pairs])
    for k, (s, t) in enumerate(pairs):
        m = renderer.trait_masks(s)[renderer.traits(s).index(t)]
        diff = (x0[k] != x1[k]).any(0)
        assert not (diff & ~m).any(), (s, t)
        changed_somewhere += bool(diff.any())
    assert changed_somewhere >= 0.9 * len(pairs)


def test_repeated_ids_with_different_subsets(ds, renderer):
    s = _affected(ds)[0]
    names = renderer.traits(s)
    subsets = [(), names[:1], names[1:], names]
    x = renderer.render([s] * 4, subsets)
    for k, sub in enumerate(subsets):
        assert torch.equal(x[k], renderer.render([s], [sub])[0])
    # switching the traits off one at a time composes: the union equals all-off
    m0 = renderer.trait_masks(s)[0]
    assert torch.equal(torch.where(m0, x[1], x[2]), x[3])


def test_sticker_off_is_the_sticker_free_photo(tmp_path):
    ds = synth.SyntheticFaces(synth.generate(SHORTCUT, name="sc", root=tmp_path, progress=False))
    r = ds.counterfactual_renderer()
    bare = synth.render_arrays(synth.SynthConfig(**{**SHORTCUT.to_json(), "shortcut_rate": 0.0,
                                                    "shortcut_noise_rate": 0.0}))["images"]
    ids = [ds[i].image_id for i in range(len(ds))]
    with_st = [i for i, s in enumerate(ids) if "sticker" in r.traits(s)]
    assert len(with_st) >= 10
    # the shortcut class (and an unaffected face) has the sticker as its only trait; other
    # classes keep their phenotypes
    labels = ds.labels
    for i in with_st:
        names = r.traits(ids[i])
        assert names[-1] == "sticker"
        assert (names == ("sticker",)) == (int(labels[i]) in (0, 1))
    x = r.render([ids[i] for i in with_st], [("sticker",)] * len(with_st))
    want = torch.from_numpy(bare[ds.indices[with_st]]).float() / 255
    assert torch.equal(x, want)


def test_picklable_with_a_content_cache_key(ds, renderer):
    again = pickle.loads(pickle.dumps(renderer))
    assert again.cache_key == renderer.cache_key and ds.card["content_hash"] in renderer.cache_key
    s = _affected(ds)[0]
    assert torch.equal(again.render([s], [renderer.traits(s)]), renderer.render([s], [renderer.traits(s)]))


def test_bad_inputs_raise(ds, renderer):
    s = _affected(ds)[0]
    with pytest.raises(ConfigError, match="expected traits of"):
        renderer.render([s], [("no_such_trait",)])
    with pytest.raises(ConfigError, match="sequence of trait names"):
        renderer.render([s], [renderer.traits(s)[0]])
    with pytest.raises(ShapeError, match="one trait list per sample"):
        renderer.render([s, s], [()])
    with pytest.raises(DataError, match="sample id"):
        renderer.traits("img999999")
    with pytest.raises(DataError, match="sample id"):
        renderer.trait_masks("p00001")
