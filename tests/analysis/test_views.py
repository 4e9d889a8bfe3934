"""Clinical views against analytic answers, and the region table against the planted truth:
the oracle map (the evidence) recovers every syndrome's annotated regions on synthetic faces,
and on the default model a real method (saliency) recovers most while the random control
does not."""

from __future__ import annotations

import json

import pytest
import torch

from gmxai_eval.analysis.views import (composite_faces, generic_and_difference, region_area, region_mass,
                                       region_table, syndrome_maps)
from gmxai_eval.data.regions import REGION_NAMES, class_regions, load_hpo_regions
from gmxai_eval.errors import DataError, ShapeError


def _halves(n=2, h=4, w=4):
    left = torch.zeros(h, w, dtype=torch.bool)
    left[:, : w // 2] = True
    top = torch.zeros(h, w, dtype=torch.bool)
    top[0] = True
    return torch.stack([left, ~left & ~top])  # right half minus its first row: background there


def test_region_mass_and_area_by_hand():
    r = _halves()
    maps = torch.zeros(2, 4, 4)
    maps[0, :, :2] = 1.0          # all mass left
    maps[1] = 1.0                 # uniform: shares = areas
    maps[1, 0, 3] = -5.0          # negative relevance ignored (positive part)
    s = region_mass(maps, r)
    torch.testing.assert_close(s[0], torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(s[1], torch.tensor([8 / 15, 6 / 15, 1 / 15], dtype=torch.float64))
    torch.testing.assert_close(region_area((2, 4, 4), r)[0], torch.tensor([0.5, 6 / 16, 2 / 16], dtype=torch.float64))
    assert region_mass(torch.zeros(1, 4, 4), r).isnan().all()  # no mass: NaN, never a number
    with pytest.raises(ShapeError):
        region_mass(maps, torch.zeros(3, 5, 5, dtype=torch.bool))


def test_syndrome_maps_composites_and_differences_by_hand():
    maps = torch.stack([torch.full((2, 2), v) for v in (1.0, 3.0, 2.0, 4.0)])
    labels = torch.tensor([0, 0, 1, 1])
    per = syndrome_maps(maps, labels, normalise=False)
    assert per[0]["n"] == 2 and per[0]["mean"][0, 0] == 2.0 and per[0]["std"][0, 0] == 1.0
    keep = torch.tensor([True, False, True, True])
    assert syndrome_maps(maps, labels, keep, normalise=False)[0]["n"] == 1
    generic, diff = generic_and_difference(per)
    assert generic[0, 0] == 2.5 and diff[0][0, 0] == -0.5 and diff[1][0, 0] == 0.5
    faces = composite_faces(torch.arange(4.0).view(4, 1, 1, 1).expand(4, 3, 2, 2), labels)
    assert faces[1][0, 0, 0] == 2.5
    norm = syndrome_maps(maps * torch.tensor([1.0, 10.0, 1.0, 1.0]).view(-1, 1, 1), labels)
    assert norm[0]["mean"][0, 0] == 1.0  # every image weighs the same after normalisation


def test_packaged_hpo_table_agrees_with_the_synthetic_phenotypes(tmp_path):
    from gmxai_eval.data.synth import PHENOTYPES

    table = load_hpo_regions()
    for p in PHENOTYPES.values():
        assert table[p.hpo] == p.regions, p.key
    bad = tmp_path / "t.csv"
    bad.write_text("hpo,label,regions\nHP:0000316,Hypertelorism,eyes\nHP:1,x,eyes\n")
    with pytest.raises(DataError, match=r"t\.csv, row 3, column 'hpo'"):
        load_hpo_regions(bad)
    bad.write_text("hpo,label,regions\nHP:0000316,Hypertelorism,toes\n")
    with pytest.raises(DataError, match="row 2, column 'regions'.*toes"):
        load_hpo_regions(bad)
    with pytest.raises(DataError, match="unknown \\['HP:9999999'\\]"):
        class_regions({"s": ["HP:9999999"]})


def _synthetic(root, n):
    from gmxai_eval.data.synth import load as load_synth
    from gmxai_eval.runner.run import select_samples

    ds = load_synth("tiny", root=root, progress=False)
    test = [s for s in select_samples(ds, "test", n, "stratified")]
    card = json.loads((ds.folder / "card.json").read_text())
    cr = class_regions({d["name"]: d["hpo"] for d in card["class_details"]})
    return ds, test, cr


def test_region_table_recovers_the_planted_regions_for_the_oracle(tmp_path):
    ds, samples, cr = _synthetic(tmp_path, 80)
    ev = torch.stack([s.evidence for s in samples]).float()
    regions = torch.stack([s.region_masks for s in samples])
    labels = torch.tensor([s.label for s in samples])
    tab = region_table(region_mass(ev, regions), labels, REGION_NAMES, ds.classes, cr,
                       area=region_area(ev.shape, regions))
    affected = tab[tab.annotated != ""]
    assert len(affected) == len(ds.classes) - 1 >= 3  # every syndrome (all but unaffected)
    assert affected.top_is_annotated.all()
    assert (affected.annotated_mass > 0.999).all() and (affected.background < 1e-9).all()
    assert (affected.unexplained == "").all()


def _default_case(preset: str, n: int):
    """``n`` stratified test images of an embedded-default preset with the model's predictions
    and the class-to-annotated-region map of its card."""
    from gmxai_eval.data.synth import read_card
    from gmxai_eval.models.default import load_default
    from gmxai_eval.runner.run import select_samples

    model, splits, _ = load_default(preset=preset, progress=False)
    samples = select_samples(splits.test, "test", n, "stratified")
    x = torch.stack([s.image for s in samples])
    y = torch.tensor([s.label for s in samples])
    r = torch.stack([s.region_masks for s in samples])
    with torch.no_grad():
        pred = model(x).argmax(1)
    cr = class_regions({d["name"]: d["hpo"] for d in read_card(splits.test.folder)["class_details"]})
    return model, splits, samples, x, y, r, pred, cr


@pytest.mark.slow
def test_region_table_on_the_default_model_a_real_method_recovers_the_traits_random_does_not():
    from gmxai_eval.methods import METHODS

    model, splits, _, x, y, r, pred, cr = _default_case("default", 104)
    hit = {}
    for m in ("saliency", "random"):
        maps = METHODS.create(m)(model, x, pred)
        tab = region_table(region_mass(maps, r), y, REGION_NAMES, splits.test.classes, cr, keep=pred == y,
                           area=region_area(maps.shape, r))
        hit[m] = float(tab[tab.annotated != ""].top_is_annotated.mean())
    assert hit["saliency"] >= 2 / 3 and hit["saliency"] >= hit["random"] + 0.3, hit


@pytest.mark.slow
def test_region_table_on_the_shortcut_data_flags_the_sticker_for_a_cam_method():
    """The shortcut model's class 1 has no phenotype (no annotated region) and a sticker on 90 %
    of its photos: Grad-CAM's table must name the sticker as that class's top region with
    unexplained high mass, and give the sticker no mass on classes without stickers."""
    from gmxai_eval.methods import METHODS

    model, splits, samples, x, y, r, pred, cr = _default_case("shortcut", 48)
    names = samples[0].region_names
    assert names[-1] == "sticker"  # a named region of the table when the data have a sticker
    maps = METHODS.create("grad_cam")(model, x, y)
    tab = region_table(region_mass(maps, r), y, names, splits.test.classes, cr, keep=pred == y,
                       area=region_area(maps.shape, r))
    sticker_class = splits.test.classes[1]
    assert cr[sticker_class] == () and tab.loc[sticker_class, "n"] >= 3
    assert tab.loc[sticker_class, "top_regions"].split(", ")[0] == "sticker"
    assert tab.loc[sticker_class, "unexplained"].split(", ")[0] == "sticker"
    assert tab.loc[sticker_class, "sticker density"] > 2.0
    others = tab.drop(index=sticker_class)
    assert (others["sticker"] < 0.01).all() and not others.unexplained.str.contains("sticker").any()
